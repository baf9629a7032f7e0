"""GSM8K (openai/grade-school-math): ``gsm8k/{train,test}.jsonl``, one ``{question, answer}``
per line.

``answer`` is a worked solution with calculator notes (``<<48/2=24>>``) whose last ``#### 72``
gives the final answer. Rows: id ``gsm8k/<split>-<i>`` (``i`` = 0-based line index, the row
index of the hub copy), answer from the text after the last ``####`` (``answer_raw`` is that
text, e.g. ``1,080``), ``equation`` None (GSM8K has no gold equation), the whole solution in
``meta["solution"]``.

Hub source (``--source hub``): ``openai/gsm8k``, config ``main``, splits ``train`` / ``test``,
columns ``question`` and ``answer`` -- the same records as the two files, row ``i`` of a split
being line ``i + 1`` of its file, so the ids agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from distill.data.base import LoadResult, register_dataset
from distill.data.hub import HubSource
from distill.data.loaders._common import Entry, SplitFilesLoader, read_jsonl, require, rest
from distill.records import RecordError


def final_answer(solution: Any) -> str:
    """The text after the last ``####`` of a GSM8K solution."""
    if not isinstance(solution, str):
        raise RecordError("answer", f"expected a string, got {type(solution).__name__}")
    if "####" not in solution:
        raise RecordError("answer", "no '#### <answer>' line in the solution")
    final = solution.rsplit("####", 1)[1].strip()
    if not final:
        raise RecordError("answer", "nothing after the last '####'")
    return final


@register_dataset("gsm8k")
class GSM8K(SplitFilesLoader):
    description = "GSM8K grade-school math (en): worked solutions ending '#### <answer>'"
    layout = "gsm8k/train.jsonl, gsm8k/test.jsonl"
    lang = "en"
    split_files = {"train": ("gsm8k/train.jsonl",), "test": ("gsm8k/test.jsonl",)}
    hub = HubSource("openai/gsm8k", "main", {"train": ("train",), "test": ("test",)},
                    positions="line")

    def read(self, split: str, data_dir: Path) -> LoadResult:
        return self.rows(split, read_jsonl(data_dir / self.split_files[split][0]))

    def rows(self, split: str, entries: Iterable[Entry]) -> LoadResult:
        out = self.builder(split)
        for entry in entries:
            out.add(entry, lambda rec, i=entry.pos - 1: f"{split}-{i}", _fields)
        return out.result


def _fields(rec: dict[str, Any]) -> dict[str, Any]:
    solution = require(rec, "answer")
    return {
        "question": require(rec, "question"),
        "answer": final_answer(solution),
        "meta": {"solution": solution, **rest(rec, ("question", "answer"))},
    }
