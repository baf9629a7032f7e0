"""The pure core of teacher generation: work items, the call loop, Rationale rows.

No Ray here. A *work item* is one (problem, sample index) pair: the Problem row's columns that
prompts and checks need (:data:`ITEM_COLUMNS`) plus ``sample_idx``. :func:`run_calls` drives
a strategy over a batch of items with an in-process engine, round by round (every item's next
call goes into one ``engine.generate`` call), and returns each item's calls.
:func:`rationale_rows` parses and verifies the finished items (programs of the whole batch in
one sandbox call) and renders :data:`distill.records.RATIONALE_SCHEMA` rows.

A call is recorded as ``{"step", "template", "sent", "completion", "error", "tokens_in",
"tokens_out", "latency_s", "finish_reason", "seed"}``. An item whose call failed (the engine
gave up after its retries) stops there; its row has ``completion`` null, verdict ``error`` and
``meta.generation_failed`` true -- the rows a re-run of the stage generates again.

A row's ``equation`` is the equation the teacher wrote (FLTT strategies, after a format fix);
for ``fltt_masked_equation`` it is over the placeholders ``N0..Nk`` and is also the row's
``masked_equation`` column (what the SFT stage reads for equation targets), null for every
other strategy and whenever no equation parsed.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from distill.records import require_columns
from distill.generate.engines import GenRequest, GenResult
from distill.generate.strategies import Call, Strategy, get_strategy
from distill.generate.templates import Prompt, load_template

if TYPE_CHECKING:
    from distill.generate.config import GenerateConfig
    from distill.generate.engines import Engine
    from distill.generate.verify import RunPrograms

__all__ = [
    "ITEM_COLUMNS",
    "REQUIRED_COLUMNS",
    "call_record",
    "next_request",
    "rationale_rows",
    "request_seed",
    "row_key",
    "run_calls",
    "work_items",
]

REQUIRED_COLUMNS = ("id", "question", "answer", "answer_raw", "quantities", "masked_question", "lang")
ITEM_COLUMNS = REQUIRED_COLUMNS + ("sample_idx",)


def row_key(row: Mapping[str, Any]) -> tuple[str, str, int]:
    """The key of a Rationale row: (problem id, strategy, sample index)."""
    return (row["id"], row["strategy"], int(row["sample_idx"]))


def request_seed(base: int, problem_id: str, sample_idx: int, step: str) -> int:
    """A request's seed: stable across runs and machines (not Python's salted hash)."""
    digest = hashlib.sha256(f"{base}|{problem_id}|{sample_idx}|{step}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def work_items(problems: Iterable[Mapping[str, Any]], samples: int, strategy: str,
               skip: set[tuple[str, str, int]] | frozenset = frozenset()) -> list[dict[str, Any]]:
    """One item per (problem, sample index) whose key is not in ``skip``; checks the columns."""
    out = []
    seen: set[str] = set()
    for i, p in enumerate(problems):
        if i == 0:
            require_columns(p.keys(), REQUIRED_COLUMNS, "generate")
        if p["id"] in seen:
            raise ValueError(f"generate: problem id {p['id']!r} occurs twice in the input")
        seen.add(p["id"])
        base = {c: p[c] for c in REQUIRED_COLUMNS}
        base["quantities"] = list(base["quantities"] or [])
        for k in range(samples):
            if (p["id"], strategy, k) not in skip:
                out.append({**base, "sample_idx": k})
    return out


def next_request(item: Mapping[str, Any], calls: Sequence[Mapping[str, Any]], strategy: Strategy,
                 config: GenerateConfig) -> tuple[Call, Prompt, int] | None:
    """The item's next call (its template rendered, its seed), or None when it is finished."""
    if len(calls) >= strategy.max_calls or any(c.get("error") for c in calls):
        return None
    call = strategy.next_call(item, calls, config)
    if call is None:
        return None
    prompt = load_template(call.template, config.prompts_dir).render(
        call.variables, num_demos=config.num_demos)
    seed = request_seed(config.sampling.seed, item["id"], int(item["sample_idx"]), call.step)
    return call, prompt, seed


