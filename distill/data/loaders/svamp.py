"""SVAMP (en): ``svamp/SVAMP.json``, a JSON array of ``{ID, Body, Question, Equation, Answer,
Type}`` (some copies add ``Numbers`` / ``Linear_Formula``; those go to meta).

One split, ``all`` (1000 in the published file). The problem text is ``Body + " " + Question``;
``Equation`` (``( 76.0 - 25.0 )``) is the gold equation, ``Answer`` a float. Ids ``svamp/<ID>``
(``svamp/chal-1``); ``ID``, ``Type``, ``Body`` and ``Question`` are kept in meta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.data.base import LoadResult, register_dataset
from distill.data.loaders._common import (
    SplitFilesLoader,
    read_id,
    read_json_array,
    require,
    rest,
)
from distill.records import RecordError


@register_dataset("svamp")
class SVAMP(SplitFilesLoader):
    description = "SVAMP (en) challenge set: Body + Question, equation, float answer"
    layout = "svamp/SVAMP.json"
    lang = "en"
    source_fields = {"question": "Body/Question", "answer": "Answer", "equation": "Equation"}
    split_files = {"all": ("svamp/SVAMP.json",)}

    def read(self, split: str, data_dir: Path) -> LoadResult:
        out = self.builder(split)
        for entry in read_json_array(data_dir / self.split_files[split][0]):
            out.add(entry, lambda rec: read_id(rec.get("ID"), "ID"), _fields)
        return out.result


def _fields(rec: dict[str, Any]) -> dict[str, Any]:
    body, question = require(rec, "Body"), require(rec, "Question")
    for name, value in (("Body", body), ("Question", question)):
        if not isinstance(value, str):
            raise RecordError(name, f"expected a string, got {type(value).__name__}")
    return {
        "question": f"{body.strip()} {question.strip()}".strip(),
        "answer": require(rec, "Answer"),
        "equation": rec.get("Equation"),
        "meta": rest(rec, ("Answer", "Equation")),
    }
