"""Drawing problems, checking their gold, rendering rows: :func:`generate` and the loader.

The reader is whoever consumes synthetic rows (the data stage, the registry's ``synthetic``
dataset, tests and benches). :func:`generate` takes a :class:`SyntheticConfig` and a split name
and gives Problem rows (built by :func:`distill.records.make_problem`, dataset ``synthetic``)
that need no files and no downloads: the offline quickstart and the tests train, search and
evaluate on them.

What a row guarantees:

* ``equation`` is ``x=<infix>`` over the numbers written in the question (canonical form, so
  ``25%`` appears as ``0.25``) and the constants 1 and 2 (only where the text says "twice",
  "half", "两倍", a perimeter's "2 ×" ...). Each written number is used at most once. It evaluates
  exactly (``fractions.Fraction``) to ``answer``.
* Every number the gold uses is written as digits and found by :mod:`distill.quantities` at the
  place it was written (checked while generating: a mismatch raises, it is never dropped).
* Under the default config every intermediate result and the answer are positive integers; the
  numbers written in the question lie in ``[1, max_value]`` and results in ``(0, max_answer]``.
* ``masked_equation`` (a column of the row) is the gold over ``N0``, ``N1`` ... indexing
  ``quantities`` -- the true mapping, known here, not a guess from the values.
* ``meta`` holds ``template``, ``steps`` (operators in the gold), ``distractors`` (the values of
  irrelevant numbers added to the text), ``seed`` and ``generator``.
* Deterministic for a (config, split) pair; the first k rows do not depend on how many follow.
  Splits are disjoint by construction: each split draws from its own seed and keeps only
  questions whose text hashes into the split's share of the hash space, so no question text can
  occur in two splits whatever the seeds and sizes. Ids are ``synthetic/<split>-<i:06d>``.

A template (:mod:`distill.data.synthetic.templates`) is picked after the step count is drawn
uniformly from ``[min_steps, max_steps]``. The gold is a :mod:`distill.equations` tree,
evaluated with its operators (:func:`distill.equations.apply_op`) and written with
:func:`distill.equations.to_infix` (spaces dropped: ``x=(a+b)/k``, the spelling of generator
``synthetic-v1``).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

from distill.data.base import DatasetLoader, LoadResult, UnknownSplitError, register_dataset
from distill.data.synthetic.config import SyntheticConfig
from distill.data.synthetic.templates import (
    TEMPLATES,
    _Ctx,
    _distractor,
    _Draft,
    _Num,
    _Retry,
    _Template,
)
from distill.equations import (
    BinOp,
    EquationError,
    Expr,
    Num,
    Placeholder,
    apply_op,
    operator_count,
    placeholders,
    substitute,
    to_infix,
)
from distill.quantities import canonical
from distill.records import make_problem

__all__ = ["DATASET", "GENERATOR", "SPLITS", "SyntheticLoader", "generate"]

DATASET = "synthetic"
SPLITS = ("train", "valid", "test")
GENERATOR = "synthetic-v1"  # bump when the same config would produce different rows

# Share of the question-hash space each split may draw from (disjoint by construction).
_SPLIT_SHARES = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
# Consecutive rejected candidates after which the config is declared unsatisfiable.
_MAX_MISSES = 20_000


# ================================================================================= gold trees
def _evaluate(tree: Expr, nums: list[_Num], results: list[tuple[BinOp, Fraction]]) -> Fraction:
    """Exact value of a gold tree, written number ``slot`` being ``nums[slot].value``; appends
    every operator's (node, value) to ``results``, children first. The operators are
    :func:`distill.equations.apply_op` (a division by zero raises its EquationError)."""
    cls = tree.__class__
    if cls is BinOp:
        left = _evaluate(tree.left, nums, results)
        value = apply_op(tree.op, left, _evaluate(tree.right, nums, results))
        results.append((tree, value))
        return value
    return nums[tree.index].value if cls is Placeholder else tree.value


def _slots(tree: Expr) -> list[int]:
    """The written numbers at the leaves of a gold tree, in text order, repeats kept."""
    if tree.__class__ is BinOp:
        return _slots(tree.left) + _slots(tree.right)
    return [tree.index] if tree.__class__ is Placeholder else []


def _ratio_only(tree: Expr, nums: list[_Num]) -> bool:
    """A factor made of percentages and constants (``1-0.2``): exempt from the integer rule."""
    slots = placeholders(tree)
    return any(nums[i].ratio for i in slots) and all(nums[i].ratio or nums[i].const for i in slots)


def _infix(tree: Expr, leaf: dict[int, Expr]) -> str:
    """``tree`` with written number ``slot`` read as ``leaf[slot]``, as infix text without spaces.

    :func:`distill.equations.to_infix` with its spaces dropped is the fewest-parentheses text
    the generator has always written (``x=(a+b)/k``, ``x=m-(a*p1+b*p2)``) for every tree the
    templates build; it would differ only for a right operand of the same precedence
    (``a+(b+c)``, ``a*(b/c)``, which equations keeps bracketed), which no template writes."""
    return to_infix(substitute(tree, {f"N{s}": e for s, e in leaf.items()})).replace(" ", "")


# ================================================================================ generation
@dataclass
class _Candidate:
    template: _Template
    lang: str
    steps: int
    ctx: _Ctx
    draft: _Draft
    answer: Fraction
    question: str
    spans: dict[int, tuple[int, int]]
    distractors: list[_Num]


_SENTINEL = re.compile("\x00(\\d+)\x00")


def _check(c: _Ctx, draft: _Draft) -> Fraction:
    """The answer, after checking the template kept the module's promises (else _Retry)."""
    cfg = c.config
    results: list[tuple[BinOp, Fraction]] = []
    try:
        answer = _evaluate(draft.expr.tree, c.nums, results)
    except EquationError:  # a division by zero
        raise _Retry from None
    for node, value in results:
        if value <= 0 or value > cfg.max_answer:
            raise _Retry
        if cfg.integer_answers_only and value.denominator != 1 and not _ratio_only(node, c.nums):
            raise _Retry
    if not cfg.integer_answers_only:
        d = answer.denominator
        for prime in (2, 5):
            while d % prime == 0:
                d //= prime
        if d != 1:
            raise _Retry
    for num in c.nums:
        if not num.const and not 1 <= int(num.shown) <= cfg.max_value:
            raise _Retry
    return answer


