"""MATH-500 (en): ``math500/test.jsonl``, one ``{problem, solution, answer, subject, level,
unique_id}`` per line (the 500-problem subset of MATH used by "Let's Verify Step by Step").

One split, ``test``. Rows: id ``math500/<unique_id>`` (``math500/test/precalculus/807.json``),
question ``problem``, answer ``answer`` (LaTeX: when it is not a plain number the row keeps
``answer=None`` and ``answer_raw`` holds the LaTeX, e.g. ``\\frac{\\pi}{2}``), no equation;
``solution``, ``subject``, ``level`` and ``unique_id`` go to meta.

Hub source (``--source hub``): ``HuggingFaceH4/MATH-500``, whose one data file is this same
``test.jsonl`` (default config, split ``test``, the columns above).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from distill.data.base import LoadResult, register_dataset
from distill.data.hub import HubSource
from distill.data.loaders._common import (
    Entry,
    SplitFilesLoader,
    read_id,
    read_jsonl,
    require,
    rest,
)


@register_dataset("math500")
class MATH500(SplitFilesLoader):
    description = "MATH-500 (en): competition math, LaTeX answers (non-numeric ones load as None)"
    layout = "math500/test.jsonl"
    lang = "en"
    source_fields = {"question": "problem"}
    split_files = {"test": ("math500/test.jsonl",)}
    hub = HubSource("HuggingFaceH4/MATH-500", None, {"test": ("test",)}, positions="line")

    def read(self, split: str, data_dir: Path) -> LoadResult:
        return self.rows(split, read_jsonl(data_dir / self.split_files[split][0]))

    def rows(self, split: str, entries: Iterable[Entry]) -> LoadResult:
        out = self.builder(split)
        for entry in entries:
            out.add(entry, lambda rec: read_id(rec.get("unique_id"), "unique_id"), _fields)
        return out.result


def _fields(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": require(rec, "problem"),
        "answer": require(rec, "answer"),
        "require_numeric_answer": False,
        "meta": rest(rec, ("problem", "answer")),
    }
