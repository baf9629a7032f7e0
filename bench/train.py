"""Training throughput: the Ray Train loop against a plain single-process torch loop.

Same tiny student (scratch T5 `tiny`), same data (synthetic equation_prefix examples), same
batch size and token layout, in the same run:

* plain    -- a bare torch loop in this process, 1 intra-op thread (one worker's share)
* plain2   -- the same with 2 threads (what one process gets from the whole machine)
* ray1     -- distill.train.fit, 1 worker (1 CPU)
* ddp2     -- distill.train.fit, 2 workers, DDP over gloo
* zero2    -- distill.train.fit, 2 workers, DeepSpeed ZeRO-2

Tokens/s are those of the last epoch (warm). Targets: ray1 / plain and ddp2-per-worker / plain
>= 0.85. Prints the figures, the ratios and a final JSON line.

    python bench/train.py [--examples 512] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def _rows(n: int) -> list[dict]:
    from distill.data.synthetic import SyntheticConfig, generate
    from distill.sft.core import build_sft_examples, masked_gold_equations

    problems = generate(SyntheticConfig(seed=11, langs=["en"]), "train", n=n)
    eqs, _ = masked_gold_equations(problems)
    return build_sft_examples(problems, "equation_prefix", equations=eqs).rows


def plain_loop(cfg, init: str, rows: list[dict], threads: int) -> float:
    """A bare torch training loop; tokens/s of its last epoch."""
    import torch

    from distill.train.collate import collate, encode_examples, epoch_batches
    from distill.train.students import load_student

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, tok = load_student(init)
        enc = encode_examples(tok, [r["source_text"] for r in rows], [r["target_text"] for r in rows],
                              True, cfg.max_source_length, cfg.max_target_length)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        model.train()
        rate = 0.0
        for epoch in range(cfg.epochs):
            t0, toks = time.perf_counter(), 0
            for idx in epoch_batches(len(enc), cfg.batch_size, epoch, cfg.seed):
                b = collate([enc[i] for i in idx], tok.pad_token_id, True)
                toks += b["n_tokens"]
                loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                             labels=b["labels"]).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
            rate = toks / (time.perf_counter() - t0)
        return rate
    finally:
        torch.set_num_threads(before)


def main() -> None:
    ap = argparse.ArgumentParser(description="Ray Train loop vs plain torch loop: tokens/s")
    ap.add_argument("--examples", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    import ray

    from distill.train.config import TrainConfig
    from distill.train.students import get_student
    from distill.train.stage import fit

    rows = _rows(args.examples)
    work = Path(tempfile.mkdtemp(prefix="mathdistill-bench-train-"))
    base = {"student": {"kind": "scratch", "preset": "tiny", "vocab_size": 1000},
            "epochs": args.epochs, "batch_size": args.batch_size, "log_every_steps": 10**6,
            "max_source_length": 128, "max_target_length": 32, "tensorboard": False}
    cfg = TrainConfig.model_validate(base)
    init = get_student("scratch").prepare(cfg.student, lambda: (t for r in rows for t in (
        r["source_text"], r["target_text"])), work / "init")
    load = os.getloadavg()
    figures: dict[str, float] = {}
    figures["plain"] = plain_loop(cfg, init, rows, threads=1)
    figures["plain2"] = plain_loop(cfg, init, rows, threads=2)
    print(f"plain torch loop: {figures['plain']:.0f} tokens/s (1 thread), "
          f"{figures['plain2']:.0f} (2 threads)", flush=True)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = {"ray1": dict(num_workers=1), "ddp2": dict(num_workers=2),
            "zero2": dict(num_workers=2, deepspeed={"enabled": True, "zero_stage": 2})}
    wall: dict[str, float] = {}
    for name, extra in runs.items():
        c = TrainConfig.model_validate({**base, **extra, "checkpointing": {"name": name}})
        t0 = time.perf_counter()
        # scratch prepare reuses the init folder: every run starts from the same weights
        shutil.copytree(work / "init", work / name / "student_init", dirs_exist_ok=True)
        result = fit(c, rows, storage_path=work)
        wall[name] = time.perf_counter() - t0
        figures[name] = result.history[-1]["tokens_per_s"]
        print(f"{name}: {figures[name]:.0f} tokens/s total, "
              f"{figures[name] / c.num_workers:.0f} per worker (fit {wall[name]:.0f} s)", flush=True)
    ray.shutdown()

    ratios = {
        "ray1_vs_plain": figures["ray1"] / figures["plain"],
        "ddp2_per_worker_vs_plain": figures["ddp2"] / 2 / figures["plain"],
        "ddp2_vs_plain2": figures["ddp2"] / figures["plain2"],
        "zero2_vs_ddp2": figures["zero2"] / figures["ddp2"],
    }
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    print(json.dumps({"bench": "train_throughput", "tokens_per_s": {k: round(v) for k, v in figures.items()},
                      "ratios": {k: round(v, 3) for k, v in ratios.items()},
                      "fit_wall_s": {k: round(v, 1) for k, v in wall.items()},
                      "examples": len(rows), "epochs": args.epochs, "batch_size": args.batch_size,
                      "loadavg_at_start": [round(x, 2) for x in load]}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
