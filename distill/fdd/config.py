"""Typed configuration of FDD rounds (the ``fdd:`` section of a pipeline config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distill.configbase import StrictModel

__all__ = ["FDDConfig"]


class FDDConfig(StrictModel):
    """Feedback-Driven Distillation rounds: the student answers every training problem (k
    samples); for the ones it fails, the teacher writes similar problems, labelled; they join
    the training data and the student is trained again, for ``rounds`` rounds."""

    rounds: int = Field(3, ge=1, le=10, description="FDD rounds (each: feedback, new problems, "
                        "retrain, evaluate).")
    samples: int = Field(4, ge=1, le=64, description="Samples per training problem for the "
                         "feedback (a problem is easy when their majority answer is right).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the feedback.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the feedback.")
    teacher: Literal["perturb"] = Field(
        "perturb", description="Who writes the new problems: 'perturb' (offline: the hard "
        "problem's quantities given new values of the same kind, the answer recomputed from its "
        "verified equation). LLM teachers (fdd_similar / fdd_harder) are not wired into the "
        "rounds yet.")
    variants: int = Field(2, ge=1, le=32, description="New problems per hard problem.")
    epochs: int | None = Field(None, ge=1, description="Epochs of each retraining (None: "
                               "train.epochs).")
    start: Literal["scratch", "last"] = Field(
        "scratch", description="Where each retraining starts: a fresh student (scratch) or the "
        "last student trained (last: fine-tuned with its tokenizer, so fewer epochs do; a tree "
        "student's new labels must use constants its tokenizer knows).")