def _render(c: _Ctx, sentences: list[str]) -> tuple[str, dict[int, tuple[int, int]]]:
    """The question text and where each written number landed."""
    text = (" " if c.en else "").join(sentences)
    out: list[str] = []
    spans: dict[int, tuple[int, int]] = {}
    pos = length = 0
    for m in _SENTINEL.finditer(text):
        out.append(text[pos : m.start()])
        length += m.start() - pos
        slot = int(m.group(1))
        if slot in spans:
            raise AssertionError(f"number slot {slot} written twice")
        shown = c.nums[slot].shown
        spans[slot] = (length, length + len(shown))
        out.append(shown)
        length += len(shown)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), spans


def _draw(
    rng: random.Random, lang: str, steps: int, template: _Template, cfg: SyntheticConfig
) -> _Candidate:
    """One problem's text and gold tree (raises _Retry when the drawn numbers do not fit)."""
    c = _Ctx(rng, lang, cfg)
    draft = template.build(c, steps)
    answer = _check(c, draft)
    sentences = list(draft.context)
    distractors: list[_Num] = []
    if cfg.distractor_prob > 0 and rng.random() < cfg.distractor_prob:
        sentence, d = _distractor(c)
        sentences.insert(rng.randint(0, len(sentences)), sentence)
        distractors.append(d)
    question, spans = _render(c, sentences + [draft.question])
    return _Candidate(template, lang, steps, c, draft, answer, question, spans, distractors)


