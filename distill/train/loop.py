"""The per-worker training loop: the pure core of student training.

:func:`train_loop` takes a :class:`~distill.train.config.TrainConfig`, where the initial student
is (a folder or a hub name), the SFT examples, and a :class:`LoopContext` -- the worker's rank,
world size and device, how to report metrics and checkpoints, and where the last checkpoint is.
It runs without Ray in one process (:class:`LocalContext`: tests, golden numbers, a laptop) and
inside a Ray Train worker (``RayContext`` in :mod:`distill.train.stage`).

What it does, per epoch: a seeded data order split evenly over the workers
(:func:`~distill.train.collate.epoch_batches`); AdamW with a warmup + linear / cosine / constant
schedule; DDP (the context wraps the model) or DeepSpeed ZeRO stage 0-3 (deepspeed is imported
here, inside the worker); loss, learning rate and tokens/s reported every ``log_every_steps`` and
at the end of the epoch, to the context and to TensorBoard (rank 0); then one checkpoint:

    config.json, model.safetensors, tokenizer files   (save_pretrained: transformers loads it)
    trainer_state.json                                (epoch, global_step, target, history)
    training_state.pt                                 (DDP: optimizer + scheduler, rank 0)
    deepspeed/                                        (DeepSpeed: engine checkpoint, every rank)

The weights in ``model.safetensors`` are float32, except under DeepSpeed bf16 (bfloat16: the
engine's module; DeepSpeed keeps the float32 master copy in ``deepspeed/``). Training always
starts from float32 weights, whatever dtype the initial student or checkpoint is stored in.

Resuming (the context has a checkpoint) loads the model from it, moves it to the device,
restores the optimizer and scheduler there (DeepSpeed: ``engine.load_checkpoint``) and
continues with the next epoch. Dropout and data order are seeded per (epoch, rank),
so a resumed run repeats exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

from distill.metrics import record
from distill.train.collate import collate, encode_examples, epoch_batches
from distill.train.config import TrainConfig
from distill.train.students import load_student

__all__ = ["LocalContext", "LoopContext", "deepspeed_config", "lr_lambda", "read_examples", "train_loop"]

TRAINER_STATE = "trainer_state.json"
TRAINING_STATE = "training_state.pt"
DEEPSPEED_DIR = "deepspeed"
_DS_TAG = "state"


class LoopContext(Protocol):
    """What the loop needs from where it runs."""

    world_rank: int
    world_size: int

    @property
    def device(self) -> Any: ...

    def wrap_model(self, model: Any) -> Any:
        """Move to the device; wrap in DDP when there are several workers."""
        ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None,
               checkpoint_name: str | None = None) -> None:
        """Hand over metrics (and a checkpoint folder, whose files are copied). Every worker
        calls it at the same points."""
        ...

    def latest_checkpoint(self) -> contextlib.AbstractContextManager[str | None]:
        """A folder holding the last checkpoint, or None when starting afresh."""
        ...


class LocalContext:
    """One process, no Ray: reports are kept in ``reports``; checkpoints are copied to
    ``out_dir/<name>`` when ``out_dir`` is given, and the last one there is resumed from."""

    world_rank = 0
    world_size = 1

    def __init__(self, out_dir: str | os.PathLike | None = None):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.reports: list[dict[str, Any]] = []
        self.checkpoints: list[Path] = []

    @property
    def device(self) -> Any:
        import torch

        return torch.device("cpu")

    def wrap_model(self, model: Any) -> Any:
        return model

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None,
               checkpoint_name: str | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None and self.out_dir is not None:
            dest = self.out_dir / (checkpoint_name or f"checkpoint_{len(self.checkpoints):06d}")
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(checkpoint_dir, dest)
            self.checkpoints.append(dest)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        found = None
        if self.out_dir is not None and self.out_dir.is_dir():
            done = sorted(p for p in self.out_dir.iterdir() if (p / TRAINER_STATE).is_file())
            found = str(done[-1]) if done else None
        yield found


def read_examples(examples: str | os.PathLike | Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(sources, targets) from SFTExample rows or a Parquet file / folder of them."""
    if isinstance(examples, (str, os.PathLike)):
        import pyarrow.parquet as pq

        table = pq.read_table(str(examples), columns=["source_text", "target_text"])
        return table.column("source_text").to_pylist(), table.column("target_text").to_pylist()
    return [r["source_text"] for r in examples], [r["target_text"] for r in examples]


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier of the peak learning rate after ``step`` optimizer updates."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return f


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config dict for ``cfg`` (optimizer and scheduler are passed as objects)."""
    ds = cfg.deepspeed
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.batch_size * cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": cfg.max_grad_norm or 0.0,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.precision == "bf16"},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    return _merge(out, ds.extra)


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or name.endswith(".bias") or "norm" in name.lower()
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def _process_group_for_deepspeed(ctx: LoopContext) -> Iterator[None]:
    """DeepSpeed needs torch.distributed and the RANK / LOCAL_RANK / WORLD_SIZE variables.
    Ray Train provides both. In one process without Ray the variables are set for the
    duration and a group of one is made; the group stays for the life of the process
    (DeepSpeed caches it, a second group would not be seen)."""
    import deepspeed
    import torch

    env = {"RANK": str(ctx.world_rank), "LOCAL_RANK": "0", "WORLD_SIZE": str(ctx.world_size),
           "MASTER_ADDR": "127.0.0.1"}
    if not torch.distributed.is_initialized():
        env["MASTER_PORT"] = str(_free_port())
    missing = [k for k in env if k not in os.environ]
    os.environ.update({k: env[k] for k in missing})
    try:
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        yield
    finally:
        for k in missing:
            os.environ.pop(k, None)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_reduce_sum(values: list[float], ctx: LoopContext) -> list[float]:
    if ctx.world_size == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


class _Writer:
    """TensorBoard scalars from rank 0 (tensorboardX, which ray[train] brings, else torch's)."""

    def __init__(self, log_dir: str | None):
        self.w = None
        if not log_dir:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("no tensorboardX / tensorboard: TensorBoard logging is off")
                return
        self.w = SummaryWriter(log_dir)

    def scalars(self, metrics: Mapping[str, Any], step: int, prefix: str) -> None:
        if self.w is None:
            return
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                self.w.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


def _record_metrics(metrics: Mapping[str, Any], cfg: TrainConfig) -> None:
    """Loss and tokens/s of the run (its checkpoint name) for Ray's metrics."""
    record("train_loss", metrics["loss"], run=cfg.checkpointing.name)
    record("train_tokens_per_s", metrics["tokens_per_s"], run=cfg.checkpointing.name)


def train_loop(
    cfg: TrainConfig,
    init: str,
    examples: str | os.PathLike | Sequence[Mapping[str, Any]],
    ctx: LoopContext,
    tensorboard_dir: str | None = None,
) -> dict[str, Any]:
    """Train (or resume training) a student; returns the last epoch's metrics (``{}`` when
    the run had already finished)."""
    with contextlib.ExitStack() as stack:
        return _train_loop(cfg, init, examples, ctx, tensorboard_dir, stack)


def _train_loop(cfg: TrainConfig, init: str, examples: Any, ctx: LoopContext,
                tensorboard_dir: str | None, stack: contextlib.ExitStack) -> dict[str, Any]:
    import torch

    rank, world = ctx.world_rank, ctx.world_size
    use_ds = cfg.deepspeed.enabled
    sources, targets = read_examples(examples)
    _seed(cfg.seed)
    with ctx.latest_checkpoint() as ckpt:
        state = json.loads((Path(ckpt) / TRAINER_STATE).read_text()) if ckpt else None
        # float32 weights whatever the stored dtype (bf16 hub checkpoints, DeepSpeed bf16
        # checkpoints): fp32 trains them as such, bf16 autocasts or hands them to DeepSpeed
        model, tokenizer = load_student(ckpt or init, dtype="float32",
                                        trust_remote_code=cfg.student.trust_remote_code)
        encoder_decoder = bool(model.config.is_encoder_decoder)
        encoded = encode_examples(tokenizer, sources, targets, encoder_decoder,
                                  cfg.max_source_length, cfg.max_target_length)
        steps_per_epoch = len(epoch_batches(len(encoded), cfg.batch_size, 0, cfg.seed, rank, world))
        updates_per_epoch = -(-steps_per_epoch // cfg.gradient_accumulation_steps)
        total_updates = updates_per_epoch * cfg.epochs
        warmup = int(cfg.warmup_ratio * total_updates)
        if not use_ds:
            # to the device first: the optimizer state loaded below follows the parameters'
            # device and dtype at load time (loaded before the move, Adam's state would stay
            # on the CPU and the first step on a GPU would fail). The move keeps the
            # Parameter objects, so the optimizer below holds the moved ones.
            engine = ctx.wrap_model(model)
        optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(cfg.schedule, warmup, total_updates))
        if use_ds:
            import deepspeed

            stack.enter_context(_process_group_for_deepspeed(ctx))
            engine, optimizer, _, scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler,
                config=deepspeed_config(cfg, world))
            if ckpt:
                engine.load_checkpoint(str(Path(ckpt) / DEEPSPEED_DIR), tag=_DS_TAG)
            base = engine.module
            device = engine.device
        else:
            if ckpt and (Path(ckpt) / TRAINING_STATE).is_file():
                saved = torch.load(Path(ckpt) / TRAINING_STATE, map_location="cpu", weights_only=True)
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
            base = model
            device = ctx.device
    start_epoch = state["epoch"] if state else 0
    global_step = state["global_step"] if state else 0
    history: list[dict[str, Any]] = list(state["history"]) if state else []
    pad_id = tokenizer.pad_token_id
    bf16_autocast = cfg.precision == "bf16" and not use_ds
    writer = _Writer(tensorboard_dir if rank == 0 and cfg.tensorboard else None)
    stack.callback(writer.close)
    last: dict[str, Any] = {}
    for epoch in range(start_epoch, cfg.epochs):
        _seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)
        engine.train()
        batches = epoch_batches(len(encoded), cfg.batch_size, epoch, cfg.seed, rank, world)
        t_epoch = t_win = time.perf_counter()
        sum_loss = win_loss = 0.0
        n_steps = win_steps = 0
        tok_epoch = tok_win = 0
        for i, idx in enumerate(batches):
            b = collate([encoded[j] for j in idx], pad_id, encoder_decoder)
            tok_epoch += b["n_tokens"]
            tok_win += b["n_tokens"]
            inputs = {k: b[k].to(device) for k in ("input_ids", "attention_mask", "labels")}
            boundary = (i + 1) % cfg.gradient_accumulation_steps == 0 or i + 1 == len(batches)
            if use_ds:
                loss = engine(**inputs).loss
                engine.backward(loss)
                engine.step()
            else:
                sync = boundary or not hasattr(engine, "no_sync")
                with (contextlib.nullcontext() if sync else engine.no_sync()):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast):
                        loss = engine(**inputs).loss
                    (loss / cfg.gradient_accumulation_steps).backward()
                if boundary:
                    if cfg.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(engine.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            sum_loss += value
            win_loss += value
            n_steps += 1
            win_steps += 1
            global_step += 1
            if global_step % cfg.log_every_steps == 0:
                loss_sum, toks = _all_reduce_sum([win_loss / win_steps, float(tok_win)], ctx)
                elapsed = time.perf_counter() - t_win
                m = {"epoch": epoch + 1, "step": global_step, "loss": loss_sum / world,
                     "lr": scheduler.get_last_lr()[0], "tokens_per_s": toks / elapsed,
                     "tokens_per_s_per_worker": toks / elapsed / world}
                writer.scalars(m, global_step, "train")
                if rank == 0:
                    _record_metrics(m, cfg)
                ctx.report(m)
                t_win, win_loss, win_steps, tok_win = time.perf_counter(), 0.0, 0, 0
        elapsed = time.perf_counter() - t_epoch
        loss_sum, toks = _all_reduce_sum([sum_loss / max(1, n_steps), float(tok_epoch)], ctx)
        last = {"epoch": epoch + 1, "step": global_step, "loss": loss_sum / world,
                "lr": scheduler.get_last_lr()[0], "tokens_per_s": toks / elapsed,
                "tokens_per_s_per_worker": toks / elapsed / world, "epoch_time_s": elapsed}
        history.append(last)
        writer.scalars(last, global_step, "epoch")
        if rank == 0:
            _record_metrics(last, cfg)
        _checkpoint(cfg, ctx, base, tokenizer, engine if use_ds else None, optimizer,
                    scheduler, history, last)
    return last


def _checkpoint(cfg: TrainConfig, ctx: LoopContext, base: Any, tokenizer: Any, ds_engine: Any,
                optimizer: Any, scheduler: Any, history: list[dict[str, Any]],
                metrics: dict[str, Any]) -> None:
    import torch

    rank = ctx.world_rank
    with tempfile.TemporaryDirectory(prefix="mathdistill-ckpt-") as tmp:
        gathered = contextlib.nullcontext()
        if ds_engine is not None and cfg.deepspeed.zero_stage == 3:
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters(list(base.parameters()), modifier_rank=None)
        with gathered:  # ZeRO-3: every rank takes part in gathering the full weights
            if rank == 0:
                base.save_pretrained(tmp)
        if rank == 0:
            tokenizer.save_pretrained(tmp)
            # the target says how the checkpoint's outputs are read (serving a bare checkpoint)
            state = {"epoch": metrics["epoch"], "global_step": metrics["step"],
                     "epochs": cfg.epochs, "target": cfg.target, "history": history}
            (Path(tmp) / TRAINER_STATE).write_text(json.dumps(state, indent=1))
            if ds_engine is None:
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                           Path(tmp) / TRAINING_STATE)
        if ds_engine is not None:
            ds_engine.save_checkpoint(str(Path(tmp) / DEEPSPEED_DIR), tag=_DS_TAG)
        has_files = rank == 0 or ds_engine is not None
        ctx.report(metrics, checkpoint_dir=tmp if has_files else None,
                   checkpoint_name=f"epoch_{metrics['epoch']:04d}")
