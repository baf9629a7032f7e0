"""Benchmark: constrained decoding of an equation student against free decoding, in one process.

On a run's student (default: the quickstart run) and its held-out problems (every set under
``data/eval``): the evaluation's ``generate`` (the run's ``evaluate.inference``, greedy, one
torch thread) free and under the equation grammar (``grammars_for``), each read by
``prediction_rows`` and scored by the one grader. The grammar's token table is built before
timing (its first call); each mode is timed ``--repeats`` times, the best kept.

Prints per mode: unparsable outputs, correct answers, seconds; then the ratio of the grammar's
time to free decoding's and how many outputs changed (all of them must have been unparsable).

    .venv/bin/python bench/grammar.py [--run runs/quickstart] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "quickstart")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from distill.data.stage import read_problems
    from distill.evaluate.infer import (generate, grammars_for, load_for_inference,
                                        prediction_rows)
    from distill.evaluate.report import score_problems, summarize
    from distill.evaluate.student import resolve_student
    from distill.train.stage import final_student

    torch.set_num_threads(1)
    checkpoint = final_student(args.run, refined=False)  # the student the report counted
    spec = resolve_student(checkpoint)
    cfg = spec.inference_config().model_copy(update={"num_samples": 1})
    problems = []
    for folder in sorted(p for p in (args.run / "data" / "eval").iterdir() if p.is_dir()):
        problems += [dict(r, dataset=folder.name) for r in read_problems(folder).to_pylist()]
    student = load_for_inference(str(checkpoint), cfg)
    sources = [p["masked_question"] for p in problems]
    grammars = grammars_for(spec.target, problems, cfg)
    if grammars is None:
        sys.exit(f"{checkpoint}: target {spec.target!r} decodes free (no grammar to compare)")
    generate(student, sources, cfg, grammars)  # the token table, before timing

    results = {}
    for mode, g in (("free", None), ("grammar", grammars)):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outputs = generate(student, sources, cfg, g)
            times.append(time.perf_counter() - t0)
        rows = prediction_rows(problems, outputs, spec.target)
        report = summarize(score_problems(rows))
        results[mode] = {"outputs": [o[0] for o in outputs], "seconds": min(times),
                         "unparsable": sum(r["error"] == "unparsable" for r in rows),
                         "correct": report["correct"], "n": report["n"]}
        print(f"{mode:>8}: unparsable {results[mode]['unparsable']}, correct "
              f"{report['correct']}/{report['n']}, {min(times):.2f} s (best of {args.repeats})")
    free, gram = results["free"], results["grammar"]
    changed = [i for i, (a, b) in enumerate(zip(free["outputs"], gram["outputs"])) if a != b]
    free_bad = {i for i, r in enumerate(prediction_rows(problems, [[o] for o in free["outputs"]],
                                                         spec.target))
                if r["error"] == "unparsable"}
    ratio = gram["seconds"] / free["seconds"]
    print(f"grammar / free time: {ratio:.2f}x; outputs changed: {len(changed)} "
          f"(all unparsable before: {set(changed) <= free_bad})")
    print(json.dumps({"run": str(args.run), "n": free["n"],
                      "free": {k: v for k, v in free.items() if k != "outputs"},
                      "grammar": {k: v for k, v in gram.items() if k != "outputs"},
                      "time_ratio": round(ratio, 3), "changed": len(changed),
                      "changed_were_unparsable": set(changed) <= free_bad}))


if __name__ == "__main__":
    main()
