"""Student inference: batched generation, equation outputs -> answers, prediction rows.

* :func:`load_for_inference` -- a student folder -> ``(model, tokenizer)`` on the device this
  process holds (:func:`distill.devices.current_device`: the GPU Ray assigned to the
  actor, else the CPU) in the configured ``dtype``, in eval mode.
* :func:`generate` -- texts from a student (a folder ``save_pretrained`` wrote, loaded by
  :func:`load_for_inference`, or a loaded model + tokenizer, used where it is) for a list of
  sources: greedy (``num_samples=1``) or ``k`` samples each (maj@k). Returns one list of
  ``num_samples`` texts per source, in input order. Inputs go to the model's device.
* :func:`score_targets` -- the student's negative log-likelihood of given targets (how
  refinement's middle model ranks a problem's candidate labels).
* :func:`generate_kpdd` -- KPDD's two steps with one student: key points (greedy), then the
  solution(s) from question + key points (same source formats as training).
* :func:`equation_answer` -- an equation-target output (prefix or infix over ``N0``, ``N1``
  ...) and the problem's quantities -> the answer as a canonical string, or an error kind:
  ``unparsable`` (not an equation, or a placeholder the problem does not have) or
  ``runtime`` (division by zero, no solution ...). Evaluation is :mod:`distill.equations`'.
* :func:`equation_over_numbers` -- the same output as infix text over the problem's numbers
  (what the serving API shows as ``equation``).
* :func:`prediction_rows` -- rows ``{id, dataset, gold, predicted, error, n_ops, sample_idx}``
  for :func:`distill.evaluate.score_problems`: equations evaluated, programs (pot, kpdd) run
  through the sandbox.
* :class:`StudentPredictor` -- the same generation as a Ray Data UDF (model loaded once per
  actor): ``ds.map_batches(StudentPredictor, fn_constructor_args=(dir, cfg),
  compute=ray.data.ActorPoolStrategy(size=n), batch_size=...)``.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

from distill.equations import (
    Equation,
    EquationError,
    Expr,
    operator_count,
    parse,
    parse_prefix,
    placeholders,
    substitute,
    to_infix,
    value_of,
    variables,
)
from distill.quantities import canonical, parse_number
from distill.generate.parsers import parse_cot
from distill.train.collate import encode_prompts
from distill.evaluate.config import InferenceConfig
from distill.evaluate.grammar import PrefixGrammar, TokenPieces, grammar_logits_processor
from distill.devices import current_device, resolve_dtype
from distill.sft.core import keypoints_source, solve_source
from distill.train.students import load_student

__all__ = [
    "StudentPredictor",
    "TargetScorer",
    "equation_answer",
    "equation_over_numbers",
    "generate",
    "generate_kpdd",
    "grammars_for",
    "load_for_inference",
    "prediction_rows",
    "score_targets",
]

ERROR_UNPARSABLE = "unparsable"
#: Targets whose outputs :func:`prediction_rows` turns into answers.
TARGETS_EVALUATED = ("equation_prefix", "equation_infix", "pot", "cot", "kpdd")
ERROR_RUNTIME = "runtime"


def load_for_inference(
    location: str | os.PathLike,
    config: InferenceConfig | None = None,
    device: str | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a student folder (local, or an object-store URI: downloaded
    first) or a hub name, on ``device`` (None: the device this process holds,
    :func:`~distill.devices.current_device`) in ``config.dtype`` resolved for that device
    (float16 off CUDA is a ``ValueError``)."""
    config = config or InferenceConfig()
    device = device or current_device()
    dtype = resolve_dtype(config.dtype, device)
    model, tokenizer = load_student(location, dtype=dtype, device=device)
    model.eval()
    return model, tokenizer


def _as_student(student: Any, config: InferenceConfig) -> tuple[Any, Any]:
    if isinstance(student, (str, os.PathLike)):
        return load_for_inference(student, config)
    model, tokenizer = student
    return model, tokenizer


def grammars_for(target: str, problems: Sequence[Mapping[str, Any]],
                 config: InferenceConfig) -> list[PrefixGrammar] | None:
    """The decoding grammar of each problem (its quantity count bounds ``N<i>``) when
    ``target`` is ``equation_prefix`` and ``config.constrain_equations`` is on, else None."""
    if target != "equation_prefix" or not config.constrain_equations:
        return None
    return [PrefixGrammar(len(p["quantities"])) for p in problems]


def _token_pieces(tokenizer: Any) -> TokenPieces:
    pieces = getattr(tokenizer, "_mathdistill_token_pieces", None)
    if pieces is None:  # (once per tokenizer: a pass over its vocabulary)
        pieces = TokenPieces(tokenizer)
        tokenizer._mathdistill_token_pieces = pieces
    return pieces


