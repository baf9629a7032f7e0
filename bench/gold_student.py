"""The ceiling of a student on a dataset: the from-scratch student trained on masked GOLD
equations (what weak supervision from answers only is measured against).

Trains a `scratch` student (distill.train, Ray Train, DDP; `--architecture t5` or `tree`) on
the dataset's train split -- decontaminated against its test split, targets `equation_prefix`
from `masked_gold_equations` -- then decodes the test split greedily and scores it with
distill.evaluate. MAWPS reference (docs/methods.md, "Reference figures"): a comparable
1.4M-parameter transformer reached 72.7% in about 11 minutes on 2 cores.

    python bench/gold_student.py --dataset mawps --architecture tree --data-dir ../shared/data
    python bench/gold_student.py --dataset math23k --architecture tree --epochs 20

Prints progress, the report and a final JSON line. Re-running with the same --out resumes
(or, when training had finished, only evaluates).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--dataset", default="mawps", help="a registered dataset with gold "
                    "equations and train/test splits (mawps, math23k)")
    ap.add_argument("--architecture", default="t5", choices=["t5", "tree"])
    ap.add_argument("--out", default=None, help="default /tmp/mathdistill-gold-<dataset>")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16, help="per worker")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--max-source-length", type=int, default=160)
    ap.add_argument("--max-target-length", type=int, default=48)
    args = ap.parse_args()
    out = args.out or f"/tmp/mathdistill-gold-{args.dataset}"

    import ray

    from distill.data import get_loader
    from distill.data.decontam import decontaminate
    from distill.evaluate import InferenceConfig, score_problems, summarize
    from distill.evaluate.infer import generate, prediction_rows
    from distill.sft import build_sft_examples, masked_gold_equations
    from distill.train import TrainConfig, fit
    from distill.train.students import load_student, parameter_count

    t0 = time.perf_counter()
    data_dir = Path(args.data_dir)
    loader = get_loader(args.dataset)
    train = loader.load("train", data_dir).problems
    test = loader.load("test", data_dir).problems
    kept, removed, _ = decontaminate(train, test)
    equations, skipped = masked_gold_equations(kept)
    sft = build_sft_examples(kept, "equation_prefix", equations=equations)
    print(f"{args.dataset} train {len(train)}, decontaminated -{len(removed)} -> {len(kept)}; "
          f"masked gold equations {len(equations)} (skipped {dict(skipped)}); "
          f"SFT examples {len(sft.rows)}; test {len(test)}", flush=True)

    cfg = TrainConfig.model_validate({
        "student": {"kind": "scratch", "preset": args.preset, "architecture": args.architecture},
        "target": "equation_prefix",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "num_workers": args.workers,
        "max_source_length": args.max_source_length,
        "max_target_length": args.max_target_length,
        "log_every_steps": 100,
        "checkpointing": {"storage_path": out,
                          "name": f"{args.dataset}-gold-{args.architecture}-{args.preset}"},
    })
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_train = time.perf_counter()
    result = fit(cfg, sft.rows, log=lambda s: print(s, flush=True))
    train_s = time.perf_counter() - t_train
    for h in result.history:
        print(f"epoch {h['epoch']:3d} loss {h['loss']:.4f} lr {h['lr']:.2e} "
              f"tokens/s {h['tokens_per_s']:.0f} ({h['epoch_time_s']:.1f} s)", flush=True)
    ray.shutdown()

    t_eval = time.perf_counter()
    model, tokenizer = load_student(result.checkpoint_dir)
    outputs = generate((model, tokenizer), [p["masked_question"] for p in test],
                       InferenceConfig(batch_size=64, max_new_tokens=args.max_target_length,
                                       max_source_length=args.max_source_length))
    report = summarize(score_problems(prediction_rows(test, outputs, "equation_prefix")))
    eval_s = time.perf_counter() - t_eval
    print(json.dumps(report, indent=1))
    line = {
        "bench": "gold_student",
        "dataset": args.dataset,
        "architecture": args.architecture,
        "accuracy": report["accuracy"],
        "correct": report["correct"],
        "n": report["n"],
        "params": parameter_count(model),
        "vocab": len(tokenizer),
        "train_examples": len(sft.rows),
        "epochs": args.epochs,
        "workers": args.workers,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "checkpoint": result.checkpoint_dir,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
