"""Strategies: which calls a teacher gets for one problem, and how its answers are parsed.

A strategy is plain logic over plain data (a Problem row and the calls made so far), so the
same code drives the in-process engines (a loop in :func:`distill.generate.core.run_calls`)
and the dataset-level vLLM pipeline (one processor per round). ``next_call`` says what to ask
next, or None when the row is finished; ``parse`` turns the finished calls into a
:class:`~distill.generate.parsers.Parsed`.

========================  =====================================================  ==========
strategy                  calls (templates in ``prompts/``)                      output
========================  =====================================================  ==========
``cot``                   ``cot``                                                answer
``pot``                   ``pot``                                                program
``kpdd_cot``/``kpdd_pot`` three_calls: ``kpdd_core_question``,                  answer /
                          ``kpdd_information``, ``kpdd_{cot,pot}_solve``;        program
                          two_calls: ``kpdd_key_points``, ``kpdd_*_solve``;
                          one_call: ``kpdd_{cot,pot}_one_call``
``fltt_equation``         ``fltt_equation`` (+ ``fltt_format_fix`` when the      equation
                          equation does not parse and ``format_fix`` is on)
``fltt_masked_equation``  ``fltt_masked_equation`` (+ ``fltt_format_fix``)       equation
``fdd_harder``            ``fdd_harder``: a more complex variant                 problem
``fdd_similar``           ``fdd_similar``: a new problem of similar complexity   problem
========================  =====================================================  ==========

Registry: :func:`register_strategy` (a duplicate name raises), :func:`get_strategy` (an
unknown name raises :class:`UnknownStrategyError` listing the valid ones).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from distill.generate import parsers
from distill.generate.parsers import Parsed, format_key_points
from distill.generate.templates import load_template, quantity_list
from distill.registry import Registry

if TYPE_CHECKING:
    from distill.generate.config import GenerateConfig

__all__ = [
    "Call",
    "Strategy",
    "UnknownStrategyError",
    "get_strategy",
    "problem_variables",
    "register_strategy",
    "strategy_names",
]


class UnknownStrategyError(ValueError):
    pass


@dataclass(frozen=True)
class Call:
    """One request to make: ``step`` names it in the row's record, ``template`` is the prompt
    file, ``variables`` fill its slots."""

    step: str
    template: str
    variables: Mapping[str, Any] = field(default_factory=dict)


def problem_variables(problem: Mapping[str, Any]) -> dict[str, str]:
    """Template slots a Problem row gives."""
    return {
        "question": problem["question"],
        "masked_question": problem.get("masked_question") or problem["question"],
        "quantity_list": quantity_list(list(problem.get("quantities") or [])),
    }


def _completions(calls: Sequence[Mapping[str, Any]], step: str) -> list[str]:
    return [c.get("completion") or "" for c in calls if c.get("step") == step]


class Strategy:
    """Base class: one call with one template, parsed by ``parser``."""

    name: str = ""
    family: str = "plain"  # plain | kpdd | fltt | fdd
    output: str = "answer"  # answer | program | equation | problem
    max_calls: int = 1

    def templates(self, config: GenerateConfig) -> list[str]:
        return [self.name]

    def template_digest(self, config: GenerateConfig) -> str:
        h = hashlib.sha256()
        for name in self.templates(config):
            h.update(f"{name}:{load_template(name, config.prompts_dir).digest};".encode())
        return h.hexdigest()[:16]

    def next_call(self, problem: Mapping[str, Any], calls: Sequence[Mapping[str, Any]],
                  config: GenerateConfig) -> Call | None:
        if calls:
            return None
        return Call("solve", self.name, problem_variables(problem))

    def parse(self, problem: Mapping[str, Any], calls: Sequence[Mapping[str, Any]],
              config: GenerateConfig) -> Parsed:
        done = _completions(calls, "solve")
        return self.parse_text(done[-1] if done else None)

    def parse_text(self, text: str | None) -> Parsed:
        """The completion of a one-call strategy, read by the parser of its ``output``."""
        return _PARSERS[self.output](text)


_PARSERS = {"answer": parsers.parse_cot, "program": parsers.parse_program,
            "equation": parsers.parse_equation, "problem": parsers.parse_new_problem}


class _CoT(Strategy):
    name, output = "cot", "answer"


class _PoT(Strategy):
    name, output = "pot", "program"


class _KPDD(Strategy):
    family = "kpdd"
    max_calls = 3

    def __init__(self, solution: str):
        self.solution = solution
        self.name = f"kpdd_{solution}"
        self.output = "program" if solution == "pot" else "answer"

    def templates(self, config: GenerateConfig) -> list[str]:
        if config.kpdd_mode == "one_call":
            return [f"kpdd_{self.solution}_one_call"]
        first = (["kpdd_core_question", "kpdd_information"] if config.kpdd_mode == "three_calls"
                 else ["kpdd_key_points"])
        return first + [f"kpdd_{self.solution}_solve"]

    def _key_points(self, calls: Sequence[Mapping[str, Any]], config: GenerateConfig) -> Parsed:
        if config.kpdd_mode == "two_calls":
            done = _completions(calls, "key_points")
            return parsers.parse_key_points(done[-1] if done else None)
        core = parsers.parse_core_question((_completions(calls, "core_question") or [None])[-1])
        if not core.ok:
            return core
        info = parsers.parse_information((_completions(calls, "information") or [None])[-1])
        if not info.ok:
            return info
        return Parsed(True, key_points=format_key_points(core.key_points, info.key_points),
                      info={"core_question": core.key_points, "information": info.key_points})

    def next_call(self, problem, calls, config):
        variables = problem_variables(problem)
        steps = [c.get("step") for c in calls]
        if config.kpdd_mode == "one_call":
            return None if calls else Call("solve", f"kpdd_{self.solution}_one_call", variables)
        if "solve" in steps:
            return None
        if config.kpdd_mode == "three_calls":
            if "core_question" not in steps:
                return Call("core_question", "kpdd_core_question", variables)
            core = parsers.parse_core_question(_completions(calls, "core_question")[-1])
            if not core.ok:
                return None  # nothing to build on; parse() reports why
            if "information" not in steps:
                return Call("information", "kpdd_information",
                            {**variables, "core_question": core.key_points})
        elif "key_points" not in steps:
            return Call("key_points", "kpdd_key_points", variables)
        kp = self._key_points(calls, config)
        if not kp.ok:
            return None
        return Call("solve", f"kpdd_{self.solution}_solve", {**variables, "key_points": kp.key_points})

    def parse(self, problem, calls, config):
        if config.kpdd_mode == "one_call":
            done = _completions(calls, "solve")
            return parsers.parse_kpdd_one_call(done[-1] if done else None, self.solution)
        kp = self._key_points(calls, config)
        if not kp.ok:
            return kp
        done = _completions(calls, "solve")
        sol = (parsers.parse_program if self.solution == "pot" else parsers.parse_cot)(
            done[-1] if done else None)
        sol.key_points = kp.key_points
        sol.info.update(kp.info)
        return sol


class _FLTT(Strategy):
    family, output = "fltt", "equation"
    max_calls = 2

    def __init__(self, masked: bool):
        self.masked = masked
        self.name = "fltt_masked_equation" if masked else "fltt_equation"

    def templates(self, config: GenerateConfig) -> list[str]:
        return [self.name] + (["fltt_format_fix"] if config.format_fix else [])

    def next_call(self, problem, calls, config):
        variables = problem_variables(problem)
        if not calls:
            return Call("equation", self.name, variables)
        if not config.format_fix or len(calls) >= 2:
            return None
        first = parsers.parse_equation(calls[0].get("completion"))
        if first.ok or first.equation is None:
            return None  # parsed, or nothing that looks like an equation to repair
        problem_text = variables["masked_question"] if self.masked else variables["question"]
        return Call("format_fix", "fltt_format_fix",
                    {**variables, "problem": problem_text, "equation": first.equation,
                     "error": first.info.get("parse_error", first.reason or "")})

    def parse(self, problem, calls, config):
        if not calls:
            return parsers.parse_equation(None)
        first = parsers.parse_equation(calls[0].get("completion"))
        if first.ok or len(calls) < 2:
            return first
        fixed = parsers.parse_equation(calls[-1].get("completion"))
        fixed.info["format_fixed"] = True
        fixed.info["original_equation"] = first.equation
        return fixed


class _FDD(Strategy):
    family, output = "fdd", "problem"

    def __init__(self, kind: str):
        self.name = f"fdd_{kind}"


_REGISTRY: Registry[Strategy] = Registry("strategy", UnknownStrategyError)


def register_strategy(strategy: Strategy) -> Strategy:
    """Add a strategy under ``strategy.name``; a second one with the same name raises."""
    if not strategy.name:
        raise ValueError("a strategy needs a name")
    return _REGISTRY.register(strategy.name, strategy)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; an unknown name raises UnknownStrategyError."""
    return _REGISTRY.get(name)


def strategy_names() -> list[str]:
    return _REGISTRY.names()


for _s in (_CoT(), _PoT(), _KPDD("cot"), _KPDD("pot"), _FLTT(False), _FLTT(True),
           _FDD("harder"), _FDD("similar")):
    register_strategy(_s)