def call_record(call: Call, seed: int, result: GenResult) -> dict[str, Any]:
    return {
        "step": call.step,
        "template": call.template,
        "sent": result.sent,
        "completion": result.text,
        "error": result.error,
        "tokens_in": int(result.tokens_in or 0),
        "tokens_out": int(result.tokens_out or 0),
        "latency_s": float(result.latency_s or 0.0),
        "finish_reason": result.finish_reason,
        "seed": seed,
    }


def run_calls(items: Sequence[Mapping[str, Any]], engine: Engine,
              config: GenerateConfig) -> list[list[dict[str, Any]]]:
    """Every item's calls, made round by round through ``engine.generate``."""
    strategy = get_strategy(config.strategy)
    calls: list[list[dict[str, Any]]] = [[] for _ in items]
    active = list(range(len(items)))
    while active:
        pending = []
        for i in active:
            nxt = next_request(items[i], calls[i], strategy, config)
            if nxt is not None:
                pending.append((i, *nxt))
        if not pending:
            break
        results = engine.generate([GenRequest(p, s) for _, _, p, s in pending], config.sampling)
        for (i, call, _, seed), res in zip(pending, results):
            calls[i].append(call_record(call, seed, res))
        active = [i for i, *_ in pending]
    return calls


_CALL_META = ("step", "template", "error", "tokens_in", "tokens_out", "finish_reason", "seed")


def _call_meta(call: Mapping[str, Any], completion: bool) -> dict[str, Any]:
    """A call in the row's meta; the last call's prompt and completion are the row's own
    ``prompt`` / ``completion`` columns, so only earlier calls keep their completion here."""
    out = {k: call.get(k) for k in _CALL_META}
    if completion:
        out["completion"] = call.get("completion")
    return out


def _round(x: float) -> float:
    return round(float(x), 4)


def rationale_rows(items: Sequence[Mapping[str, Any]], calls: Sequence[Sequence[Mapping[str, Any]]],
                   config: GenerateConfig, *, chat: bool | None = None,
                   run_programs: RunPrograms | None = None) -> list[dict[str, Any]]:
    """Parse and verify finished items; one Rationale row each (see the module docstring)."""
    from distill.generate.parsers import Parsed
    from distill.generate.verify import Verification, verify_many

    strategy = get_strategy(config.strategy)
    failed = [next((c for c in cs if c.get("error")), None) for cs in calls]
    ok_idx = [i for i, f in enumerate(failed) if f is None]
    parsed = [strategy.parse(items[i], calls[i], config) for i in ok_idx]
    verdicts = verify_many([items[i] for i in ok_idx], parsed, strategy, run_programs=run_programs,
                           constants=config.constants, rel_tol=config.rel_tol)
    by_item: dict[int, Verification] = dict(zip(ok_idx, verdicts))
    rows = []
    for i, item in enumerate(items):
        cs = list(calls[i])
        last = cs[-1] if cs else {}
        meta: dict[str, Any] = {"engine": config.engine, "chat": chat}
        if failed[i] is not None:
            v = Verification("error", f"generation failed at step {failed[i]['step']}: "
                             f"{failed[i]['error']}", None, Parsed(False))
            meta["generation_failed"] = True
        else:
            v = by_item[i]
        masked = (getattr(strategy, "masked", False) and v.parsed.ok
                  and v.parsed.equation is not None)
        info = {**v.parsed.info, **v.info}
        if info:
            meta["check"] = info
        if v.parsed.question is not None:
            meta["new_question"] = v.parsed.question
        meta["calls"] = [_call_meta(c, completion=j < len(cs) - 1) for j, c in enumerate(cs)]
        rows.append({
            "id": item["id"],
            "strategy": config.strategy,
            "source": config.model,
            "sample_idx": int(item["sample_idx"]),
            "prompt": last.get("sent"),
            "completion": None if failed[i] is not None else last.get("completion"),
            "key_points": v.parsed.key_points,
            "program": v.parsed.program,
            "equation": v.parsed.equation,
            "masked_equation": v.parsed.equation if masked else None,
            "predicted": v.predicted,
            "verdict": v.verdict,
            "error": v.reason,
            "tokens_in": sum(int(c.get("tokens_in") or 0) for c in cs),
            "tokens_out": sum(int(c.get("tokens_out") or 0) for c in cs),
            "latency_s": _round(sum(float(c.get("latency_s") or 0.0) for c in cs)),
            "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str),
        })
    return rows
