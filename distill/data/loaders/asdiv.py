"""ASDiv (en) and its arithmetic subset ASDiv-A, from ``asdiv/ASDiv.xml``.

The file is ``<Machine-Reading-Corpus-File><ProblemSet><Problem ID=".." Grade=".." Source="..">``
with ``Body``, ``Question``, ``Solution-Type``, ``Answer`` (``9 (apples)``) and ``Formula``
(``7+2=9``) children. Each ``<Problem>`` is parsed on its own, so one malformed problem is a
reject and the rest load.

Rows: id ``asdiv/<ID>``; question ``Body + " " + Question``; equation from ``Formula``. The unit
in parentheses at the end of ``Answer`` (this format's convention) is read by
:func:`distill.quantities.parse_answer` and kept in ``meta["unit"]``; ``answer_raw`` is the
whole text. About 10% of answers are not numbers (names, yes/no, ``3:30 p.m.``, ``15 r8``,
several values): those rows load with ``answer=None``. ``Solution-Type``, ``Grade``, ``Source``,
``Body`` and ``Question`` go to meta.

``asdiv-a`` (registered separately): the problems whose IDs ``asdiv/nfolds/asdiv-a/fold0..4.txt``
list (one ID a line; 1218 in all). Splits ``fold0`` .. ``fold4`` and ``all`` (their union), in
ASDiv.xml order, ids ``asdiv-a/<ID>``, ``meta["fold"]`` naming the fold. A listed ID that
ASDiv.xml lacks, or one listed twice, is a reject of that split.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from distill.data.base import LoadResult, register_dataset
from distill.data.loaders._common import Entry, SplitFilesLoader, read_id, read_text
from distill.quantities import parse_answer
from distill.records import RecordError

XML = "asdiv/ASDiv.xml"
FOLDS = tuple(f"fold{k}" for k in range(5))
FOLD_FILE = "asdiv/nfolds/asdiv-a/{}.txt"

_START = re.compile(r"<Problem[\s>/]")
_SET_END = re.compile(r"</ProblemSet\s*>")
_CLOSE = "</Problem>"
_ID_ATTR = re.compile(r'\bID\s*=\s*"([^"]*)"')


def read_problems(path: Path) -> list[Entry]:
    """One entry per ``<Problem>`` element of an ASDiv file (record = the parsed Element)."""
    text = read_text(path)
    starts = [m.start() for m in _START.finditer(text)]
    set_end = _SET_END.search(text, starts[-1]) if starts else None
    bounds = starts[1:] + [set_end.start() if set_end else len(text)]
    entries, line, counted = [], 1, 0
    for start, stop in zip(starts, bounds):
        line += text.count("\n", counted, start)
        counted = start
        chunk = text[start:stop]
        close = chunk.rfind(_CLOSE)
        raw = chunk[: close + len(_CLOSE)] if close >= 0 else chunk.rstrip()
        entry = Entry(path, f"line {line}", raw, pos=line)
        if close < 0:
            entry.error = "malformed XML: no closing </Problem>"
        else:
            try:
                entry.record = ET.fromstring(raw)
            except ET.ParseError as e:
                entry.error = f"malformed XML: {e}"
        entries.append(entry)
    return entries


def problem_id(entry: Entry) -> str | None:
    """The ID of a problem, read from its text when the element did not parse."""
    if entry.record is not None:
        return entry.record.get("ID")
    m = _ID_ATTR.search(entry.raw.split(">", 1)[0])
    return m.group(1) if m else None


def _id(elem: ET.Element) -> str:
    return read_id(elem.get("ID"), "ID")


def _child(elem: ET.Element, tag: str) -> str:
    node = elem.find(tag)
    if node is None:
        raise RecordError(tag, "missing")
    return "".join(node.itertext()).strip()


def _fields(elem: ET.Element, **extra_meta: Any) -> dict[str, Any]:
    body, question = _child(elem, "Body"), _child(elem, "Question")
    answer_text = _child(elem, "Answer")
    if not answer_text:
        raise RecordError("Answer", "empty")
    meta: dict[str, Any] = {k: v for k, v in elem.attrib.items() if k != "ID"}
    for node in elem:
        if node.tag not in ("Answer", "Formula"):
            meta[node.tag] = "".join(node.itertext()).strip()
    unit = parse_answer(answer_text).unit
    if unit:
        meta["unit"] = unit
    formula = elem.find("Formula")
    return {
        "question": f"{body} {question}".strip(),
        "answer": answer_text,
        "equation": None if formula is None else "".join(formula.itertext()),
        "require_numeric_answer": False,
        "meta": {**meta, **extra_meta},
    }


@register_dataset("asdiv")
class ASDiv(SplitFilesLoader):
    description = "ASDiv (en): diverse grade 1-6 problems; non-numeric answers load as None"
    layout = "asdiv/ASDiv.xml"
    lang = "en"
    source_fields = {"question": "Body/Question", "answer": "Answer", "equation": "Formula"}
    split_files = {"all": (XML,)}

    def read(self, split: str, data_dir: Path) -> LoadResult:
        out = self.builder(split)
        for entry in read_problems(data_dir / XML):
            out.add(entry, _id, _fields)
        return out.result


@register_dataset("asdiv-a")
class ASDivA(SplitFilesLoader):
    description = "ASDiv-A (en): the arithmetic subset of ASDiv, by its 5 published folds"
    layout = "asdiv/ASDiv.xml + asdiv/nfolds/asdiv-a/fold0.txt .. fold4.txt"
    lang = "en"
    source_fields = ASDiv.source_fields
    split_files = {
        "all": (XML, *(FOLD_FILE.format(f) for f in FOLDS)),
        **{f: (XML, FOLD_FILE.format(f)) for f in FOLDS},
    }

    def read(self, split: str, data_dir: Path) -> LoadResult:
        out = self.builder(split)
        wanted: dict[str, tuple[str, Path, str, str]] = {}  # ID -> fold, file, where, raw
        for fold in FOLDS if split == "all" else (split,):
            path = data_dir / FOLD_FILE.format(fold)
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            for lineno, line in enumerate(lines, start=1):
                pid = line.strip()
                if not pid:
                    continue
                if pid in wanted:
                    first = wanted[pid][1].name
                    again = "twice in" if first == path.name else f"in {first} and in"
                    out.reject(path, f"line {lineno}", "ID", f"ID {pid!r} is listed {again} "
                               f"{path.name}", line)
                    continue
                wanted[pid] = (fold, path, f"line {lineno}", line)

        found: set[str] = set()
        for entry in read_problems(data_dir / XML):
            pid = problem_id(entry)
            if pid in wanted:
                found.add(pid)
                out.add(entry, _id, lambda elem, fold=wanted[pid][0]: _fields(elem, fold=fold))
        for pid, (_, path, where, raw) in wanted.items():
            if pid not in found:
                out.reject(path, where, "ID", f"ID {pid!r} is listed in {path.name} but is not "
                           f"in {Path(XML).name}", raw)
        return out.result
