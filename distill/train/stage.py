"""Student training on Ray Train: the thin wrapper around :func:`distill.train.loop.train_loop`.

:func:`fit` takes a :class:`~distill.train.config.TrainConfig` and SFTExample rows (or a Parquet
file of them) and gives a :class:`TrainResult` whose ``checkpoint_dir`` is the last epoch's
checkpoint, a folder transformers loads (``AutoModelForSeq2SeqLM.from_pretrained(dir)``).

Layout under ``<storage_path>/<name>/`` (Ray Train's run folder)::

    student_init/         the initial student (scratch kinds: model + trained tokenizer)
    examples.parquet      the SFT rows the workers read
    epoch_0001/ ...       one checkpoint per epoch (Ray keeps ``num_to_keep``)
    tensorboard/          TensorBoard events (local storage)

Starting ``fit`` again with the same storage path and name resumes from the last checkpoint
(Ray Train restores the run's checkpoint list; the loop continues with the next epoch); a
lost worker restarts the worker group from that checkpoint, ``max_failures`` times. With
DeepSpeed the optimizer state is sharded per worker, so a resume needs the same
``num_workers``. Workers use gloo on CPU and nccl on GPU. The driver must have called
``ray.init`` (or Ray starts a local cluster itself).

Contract: :data:`NEEDS` (the SFTExample columns of the examples; checked on entry, before any
Ray work) and :data:`WRITES` (None: a checkpoint, no rows).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from distill.records import SFT_EXAMPLE_SCHEMA, require_columns, to_table
from distill.resources import StageResources, resources_or_default
from distill.train.config import TrainConfig
from distill.train.loop import TRAINER_STATE, train_loop
from distill.sft.core import STAGE_KEYPOINTS, STAGE_SOLVE
from distill.storage import (
    RemotePath,
    StoragePath,
    is_uri,
    local_copy,
    run_location,
    upload_dir,
)
from distill.train.students import get_student

__all__ = ["NEEDS", "WRITES", "RayContext", "TrainResult", "fit", "read_example_rows",
           "scaling_config", "stage_initial_student"]

NEEDS: tuple[str, ...] = tuple(SFT_EXAMPLE_SCHEMA.names)  # what fit reads of each example
WRITES = None  # checkpoints (save_pretrained folders), no rows another stage reads
#: What a run's train stage leaves beside its checkpoints (``<run>/train/result.json``): the
#: final checkpoint relative to the run directory, the epochs, the loss history.
TRAIN_RESULT = "result.json"


@dataclass
class TrainResult:
    """Where the trained student is and how training went."""

    checkpoint_dir: str  # the last epoch's checkpoint (a save_pretrained folder)
    run_path: str  # <storage_path>/<name> of the (last) phase
    metrics: dict[str, Any]  # the last metrics reported
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    phases: list[str] = field(default_factory=list)  # run names, in order


class RayContext:
    """:class:`~distill.train.loop.LoopContext` inside a Ray Train worker."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.world_rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()

    @property
    def device(self) -> Any:
        import ray.train.torch

        return ray.train.torch.get_device()

    def wrap_model(self, model: Any) -> Any:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)  # to the device; DDP when world > 1

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None,
               checkpoint_name: str | None = None) -> None:
        import ray.train

        if checkpoint_dir is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir),
                             checkpoint_dir_name=checkpoint_name)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
        else:
            with ckpt.as_directory() as d:
                yield d


