"""A whole run: stages in order into ``runs/<name>/``, recorded in ``manifest.json``.

Stages (each writes under ``<run_dir>/<stage>/``):

* ``data``     -- load, decontaminate against the evaluation sets, write Problem rows
  (:mod:`distill.data.stage`);
* ``search``   -- the teacher when ``teacher: search``: equation search over each training
  problem's quantities, ranked Rationale rows (:mod:`distill.search.stage`);
* ``generate`` -- the teacher when ``teacher: generate``: a teacher LLM (vLLM, an
  OpenAI-compatible server or transformers) writes rationales, verified by answer, sandboxed
  execution and equation checks (:mod:`distill.generate.stage`; resumable row by row);
  with ``teacher: gold`` there is no teacher stage and the dataset's own equations are used;
* ``sft``      -- SFT examples for ``train.target`` (:mod:`distill.sft.stage`):
  ``examples.parquet`` and ``summary.json`` with the problems skipped per reason;
* ``train``    -- Ray Train (DDP or DeepSpeed ZeRO) into ``train/``; a killed run resumes from
  its last epoch checkpoint; ``result.json`` names the final checkpoint;
* ``evaluate`` -- the student on every evaluation set: ``report.json``, ``report.md``,
  ``plots/``, ``predictions.jsonl`` (:mod:`distill.evaluate.stage`);
* ``refine_1`` … ``refine_R`` -- with a ``refine:`` section, FLTT refinement rounds: the last
  student decodes candidates for the training problems whose label is missing or doubtful,
  accepted ones become labels, the student is trained again and evaluated
  (:mod:`distill.refine.stage`);
* ``fdd_1`` … ``fdd_R`` -- with an ``fdd:`` section, FDD rounds: the last student answers every
  training problem, the offline teacher writes similar problems for the ones it fails, the
  student is trained again on everything and evaluated (:mod:`distill.fdd.stage`). The run's
  final student is its last round's.

Each stage's entry in the manifest holds its status, its key, the version of its code, its
counts and its timing. The key hashes everything that changes the stage's rows: its config
sections, the keys of the stages before it, the content of the files it reads (the data stage:
the dataset files, wherever ``MATHDISTILL_DATA_DIR`` points) and the version of the code that
computes it (:mod:`distill.provenance`: a hash of the source of the stage's modules and all they
import). A stage whose output is complete for the same key is skipped on a re-run; a stage found
unfinished (the run was killed) starts over from an empty folder, except ``train``, which resumes
from its checkpoints, and ``generate``, which keeps the rows it committed. So a run killed at
any moment and started again ends with the same rows as an uninterrupted one.

A run only ever deletes what it created: the run directory must be new, empty, or an earlier
run's (it holds this run's ``manifest.json``), and the only folders removed are stage folders
that the manifest records this run as having started.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from distill.config import ConfigError, PipelineConfig, dump_config
from distill.sandbox.config import SandboxConfig
from distill.fileio import write_atomic
from distill.provenance import code_version, files_fingerprint, git_version
from distill.storage import is_remote, rmtree, run_location

MANIFEST = "manifest.json"
RUN_FORMAT = "mathdistill-run/1"


class RunDirError(ConfigError):
    """The run directory cannot be used without risking what is in it."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors a run ends with that are the user's to act on (a config, a folder, data, an
    unreachable or failing teacher): entry points print their message, without a traceback,
    and exit non-zero."""
    from distill.data.base import DataError
    from distill.generate.engines import TeacherUnavailableError
    from distill.generate.stage import GenerationFailedError, StageMismatchError
    from distill.storage import StorageError

    return (ConfigError, DataError, TeacherUnavailableError, GenerationFailedError,
            StageMismatchError, StorageError)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _is_run_manifest(manifest: Any) -> bool:
    # runs written before RUN_FORMAT existed have "config" and "stages" and no "format"
    return isinstance(manifest, dict) and (
        manifest.get("format") == RUN_FORMAT
        or ("format" not in manifest and {"config", "stages"} <= manifest.keys()))


def open_run_dir(run_dir: Path) -> dict[str, Any]:
    """The manifest of the run in ``run_dir`` ({} for a new run), after checking that the run
    may write there: the folder is missing, empty, or holds a mathdistill run's manifest.
    Anything else (a repository, a home folder, a dataset folder) raises RunDirError and is
    left exactly as it was."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file, not a folder")
    path = run_dir / MANIFEST
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunDirError(f"{path}: not a readable run manifest ({e}); move it away or "
                              "choose another --run-dir") from None
        if _is_run_manifest(manifest):
            return manifest
        raise RunDirError(f"{path} is not a mathdistill run manifest; choose another --run-dir")
    # a run killed during its very first manifest write leaves only the temporary file
    if run_dir.is_dir() and any(p.name != MANIFEST + ".tmp" for p in run_dir.iterdir()):
        raise RunDirError(
            f"run directory {run_dir} is not empty and holds no {MANIFEST}: a run writes (and "
            "starts stages over by deleting their folders) only in a new or empty folder or in "
            "an earlier run's; choose another --run-dir")
    return {}


