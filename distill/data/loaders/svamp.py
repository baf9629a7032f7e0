"""SVAMP (en): ``svamp/SVAMP.json``, a JSON array of ``{ID, Body, Question, Equation, Answer,
Type}`` (some copies add ``Numbers`` / ``Linear_Formula``; those go to meta).

One split, ``all`` (1000 in the published file). The problem text is ``Body + " " + Question``;
``Equation`` (``( 76.0 - 25.0 )``) is the gold equation, ``Answer`` a float. Ids ``svamp/<ID>``
(``svamp/chal-1``); ``ID``, ``Type``, ``Body`` and ``Question`` are kept in meta.

Hub source (``--source hub``): ``ChilleD/SVAMP`` (default config), the same 1000 records in
its own 700/300 ``train`` / ``test`` split (drawn at random with seed 42 by the uploader; not
a split of the SVAMP paper). Our splits there: ``train``, ``test``, and ``all`` = train then
test -- the same records and ids as ``SVAMP.json`` but in another order. Its rows carry the
columns of ``SVAMP.json`` plus ``question_concat`` (``Body + " " + Question``, which this loader
builds itself; dropped, see :func:`hub_record`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from distill.data.base import LoadResult, register_dataset
from distill.data.hub import HubSource
from distill.data.loaders._common import (
    Entry,
    SplitFilesLoader,
    read_id,
    read_json_array,
    require,
    rest,
)
from distill.records import RecordError

_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?")


def hub_record(row: dict[str, Any]) -> dict[str, Any]:
    """A ``ChilleD/SVAMP`` row as a ``SVAMP.json`` record: ``question_concat`` (derived from
    Body and Question) is dropped, and an ``Answer`` stored as an integer or a decimal string
    becomes the float ``SVAMP.json`` writes (``27`` -> ``27.0``; anything else is kept as is, for
    the loader to accept or reject as it would in the file)."""
    rec = {k: v for k, v in row.items() if k != "question_concat"}
    answer = rec.get("Answer")
    if (isinstance(answer, int) and not isinstance(answer, bool)) or (
            isinstance(answer, str) and _DECIMAL.fullmatch(answer.strip())):
        rec["Answer"] = float(answer)
    return rec


@register_dataset("svamp")
class SVAMP(SplitFilesLoader):
    description = "SVAMP (en) challenge set: Body + Question, equation, float answer"
    layout = "svamp/SVAMP.json"
    lang = "en"
    source_fields = {"question": "Body/Question", "answer": "Answer", "equation": "Equation"}
    split_files = {"all": ("svamp/SVAMP.json",)}
    hub = HubSource("ChilleD/SVAMP", None,
                    {"all": ("train", "test"), "train": ("train",), "test": ("test",)},
                    to_record=hub_record)

    def read(self, split: str, data_dir: Path) -> LoadResult:
        return self.rows(split, read_json_array(data_dir / self.split_files[split][0]))

    def rows(self, split: str, entries: Iterable[Entry]) -> LoadResult:
        out = self.builder(split)
        for entry in entries:
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
