"""Typed configuration of FLTT refinement (the ``refine:`` section of a pipeline config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distill.configbase import StrictModel

__all__ = ["RefineConfig"]


class RefineConfig(StrictModel):
    """FLTT refinement: the trained student (the *middle model*) decodes candidates for the
    training problems whose label is missing or doubtful; accepted candidates become labels
    and the student is trained again, for ``rounds`` rounds."""

    rounds: int = Field(2, ge=1, le=10, description="Refinement rounds (each: decode the "
                        "failure pool, accept, retrain, evaluate).")
    candidates: int = Field(10, ge=1, le=64, description="Candidates sampled per problem of "
                            "the failure pool (k).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the candidates.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the candidates.")
    min_votes: int = Field(1, ge=1, description="An accepted label must be sampled at least "
                           "this many times among the k candidates.")
    doubtful_matches: int | None = Field(
        None, ge=2, description="A search label is doubtful when the search found at least this "
        "many matching expressions (None: not used).")
    doubtful_margin: float | None = Field(
        0.5, ge=0, description="A search label is doubtful when the ranker's score of the best "
        "match beats the second's by less than this (None: not used).")
    doubtful_unused: bool = Field(True, description="A search label that leaves one of the "
                                  "problem's quantities unused is doubtful.")
    rescore: bool = Field(
        False, description="The middle model also ranks each problem's search matches (the "
        "search's correct rows, its current label among them) by its likelihood, and the "
        "most likely becomes the label (a hard-EM step); a label the sampling accepted stands.")
    rule: Literal["replace", "add"] = Field(
        "replace", description="What an accepted label does to a problem's label: replace it, "
        "or add a second training example beside it.")
    epochs: int | None = Field(None, ge=1, description="Epochs of each retraining (None: "
                               "train.epochs).")
    start: Literal["scratch", "last"] = Field(
        "scratch", description="Where each retraining starts: a fresh student (scratch) or the "
        "last student trained (last: fine-tuned with its tokenizer, so fewer epochs do; a tree "
        "student's new labels must use constants its tokenizer knows).")