def _write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    # atomic: a kill never leaves half a manifest
    write_atomic(run_dir / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))


Log = Callable[[str], None]


def _data_inputs(config: PipelineConfig) -> str:
    from distill.data.stage import input_files

    return files_fingerprint(input_files(config.data))


def _data_stage(config: PipelineConfig, run_dir: Path, out: Path, log: Log) -> dict[str, Any]:
    from distill.data.stage import prepare_data, write_data_stage

    return write_data_stage(prepare_data(config.data), out)


def _problems(run_dir: Path, rel: str) -> list[dict[str, Any]]:
    from distill.data.stage import read_problems

    return sorted(read_problems(run_dir / "data" / rel).to_pylist(), key=lambda r: r["id"])


def _train_problems(run_dir: Path) -> list[dict[str, Any]]:
    return _problems(run_dir, "train")


def _search_stage(config: PipelineConfig, run_dir: Path, out: Path, log: Log) -> dict[str, Any]:
    from distill.search import search_dataset

    rows = _train_problems(run_dir)
    log(f"[search] {len(rows)} problems, up to {config.search.max_ops} operators, "
        f"mode {config.search.mode}")
    return search_dataset(rows, config.search, out_dir=out, resources=config.ray.for_stage("search"))


def _generate_stage(config: PipelineConfig, run_dir: Path, out: Path, log: Log) -> dict[str, Any]:
    from distill.generate import generate_dataset

    rows = _train_problems(run_dir)
    g = config.generate
    log(f"[generate] {len(rows)} problems x {g.samples} sample(s), strategy {g.strategy}, "
        f"engine {g.engine}, model {g.model}")
    return generate_dataset(rows, g, out, resources=config.ray.for_stage("generate"),
                            verify_resources=config.ray.for_stage("verify"),
                            sandbox=config.sandbox, progress=log)


def _sft_stage(config: PipelineConfig, run_dir: Path, out: Path, log: Log) -> dict[str, Any]:
    from distill.sft.stage import write_sft_stage

    return write_sft_stage(_train_problems(run_dir), config.teacher, config.train.target,
                           config.sft, config.data.constants,
                           rationales_dir=run_dir / config.teacher / "rationales", out=out)


def _train_stage(config: PipelineConfig, run_dir: Path, out: Path, log: Log) -> dict[str, Any]:
    from distill.train.stage import fit, record_result

    result = fit(config.train, run_dir / "sft" / "examples.parquet", storage_path=out,
                 resources=config.ray.for_stage("train"), log=log)
    return record_result(result, config.train.epochs, run_dir, out)