def generate(
    student: str | os.PathLike | tuple[Any, Any],
    sources: Sequence[str],
    config: InferenceConfig | None = None,
    grammars: Sequence[PrefixGrammar] | None = None,
) -> list[list[str]]:
    """``config.num_samples`` decoded outputs per source (greedy when 1, else sampled with
    ``temperature`` / ``top_p``, seeded; ``config.num_beams > 1``: the beam search's best
    output). Sources are batched by length for speed.

    ``grammars`` (one per source, :func:`grammars_for`): each output is decoded under its
    source's equation grammar (:mod:`distill.evaluate.grammar`), so it is well-formed."""
    import torch
    from transformers import LogitsProcessorList

    config = config or InferenceConfig()
    if grammars is not None and len(grammars) != len(sources):
        raise ValueError(f"{len(grammars)} grammars for {len(sources)} sources")
    model, tokenizer = _as_student(student, config)
    model.eval()
    device = next(model.parameters()).device
    encoder_decoder = bool(model.config.is_encoder_decoder)
    if getattr(model, "decodes_well_formed_equations", False):
        grammars = None  # a tree student: no other output is possible
    prompts = encode_prompts(tokenizer, sources, encoder_decoder, config.max_source_length)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    k = config.num_samples
    sample = k > 1
    beams = 1 if sample else config.num_beams  # (a sampled copy of a beam config samples)
    pad = tokenizer.pad_token_id
    out: list[list[str]] = [[] for _ in prompts]
    torch.manual_seed(config.seed)
    with torch.no_grad():
        for start in range(0, len(order), config.batch_size):
            idx = order[start: start + config.batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                p = prompts[i]
                # encoder inputs pad on the right; decoder-only prompts on the left, so that
                # generation continues right after each prompt
                sl = slice(0, len(p)) if encoder_decoder else slice(width - len(p), width)
                ids[row, sl] = torch.tensor(p)
                mask[row, sl] = 1
            kwargs: dict[str, Any] = dict(
                input_ids=ids.to(device), attention_mask=mask.to(device),
                max_new_tokens=config.max_new_tokens, num_return_sequences=k,
                pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, do_sample=sample)
            if sample:
                kwargs.update(temperature=config.temperature, top_p=config.top_p)
            else:
                kwargs.update(num_beams=beams)
            if grammars is not None:
                kwargs["logits_processor"] = LogitsProcessorList([grammar_logits_processor(
                    _token_pieces(tokenizer), [grammars[i] for i in idx],
                    rows_per_source=max(k, beams),
                    prompt_width=1 if encoder_decoder else width,
                    max_new_tokens=config.max_new_tokens)])
            gen = model.generate(**kwargs)
            if not encoder_decoder:
                gen = gen[:, width:]
            texts = tokenizer.batch_decode(gen, skip_special_tokens=True)
            for row, i in enumerate(idx):
                out[i] = [t.strip() for t in texts[row * k: (row + 1) * k]]
    return out


def score_targets(
    student: str | os.PathLike | tuple[Any, Any],
    sources: Sequence[str],
    targets: Sequence[str],
    config: InferenceConfig | None = None,
    max_target_length: int = 64,
) -> list[float]:
    """The student's negative log-likelihood of each ``targets[i]`` given ``sources[i]``
    (teacher-forced, summed over the target's tokens -- eos included -- or a tree's symbols),
    encoded exactly as training encodes an example (:func:`distill.train.collate.encode_examples`
    with ``config.max_source_length`` and ``max_target_length``). ``inf`` where the student
    cannot write the target (a tree student: not one tree over the question's quantities).
    Pairs are batched by length, ``config.batch_size`` at a time; the result is in input order."""
    import torch

    from distill.train.collate import IGNORE_INDEX, collate, encode_examples

    config = config or InferenceConfig()
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    model, tokenizer = _as_student(student, config)
    model.eval()
    device = next(model.parameters()).device
    encoder_decoder = bool(model.config.is_encoder_decoder)
    examples = encode_examples(tokenizer, sources, targets, encoder_decoder,
                               config.max_source_length, max_target_length)
    order = sorted(range(len(examples)),
                   key=lambda i: len(examples[i].prompt) + len(examples[i].target))
    out = [float("inf")] * len(examples)
    with torch.no_grad():
        for start in range(0, len(order), config.batch_size):
            idx = order[start: start + config.batch_size]
            batch = collate([examples[i] for i in idx], tokenizer.pad_token_id, encoder_decoder)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            labels = batch["labels"].to(device)
            if hasattr(model, "target_nll"):  # a tree student scores its trees itself
                nll, symbols = model.target_nll(ids, mask, labels)
                scores = nll.masked_fill(symbols.eq(0), float("inf"))
            else:
                if encoder_decoder:  # the decoder reads the labels shifted right; no loss
                    logits = model(input_ids=ids, attention_mask=mask,
                                   decoder_input_ids=model.prepare_decoder_input_ids_from_labels(
                                       labels=labels)).logits.float()
                else:  # position t predicts token t + 1
                    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                    labels = labels[:, 1:]
                keep = labels.ne(IGNORE_INDEX)
                picked = torch.log_softmax(logits, -1).gather(
                    -1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                scores = -(picked * keep).sum(-1)
            for row, i in enumerate(idx):
                out[i] = float(scores[row])
    return out


def generate_kpdd(
    student: str | os.PathLike | tuple[Any, Any],
    questions: Sequence[str],
    config: InferenceConfig | None = None,
    generate_fn: Callable[..., list[list[str]]] | None = None,
) -> list[tuple[str, list[str]]]:
    """KPDD inference: (key points, solutions) per question. Key points are greedy; the
    solutions follow ``config`` (k samples for maj@k). ``generate_fn`` stands in for
    :func:`generate` (same signature; tests script outputs with it)."""
    config = config or InferenceConfig()
    step = generate_fn or generate
    student = student if generate_fn else _as_student(student, config)
    greedy = config.model_copy(update={"num_samples": 1})
    points = [o[0] for o in step(student, [keypoints_source(q) for q in questions], greedy)]
    solutions = step(student, [solve_source(q, kp) for q, kp in zip(questions, points)], config)
    return list(zip(points, solutions))


def _bound_equation(text: str, quantities: Sequence[str], notation: str
                    ) -> tuple[Expr | Equation, dict[str, Fraction]] | None:
    """An equation-target output parsed, with ``N0``, ``N1``, ... bound to ``quantities``;
    None when it does not parse or names a quantity the problem lacks."""
    if notation not in ("prefix", "infix"):
        raise ValueError(f"notation must be 'prefix' or 'infix' (got {notation!r})")
    try:
        tree = parse_prefix(text) if notation == "prefix" else parse(text)
    except EquationError:
        return None
    values: dict[str, Fraction] = {}
    for i, q in enumerate(quantities):
        v = parse_number(q)
        if v is None:
            raise ValueError(f"quantity {q!r} is not a number")
        values[f"N{i}"] = v
    if any(i >= len(values) for i in placeholders(tree)):
        return None
    return tree, values


def equation_over_numbers(text: str, quantities: Sequence[str],
                          notation: str = "prefix") -> str | None:
    """An equation-target output as infix text over the problem's numbers (``* N0 + N1 N2``
    with 3, 4, 5 -> ``3 * (4 + 5)``); None when :func:`equation_answer` would call it
    unparsable for want of a tree (it does not parse, or names a quantity the problem lacks)."""
    bound = _bound_equation(text, quantities, notation)
    return None if bound is None else to_infix(substitute(bound[0], bound[1]))


def equation_answer(
    text: str, quantities: Sequence[str], notation: str = "prefix"
) -> tuple[str | None, str | None]:
    """(answer, None) or (None, error kind) for an equation-target output.

    ``text`` is prefix (``* N0 + N1 N2``) or infix (``N0 * (N1 + N2)``) over placeholders,
    an expression or an equation in ``x`` (``= + * N0 x N1 N2``); ``quantities`` are the
    problem's canonical values, bound to ``N0``, ``N1``, ... in order."""
    bound = _bound_equation(text, quantities, notation)
    if bound is None:
        return None, ERROR_UNPARSABLE
    tree, values = bound
    unknowns = variables(tree)
    is_equation = isinstance(tree, Equation)
    if len(unknowns) != int(is_equation):
        return None, ERROR_UNPARSABLE  # not one unknown
    try:
        value = value_of(tree, values)
    except EquationError:
        return None, ERROR_RUNTIME
    return canonical(value), None


def _gold_ops(problem: Mapping[str, Any]) -> int | None:
    if not problem.get("equation"):
        return None
    try:
        return operator_count(problem["equation"])
    except EquationError:
        return None


def prediction_rows(
    problems: Sequence[Mapping[str, Any]],
    outputs: Sequence[Sequence[str]],
    target: str = "equation_prefix",
    execute: Callable[[list[str]], Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Prediction rows (one per problem and sample), in the shape
    :func:`distill.evaluate.score_problems` reads. ``gold`` is the answer as published.

    Equation targets are evaluated by :func:`equation_answer`; ``cot`` text is read by the
    same parser as teacher completions (:func:`distill.generate.parsers.parse_cot`); ``pot``
    and ``kpdd`` outputs are programs, run by ``execute`` (``SandboxPool.run_many`` or ``distill.sandbox.run_programs``:
    a list of programs -> results with ``answer`` and ``error``, in order), all in one batch.
    """
    if target not in TARGETS_EVALUATED:
        raise ValueError(f"prediction_rows reads targets {', '.join(TARGETS_EVALUATED)} "
                         f"(got {target!r})")
    if len(problems) != len(outputs):
        raise ValueError(f"{len(problems)} problems but {len(outputs)} outputs")
    programs = target in ("pot", "kpdd")
    if programs and execute is None:
        raise ValueError(f"target {target!r} needs `execute` to run the student's programs")
    texts = [text for outs in outputs for text in outs]
    results = list(execute(texts)) if programs else []
    if programs and len(results) != len(texts):
        raise ValueError(f"execute returned {len(results)} results for {len(texts)} programs")
    notation = target.split("_", 1)[1] if target.startswith("equation_") else None
    rows, k = [], 0
    for p, outs in zip(problems, outputs):
        gold = p.get("answer_raw") if p.get("answer_raw") is not None else p.get("answer")
        n_ops = _gold_ops(p)
        for s, text in enumerate(outs):
            if programs:
                res = results[k]
                predicted, error = res.answer, res.error
            elif target == "cot":
                parsed = parse_cot(text)
                predicted, error = (parsed.answer, None) if parsed.ok else (None, ERROR_UNPARSABLE)
            else:
                predicted, error = equation_answer(text, p["quantities"], notation)
            k += 1
            rows.append({"id": p["id"], "dataset": p["dataset"], "gold": gold,
                         "predicted": predicted, "error": error, "n_ops": n_ops,
                         "sample_idx": s, "output": text})
    return rows


def source_column(target: str) -> str:
    """The Problem column a student of ``target`` reads: equation students see the masked
    question (quantities as N0, N1, ...), the others the question as written."""
    return "masked_question" if target.startswith("equation_") else "question"


def _loaded(student_dir: str, config: InferenceConfig | Mapping[str, Any] | None
            ) -> tuple[InferenceConfig, tuple[Any, Any]]:
    """A Ray Data UDF's inference config (a model, a mapping or None) and its student, loaded
    once by :func:`load_for_inference`."""
    cfg = config if isinstance(config, InferenceConfig) else \
        InferenceConfig.model_validate(config or {})
    return cfg, load_for_inference(student_dir, cfg)


class StudentPredictor:
    """Ray Data UDF: adds ``output_column`` (a list of ``num_samples`` texts per row)
    generated from ``source_column``. The student is loaded once, in ``__init__``. With
    ``kpdd=True`` the source is the question, the two KPDD steps run, and the key points go to
    ``key_points``. The student is placed by :func:`load_for_inference`: on the GPU Ray
    assigned to the actor (``num_gpus`` of the pool), else on the CPU."""

    def __init__(self, student_dir: str, config: InferenceConfig | Mapping[str, Any] | None = None,
                 source_column: str = "masked_question", output_column: str = "outputs",
                 kpdd: bool = False, target: str | None = None):
        self.config, self.student = _loaded(student_dir, config)
        self.source_column = source_column
        self.output_column = output_column
        self.kpdd = kpdd
        self.target = target

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        sources = [str(s) for s in batch[self.source_column]]
        batch = dict(batch)
        if self.kpdd:
            pairs = generate_kpdd(self.student, sources, self.config)
            batch["key_points"] = [kp for kp, _ in pairs]
            batch[self.output_column] = [sols for _, sols in pairs]
        else:
            grammars = None
            if self.target is not None and "quantities" in batch:
                problems = [{"quantities": list(q)} for q in batch["quantities"]]
                grammars = grammars_for(self.target, problems, self.config)
            batch[self.output_column] = generate(self.student, sources, self.config, grammars)
        return batch


class TargetScorer:
    """Ray Data UDF: adds ``nll`` (:func:`score_targets` of ``target`` given ``source``) to
    each row. The student is loaded once, in ``__init__``, placed as by
    :func:`load_for_inference`."""

    def __init__(self, student_dir: str, config: InferenceConfig | Mapping[str, Any] | None = None,
                 max_target_length: int = 64):
        self.config, self.student = _loaded(student_dir, config)
        self.max_target_length = max_target_length

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        batch["nll"] = score_targets(self.student, [str(s) for s in batch["source"]],
                                     [str(t) for t in batch["target"]], self.config,
                                     self.max_target_length)
        return batch
