"""The SFT stage of a run: the training problems plus what the teacher stage wrote -> the
``sft/`` folder (``examples.parquet``, SFTExample rows; ``summary.json``, the counts and the
problems skipped per reason).

Where the targets come from, by ``teacher``:

* ``gold``     -- the dataset's own equations, masked over the problem's quantities (equation
  targets only);
* ``search``   -- the best-ranked correct match of each problem (equation targets) from
  ``<run>/search/rationales``;
* ``generate`` -- the teacher's verified rationales from ``<run>/generate/rationales``
  (equation targets: the best correct one; cot/pot/kpdd: up to ``sft.max_per_problem``).

Equation targets from a teacher's rows come from their ``masked_equation`` column
(:data:`distill.records.RATIONALE_SCHEMA`), never from ``meta``: the search fills it, and so
does the ``fltt_masked_equation`` teacher. A problem whose correct rows all have it null is
skipped and counted as ``<teacher>_no_masked_equation`` (then also ``no_equation``); the gold
teacher's reasons are counted as ``gold_<reason>`` the same way.

Contract (checked on entry, before anything is read or written): :data:`NEEDS`, the Problem
columns it reads (the gold teacher also :data:`GOLD_NEEDS`); :data:`TEACHER_NEEDS`, the
Rationale columns every file of a teacher's folder must have (the target's own text column --
``masked_equation``, ``program``, ``completion``, ``key_points`` -- is nullable: a file
without it reads as nulls and its problems are counted as skipped); :data:`WRITES`, the schema
of ``examples.parquet``.

No Ray: the stage is a few thousand rows.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from distill.records import RATIONALE_SCHEMA, SFT_EXAMPLE_SCHEMA, require_columns
from distill.sft.config import SFTConfig
from distill.storage import run_location
from distill.sft.core import PROBLEM_COLUMNS, build_sft_examples, masked_gold_equations

# the Problem columns every teacher's examples are built from (build_sft_examples' own)
NEEDS: tuple[str, ...] = PROBLEM_COLUMNS
# what the gold teacher reads besides: the gold (masked) equation, checked against the answer
GOLD_NEEDS: tuple[str, ...] = ("equation", "masked_equation", "answer")
# the Rationale columns of a search or generate teacher's rows the stage needs
TEACHER_NEEDS: tuple[str, ...] = ("id", "sample_idx", "verdict")
WRITES = SFT_EXAMPLE_SCHEMA  # examples.parquet


def check_rationales(folder: Path) -> None:
    """Raise ValueError naming a file of ``folder`` (a teacher's Rationale rows) that lacks a
    :data:`TEACHER_NEEDS` column, or FileNotFoundError when there is no folder."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    if not run_location(folder).is_dir():
        raise FileNotFoundError(f"sft: no teacher output at {folder}")
    dataset = pads.dataset(str(folder), format="parquet")  # hidden and ``_`` files left out
    for name in sorted(dataset.files):
        require_columns(pq.read_schema(name, filesystem=dataset.filesystem).names, TEACHER_NEEDS,
                        f"sft (teacher rows {name})")


def read_rationales(folder: Path) -> list[dict[str, Any]]:
    """The Rationale rows of a teacher stage's folder, sorted by (id, sample_idx); a column of
    the schema a file lacks reads as nulls (see :func:`check_rationales`)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(str(folder), schema=RATIONALE_SCHEMA).to_pylist()
    return sorted(rows, key=lambda r: (r["id"], r["sample_idx"]))


def search_equations(rationales: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], Counter]:
    """problem id -> the ``masked_equation`` of its best-ranked (lowest ``sample_idx``)
    correct rationale that has one, and the count of problems skipped per reason:
    ``no_masked_equation`` when the problem has correct rationales but none carries a masked
    equation (e.g. an ``fltt_equation`` or ``pot`` teacher)."""
    best: dict[str, str] = {}
    correct: set[str] = set()
    for r in sorted(rationales, key=lambda r: (r["id"], r["sample_idx"])):
        if r["verdict"] != "correct":
            continue
        correct.add(r["id"])
        if r["id"] not in best and r["masked_equation"]:
            best[r["id"]] = r["masked_equation"]
    skipped: Counter = Counter()
    if correct - best.keys():
        skipped["no_masked_equation"] = len(correct - best.keys())
    return best, skipped


def write_sft_stage(problems: Sequence[Mapping[str, Any]], teacher: str, target: str,
                    config: SFTConfig, constants: Sequence[str], *, rationales_dir: Path,
                    out: Path) -> dict[str, Any]:
    """Build and write the SFT examples; returns the summary (also written to
    ``out/summary.json``). Raises ValueError when ``teacher`` cannot give ``target`` or when
    no problem yields an example, or names the columns the problems (:data:`NEEDS`, and
    :data:`GOLD_NEEDS` for the gold teacher) or a file of the teacher's rows
    (:data:`TEACHER_NEEDS`) lack, before anything is written."""
    import pyarrow.parquet as pq

    from distill.records import to_table

    problems = list(problems)
    if problems:
        needed = NEEDS + GOLD_NEEDS if teacher == "gold" else NEEDS
        require_columns(problems[0].keys(), needed, f"sft (problems, teacher {teacher})")
    if teacher != "gold":
        check_rationales(rationales_dir)
    skipped_teacher: dict[str, int] = {}  # why the teacher gave a problem no equation
    if teacher == "gold":
        if not target.startswith("equation_"):
            raise ValueError(f"teacher 'gold' gives equations; train.target {target!r} needs "
                             "a teacher that writes rationales")
        equations, skipped = masked_gold_equations(problems, constants)
        skipped_teacher = dict(skipped)
        build = build_sft_examples(problems, target, equations=equations)
    else:
        rationales = read_rationales(rationales_dir)
        if target.startswith("equation_"):
            equations, skipped = search_equations(rationales)
            skipped_teacher = dict(skipped)
            build = build_sft_examples(problems, target, equations=equations)
        else:
            build = build_sft_examples(problems, target, rationales=rationales,
                                       max_per_problem=config.max_per_problem)
    if not build.rows:
        raise ValueError(f"sft: no training examples from {len(problems)} problems "
                         f"(skipped: {dict(build.skipped)})")
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(build.rows, WRITES), str(out / "examples.parquet"))
    summary = {"problems": len(problems), "examples": len(build.rows),
               "problems_with_examples": len({r["problem_id"] for r in build.rows}),
               "skipped": {**dict(build.skipped),
                           **{f"{teacher}_{k}": v for k, v in skipped_teacher.items()}},
               "target": target}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
