"""Where a model (a student, or a transformers teacher) runs and in which dtype: one small seam,
testable without a GPU.

* :func:`choose_device` -- the pure rule: plain inputs (is CUDA usable, are we a Ray worker,
  which GPU ids Ray assigned, ``CUDA_VISIBLE_DEVICES``) -> ``"cpu"`` or ``"cuda:<i>"``.
* :func:`runtime_device_inputs` / :func:`current_device` -- the same inputs read from torch,
  Ray and the environment, and the device they give here.
* :func:`resolve_dtype` -- an inference ``dtype`` setting (``auto`` / ``float32`` /
  ``bfloat16`` / ``float16``) on a device -> a concrete dtype name, or a clear error.

The rule inside Ray: a worker decodes on a GPU only when Ray assigned it one (a Ray Data
actor started with ``num_gpus``). Ray 2.60 no longer empties ``CUDA_VISIBLE_DEVICES`` for
workers that reserved no GPU, so CUDA may be usable in an actor that holds none; that GPU
belongs to someone else's reservation and is not taken. Outside Ray (a driver, a laptop,
tests) the first CUDA device is used when there is one.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

__all__ = ["DTYPES", "choose_device", "current_device", "resolve_dtype",
           "runtime_device_inputs"]

#: The inference dtype settings; ``auto`` is bf16 on a CUDA device that supports it, else fp32.
DTYPES = ("auto", "float32", "bfloat16", "float16")


def choose_device(
    *,
    cuda_available: bool,
    in_ray_worker: bool,
    ray_gpu_ids: Sequence[str | int] = (),
    cuda_visible_devices: str | None = None,
) -> str:
    """The device to place a model on: ``"cpu"`` or ``"cuda:<index>"``.

    In a Ray worker, ``ray_gpu_ids`` are the GPU ids Ray assigned to it
    (``ray.get_runtime_context().get_accelerator_ids()["GPU"]``): none means the CPU; else
    the first one, as torch numbers it -- its position in ``cuda_visible_devices`` (Ray sets
    that variable to the assigned ids, so usually ``cuda:0``), or the id itself when the
    variable is unset (``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``). Raises
    ``RuntimeError`` when Ray assigned a GPU that torch cannot use (a CPU-only torch build),
    instead of decoding on the CPU behind the reservation's back. Outside Ray: ``cuda:0``
    when CUDA is available, else the CPU.
    """
    if not in_ray_worker:
        return "cuda:0" if cuda_available else "cpu"
    ids = [str(i) for i in ray_gpu_ids]
    if not ids:
        return "cpu"
    if not cuda_available:
        raise RuntimeError(
            f"Ray assigned GPU(s) {ids} to this worker but torch cannot use CUDA (a CPU-only "
            "torch build, or a driver problem); install a CUDA torch or reserve no GPU")
    visible = [v.strip() for v in (cuda_visible_devices or "").split(",") if v.strip()]
    if visible and visible != ["NoDevFiles"]:
        if ids[0] not in visible:
            raise RuntimeError(f"Ray assigned GPU {ids[0]} but CUDA_VISIBLE_DEVICES is "
                               f"{cuda_visible_devices!r}: was the variable overridden?")
        return f"cuda:{visible.index(ids[0])}"
    return f"cuda:{int(ids[0])}"


def runtime_device_inputs() -> dict[str, Any]:
    """The inputs of :func:`choose_device` in this process. Ray is consulted only when it is
    already imported and initialised (plain local inference does not import it)."""
    import torch

    in_worker, gpu_ids = False, []
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ctx = ray.get_runtime_context()
        in_worker = ctx.worker.mode == ray.WORKER_MODE
        if in_worker:
            gpu_ids = list(ctx.get_accelerator_ids().get("GPU", []))
    return {"cuda_available": torch.cuda.is_available(), "in_ray_worker": in_worker,
            "ray_gpu_ids": gpu_ids, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def current_device() -> str:
    """:func:`choose_device` for this process (see :func:`runtime_device_inputs`)."""
    return choose_device(**runtime_device_inputs())


def resolve_dtype(setting: str, device: str, *, bf16_supported: bool | None = None) -> str:
    """The torch dtype name (``float32`` / ``bfloat16`` / ``float16``) for an inference
    ``dtype`` setting on ``device``. ``auto``: bfloat16 on a CUDA device that supports it
    (``bf16_supported``; asked of torch when None), else float32. ``float16`` is refused off
    CUDA: half-precision matmuls are not what the CPU kernels are made for (slow or missing)."""
    if setting not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (got {setting!r})")
    cuda = str(device).startswith("cuda")
    if setting == "auto":
        if not cuda:
            return "float32"
        if bf16_supported is None:
            import torch

            bf16_supported = bool(torch.cuda.is_bf16_supported())
        return "bfloat16" if bf16_supported else "float32"
    if setting == "float16" and not cuda:
        raise ValueError(f"inference dtype float16 needs a CUDA device; this process decodes on "
                         f"{device}: use float32, bfloat16 or auto")
    return setting
