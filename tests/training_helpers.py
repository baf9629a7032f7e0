"""Shared by the training tests: seeded synthetic equation problems, their SFT rows, and a
context that stops the loop after its first checkpoint (a killed run)."""

from __future__ import annotations

from distill.train.loop import LocalContext


def synthetic_problems(n: int = 48, split: str = "train") -> list[dict]:
    """``n`` one- and two-step English problems (seed 7, no distractors)."""
    from distill.data.synthetic import SyntheticConfig
    from distill.data.synthetic import generate as synth

    cfg = SyntheticConfig(seed=7, langs=["en"], max_steps=2, distractor_prob=0.0,
                          templates=["add_more", "take_away", "groups_of", "share_equally"])
    return synth(cfg, split, n=n)


def sft_rows(problems: list[dict]) -> list[dict]:
    """``equation_prefix`` SFT rows from the problems' masked gold equations."""
    from distill.sft.core import build_sft_examples, masked_gold_equations

    eqs, skipped = masked_gold_equations(problems)
    assert not skipped
    return build_sft_examples(problems, "equation_prefix", equations=eqs).rows


def texts_of(rows):
    """The ``texts`` callable a student kind's ``prepare`` / ``build`` takes."""
    return lambda: (t for r in rows for t in (r["source_text"], r["target_text"]))


class Killed(Exception):
    pass


class KilledAfterFirstCheckpoint(LocalContext):
    """A LocalContext whose run dies right after its first checkpoint is kept."""

    def report(self, metrics, checkpoint_dir=None, checkpoint_name=None):
        super().report(metrics, checkpoint_dir, checkpoint_name)
        if checkpoint_dir is not None:
            raise Killed