def _worker(config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    cfg = TrainConfig.model_validate(config["train"])
    with local_copy(config["init"]) as init:  # a folder or a hub name; a URI is downloaded
        train_loop(cfg, str(init), config["examples"], RayContext(), config.get("tensorboard_dir"))


def read_example_rows(examples: str | os.PathLike | RemotePath | Sequence[Mapping[str, Any]]
                      ) -> list[dict[str, Any]]:
    """The examples as rows (a Parquet file, local or on an object store, or the rows
    themselves); ValueError naming the :data:`NEEDS` columns they lack (a file's own columns
    are checked, even when it has no rows)."""
    if isinstance(examples, (str, os.PathLike, RemotePath)):
        import pyarrow.parquet as pq

        table = pq.read_table(str(examples))
        require_columns(table.column_names, NEEDS, f"train ({examples})")
        return table.to_pylist()
    rows = [dict(r) for r in examples]
    if rows:
        require_columns(rows[0].keys(), NEEDS, "train")
    return rows


def _phases(cfg: TrainConfig, rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    name = cfg.checkpointing.name
    if cfg.target == "kpdd" and cfg.kpdd_schedule == "sequential":
        return [(f"{name}-{stage}", [r for r in rows if r["stage"] == stage])
                for stage in (STAGE_KEYPOINTS, STAGE_SOLVE)]
    return [(name, rows)]


def scaling_config(cfg: TrainConfig, resources: StageResources | None):
    """Ray Train's ``ScalingConfig``: ``cfg.num_workers`` workers, each reserving
    :meth:`StageResources.resources_per_worker` (default 1 CPU); GPUs when it asks for any."""
    from ray.train import ScalingConfig

    res = resources_or_default(resources)
    return ScalingConfig(num_workers=cfg.num_workers, use_gpu=bool(res.num_gpus),
                         resources_per_worker=res.resources_per_worker())


def fit(
    cfg: TrainConfig,
    examples: str | os.PathLike | RemotePath | Sequence[Mapping[str, Any]],
    *,
    storage_path: str | os.PathLike | None = None,
    resources: StageResources | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> TrainResult:
    """Train the student of ``cfg`` on ``examples`` with a TorchTrainer; resume when the run
    (storage path + name) already has checkpoints.

    ``storage_path`` is the default for ``cfg.checkpointing.storage_path`` (the pipeline passes
    ``<run_dir>/train``). ``resources`` is a :class:`distill.resources.StageResources`
    (per-worker ``num_cpus``, ``num_gpus``, ``memory_gb``; see :func:`scaling_config`); default
    1 CPU per worker. Raises ValueError naming the :data:`NEEDS` columns the examples lack,
    before any Ray work.
    """
    rows = read_example_rows(examples)
    if not rows:
        raise ValueError("no training examples")
    storage = cfg.checkpointing.storage_path or (str(storage_path) if storage_path else None)
    if storage is None:
        raise ValueError("no storage path: set train.checkpointing.storage_path or pass storage_path")
    if not is_uri(storage):
        storage = str(Path(storage).absolute())
    local = not is_uri(storage)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    scaling = scaling_config(cfg, resources)

    phases = _phases(cfg, rows)
    init = stage_initial_student(
        cfg, lambda: (t for r in rows for t in (r["source_text"], r["target_text"])),
        _join(storage, phases[0][0], "student_init"))
    result: Any = None
    history: list[dict[str, Any]] = []
    for run_name, phase_rows in phases:
        run_path = _join(storage, run_name)
        if not cfg.checkpointing.resume and _has_checkpoints(run_location(run_path)):
            raise ValueError(f"{run_path} already has checkpoints and checkpointing.resume is "
                             "false: choose another checkpointing.name or delete the folder")
        examples_path = _join(run_path, "examples.parquet")
        _write_examples(phase_rows, examples_path)
        mode = (f"DeepSpeed ZeRO-{cfg.deepspeed.zero_stage}" if cfg.deepspeed.enabled
                else "DDP" if cfg.num_workers > 1 else "one process")
        log(f"train: {run_name}: {len(phase_rows)} examples, {cfg.num_workers} worker(s), {mode}")
        trainer = TorchTrainer(
            _worker,
            train_loop_config={
                "train": cfg.model_dump(mode="json"),
                "init": init,
                "examples": examples_path,
                "tensorboard_dir": str(Path(run_path) / "tensorboard") if local else None,
            },
            torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
            scaling_config=scaling,
            run_config=RunConfig(
                name=run_name,
                storage_path=storage,
                failure_config=FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpointing.num_to_keep),
            ),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"train: run {run_name} finished without a checkpoint")
        ckpt_path = result.checkpoint.path if local else _join(
            storage, run_name, Path(result.checkpoint.path).name)
        init = ckpt_path  # the next phase starts from this one
        state = run_location(ckpt_path) / TRAINER_STATE
        history = json.loads(state.read_text())["history"] if state.is_file() else []
    return TrainResult(
        checkpoint_dir=ckpt_path,
        run_path=_join(storage, phases[-1][0]),
        metrics=dict(result.metrics or {}),
        history=history,
        phases=[p for p, _ in phases],
    )


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_uri(base) else str(Path(base, *parts))


def stage_initial_student(cfg: TrainConfig, texts: Callable[[], Any], target: str) -> str:
    """Prepare the initial student at ``target`` (a folder or a pyarrow URI; kept when it is
    already there) and return where workers load it from (``target``, or a hub name)."""
    student = get_student(cfg.student.kind)
    if not is_uri(target):
        return student.prepare(cfg.student, texts, Path(target), seed=cfg.seed)
    import tempfile

    remote = run_location(target)
    if (remote / "config.json").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        loc = student.prepare(cfg.student, texts, Path(tmp) / "student_init", seed=cfg.seed)
        if not Path(loc).is_dir():
            return loc  # a hub name: nothing to upload
        upload_dir(loc, remote)
    return target


def _has_checkpoints(run_path: StoragePath) -> bool:
    return run_path.is_dir() and any((p / TRAINER_STATE).is_file() for p in run_path.iterdir())


def _write_examples(rows: list[dict[str, Any]], path: str) -> None:
    import pyarrow.parquet as pq

    if not is_uri(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(rows, SFT_EXAMPLE_SCHEMA), path)


def _relative(location: str, run_dir: str | os.PathLike) -> str:
    """``location`` relative to ``run_dir`` (both local paths, or both URIs)."""
    if is_uri(location):
        return str(run_location(location).relative_to(run_location(run_dir)))
    return os.path.relpath(location, run_dir)


def record_result(result: TrainResult, epochs: int, run_dir: str | Path, out: str | Path
                  ) -> dict[str, Any]:
    """Write ``out/result.json`` for a finished training (the checkpoint relative to the run
    directory, so that a moved or copied run finds its own student) and return its summary
    without the per-epoch history."""
    last = result.history[-1] if result.history else {}
    summary = {"checkpoint_dir": _relative(result.checkpoint_dir, run_dir),
               "phases": result.phases, "epochs": epochs, "final_loss": last.get("loss"),
               "history": result.history}
    (run_location(out) / TRAIN_RESULT).write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    return {k: v for k, v in summary.items() if k != "history"}


def _last_refined(run_dir: StoragePath) -> StoragePath | None:
    """The result.json of the run's last round (refinement rounds, then FDD rounds) when the
    manifest records every round up to it complete (a round of an earlier config, or one after
    an unfinished round, is not the run's final student)."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    config = manifest.get("config") or {}
    stages = manifest.get("stages") or {}
    rounds = [f"refine_{r}" for r in range(1, int((config.get("refine") or {}).get("rounds")
                                                  or 0) + 1)]
    rounds += [f"fdd_{r}" for r in range(1, int((config.get("fdd") or {}).get("rounds") or 0)
                                         + 1)]
    last = None
    for name in rounds:
        if (stages.get(name) or {}).get("status") != "complete":
            break
        if (run_dir / name / "train" / TRAIN_RESULT).is_file():
            last = run_dir / name / "train" / TRAIN_RESULT
    return last


def final_student(run_dir: str | os.PathLike | StoragePath, refined: bool = True) -> StoragePath:
    """The checkpoint folder of the student a run finished with: its last complete refinement or
    FDD round's (``refined``, when the run has rounds), else the train stage's.

    Raises FileNotFoundError naming the run when its train stage has not completed."""
    run_dir = run_location(run_dir)
    result = (_last_refined(run_dir) if refined else None) or run_dir / "train" / TRAIN_RESULT
    if not result.is_file():
        raise FileNotFoundError(f"{run_dir}: no trained student ({result} is missing; "
                                "the run's train stage has not completed)")
    # runs written before 2026-12-03 recorded an absolute path; Path joins keep those as they are
    return run_dir / json.loads(result.read_text())["checkpoint_dir"]
