"""Row schemas shared by every stage, as Arrow schemas, plus the one builder of Problem rows.

Rows travel between stages as plain dicts whose keys are exactly the schema's field names; the
schemas here are what every Parquet file a stage writes conforms to.

* ``Problem``   -- a math word problem as a loader produced it (one per source record).
* ``Rationale`` -- a teacher's (or the equation search's) worked answer to one problem.
* ``SFTExample``-- one (source text, target text) pair a student is fine-tuned on.

Everything one stage hands to another is a typed column, commented below where the schema
declares it; ``meta`` (a JSON object) keeps only what its producer alone knows or needs
(source fields, search statistics, the calls a teacher made ...) and no stage reads another
stage's ``meta``. An equation over a problem's placeholders is spelled ``masked_equation`` in
every schema: ``x=N0*N1`` -- ``Nk`` is the problem's ``quantities[k]`` (the ``Nk`` of its
``masked_question``), any other number an allowed constant.

``make_problem`` is the only place that turns a source record into a Problem row: it parses the
answer, extracts and masks the quantities, and raises :class:`RecordError` naming the field when
the record cannot become a row (loaders turn that into a reject, never into a crash).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import pyarrow as pa

PROBLEM_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # "<dataset>/<source id>", stable
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),  # "en" | "zh"
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string()),  # canonical exact string ("18", "14.4", "4/7"); null if unknown
        pa.field("answer_raw", pa.string()),  # the answer exactly as the source wrote it
        pa.field("quantities", pa.list_(pa.string()), nullable=False),  # canonical values, in order
        pa.field("masked_question", pa.string(), nullable=False),  # quantities as N0, N1, ...
        pa.field("equation", pa.string()),  # gold equation when the source has one
        # the gold equation over the placeholders N0..Nk when the source knows which quantity
        # each of its numbers is (the synthetic generator); null for the loaders, whose gold
        # the SFT stage masks itself (distill.sft.core.mask_gold_equation), which prefers this
        pa.field("masked_equation", pa.string()),
        pa.field("meta", pa.string(), nullable=False),  # JSON object: everything else the source gave
    ]
)

RATIONALE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # the problem's id
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # model name, "search", middle model ...
        pa.field("sample_idx", pa.int32(), nullable=False),
        pa.field("prompt", pa.string()),
        pa.field("completion", pa.string()),
        pa.field("key_points", pa.string()),
        pa.field("program", pa.string()),  # a PoT program (assigns and prints ``answer``)
        # the equation the rationale gives: over the problem's own numbers (search:
        # ``x = 16 * (1 - 0.25)``; fltt_equation), or as the teacher wrote it over the
        # placeholders (fltt_masked_equation, then equal to masked_equation)
        pa.field("equation", pa.string()),
        # the rationale's equation over the placeholders N0..Nk (``x = N0 * (1 - N1)``): the
        # search's match, the fltt_masked_equation teacher's parsed equation; null when the row
        # has none (other strategies, no match, unparsable). The verdict judges it like every
        # column; the SFT stage's equation targets are the correct rows' masked equations.
        pa.field("masked_equation", pa.string()),
        pa.field("predicted", pa.string()),
        pa.field("verdict", pa.string(), nullable=False),  # correct | wrong | error | unparsable
        pa.field("error", pa.string()),  # why the verdict is not ``correct``
        pa.field("tokens_in", pa.int64()),
        pa.field("tokens_out", pa.int64()),
        pa.field("latency_s", pa.float64()),
        pa.field("meta", pa.string(), nullable=False),  # JSON object: the producer's own extras
    ]
)

SFT_EXAMPLE_SCHEMA = pa.schema(
    [
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # e.g. "solve", "keypoints"
        pa.field("source_text", pa.string(), nullable=False),
        pa.field("target_text", pa.string(), nullable=False),
    ]
)

VERDICTS = ("correct", "wrong", "error", "unparsable")


class RecordError(ValueError):
    """A source record that cannot become a row. ``field`` names the offending field."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def make_problem(
    *,
    dataset: str,
    split: str,
    source_id: str | int,
    question: Any,
    answer: Any,
    equation: Any = None,
    lang: str | None = None,
    masked_equation: str | None = None,
    meta: Mapping[str, Any] | None = None,
    require_numeric_answer: bool = True,
) -> dict[str, Any]:
    """Build one Problem row from the fields of a source record.

    ``answer`` is the answer as the source wrote it (string, int or float; ``None`` when the
    source has none). With ``require_numeric_answer`` an answer that is present but not a number
    raises :class:`RecordError` (field ``answer``); without it (datasets whose answers may be
    names, times or LaTeX) the row keeps ``answer=None`` and ``answer_raw`` holds the text.
    ``masked_equation`` is the gold over the row's placeholders, given only by a source that
    knows which quantity each gold number is (it indexes the ``quantities`` this function
    extracts, so such a source may set it on the returned row instead).
    Raises :class:`RecordError` for an empty question too.
    """
    from distill.quantities import canonical, detect_lang, mask_question, parse_answer

    if not isinstance(question, str) or not question.strip():
        raise RecordError("question", "missing or empty")
    question = question.strip()
    lang = lang or detect_lang(question)
    answer_raw = None if answer is None else (answer if isinstance(answer, str) else repr(answer))
    canonical_answer = None
    if answer is not None:
        parsed = parse_answer(answer)
        if parsed.value is not None:
            canonical_answer = canonical(parsed.value)
        elif require_numeric_answer:
            raise RecordError("answer", f"not a number: {answer_raw!r}")
        if isinstance(answer, float):
            answer_raw = repr(answer)
    if equation is not None and not isinstance(equation, str):
        raise RecordError("equation", f"expected a string, got {type(equation).__name__}")
    if masked_equation is not None and not isinstance(masked_equation, str):
        raise RecordError("masked_equation",
                          f"expected a string, got {type(masked_equation).__name__}")
    masked, quantities = mask_question(question, lang)
    return {
        "id": f"{dataset}/{source_id}",
        "dataset": dataset,
        "split": split,
        "lang": lang,
        "question": question,
        "answer": canonical_answer,
        "answer_raw": answer_raw,
        "quantities": [canonical(q.value) for q in quantities],
        "masked_question": masked,
        "equation": equation.strip() if isinstance(equation, str) and equation.strip() else None,
        "masked_equation": masked_equation.strip() if masked_equation and masked_equation.strip() else None,
        "meta": json.dumps(dict(meta or {}), ensure_ascii=False, sort_keys=True, default=str),
    }


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts with exactly the schema's keys) as an Arrow table; a missing key is an error."""
    rows = list(rows)
    names = schema.names
    for i, row in enumerate(rows):
        missing = [n for n in names if n not in row]
        if missing:
            raise KeyError(f"row {i} ({row.get('id', '?')}): missing column(s) {missing}")
    return pa.Table.from_pylist([{n: row[n] for n in names} for row in rows], schema=schema)


def require_columns(columns: Iterable[str], needed: Iterable[str], stage: str) -> None:
    """Raise a ValueError naming the columns ``stage`` needs that are absent."""
    have = set(columns)
    missing = [c for c in needed if c not in have]
    if missing:
        raise ValueError(f"{stage}: input is missing column(s) {missing}; it has {sorted(have)}")


def meta_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's ``meta`` (a JSON object in a string column of Problem and Rationale rows) as a
    dict; {} when it is missing or not a JSON object."""
    meta = row.get("meta") or "{}"
    if not isinstance(meta, str):
        return dict(meta)
    try:
        value = json.loads(meta)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