def _eval_sets(config: PipelineConfig, run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    sets = {s.label: _problems(run_dir, "eval/" + s.label.replace(":", "_"))
            for s in config.data.eval}
    if not sets:
        raise ValueError("evaluate: data.eval lists no evaluation sets")
    return sets


def _evaluate_stage(config: PipelineConfig, run_dir: Path, out: Path, log: Log) -> dict[str, Any]:
    from distill.evaluate.stage import evaluate_student
    from distill.train.stage import final_student

    student = str(final_student(run_dir, refined=False))  # the train stage's own
    sets = _eval_sets(config, run_dir)
    report = evaluate_student(student, sets, config.train.target, config.evaluate, out,
                              resources=config.ray.for_stage("evaluate"), sandbox=config.sandbox)
    log(f"[evaluate] accuracy {report['accuracy']:.2%} ({report['correct']}/{report['n']}); "
        f"report: {out / 'report.md'}")
    return {"accuracy": report["accuracy"], "n": report["n"], "correct": report["correct"],
            "per_dataset": report["per_dataset"], "report": str(out / "report.json")}


def _round_names(config: PipelineConfig) -> list[str]:
    """The run's rounds after its first evaluation, in order: refinement, then FDD."""
    names = [f"refine_{r}" for r in range(1, (config.refine.rounds if config.refine else 0) + 1)]
    return names + [f"fdd_{r}" for r in range(1, (config.fdd.rounds if config.fdd else 0) + 1)]


def _labels_before(config: PipelineConfig, run_dir: Path, name: str) -> dict[str, list[str]]:
    """Problem id -> labels a round starts from: the round before it wrote them
    (``labels.json``); the first round takes them as the SFT stage did (the search's best
    match, or the gold equation)."""
    if config.teacher == "generate":  # a student trained on rationales: no equation labels
        return {}
    rounds = _round_names(config)
    if rounds.index(name) > 0:
        before = run_dir / rounds[rounds.index(name) - 1] / "labels.json"
        return json.loads(before.read_text(encoding="utf-8"))
    from distill.sft.core import masked_gold_equations
    from distill.sft.stage import read_rationales, search_equations

    if config.teacher == "gold":
        equations = masked_gold_equations(_train_problems(run_dir), config.data.constants)[0]
    else:
        equations = search_equations(read_rationales(run_dir / "search" / "rationales"))[0]
    return {pid: [eq] for pid, eq in equations.items()}


def _round_stage(name: str) -> Callable[[PipelineConfig, Path, Path, Log], dict[str, Any]]:
    """A refinement or FDD round: it starts from the labels of the round before it and from the
    run's last student (the last complete round's, else the train stage's: this round is
    running, so it is never its own)."""
    round_no = int(name.rsplit("_", 1)[1])

    def run(config: PipelineConfig, run_dir: Path, out: Path, log: Log) -> dict[str, Any]:
        from distill.train.stage import final_student

        labels = _labels_before(config, run_dir, name)
        common = dict(pipeline=config, run_dir=run_dir, out=out, log=log)
        if name.startswith("refine_"):
            from distill.refine.stage import refine_round
            from distill.sft.stage import read_rationales

            summary = refine_round(round_no, _train_problems(run_dir),
                                   _eval_sets(config, run_dir), labels,
                                   read_rationales(run_dir / "search" / "rationales"),
                                   final_student(run_dir), **common)
        else:
            from distill.fdd.stage import fdd_round, new_problems_of

            problems = _train_problems(run_dir)
            for r in range(1, round_no):
                problems += new_problems_of(run_dir / f"fdd_{r}")
            summary = fdd_round(round_no, problems, _eval_sets(config, run_dir), labels,
                                final_student(run_dir), **common)
        return {k: v for k, v in summary.items() if k != "per_dataset"}
    return run


@dataclass(frozen=True)
class Stage:
    name: str
    section: Callable[[PipelineConfig], Any]  # the config this stage's output depends on
    run: Callable[[PipelineConfig, Path, Path, Log], dict[str, Any]]
    code: tuple[str, ...]  # the modules that compute its rows (with all they import)
    resumable: bool = False  # an unfinished output is continued, not started over
    inputs: Callable[[PipelineConfig], str] | None = None  # fingerprint of files it reads

    def key(self, config: PipelineConfig, upstream: str) -> tuple[str, str]:
        """(key, code version): the key changes whenever the stage's rows could."""
        version = code_version(self.code)
        inputs = self.inputs(config) if self.inputs is not None else None
        return _hash({"section": self.section(config), "upstream": upstream, "code": version,
                      "inputs": inputs}), version


def for_where_it_runs(config: PipelineConfig, environ: Mapping[str, str] | None = None
                      ) -> PipelineConfig:
    """The config a run executes with: on a Ray cluster (:meth:`RayConfig.joins_a_cluster`)
    a sandbox left at isolation 'auto' must isolate (``sandbox.require_namespaces``) --
    untrusted programs never run unisolated on nodes nobody watches unless the config says
    ``isolation: none``. Not part of any stage's key: a run resumed elsewhere keeps its rows."""
    if config.ray.joins_a_cluster(environ):
        return config.model_copy(update={"sandbox": config.sandbox.on_a_cluster()})
    return config


def stages_for(config: PipelineConfig) -> list[Stage]:
    """The stages of this config's run, in order."""
    def dump(model: Any) -> Any:
        if isinstance(model, SandboxConfig):  # where it runs decides this one, not what it makes
            return model.model_dump(mode="json", exclude={"require_namespaces"})
        return model.model_dump(mode="json")

    # the data folder's place is not part of the key, the files' content is (inputs)
    stages = [Stage("data", lambda c: {k: v for k, v in dump(c.data).items() if k != "data_dir"},
                    _data_stage,
                    code=("distill.pipeline", "distill.data.stage"), inputs=_data_inputs)]
    if config.teacher == "search":
        stages.append(Stage("search", lambda c: dump(c.search), _search_stage,
                            code=("distill.pipeline", "distill.search")))
    elif config.teacher == "generate":
        # resumable: rows already committed are kept and the teacher is not asked again;
        # the sandbox's limits decide program verdicts, so they are part of the key
        stages.append(Stage("generate", lambda c: {"generate": dump(c.generate),
                                                   "sandbox": dump(c.sandbox)},
                            _generate_stage, code=("distill.pipeline", "distill.generate"),
                            resumable=True))
    stages += [
        Stage("sft", lambda c: {"teacher": c.teacher, "sft": dump(c.sft),
                                "target": c.train.target}, _sft_stage,
              code=("distill.pipeline", "distill.sft.stage")),
        Stage("train", lambda c: dump(c.train), _train_stage,
              code=("distill.pipeline", "distill.train.stage"), resumable=True),
        Stage("evaluate", lambda c: {"evaluate": dump(c.evaluate), "sandbox": dump(c.sandbox)},
              _evaluate_stage, code=("distill.pipeline", "distill.evaluate.stage")),
    ]
    # each round depends on the one before it (the key chain) and on everything the first
    # student did, not on how many rounds follow it (a run given one more round keeps those it
    # has); resumable: its decoded files and examples are kept, training resumes
    def round_section(model: Any) -> Any:
        return {k: v for k, v in dump(model).items() if k != "rounds"}

    for name in _round_names(config):
        kind = name.rsplit("_", 1)[0]  # refine | fdd
        stages.append(Stage(
            name, lambda c, name=name, kind=kind: {
                kind: round_section(getattr(c, kind)), "round": int(name.rsplit("_", 1)[1]),
                "train": dump(c.train), "evaluate": dump(c.evaluate),
                **({"constants": c.search.constant_texts()} if kind == "refine" else {}),
                # a language model's new problems are labelled by the search (equation
                # students) or with the run's own teacher strategy (rationale students)
                **({"search": dump(c.search), "generate": dump(c.generate) if c.generate
                    else None, "sft": dump(c.sft)}
                   if kind == "fdd" and c.fdd.teacher == "llm" else {}),
                "sandbox": dump(c.sandbox)},
            _round_stage(name), code=("distill.pipeline", f"distill.{kind}.stage"),
            resumable=True))
    return stages


#: the counts a stage's summary gives for the rows it read and the rows it wrote (its metrics)
_ROWS_IN_OUT: dict[str, tuple[str, str]] = {
    "data": ("loaded", "train_rows"), "search": ("problems", "solved"),
    "generate": ("rows", "correct"), "sft": ("problems", "examples"), "evaluate": ("n", "n"),
    "refine": ("pool", "accepted"), "fdd": ("problems", "generated")}


def _record_stage_metrics(name: str, counts: Mapping[str, Any], seconds: float) -> None:
    """A finished stage's rows in / out, rows per second and wall time
    (:mod:`distill.metrics`)."""
    from distill.metrics import record

    def total(value: Any) -> int:  # a count, or a count per dataset
        return sum(value.values()) if isinstance(value, Mapping) else int(value or 0)

    kind = name.split("_")[0]
    record("stage_seconds", seconds, stage=name)
    if kind in _ROWS_IN_OUT:
        rows_in, rows_out = (total(counts.get(k)) for k in _ROWS_IN_OUT[kind])
        record("stage_rows", rows_in, stage=name, direction="in")
        record("stage_rows", rows_out, stage=name, direction="out")
        record("stage_rows_per_s", rows_out / seconds if seconds > 0 else 0.0, stage=name)


def run_pipeline(config: PipelineConfig, run_dir: str | Path | None = None, log: Log = print,
                 until: str | None = None) -> dict[str, Any]:
    """Run every stage not already complete for this config (up to and including ``until``
    when given); returns the manifest."""
    plan = stages_for(config)
    names = [s.name for s in plan]
    if until is not None:
        if until not in names:
            raise ConfigError(f"until: no stage {until!r} in this run; its stages: {', '.join(names)}")
        plan = plan[: names.index(until) + 1]
    run_dir = run_location(run_dir if run_dir else config.resolved_run_dir())
    manifest = open_run_dir(run_dir)
    for stage in plan:  # before any work: a folder the manifest does not record is not ours
        if (run_dir / stage.name).exists() and stage.name not in manifest.get("stages", {}):
            raise RunDirError(f"{run_dir / stage.name} exists but {run_dir / MANIFEST} does not "
                              f"record stage {stage.name!r}: it is not this run's to replace; "
                              "move it away or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest.update({"format": RUN_FORMAT, "name": config.name,
                     "config": config.model_dump(mode="json")})
    manifest.pop("code_version", None)  # per stage now: each stage records the code it ran
    stages = manifest.setdefault("stages", {})
    _write_manifest(run_dir, manifest)  # first: the folder is a run's before anything else
    dump_config(config, run_dir / "config.yaml")
    config.ray.init_ray()
    config = for_where_it_runs(config)
    if config.ray.joins_a_cluster() and not is_remote(run_dir) and not run_dir.is_absolute():
        log(f"warning: the run directory {run_dir} is inside this driver's working directory: "
            "on a cluster of several nodes, give --run-dir (or MATHDISTILL_RUNS) a folder every "
            "node mounts or an object-store URI, or the stages' rows land on whichever node "
            "wrote them and a resubmitted job will not find its run")
    key = ""
    for stage in plan:
        key, version = stage.key(config, key)
        prev = stages.get(stage.name, {})
        out = run_dir / stage.name
        if prev.get("status") == "complete" and prev.get("config_hash") == key:
            log(f"[{stage.name}] complete for this config and code, skipped")
            continue
        resuming = prev.get("config_hash") == key and stage.resumable
        if out.exists() and not resuming:
            assert stage.name in stages, out  # checked above: only this run's folders go
            rmtree(out)  # a killed or outdated attempt of this run: start over
        log(f"[{stage.name}] {'resuming' if resuming and out.exists() else 'running'}")
        stages[stage.name] = {"status": "running", "config_hash": key, "code_version": version,
                              "git": git_version(), "started": time.time()}
        _write_manifest(run_dir, manifest)
        t0 = time.perf_counter()
        counts = stage.run(config, run_dir, out, log)
        stages[stage.name].update(
            {"status": "complete", "seconds": round(time.perf_counter() - t0, 3), "counts": counts}
        )
        _write_manifest(run_dir, manifest)
        _record_stage_metrics(stage.name, counts, stages[stage.name]["seconds"])
        log(f"[{stage.name}] complete in {stages[stage.name]['seconds']} s")
    from distill.runreport import write_run_report

    log(f"report: {write_run_report(run_dir)}")
    return manifest
