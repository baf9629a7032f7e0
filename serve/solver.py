"""The pure core of serving: which student a path names, and questions -> answers.

No Ray here (the deployments in :mod:`serve.deployments` wrap it). An answer over HTTP is the
answer the evaluation report counted, because both go through the same code:
:func:`distill.records.make_problem` reads the question's quantities and masks them,
:func:`distill.evaluate.infer.generate` (or ``generate_kpdd``) decodes, and
:func:`distill.evaluate.infer.prediction_rows` turns each output into an answer (equations
evaluated exactly, programs run in the sandbox), voted by
:func:`distill.evaluate.report.majority_answer` when there are several samples.

* :func:`resolve_student` -- a run directory or a checkpoint folder (optionally ``NAME=PATH``)
  -> :class:`StudentSpec` (checkpoint, target, decoding settings, sandbox limits), as
  :mod:`distill.evaluate.student` reads it, for serving (one sample per request by default).
* :class:`Solver` -- a loaded student; :meth:`Solver.solve` takes :class:`SolveItem` s and
  returns one result dict per item, in order (the ``/v1/solve`` response fields but
  ``model`` and ``latency_ms``, plus ``samples`` and token counts for the OpenAI routes).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from distill.configbase import ConfigError
from distill.evaluate import student
from distill.evaluate.config import InferenceConfig
from distill.evaluate.student import StudentSpec, first_run_config, run_config_file, split_name

__all__ = ["SolveItem", "SolveParams", "Solver", "StudentSpec", "resolve_student",
           "answer_kind", "first_run_config", "run_config_file", "split_name", "TARGET_KINDS"]

#: What each training target's output is, in the API's ``kind`` field.
TARGET_KINDS = {"equation_prefix": "equation", "equation_infix": "equation", "pot": "program",
                "kpdd": "program", "cot": "cot"}

#: A question the server could not turn into a problem (its quantities could not be read).
ERROR_BAD_QUESTION = "bad_question"
#: The output gave no answer and no more specific reason.
ERROR_NO_ANSWER = "no_answer"


def answer_kind(target: str) -> str:
    """``equation``, ``program`` or ``cot`` for a training target (ValueError if unknown)."""
    try:
        return TARGET_KINDS[target]
    except KeyError:
        raise ValueError(f"target {target!r} cannot be served; served targets: "
                         f"{', '.join(TARGET_KINDS)}") from None


def resolve_student(location: str | Path, name: str | None = None) -> StudentSpec:
    """The student a path names (:func:`distill.evaluate.student.resolve_student`), to serve:
    its target must be one the API answers for, and it decodes one sample unless a request
    asks for more. Raises :class:`ConfigError` naming the path."""
    spec = student.resolve_student(location, name)
    try:
        answer_kind(spec.target)
    except ValueError as e:
        raise ConfigError(f"{spec.source}: {e}") from None
    return replace(spec, inference=dict(spec.inference, num_samples=1))  # per request


@dataclass(frozen=True)
class SolveParams:
    """How one request decodes. Requests with equal params share a generate() call.

    ``temperature`` None: greedy for one sample, the student's configured temperature for
    several; 0: greedy (several samples are then copies). ``stop``: output text is cut at the
    first of these strings before it is read. ``count_tokens``: tokenize the prompt and the
    outputs for OpenAI's ``usage`` (left None otherwise: it costs on every request)."""

    num_samples: int = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_new_tokens: int | None = None
    stop: tuple[str, ...] = ()
    count_tokens: bool = False  # fill prompt_tokens / completion_tokens (OpenAI's usage)


@dataclass(frozen=True)
class SolveItem:
    question: str
    lang: str | None = None
    params: SolveParams = SolveParams()


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        i = text.find(s) if s else -1
        if i >= 0:
            cut = min(cut, i)
    return text[:cut]


