"""Parsers: a teacher's completion text -> the part of a rationale that carries its answer.

Pure functions over strings (no Ray, no model, nothing executed). Each returns a
:class:`Parsed`; ``ok`` is False with a ``reason`` when the completion does not hold what the
strategy asked for. What the parsed parts *mean* (is the answer right, does the program run,
does the equation hold) is decided by :mod:`distill.generate.verify`.

* :func:`parse_cot` -- the final answer of a natural-language solution: the last
  ``The answer is: X`` (also ``answer is X``, ``Final answer: X``, ``Answer: X``,
  ``#### X``, ``\\boxed{X}``); without any marker, the last number written in digits
  (recorded as ``info["answer_from"] = "last_number"``).
* :func:`parse_program` -- a Python program: the first ```` ```python ```` block (an unclosed
  block runs to the end), else the first fenced block, else the whole text when it parses as
  Python. It must parse (``ast.parse``, never executed here).
* :func:`parse_equation` -- one equation line (``Equation: x=...`` or the first line with
  ``=``), cleaned of LaTeX operators, ``$`` and a final full stop, then checked with
  :func:`distill.equations.parse`; a candidate that does not parse is returned with
  ``ok=False`` and ``info["parse_error"]`` (what FLTT's format-fix call is sent).
* :func:`parse_core_question`, :func:`parse_information`, :func:`parse_key_points` and
  :func:`parse_kpdd_one_call` -- KPDD's sections (``Core question:``,
  ``Problem-solving information:``, then ``Solution:`` / ``Program:``).
* :func:`parse_new_problem` -- FDD's ``New problem: ...``.

Completions of base models run on past their answer ("Problem: ..." of a next example); every
parser cuts the text at the first line starting a new problem.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from distill.quantities import boxed_content, parse_answer

__all__ = [
    "Parsed",
    "format_key_points",
    "parse_core_question",
    "parse_cot",
    "parse_equation",
    "parse_information",
    "parse_key_points",
    "parse_kpdd_one_call",
    "parse_new_problem",
    "parse_program",
]

MAX_PROGRAM_CHARS = 200_000


@dataclass
class Parsed:
    """What a parser found. ``answer``: the answer text as written (CoT); ``program``;
    ``equation``; ``key_points`` (``Core question: ...`` + ``Problem-solving information:``);
    ``question`` (a new problem, FDD). ``ok`` False means unparsable, with ``reason``."""

    ok: bool
    answer: str | None = None
    program: str | None = None
    equation: str | None = None
    key_points: str | None = None
    question: str | None = None
    reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _fail(reason: str, **kw: Any) -> Parsed:
    return Parsed(False, reason=reason, **kw)


_NEXT_PROBLEM = re.compile(r"\n\s*(?:Problem|Question|Q)\s*\d*\s*[:：]", re.IGNORECASE)


def _cut(text: str | None) -> str:
    """The completion up to a following example (base models continue the few-shot pattern)."""
    if not isinstance(text, str):
        return ""
    m = _NEXT_PROBLEM.search(text)
    return (text[: m.start()] if m else text).strip()


# ------------------------------------------------------------------------------------- CoT
_ANSWER_MARKERS = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*[:：]?\s*(?P<a>[^\n]*)"
    r"|####\s*(?P<b>[^\n]*)"
    r"|答案\s*(?:(?:是|为)\s*[:：]?|[:：])\s*(?P<c>[^\n]*)",
    re.IGNORECASE,
)
_DIGIT_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?")


def _boxed(text: str) -> str | None:
    inner = boxed_content(text)
    return None if inner is None else inner.strip()


def _clean_answer(a: str) -> str:
    a = a.strip().strip("*").strip()
    a = re.sub(r"^\$\s*(?=\d)", "$", a)
    boxed = _boxed(a)
    if boxed is not None:
        return boxed
    return a.rstrip(".。 ").strip()


def parse_cot(text: str | None) -> Parsed:
    """The final answer of a chain-of-thought completion (see the module docstring)."""
    body = _cut(text)
    if not body:
        return _fail("empty completion")
    boxed = _boxed(body)
    markers = [m for m in _ANSWER_MARKERS.finditer(body)]
    for m in reversed(markers):
        a = _clean_answer(m.group("a") or m.group("b") or m.group("c") or "")
        if not a:
            continue
        if parse_answer(a).value is None:
            # "The answer is 5 + 3 = 8 apples", "the answer is that she needs $5": the last
            # number of the marked line; a marked line without digits may be a text answer.
            numbers = _DIGIT_NUMBER.findall(a)
            if numbers:
                return Parsed(True, answer=numbers[-1].strip(), info={"answer_from": "marker_line"})
        return Parsed(True, answer=a, info={"answer_from": "marker"})
    if boxed:
        return Parsed(True, answer=boxed, info={"answer_from": "boxed"})
    numbers = _DIGIT_NUMBER.findall(body)
    if numbers:
        return Parsed(True, answer=numbers[-1].strip(), info={"answer_from": "last_number"})
    return _fail("no final answer and no number in the completion")


# ------------------------------------------------------------------------------------- PoT
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LABEL = re.compile(r"^\s*(?:Program|Code|Python)\s*[:：]\s*", re.IGNORECASE)


def _syntax_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as e:
        return f"SyntaxError: {e.msg} (line {e.lineno})"
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return f"{type(e).__name__}: {e}"
    return None


def parse_program(text: str | None) -> Parsed:
    """A Python program from a completion (see the module docstring). Never runs it."""
    body = _cut(text)
    if not body:
        return _fail("empty completion")
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(body)]
    code = next((c for lang, c in blocks if lang in ("python", "py", "python3")), None)
    source = "fence"
    if code is None and blocks:
        code = next((c for lang, c in blocks if not lang), blocks[0][1])
    if code is None:
        candidate = _LABEL.sub("", body)
        if _syntax_error(candidate) is None and re.search(r"=|print\s*\(|return\b", candidate):
            code, source = candidate, "bare"
        else:
            return _fail("no code block in the completion")
    code = code.strip("\n")
    if not code.strip():
        return _fail("empty code block")
    if len(code) > MAX_PROGRAM_CHARS:
        return _fail(f"program longer than {MAX_PROGRAM_CHARS} characters")
    err = _syntax_error(code)
    if err is not None:
        return _fail(f"program does not parse: {err}", program=code)
    return Parsed(True, program=code, info={"program_from": source})


# -------------------------------------------------------------------------------- equations
_EQ_LABEL = re.compile(r"(?:equation|方程|算式)\s*[:：]\s*(?P<eq>[^\n]*)", re.IGNORECASE)
_LATEX_OPS = (("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("\\left", ""), ("\\right", ""),
              ("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", ""))


def _clean_equation(s: str) -> str:
    s = s.strip().strip("`").strip()
    for a, b in _LATEX_OPS:
        s = s.replace(a, b)
    s = s.replace("$", "").strip()
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", s)
    return s.rstrip(".。;；,，").strip().strip("`").strip()


def parse_equation(text: str | None) -> Parsed:
    """One equation from a completion, checked to parse (see the module docstring)."""
    from distill.equations import EquationError, parse

    body = _cut(text)
    if not body:
        return _fail("empty completion")
    labelled = [m.group("eq") for m in _EQ_LABEL.finditer(body) if m.group("eq").strip()]
    if labelled:
        candidate = labelled[-1]
    else:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        with_eq = [ln for ln in lines if "=" in ln]
        candidate = (with_eq or lines)[0]
    equation = _clean_equation(candidate)
    if not equation:
        return _fail("no equation in the completion")
    try:
        parse(equation)
    except EquationError as e:
        return _fail(f"equation does not parse: {e}", equation=equation,
                     info={"parse_error": str(e)})
    return Parsed(True, equation=equation)


# ------------------------------------------------------------------------------------- KPDD
_CORE = re.compile(r"core\s+question\s*[:：]", re.IGNORECASE)
_INFO = re.compile(r"problem[-\s]solving\s+information\s*[:：]", re.IGNORECASE)
_SOLUTION = re.compile(r"^\s*(?:solution|program|code|answer)\s*[:：]", re.IGNORECASE | re.MULTILINE)
_KEY_POINTS_LABEL = re.compile(r"^\s*key\s+points\s*[:：]\s*", re.IGNORECASE)


def format_key_points(core_question: str, information: str) -> str:
    """KPDD's key points as one text (what a student's first stage learns to write)."""
    return f"Core question: {core_question.strip()}\nProblem-solving information:\n{information.strip()}"


def _section(body: str, start: re.Match | None, stops: list[re.Pattern]) -> str:
    if start is None:
        return ""
    rest = body[start.end():]
    end = len(rest)
    for pat in stops:
        m = pat.search(rest)
        if m and m.start() < end:
            end = m.start()
    return rest[:end].strip()


def parse_core_question(text: str | None) -> Parsed:
    """KPDD step 1: the core question (label optional; the first paragraph)."""
    body = _cut(text)
    m = _CORE.search(body)
    if m:
        body = body[m.end():]
    body = _INFO.split(body)[0]
    question = body.strip().split("\n\n")[0].strip()
    if not question:
        return _fail("no core question in the completion")
    return Parsed(True, key_points=question)


def parse_information(text: str | None) -> Parsed:
    """KPDD step 2: the problem-solving information (label optional; up to a solution)."""
    body = _cut(text)
    m = _INFO.search(body)
    if m:
        body = body[m.end():]
    info = _SOLUTION.split(body)[0].strip()
    if not info:
        return _fail("no problem-solving information in the completion")
    return Parsed(True, key_points=info)


def parse_key_points(text: str | None) -> Parsed:
    """KPDD merged step: both sections; ``key_points`` is their :func:`format_key_points`."""
    body = _KEY_POINTS_LABEL.sub("", _cut(text))
    core = _section(body, _CORE.search(body), [_INFO, _SOLUTION])
    info = _section(body, _INFO.search(body), [_SOLUTION, _CORE])
    if not core:
        return _fail("no 'Core question:' section")
    if not info:
        return _fail("no 'Problem-solving information:' section")
    return Parsed(True, key_points=format_key_points(core, info),
                  info={"core_question": core, "information": info})


def parse_kpdd_one_call(text: str | None, solution: str) -> Parsed:
    """KPDD in one call: key points, then a solution parsed as ``solution`` ('cot' / 'pot')."""
    body = _cut(text)
    kp = parse_key_points(body)
    if not kp.ok:
        return kp
    info_start = _INFO.search(body)
    rest = body[info_start.end():] if info_start else body
    m = _SOLUTION.search(rest)
    if m is None:
        return _fail("no 'Solution:' / 'Program:' section", key_points=kp.key_points)
    sol = (parse_program if solution == "pot" else parse_cot)(rest[m.end():])
    sol.key_points = kp.key_points
    sol.info.update(kp.info)
    return sol


# -------------------------------------------------------------------------------------- FDD
_NEW_LABEL = re.compile(r"new\s+problem\s*[:：]\s*", re.IGNORECASE)
_AFTER_PROBLEM = re.compile(r"\n\s*\n|\n\s*(?:solution|answer|program|equation)\s*[:：]", re.IGNORECASE)


def parse_new_problem(text: str | None) -> Parsed:
    """FDD: the text of a new problem (after ``New problem:``, up to a blank line or a
    solution the teacher added anyway)."""
    if not isinstance(text, str):
        return _fail("empty completion")
    body = text.strip()
    labels = list(_NEW_LABEL.finditer(body))
    if labels:
        body = body[labels[-1].end():]
    body = _AFTER_PROBLEM.split(body)[0]
    question = " ".join(body.split())
    if not question:
        return _fail("no new problem in the completion")
    return Parsed(True, question=question)
