"""Students for the serving tests: a tiny from-scratch pot student that has learned a handful of
programs by heart (one of them hostile), trained in this process in a few seconds."""

from __future__ import annotations

from pathlib import Path

#: question -> the program the student writes for it (greedy).
PROGRAMS = {
    "Tom has 3 apples and buys 4 more. How many apples does he have?": "ans = 3 + 4",
    "A box holds 12 pens. How many pens are in 5 boxes?": "ans = 12 * 5",
    "Anna shares 20 sweets among 4 friends. How many does each get?": "ans = 20 / 4",
    "Read the host's secret file of 9 lines.": "import os\nans = os.getcwd()",
    "Count forever, starting at 1.": "while True:\n    pass",
}
ANSWERS = {q: a for q, a in zip(PROGRAMS, ["7", "60", "5", None, None])}


def train_program_student(out: Path, epochs: int = 30) -> Path:
    """The checkpoint folder of a pot student that writes PROGRAMS[q] for each question q."""
    from distill.train.config import TrainConfig
    from distill.train.loop import LocalContext, train_loop
    from distill.train.students import get_student

    rows = [{"problem_id": f"p{i}", "stage": "solve", "source_text": q, "target_text": p}
            for i, (q, p) in enumerate(PROGRAMS.items())]
    cfg = TrainConfig.model_validate({
        "student": {"kind": "scratch", "preset": "tiny", "vocab_size": 300},
        "target": "pot", "epochs": epochs, "batch_size": 1, "lr": 3e-3,
        "log_every_steps": 1000, "seed": 0, "max_source_length": 48, "max_target_length": 32,
        "warmup_ratio": 0.0})
    texts = lambda: (t for r in rows for t in (r["source_text"], r["target_text"]))  # noqa: E731
    init = get_student("scratch").prepare(cfg.student, texts, out / "init", seed=0)
    ctx = LocalContext(out / "ckpt")
    train_loop(cfg, init, rows, ctx)
    return ctx.checkpoints[-1]
