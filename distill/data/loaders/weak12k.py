"""Weak12K (zh, answer-only): JSON arrays of ``{id, original_text, ans, answer, num_list, text,
...}`` with no equations.

Files, under ``weak12k/``: ``train.json`` / ``valid.json`` / ``test.json`` give those splits; a
single ``weak12k.json`` (or ``Weak12K.json``) gives ``all``. Rows: id ``weak12k/<id>``, question
``original_text``, answer ``ans`` (a string such as ``"0.666666666667"``: the source rounds
repeating decimals to 12 places; whether that reads back as 2/3 is for
:func:`distill.quantities.parse_answer` to say, not the loader), ``equation`` None.

``ans`` is the gold. ``answer`` is NOT read as the answer: in the published example it is 2.0
next to ``ans`` "0.666666666667", so it does not restate the gold (in the Graph2Tree Math23K
files ``answer`` is ``float(ans)``, but here it is something else whose meaning the release does
not document). It is kept verbatim in ``meta["answer"]`` with every other field.
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

SINGLE_FILES = ("weak12k.json", "Weak12K.json")


@register_dataset("weak12k")
class Weak12K(SplitFilesLoader):
    description = "Weak12K (zh): answer-only problems (no equations), for weak supervision"
    layout = "weak12k/{train,valid,test}.json, or weak12k/weak12k.json (or Weak12K.json) as all"
    lang = "zh"
    source_fields = {"question": "original_text", "answer": "ans"}

    def split_paths(self, data_dir: Path) -> dict[str, list[Path]]:
        folder = data_dir / "weak12k"
        paths = {s: [folder / f"{s}.json"] for s in ("train", "valid", "test")}
        single = [folder / name for name in SINGLE_FILES if (folder / name).is_file()]
        paths["all"] = single[:1] or [folder / SINGLE_FILES[0]]
        return paths

    def read(self, split: str, data_dir: Path) -> LoadResult:
        out = self.builder(split)
        for entry in read_json_array(self.split_paths(data_dir)[split][0]):
            out.add(entry, lambda rec: read_id(rec.get("id"), "id"), _fields)
        return out.result


def _fields(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": require(rec, "original_text"),
        "answer": require(rec, "ans"),
        "meta": rest(rec, ("id", "original_text", "ans")),
    }
