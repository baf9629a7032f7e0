"""ASDiv (en) and its arithmetic subset ASDiv-A, from ``asdiv/ASDiv.xml``.

The file is ``<Machine-Reading-Corpus-File><ProblemSet><Problem ID=".." Grade=".." Source="..">``
with ``Body``, ``Question``, ``Solution-Type``, ``Answer`` (``9 (apples)``) and ``Formula``
(``7+2=9``) children. Each ``<Problem>`` is parsed on its own, so one malformed problem is a
reject and the rest load.

Rows: id ``asdiv/<ID>``; question ``Body + " " + Question``; equation from ``Formula`` (below).
The unit in parentheses at the end of ``Answer`` (this format's convention) is read by
:func:`distill.quantities.parse_answer` and kept in ``meta["unit"]``; ``answer_raw`` is the
whole text. About 10% of answers are not numbers (names, yes/no, ``3:30 p.m.``, ``15 r8``,
several values): those rows load with ``answer=None``. ``Solution-Type``, ``Grade``, ``Source``,
``Body``, ``Question`` and the published ``Formula`` go to meta (a child's attributes as
``<tag>/<attribute>``: ``Solution-Type/Subgoal-1``).

``Formula`` is written *expression = result* (``7+2=9``, ``(9-6)*2=6``, ``4.80/4=1.20``); the
expression is the row's ``equation`` (read as ``x = expression``, as SVAMP's are), the result
is checked against it and against ``Answer`` with :mod:`distill.equations` and
:func:`distill.grading.grade` (:func:`read_formula`). A formula that fails a check still loads
-- as Math23K's label noise does, so ``data stats`` counts it -- and says why in
``meta["formula_check"]`` / ``meta["formula_note"]``:

* ``disagrees``: the result is not the answer; ``inconsistent``: the expression does not give
  its own result (an expression keeps its equation in both cases; a formula with a variable,
  ``x+5=12``, is the equation only when it gives the answer);
* ``remainder``: a division written with its remainder (``248/16=15 r8``; Floor- and
  Ceil-Division problems, whose answer is 15 or 16): no equation, the grammar has no floor or
  ceiling;
* ``several``: several formulas separated by ``;`` (no equation);
* ``non_numeric_answer``: the answer is not a number (``Emma``), so the formula is not an
  equation for it (no equation);
* ``unparsable``: the equation grammar cannot read it (``9>6``, ``2:00+1:30=3:30``; no
  equation).

``asdiv-a`` (registered separately): the problems whose IDs ``asdiv/nfolds/asdiv-a/fold0..4.txt``
list (one ID a line; 1218 in all). Splits ``fold0`` .. ``fold4`` and ``all`` (their union), in
ASDiv.xml order, ids ``asdiv-a/<ID>``, ``meta["fold"]`` naming the fold. A listed ID that
ASDiv.xml lacks, or one listed twice, is a reject of that split.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from distill.data.base import LoadResult, register_dataset
from distill.data.loaders._common import Entry, SplitFilesLoader, read_id, read_text
from distill.equations import BinOp, EquationError, evaluate, parse_expression, variables
from distill.grading import grade, grade_equation
from distill.quantities import ParsedAnswer, canonical, parse_answer
from distill.records import RecordError

XML = "asdiv/ASDiv.xml"
FOLDS = tuple(f"fold{k}" for k in range(5))
FOLD_FILE = "asdiv/nfolds/asdiv-a/{}.txt"

_START = re.compile(r"<Problem[\s>/]")
_SET_END = re.compile(r"</ProblemSet\s*>")
_CLOSE = "</Problem>"
_ID_ATTR = re.compile(r'\bID\s*=\s*"([^"]*)"')
_REMAINDER = re.compile(r"^\s*(\d+)\s*[rR]\s*(\d+)\s*$")


@dataclass(frozen=True)
class FormulaReading:
    """What an ASDiv ``Formula`` gives a row: the gold ``equation`` (None when it gives none),
    ``check`` (``agrees`` or the reason it was flagged, see the module docstring) and a
    ``note`` saying what was found."""

    equation: str | None
    check: str
    note: str | None = None


def read_formula(formula: str, answer: ParsedAnswer | str) -> FormulaReading:
    """Read a published ``Formula`` (``expression=result``) against the problem's ``Answer``.

    The expression is parsed and evaluated by :mod:`distill.equations`; the result is read
    by :func:`distill.quantities.parse_answer` (``1.20``, ``3/8``, ``$12``) or as a remainder
    (``15 r8``); values are compared by :func:`distill.grading.grade`. A formula with a
    variable (``x+5=12``) is kept whole when, solved, it gives the answer. Never raises.
    """
    gold = answer if isinstance(answer, ParsedAnswer) else parse_answer(answer)
    text = " ".join(formula.split())
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        return FormulaReading(None, "unparsable", "empty formula")
    if len(parts) > 1:
        return FormulaReading(None, "several", f"{len(parts)} formulas separated by ';'")
    sides = [p.strip() for p in parts[0].split("=")]
    try:
        expr = parse_expression(sides[0])
    except EquationError as e:
        return FormulaReading(None, "unparsable", str(e))
    if variables(expr):
        if len(sides) != 2:
            return FormulaReading(None, "unparsable", "a formula with a variable and no single '='")
        if gold.value is None:
            return FormulaReading(None, "non_numeric_answer", f"answer {gold.original!r}")
        g = grade_equation(parts[0], gold)
        if g.equal:
            return FormulaReading(parts[0], "agrees")
        why = "cannot be solved" if g.method == "unparsable" else "does not give the answer"
        return FormulaReading(None, "unparsable" if g.method == "unparsable" else "disagrees",
                              f"the equation {why} ({gold.original!r})")
    try:
        values = [evaluate(expr)] + [evaluate(parse_expression(m)) for m in sides[1:-1]]
    except EquationError as e:
        return FormulaReading(None, "unparsable", str(e))
    if any(not grade(v, values[0]).equal for v in values[1:]):
        return FormulaReading(None, "inconsistent", "the sides of the formula differ")
    value, equation = values[0], sides[0]
    if len(sides) == 1:
        result = None
    else:
        rem = _REMAINDER.match(sides[-1])
        if rem is not None:
            q, r = int(rem.group(1)), int(rem.group(2))
            try:
                divisor = evaluate(expr.right) if isinstance(expr, BinOp) and expr.op == "/" else None
            except EquationError:
                divisor = None
            held = divisor is not None and divisor > 0 and value == q + Fraction(r, 1) / divisor
            return FormulaReading(None, "remainder", (
                f"{sides[0]} is {q} remainder {r}" + ("" if held else " -- which it is not")
                + f"; the answer is {gold.original!r} and the equation grammar has no "
                "floor or ceiling"))
        result = parse_answer(sides[-1])
        if result.value is None:
            return FormulaReading(None, "unparsable", f"result {sides[-1]!r} is not a number")
    if gold.value is None:
        return FormulaReading(None, "non_numeric_answer", f"answer {gold.original!r}")
    if result is not None and not grade(value, result).equal:
        return FormulaReading(equation, "inconsistent",
                              f"{sides[0]} is {canonical(value)}, the formula says {sides[-1]}")
    if not grade(value, gold).equal:
        said = sides[-1] if result is not None else canonical(value)
        return FormulaReading(equation, "disagrees",
                              f"the formula gives {said}, the answer is {gold.original!r}")
    return FormulaReading(equation, "agrees")


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
            for key, value in node.attrib.items():  # <Solution-Type Subgoal-1="Addition">
                meta[f"{node.tag}/{key}"] = value
    parsed = parse_answer(answer_text)
    if parsed.unit:
        meta["unit"] = parsed.unit
    node = elem.find("Formula")
    equation = None
    if node is not None:
        published = "".join(node.itertext()).strip()
        meta["Formula"] = published
        if published:
            reading = read_formula(published, parsed)
            equation = reading.equation
            if reading.check != "agrees":
                meta["formula_check"] = reading.check
                meta["formula_note"] = reading.note
    return {
        "question": f"{body} {question}".strip(),
        "answer": answer_text,
        "equation": equation,
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
