"""Decontamination: no training problem may match an evaluation problem by normalized text.

``normalize_question`` is the one definition of "the same problem text": Unicode NFKC (so
full-width and half-width forms agree), case-folded, every run of characters that are neither
letters nor digits (punctuation, spaces, the spaces of segmented Chinese text) removed, so
"小明 有 3 个" and "小明有3个" agree, as do two spacings of one English text. Numbers are kept: the same story with other numbers is a different problem.

``decontaminate`` returns the kept rows, the removed rows (written out by callers, so nothing a
user gave is lost) and the count removed for each (training dataset, evaluation dataset) pair.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_question(text: str) -> str:
    """The normalized form under which two problem texts count as the same problem."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub("", text)


@dataclass
class DecontaminationReport:
    """Counts of a decontamination: removed per (train dataset, eval dataset) pair."""

    train_rows: int = 0
    kept: int = 0
    removed: Counter = field(default_factory=Counter)  # (train_ds, eval_ds) -> rows removed

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_rows": self.train_rows,
            "kept": self.kept,
            "removed": self.train_rows - self.kept,
            "removed_by_pair": [
                {"train": t, "eval": e, "removed": n} for (t, e), n in sorted(self.removed.items())
            ],
        }


def decontaminate(
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], DecontaminationReport]:
    """Split ``train_rows`` into (kept, removed) by whether an eval row has the same text.

    Rows are Problem rows (``question`` and ``dataset`` are read; ``split`` too when present,
    so a pair reads ``mawps:train`` / ``mawps:test``). A removed row is attributed to every
    evaluation set it matches, so pair counts may add up to more than the rows removed.
    """
    index: dict[str, set[str]] = {}
    for row in eval_rows:
        index.setdefault(normalize_question(row["question"]), set()).add(_label(row))
    report = DecontaminationReport()
    kept: list[Mapping[str, Any]] = []
    removed: list[Mapping[str, Any]] = []
    for row in train_rows:
        report.train_rows += 1
        hits = index.get(normalize_question(row["question"]))
        if hits:
            removed.append(row)
            for eval_label in hits:
                report.removed[(_label(row), eval_label)] += 1
        else:
            kept.append(row)
    report.kept = len(kept)
    return kept, removed, report


def _label(row: Mapping[str, Any]) -> str:
    split = row.get("split")
    return f"{row['dataset']}:{split}" if split else str(row["dataset"])
