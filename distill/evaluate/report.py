"""Evaluation: score student predictions and write the report.

Scoring takes *prediction rows*, one per (problem, sample)::

    id, dataset, gold (the answer as published), predicted (the student's final answer as
    text, or None), error (None, or why there is no answer: "unparsable", "no_answer",
    "timeout", "runtime", ...), n_ops (operators of the gold equation, None if unknown),
    sample_idx (0 for greedy decoding; 0..k-1 for sampled decoding)

and decides correctness with :func:`distill.grading.grade` only. With several samples per
problem the majority answer is scored (maj@k): answers are grouped by grading equivalence
(``0.5`` and ``1/2`` are one vote), ties go to the answer seen first.

:func:`summarize` gives ``report.json``'s content -- at least
``{"accuracy", "n", "per_dataset": {name: {"accuracy", "n"}}}`` plus accuracy per number of
gold operators and counts of error kinds -- and :func:`write_report` writes ``report.json``,
``report.md`` and PNG plots (accuracy per dataset, per operator count, error kinds), with
the differences from an earlier report when one is given.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from distill.grading import answers_match, grade
from distill.storage import run_location

WRONG = "wrong"  # the error kind of an answer that is present but not correct


def majority_answer(answers: Sequence[str | None]) -> tuple[str | None, int]:
    """The most voted answer among ``answers`` (None votes ignored) and its vote count.

    Answers that grade as equal form one group; a tie goes to the group seen first.
    """
    groups: list[list[str]] = []
    for a in answers:
        if a is None:
            continue
        for g in groups:
            if answers_match(a, g[0]):
                g.append(a)
                break
        else:
            groups.append([a])
    if not groups:
        return None, 0
    best = max(groups, key=len)  # max keeps the first of equal lengths
    return best[0], len(best)


def score_problems(predictions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One scored row per problem: the voted answer, whether it is correct, the error kind."""
    by_id: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in predictions:
        by_id[row["id"]].append(row)
    scored = []
    for pid, rows in by_id.items():
        rows = sorted(rows, key=lambda r: r.get("sample_idx", 0))
        first = rows[0]
        answer, votes = majority_answer([r.get("predicted") for r in rows])
        if answer is None:
            errors = Counter(r.get("error") or "no_answer" for r in rows)
            correct, error = False, errors.most_common(1)[0][0]
        else:
            correct = grade(answer, first["gold"]).equal
            error = None if correct else WRONG
        scored.append(
            {
                "id": pid,
                "dataset": first["dataset"],
                "gold": first["gold"],
                "predicted": answer,
                "votes": votes,
                "samples": len(rows),
                "correct": correct,
                "error": error,
                "n_ops": first.get("n_ops"),
            }
        )
    return scored


def _accuracy(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    correct = sum(1 for r in rows if r["correct"])
    return {"accuracy": round(correct / n, 6) if n else 0.0, "n": n, "correct": correct}


def summarize(scored: Sequence[Mapping[str, Any]], num_beams: int = 1) -> dict[str, Any]:
    """The report: overall accuracy, per dataset, per gold operator count, error kinds, and
    the decoding (``greedy``, ``beam@<num_beams>`` or ``maj@<k>``)."""
    per_dataset: dict[str, list] = defaultdict(list)
    per_ops: dict[str, list] = defaultdict(list)
    for r in scored:
        per_dataset[r["dataset"]].append(r)
        per_ops["unknown" if r.get("n_ops") is None else str(r["n_ops"])].append(r)
    samples = {r["samples"] for r in scored}
    return {
        **_accuracy(scored),
        "decoding": (f"maj@{max(samples)}" if not samples <= {1}
                     else f"beam@{num_beams}" if num_beams > 1 else "greedy"),
        "per_dataset": {k: _accuracy(v) for k, v in sorted(per_dataset.items())},
        "per_ops": {k: _accuracy(v) for k, v in sorted(per_ops.items(), key=lambda kv: _ops_key(kv[0]))},
        "errors": dict(Counter(r["error"] for r in scored if r["error"]).most_common()),
    }


def _ops_key(k: str) -> tuple[int, int]:
    return (1, 0) if k == "unknown" else (0, int(k))


def compare(report: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """Accuracy differences (this minus previous), overall and per dataset both reports have."""
    per = {
        name: round(v["accuracy"] - previous["per_dataset"][name]["accuracy"], 6)
        for name, v in report["per_dataset"].items()
        if name in previous.get("per_dataset", {})
    }
    return {"accuracy": round(report["accuracy"] - previous["accuracy"], 6), "per_dataset": per}


def _bar_plot(path: Path, labels: list[str], values: list[float], title: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 2), 3.2))
    bars = ax.bar(labels, values, color="#4C72B0")
    ax.bar_label(bars, fmt="%.3g" if ylabel != "accuracy" else "%.2f", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if ylabel == "accuracy":
        ax.set_ylim(0, 1.05)
    fig.tight_layout()
    with path.open("wb") as f:  # a local file or an object-store one
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def write_report(
    report: dict[str, Any], out_dir: str | Path, previous: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write report.json, report.md and plots/*.png under ``out_dir``; returns their paths."""
    out = run_location(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    if previous is not None:
        report = {**report, "compared_with_previous": compare(report, previous)}
    paths = {"json": out / "report.json", "md": out / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plots = {
        "accuracy_per_dataset": (list(report["per_dataset"]), [v["accuracy"] for v in report["per_dataset"].values()],
                                 "Accuracy per dataset", "accuracy"),
        "accuracy_per_ops": (list(report["per_ops"]), [v["accuracy"] for v in report["per_ops"].values()],
                             "Accuracy per number of gold operators", "accuracy"),
        "error_kinds": (list(report["errors"]) or ["none"], list(report["errors"].values()) or [0],
                        "Error kinds", "problems"),
    }
    for name, (labels, values, title, ylabel) in plots.items():
        paths[name] = out / "plots" / f"{name}.png"
        _bar_plot(paths[name], labels, values, title, ylabel)
    paths["md"].write_text(_markdown(report))
    return paths


def _markdown(report: Mapping[str, Any]) -> str:
    lines = [
        "# Evaluation report",
        "",
        f"**Accuracy {report['accuracy']:.2%}** ({report['correct']} of {report['n']}, "
        f"{report['decoding']})",
    ]
    prev = report.get("compared_with_previous")
    if prev:
        lines.append(f"Change from the previous report: {prev['accuracy']:+.2%}")
    lines += ["", "| dataset | n | accuracy |" + (" change |" if prev else ""),
              "|---|---|---|" + ("---|" if prev else "")]
    for name, v in report["per_dataset"].items():
        change = f" {prev['per_dataset'][name]:+.2%} |" if prev and name in prev["per_dataset"] else (" |" if prev else "")
        lines.append(f"| {name} | {v['n']} | {v['accuracy']:.2%} |{change}")
    lines += ["", "| gold operators | n | accuracy |", "|---|---|---|"]
    for k, v in report["per_ops"].items():
        lines.append(f"| {k} | {v['n']} | {v['accuracy']:.2%} |")
    lines += ["", "| error | problems |", "|---|---|"]
    for k, n in report["errors"].items():
        lines.append(f"| {k} | {n} |")
    lines += ["", "![accuracy per dataset](plots/accuracy_per_dataset.png)",
              "![accuracy per operator count](plots/accuracy_per_ops.png)",
              "![error kinds](plots/error_kinds.png)", ""]
    return "\n".join(lines)


