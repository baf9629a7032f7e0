"""Math23K (zh): ``math23k/Math_23K.json`` plus the public Graph2Tree split.

``Math_23K.json`` is not a JSON array but 23162 pretty-printed objects one after another
``{id, original_text, segmented_text, equation, ans}``; an object that does not parse is a reject
and reading resumes at the next ``{`` that starts a line.

Splits (every one in Math_23K.json order, ids ``math23k/<id>`` the same in all of them):

* ``all``   -- every object of Math_23K.json (23162).
* ``valid`` / ``test`` -- the objects whose ids ``graph2tree_split/{valid,test}23k_processed.json``
  list (1000 each). The records come from Math_23K.json; an id listed there but absent from
  Math_23K.json, or listed twice, is a reject of that split.
* ``train`` -- every other object (21162).

A malformed object's id is read from its text when possible so its reject lands in the right
split (else in ``train``), keeping train + valid + test == all. ``ans`` is kept as written
(``20``, ``14.4``, ``10%``, ``((4)/(7))``, ``7((2)/(3))``); ``segmented_text`` goes to meta. The
six items whose equation disagrees with ``ans`` are loaded as published.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from distill.data.base import LoadResult, register_dataset
from distill.data.loaders._common import (
    Entry,
    SplitFilesLoader,
    mwp_fields,
    read_concatenated_json,
    read_id,
    read_json_array,
)
from distill.records import RecordError

MAIN = "math23k/Math_23K.json"
VALID = "math23k/graph2tree_split/valid23k_processed.json"
TEST = "math23k/graph2tree_split/test23k_processed.json"

_ID_IN_TEXT = re.compile(r'"id"\s*:\s*"?([^",\s}]+)')


@register_dataset("math23k")
class Math23K(SplitFilesLoader):
    description = "Math23K (zh): equations + answers; Graph2Tree valid/test split, train = the rest"
    layout = ("math23k/Math_23K.json (all); math23k/graph2tree_split/"
              "{valid,test}23k_processed.json (train = all - valid - test)")
    lang = "zh"
    source_fields = {"question": "original_text", "answer": "ans"}
    split_files = {
        "all": (MAIN,),
        "train": (MAIN, VALID, TEST),
        "valid": (MAIN, VALID),
        "test": (MAIN, TEST),
    }

    def read(self, split: str, data_dir: Path) -> LoadResult:
        out = self.builder(split)
        entries = read_concatenated_json(data_dir / MAIN)
        if split == "all":
            for entry in entries:
                out.add(entry, _id, mwp_fields)
            return out.result

        if split == "train":
            held_out = _listing(data_dir / VALID)[0].keys() | _listing(data_dir / TEST)[0].keys()
            wanted: dict[str, tuple[str, str]] = {}
        else:
            split_path = data_dir / (VALID if split == "valid" else TEST)
            wanted, bad = _listing(split_path)
            for where, field, reason, raw in bad:
                out.reject(split_path, where, field, reason, raw)

        found: set[str | None] = set()
        for entry in entries:
            sid = _id_or_none(entry)
            if (sid not in held_out) if split == "train" else (sid in wanted):
                out.add(entry, _id, mwp_fields)
                found.add(sid)
        for sid, (where, raw) in wanted.items():
            if sid not in found:
                out.reject(split_path, where, "id", f"id {sid!r} is listed in {split_path.name} "
                           f"but is not in {Path(MAIN).name}", raw)
        return out.result


def _listing(path: Path) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str, str]]]:
    """A split file's ids (id -> where, raw) in file order, and its unusable listings (where,
    field, reason, raw): items without a readable id, and ids listed a second time."""
    ids: dict[str, tuple[str, str]] = {}
    bad: list[tuple[str, str, str, str]] = []
    for entry in read_json_array(path):
        try:
            if entry.error is not None:
                raise RecordError("record", entry.error)
            sid = read_id(entry.record.get("id"), "id")
            if sid in ids:
                raise RecordError("id", f"id {sid!r} is listed twice in {path.name}")
        except RecordError as e:
            bad.append((entry.where, e.field, e.reason, entry.raw))
            continue
        ids[sid] = (entry.where, entry.raw)
    return ids, bad


def _id(rec: dict[str, Any]) -> str:
    return read_id(rec.get("id"), "id")


def _id_or_none(entry: Entry) -> str | None:
    """The entry's id if it can be read, from the record or (malformed) from its text."""
    if entry.record is not None:
        try:
            return _id(entry.record)
        except RecordError:
            return None
    m = _ID_IN_TEXT.search(entry.raw)
    return m.group(1) if m else None