def _row(cand: _Candidate, split: str, index: int, seed: int) -> dict[str, Any]:
    """The Problem row of a candidate, its gold's numbers tied to the extracted quantities.

    The written numbers are matched, in text order, to the quantities ``make_problem`` extracted
    (by value; a quantity the text did not mean to carry is skipped), so a gold number that is not
    extracted raises instead of producing a row whose equation the search could never find."""
    name, tree, c = cand.template.name, cand.draft.expr.tree, cand.ctx
    slots = _slots(tree)
    ops = operator_count(tree)
    if ops != cand.steps:
        raise AssertionError(f"template {name}: {ops} operators, meant {cand.steps}")
    if len(set(slots)) != len(slots):
        raise AssertionError(f"template {name} uses a written number twice")
    if any(s not in cand.spans for s in slots):
        raise AssertionError(f"template {name}: a gold number is not in the text")
    written = {s: Num(c.nums[s].value, canonical(c.nums[s].value)) for s in slots}
    meta = {
        "template": name,
        "steps": cand.steps,
        "distractors": [canonical(d.value) for d in cand.distractors],
        "seed": seed,
        "generator": GENERATOR,
    }
    row = make_problem(
        dataset=DATASET,
        split=split,
        source_id=f"{split}-{index:06d}",
        question=cand.question,
        answer=canonical(cand.answer),
        equation="x=" + _infix(tree, written),
        lang=cand.lang,
        meta=meta,
    )
    values = row["quantities"]
    where: dict[int, int] = {}
    j = 0
    for slot in sorted(cand.spans, key=lambda s: cand.spans[s][0]):
        num = c.nums[slot]
        want = canonical(num.reads_as)
        if num.const:  # a number word: the extractor may or may not read it
            if j < len(values) and values[j] == want:
                where[slot], j = j, j + 1
            continue
        k = next((i for i in range(j, len(values)) if values[i] == want), None)
        if k is None:
            raise RuntimeError(
                f"synthetic template {name!r}: distill.quantities did not extract {num.shown!r} "
                f"(at {cand.spans[slot][0]}) from {cand.question!r}; it found {values}"
            )
        where[slot], j = k, k + 1

    masked = {s: Placeholder(where[s]) if s in where and c.nums[s].reads_as == c.nums[s].value
              else written[s] for s in slots}
    # set on the row: it indexes the quantities make_problem extracted
    row["masked_equation"] = "x=" + _infix(tree, masked)
    return row


def _share(question: str) -> float:
    h = hashlib.blake2b(question.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def generate(
    config: SyntheticConfig | None = None, split: str = "train", n: int | None = None
) -> list[dict[str, Any]]:
    """``n`` (default: the config's size for ``split``) Problem rows of ``split``.

    Raises :class:`UnknownSplitError` for a split other than train / valid / test, and
    RuntimeError when the config cannot yield enough distinct questions (e.g. a tiny
    ``max_value`` with few templates)."""
    config = config or SyntheticConfig()
    if split not in SPLITS:
        raise UnknownSplitError(
            f"dataset 'synthetic' has no split {split!r}; available: {', '.join(SPLITS)}"
        )
    n = config.size(split) if n is None else n
    rng = random.Random(f"mathdistill/{GENERATOR}/{config.seed}/{split}")
    lo, hi = _SPLIT_SHARES[split]
    names = config.templates or list(TEMPLATES)
    by_steps: dict[int, list[_Template]] = {}
    for s in range(config.min_steps, config.max_steps + 1):
        pool = [TEMPLATES[t] for t in names if s in TEMPLATES[t].steps]
        if pool:
            by_steps[s] = pool
    step_counts = sorted(by_steps)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    misses = 0
    while len(rows) < n:
        if config.lang_weights is None:
            lang = config.langs[len(rows) % len(config.langs)]
        else:
            lang = rng.choices(config.langs, weights=config.lang_weights)[0]
        steps = step_counts[rng.randrange(len(step_counts))]
        pool = by_steps[steps]
        template = pool[rng.randrange(len(pool))]
        try:
            cand = _draw(rng, lang, steps, template, config)
        except _Retry:
            cand = None
        if cand is None or cand.question in seen or not lo <= _share(cand.question) < hi:
            misses += 1
            if misses > _MAX_MISSES:
                raise RuntimeError(
                    f"synthetic: {_MAX_MISSES} draws in a row gave no new {split} question after "
                    f"{len(rows)} of {n}; widen the config (max_value, templates, steps)"
                )
            continue
        misses = 0
        seen.add(cand.question)
        rows.append(_row(cand, split, len(rows), config.seed))
    return rows


# ==================================================================================== loader
@register_dataset(DATASET)
class SyntheticLoader(DatasetLoader):
    """Dataset ``synthetic``: generated in memory from a :class:`SyntheticConfig` (default one
    when built without arguments, as the registry does); ``data_dir`` is ignored."""

    lang: ClassVar[str] = "multi"
    description: ClassVar[str] = "Seeded synthetic word problems (en + zh) with gold equations"
    layout: ClassVar[str] = "(none: generated in memory)"

    def __init__(self, config: SyntheticConfig | None = None):
        self.config = config or SyntheticConfig()

    def splits(self, data_dir: Path | None = None) -> list[str]:
        return list(SPLITS)

    def load(self, split: str, data_dir: Path | None = None) -> LoadResult:
        self.check_split(split, data_dir)  # type: ignore[arg-type]
        return LoadResult(problems=generate(self.config, split))
