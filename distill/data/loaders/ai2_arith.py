"""MultiArith, AddSub and SingleEq (en): the AI2 arithmetic sets in the format the MAWPS
repository publishes them, a JSON array of ``{iIndex, sQuestion, lEquations, lSolutions,
lAlignments, ...}``.

Each has one split, ``all``: ``multiarith/MultiArith.json``, ``addsub/AddSub.json``,
``singleeq/questions.json``. Rows: id ``<dataset>/<iIndex>``, question ``sQuestion``, equation
``lEquations[0]`` (``X=((32.0+42.0)-35.0)``; AddSub ``X = 70 - 27``; SingleEq often implicit,
``70-x=27``), answer ``lSolutions[0]`` (floats; AddSub writes strings such as ``"43"``). Other
fields (``lAlignments``, and the full lists when a record has more than one equation or
solution) go to meta. Most of these problems also appear in MAWPS: decontaminate by question
text before training on one and evaluating on another.
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


def _first(rec: dict[str, Any], key: str, required: bool) -> Any:
    """``rec[key][0]``; a missing or empty list is a RecordError when ``required``."""
    values = rec.get(key)
    if values is None or values == []:
        if required:
            raise RecordError(key, "missing")
        return None
    if not isinstance(values, list):
        raise RecordError(key, f"expected a list, got {type(values).__name__}")
    return values[0]


def _fields(rec: dict[str, Any]) -> dict[str, Any]:
    question = require(rec, "sQuestion")
    answer = _first(rec, "lSolutions", required=True)
    equation = _first(rec, "lEquations", required=False)
    consumed = ["iIndex", "sQuestion"]
    consumed += [k for k in ("lEquations", "lSolutions")
                 if isinstance(rec.get(k), list) and len(rec[k]) <= 1]
    return {"question": question, "answer": answer, "equation": equation,
            "meta": rest(rec, consumed)}


class _AI2Arith(SplitFilesLoader):
    lang = "en"
    source_fields = {"question": "sQuestion", "answer": "lSolutions", "equation": "lEquations"}

    def read(self, split: str, data_dir: Path) -> LoadResult:
        out = self.builder(split)
        for entry in read_json_array(data_dir / self.split_files[split][0]):
            out.add(entry, lambda rec: read_id(rec.get("iIndex"), "iIndex"), _fields)
        return out.result


@register_dataset("multiarith")
class MultiArith(_AI2Arith):
    description = "MultiArith (en): multi-step arithmetic (Roy & Roth 2015), equation + answer"
    layout = "multiarith/MultiArith.json"
    split_files = {"all": ("multiarith/MultiArith.json",)}


@register_dataset("addsub")
class AddSub(_AI2Arith):
    description = "AddSub (en): addition/subtraction problems (Hosseini et al. 2014)"
    layout = "addsub/AddSub.json"
    split_files = {"all": ("addsub/AddSub.json",)}


@register_dataset("singleeq")
class SingleEq(_AI2Arith):
    description = "SingleEq (en): single-equation problems (Koncel-Kedziorski et al. 2015)"
    layout = "singleeq/questions.json"
    split_files = {"all": ("singleeq/questions.json",)}
