"""One report per run: its stages, its evaluation, a section per refinement round, a table of
its FDD rounds and the evaluations made afterwards (``mathdistill evaluate``), as Markdown, with a plot of accuracy by
round. What ``mathdistill report RUN_DIR`` prints and ``mathdistill run`` writes to
``<run>/report.md`` at the end. Reads only what the stages wrote (manifest.json, the reports
and the rounds' summary.json); writes nothing but ``report.md`` and ``report_accuracy.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.storage import run_location

__all__ = ["run_report", "write_run_report"]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "–"


def _rounds(run_dir: Path, manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The summaries of the complete ``kind`` rounds (``refine`` or ``fdd``), in order."""
    stages = manifest.get("stages") or {}
    out = []
    r = 1
    while f"{kind}_{r}" in stages:
        summary = _read(run_dir / f"{kind}_{r}" / "summary.json")
        if summary is not None and stages[f"{kind}_{r}"].get("status") == "complete":
            out.append(summary)
        r += 1
    return out


def run_report(run_dir: str | Path) -> tuple[str, list[tuple[str, float]]]:
    """The run's report (Markdown) and its accuracy by round (label, accuracy) for the plot.
    Raises FileNotFoundError when ``run_dir`` holds no run."""
    run_dir = run_location(run_dir)
    manifest = _read(run_dir / "manifest.json")
    if manifest is None:
        raise FileNotFoundError(f"{run_dir}: no run here (manifest.json missing or unreadable)")
    lines = [f"# Run {manifest.get('name', run_dir.name)}", "", "## Stages", "",
             "| stage | status | seconds |", "|---|---|---|"]
    for name, st in (manifest.get("stages") or {}).items():
        lines.append(f"| {name} | {st.get('status')} | {st.get('seconds', '–')} |")
    by_round: list[tuple[str, float]] = []
    first = _read(run_dir / "evaluate" / "report.json")
    if first is not None:
        lines += ["", "## Evaluation (the first student)", "",
                  f"Accuracy {_pct(first.get('accuracy'))} ({first.get('correct')}/"
                  f"{first.get('n')}); details in `evaluate/report.md`.", "",
                  "| set | accuracy | n |", "|---|---|---|"]
        for label, d in (first.get("per_dataset") or {}).items():
            lines.append(f"| {label} | {_pct(d.get('accuracy'))} | {d.get('n')} |")
        by_round.append(("train", first.get("accuracy")))
    rounds = _rounds(run_dir, manifest, "refine")
    if rounds:
        lines += ["", "## Refinement rounds", "",
                  "| round | pool | candidates | accepted | labels changed | gold-equivalent "
                  "new labels | accuracy | seconds |", "|---|---|---|---|---|---|---|---|"]
        for s in rounds:
            gold = (f"{s['new_labels_gold_equivalent']}/{s['new_labels_with_gold']}"
                    if s.get("new_labels_with_gold") else "–")
            lines.append(f"| {s['round']} | {s['pool']} | {s['candidates_tried']} | "
                         f"{s['accepted']} | {s['labels_changed']} | {gold} | "
                         f"{_pct(s['accuracy'])} | {s['seconds']} |")
            by_round.append((f"refine {s['round']}", s["accuracy"]))
        for s in rounds:
            lines += ["", f"### Round {s['round']}", "",
                      f"Failure pool {s['pool']} ({', '.join(f'{k} {v}' for k, v in s['pool_reasons'].items()) or 'empty'}); "
                      f"{s['accepted']} accepted, "
                      + (f"{s['rescored']} problems rescored by the middle model "
                         f"({s['rescored_chosen_other']} chose another match), "
                         if s.get("rescored") else "")
                      + f"{s['labels_changed']} labels changed, "
                      f"{s['labelled_problems']} problems labelled; "
                      + (f"labels equal to the gold equation {s['labels_gold_equivalent_before']}"
                         f" → {s['labels_gold_equivalent_after']} of {s['labels_with_gold']}; "
                         if s.get("labels_with_gold") else "")
                      + "accuracy "
                      f"{_pct(s['accuracy'])} ({s['correct']}/{s['n']}); student "
                      f"`{s['checkpoint_dir']}`; details in `refine_{s['round']}/evaluate/report.md`."]
    fdd = _rounds(run_dir, manifest, "fdd")
    if fdd:
        lines += ["", "## FDD rounds", "",
                  "| round | problems | easy | hard | new problems | set aside | accuracy | "
                  "seconds |", "|---|---|---|---|---|---|---|---|"]
        for s in fdd:
            aside = ", ".join(f"{k} {v}" for k, v in sorted(s["rejected"].items())) or "–"
            lines.append(f"| {s['round']} | {s['problems']} | {s['easy']} | {s['hard']} | "
                         f"{s['generated']} | {aside} | {_pct(s['accuracy'])} | "
                         f"{s['seconds']} |")
            by_round.append((f"fdd {s['round']}", s["accuracy"]))
        for s in fdd:  # a language model's rounds: what it wrote and how much of it was kept
            t = s.get("teacher")
            if t:
                rates = "; ".join(f"{k} {t[k]['correct']} of {t[k]['rows']} usable"
                                  for k in ("fdd_similar", "fdd_harder") if k in t)
                lines += ["", f"Round {s['round']} teacher: {rates or 'nothing asked'}; "
                          f"{t['new']} new, {t['agreed']} with agreeing solutions, {t['kept']} "
                          "labelled by the search."]
    later = sorted((run_dir / "evaluations").glob("*/report.json"))
    if later:
        lines += ["", "## Later evaluations (`mathdistill evaluate`)", "",
                  "| folder | student | accuracy | n |", "|---|---|---|---|"]
        for path in later:
            rep = _read(path) or {}
            lines.append(f"| {path.parent.name} | `{rep.get('student')}` | "
                         f"{_pct(rep.get('accuracy'))} | {rep.get('n')} |")
    return "\n".join(lines) + "\n", [(k, v) for k, v in by_round if v is not None]


def write_run_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` (and, with refinement rounds, ``report_accuracy.png``) into the run
    directory; returns the report's path."""
    run_dir = run_location(run_dir)
    text, by_round = run_report(run_dir)
    if len(by_round) > 1:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([k for k, _ in by_round], [100 * v for _, v in by_round], marker="o")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Accuracy by round")
        fig.tight_layout()
        with (run_dir / "report_accuracy.png").open("wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        text += "\n![accuracy by round](report_accuracy.png)\n"
    path = run_dir / "report.md"
    path.write_text(text, encoding="utf-8")
    return path
