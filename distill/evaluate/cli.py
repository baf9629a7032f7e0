"""`mathdistill evaluate`: a trained student on any dataset the loaders read, without re-running
the pipeline. The student is a run directory (its final checkpoint, read and decoded as the run
evaluated it) or a checkpoint folder; the problems a registered dataset's split or a file. The
report (report.json / report.md / plots / predictions.jsonl) is the evaluation stage's own
(:func:`distill.evaluate.stage.evaluate_student`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

from distill.cli_common import RAY_HELP, Origin, RevisionOpt, SourceOpt, field_help
from distill.evaluate.config import InferenceConfig

#: Where a run directory keeps the evaluations made after the run.
EVALUATIONS = "evaluations"


def default_out(student_path: Path, in_run: Path | None, label: str) -> Path:
    """``RUN/evaluations/<label>`` for a student in a run, else ``evaluations/<student>/<label>``
    under the working directory (the label made a folder name: ``gsm8k:test`` -> ``gsm8k-test``)."""
    folder = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "data"
    if in_run is not None:
        return in_run / EVALUATIONS / folder
    return Path(EVALUATIONS) / student_path.name / folder


def evaluate_command(
    student: str = typer.Argument(..., help="A run directory (its final student) or a "
                                  "student checkpoint folder (local, or an s3:// / gs:// URI)."),
    data: str = typer.Option(..., "--data", help="Dataset name (see `mathdistill data list`), "
                             "or a jsonl/csv/parquet file."),
    split: str = typer.Option("test", "--split", "-s", help="Split to evaluate on."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of dataset files "
                                            "(default: $MATHDISTILL_DATA_DIR, then ./data)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N problems only."),
    origin: Origin = SourceOpt,
    revision: Optional[str] = RevisionOpt,
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Report folder (default: "
                                       "RUN/evaluations/<data>-<split>, or "
                                       "evaluations/<checkpoint>/<data>-<split> here)."),
    num_samples: Optional[int] = typer.Option(
        None, "--num-samples", "-k", help=field_help(InferenceConfig, "num_samples",
                                                      "evaluate.inference.")),
    num_beams: Optional[int] = typer.Option(
        None, "--num-beams", "-b", help=field_help(InferenceConfig, "num_beams",
                                                    "evaluate.inference.")),
    ray_config: Optional[Path] = typer.Option(None, "--ray", help=RAY_HELP + " Default: the "
                                              "run's own ray section, else a local Ray."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Score a trained student on any dataset (report.json/md, predictions), without re-running
    the pipeline: decoded as the run evaluated it (its evaluate.inference), equations
    evaluated exactly, programs run in the run's sandbox."""
    from distill.cli_common import fail, init_ray, load_problems, source
    from distill.config import ConfigError, RayConfig, load_config
    from distill.evaluate.config import EvaluateConfig
    from distill.evaluate.student import resolve_student
    from distill.sandbox.config import SandboxConfig
    from distill.storage import run_location

    if limit is not None and limit < 1:
        fail(f"--limit must be >= 1 (got {limit})")
    try:
        spec = resolve_student(student)
    except ConfigError as e:
        fail(str(e))
    # (a run dir has its config.yaml)
    run_dir = run_location(spec.run_dir) if spec.run_dir else None
    run_config = run_dir / "config.yaml" if run_dir is not None else None
    inference = dict(spec.inference)
    # a flag given replaces the run's choice of the other decoding (samples or a beam)
    if num_samples is not None:
        inference.update(num_samples=num_samples, num_beams=num_beams or 1)
    elif num_beams is not None:
        inference.update(num_beams=num_beams, num_samples=1)
    try:
        config = EvaluateConfig(inference=InferenceConfig.model_validate(inference))
        ray_cfg = (load_config(ray_config, RayConfig) if ray_config is not None
                   else load_config(run_config).ray if run_config is not None else RayConfig())
    except (ConfigError, ValueError) as e:
        fail(str(e))
    src = source(data, split, limit, None, origin, revision)
    problems = load_problems(src, data_dir).problems
    if not problems:
        fail(f"{src.label}: no problems to evaluate")
    target_dir = run_location(out) if out is not None else default_out(
        run_location(spec.checkpoint), run_dir, src.label)
    from distill.evaluate.stage import evaluate_student

    init_ray(ray_cfg)
    sandbox = SandboxConfig.model_validate(spec.sandbox) if spec.sandbox else None
    try:
        report = evaluate_student(spec.checkpoint, {src.label: problems}, spec.target, config,
                                  target_dir, resources=ray_cfg.for_stage("evaluate"),
                                  sandbox=sandbox)
    except ValueError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, default=str))
        return
    typer.echo(f"{src.label}: accuracy {report['accuracy']:.2%} ({report['correct']}/"
               f"{report['n']}), student {spec.checkpoint} ({spec.target})")
    typer.echo(f"report: {target_dir / 'report.md'}")