class Solver:
    """A loaded student that answers questions.

    ``student``: a loaded ``(model, tokenizer)`` (tests), else the spec's checkpoint is loaded
    onto the device this process holds. ``execute``: runs a list of programs and returns results
    with ``answer`` / ``error`` (program students only); without it a sandbox pool is started
    with the spec's limits (or ``sandbox``) and closed by :meth:`close`. ``on_sandbox_s`` is
    called with the seconds each batch of programs took (metrics). ``generate``: a stand-in for
    :func:`distill.evaluate.infer.generate` with its signature (tests script outputs with it);
    KPDD's two steps call it too.
    """

    def __init__(self, spec: StudentSpec, *, student: tuple[Any, Any] | None = None,
                 execute: Callable[[list[str]], Sequence[Any]] | None = None,
                 sandbox: dict[str, Any] | None = None,
                 on_sandbox_s: Callable[[float], None] | None = None,
                 generate: Callable[..., list[list[str]]] | None = None):
        from distill.evaluate.infer import load_for_inference

        self.spec = spec
        self.kind = answer_kind(spec.target)
        self.inference = spec.inference_config()
        self._generate = generate
        if student is None and generate is None:
            student = load_for_inference(spec.checkpoint, self.inference)
        self.student = student  # None only with a stand-in ``generate``
        self._pool = None
        self._on_sandbox_s = on_sandbox_s
        if self.kind == "program" and execute is None:
            from distill.sandbox import SandboxConfig, SandboxPool

            limits = sandbox if sandbox is not None else (spec.sandbox or {})
            self._pool = SandboxPool(SandboxConfig.model_validate(limits))
            self._pool.start()
            execute = self._pool.run_many
        self._execute = execute

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def healthy(self) -> bool:
        """False when the sandbox pool this solver started can no longer run programs."""
        return self._pool is None or bool(self._pool.worker_pids())

    # ---------------------------------------------------------------- decoding
    def _config_for(self, params: SolveParams) -> InferenceConfig:
        update: dict[str, Any] = {"num_samples": params.num_samples}
        if params.num_samples > 1:
            update["num_beams"] = 1  # samples voted, not the configured beam
        greedy = params.temperature == 0 or (params.temperature is None
                                             and params.num_samples == 1)
        if greedy:
            update["num_samples"] = 1
        elif params.temperature is not None:
            update["temperature"] = params.temperature
        if params.top_p is not None and not greedy:
            update["top_p"] = params.top_p
        if params.seed is not None:
            update["seed"] = params.seed
        if params.max_new_tokens is not None:
            update["max_new_tokens"] = min(params.max_new_tokens, self.inference.max_new_tokens)
        return self.inference.model_copy(update=update)

    def _decode(self, rows: list[dict[str, Any]], params: SolveParams
                ) -> tuple[list[list[str]], list[str | None]]:
        """Outputs (num_samples each) and KPDD key points (None for other targets), decoded
        as the evaluation decodes (equation students under their grammar)."""
        from distill.evaluate.infer import generate, generate_kpdd, grammars_for, source_column

        config = self._config_for(params)
        sources = [str(r[source_column(self.spec.target)]) for r in rows]
        if self.spec.target == "kpdd":
            pairs = generate_kpdd(self.student, sources, config, generate_fn=self._generate)
            outputs, points = [sols for _, sols in pairs], [kp for kp, _ in pairs]
        else:
            outputs = (self._generate or generate)(
                self.student, sources, config, grammars_for(self.spec.target, rows, config))
            points = [None] * len(sources)
        k = params.num_samples
        outputs = [(o * k)[:k] if len(o) < k else o for o in outputs]  # greedy copies
        if params.stop:
            outputs = [[_cut_at_stop(t, params.stop) for t in o] for o in outputs]
        return outputs, points

    def _timed_execute(self, programs: list[str]) -> Sequence[Any]:
        t0 = time.perf_counter()
        try:
            return self._execute(programs)
        finally:
            if self._on_sandbox_s is not None:
                self._on_sandbox_s(time.perf_counter() - t0)

    def _token_count(self, text: str) -> int:
        if self.student is None:  # a stand-in generate: words stand for tokens
            return len(text.split())
        return len(self.student[1](text, add_special_tokens=False)["input_ids"])

    # ---------------------------------------------------------------- answering
    def solve(self, items: Sequence[SolveItem]) -> list[dict[str, Any]]:
        """One result per item, in order. Never raises for one bad question: its result has
        ``answer`` None and ``error`` saying why."""
        from distill.evaluate.infer import prediction_rows
        from distill.records import RecordError, make_problem

        results: list[dict[str, Any] | None] = [None] * len(items)
        problems: list[dict[str, Any] | None] = []
        for i, item in enumerate(items):
            try:
                problems.append(make_problem(dataset="serve", split="request", source_id=i,
                                             question=item.question, answer=None,
                                             lang=item.lang))
            except (RecordError, ValueError, OverflowError) as e:
                problems.append(None)
                results[i] = self._empty(item, ERROR_BAD_QUESTION, str(e))
        groups: dict[SolveParams, list[int]] = {}
        for i, item in enumerate(items):
            if problems[i] is not None:
                groups.setdefault(item.params, []).append(i)
        for params, idx in groups.items():
            rows = [problems[i] for i in idx]
            outputs, points = self._decode(rows, params)
            execute = self._timed_execute if self.kind == "program" else None
            preds = prediction_rows(rows, outputs, self.spec.target, execute)
            per_item = [preds[j * params.num_samples:(j + 1) * params.num_samples]
                        for j in range(len(rows))]
            for i, row, outs, kp, samples in zip(idx, rows, outputs, points, per_item):
                results[i] = self._result(row, outs, kp, samples, params.count_tokens)
        return [r for r in results if r is not None]

    def _empty(self, item: SolveItem, error: str, detail: str) -> dict[str, Any]:
        counted = item.params.count_tokens
        return {"answer": None, "kind": self.kind, "rationale": "", "equation": None,
                "program": None, "quantities": [], "votes": None, "error": error,
                "detail": detail, "samples": [],
                "prompt_tokens": self._token_count(str(item.question)) if counted else None,
                "completion_tokens": 0 if counted else None}

    def _result(self, problem: dict[str, Any], outputs: list[str], key_points: str | None,
                samples: list[dict[str, Any]], count_tokens: bool) -> dict[str, Any]:
        from distill.evaluate.infer import source_column
        from distill.evaluate.report import majority_answer
        from distill.quantities import canonical_answer_text

        answers = [None if s["predicted"] is None else canonical_answer_text(s["predicted"])
                   for s in samples]
        voted, _ = majority_answer(answers)
        votes = dict(Counter(a for a in answers if a is not None)) if len(samples) > 1 else None
        # the rationale shown is the first sample that gives the voted answer
        chosen = next((j for j, a in enumerate(answers) if a is not None and a == voted), 0)
        output = outputs[chosen]
        error = None
        if voted is None:
            error = next((s["error"] for s in samples if s["error"]), None) or ERROR_NO_ANSWER
        equation = None
        if self.kind == "equation":
            from distill.evaluate.infer import equation_over_numbers

            equation = equation_over_numbers(output, problem["quantities"],
                                             self.spec.target.split("_", 1)[1])
        rationale = output if key_points is None else f"{key_points}\n{output}"
        return {
            "answer": voted, "kind": self.kind, "rationale": rationale, "equation": equation,
            "program": output if self.kind == "program" else None,
            "quantities": list(problem["quantities"]), "votes": votes, "error": error,
            "detail": None,
            "samples": [{"text": o if key_points is None else f"{key_points}\n{o}",
                         "answer": a, "error": s["error"] if a is None else None}
                        for o, a, s in zip(outputs, answers, samples)],
            "prompt_tokens": (self._token_count(str(problem[source_column(self.spec.target)]))
                              if count_tokens else None),
            "completion_tokens": (sum(self._token_count(o) for o in outputs)
                                  if count_tokens else None),
        }
