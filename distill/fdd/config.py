"""Typed configuration of FDD rounds (the ``fdd:`` section of a pipeline config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distill.configbase import StrictModel
from distill.generate.config import GenerateConfig

__all__ = ["FDDConfig", "LLMTeacherConfig"]


class LLMTeacherConfig(StrictModel):
    """``teacher: llm``: a language model (any generation engine: vllm, an OpenAI-compatible
    server, transformers) writes the round's new problems -- ``variants`` similar ones per hard
    problem (``fdd_similar``), ``harder`` harder ones per easy problem (``fdd_harder``) -- and
    labels them by self-consistency: it solves each one ``label_samples`` times
    (``label_strategy``; programs run in the sandbox), and the majority answer is kept when at
    least ``min_agreement`` of the samples give it. An equation student's label is then found
    the way the training data's were: the equation search over the new problem's quantities
    for that answer (the run's ``search`` section)."""

    generate: GenerateConfig = Field(..., description="Engine, model and sampling of the "
                                     "teacher (its `strategy` and `samples` are set by the "
                                     "round: fdd_similar / fdd_harder, then label_strategy).")
    harder: int = Field(1, ge=0, le=32, description="Harder variants written per easy problem "
                        "(fdd_harder); 0: none.")
    label_strategy: Literal["pot", "cot"] = Field(
        "pot", description="How the teacher solves a new problem for its label: a program "
        "(run in the sandbox) or a chain of thought.")
    label_samples: int = Field(5, ge=1, le=64, description="Solutions sampled per new problem.")
    label_temperature: float = Field(0.7, gt=0, le=2, description="Their sampling temperature.")
    min_agreement: float = Field(0.6, gt=0, le=1, description="Share of the label samples that "
                                 "must give the majority answer for the problem to be kept.")


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
    teacher: Literal["perturb", "llm"] = Field(
        "perturb", description="Who writes the new problems: 'perturb' (offline: the hard "
        "problem's quantities given new values of the same kind, the answer recomputed from its "
        "verified equation) or 'llm' (the `llm` section: a language model writes similar and "
        "harder problems and labels them by self-consistency).")
    llm: LLMTeacherConfig | None = Field(None, description="The language-model teacher "
                                         "(teacher 'llm').")
    variants: int = Field(2, ge=1, le=32, description="New problems per hard problem.")
    epochs: int | None = Field(None, ge=1, description="Epochs of each retraining (None: "
                               "train.epochs).")
    start: Literal["scratch", "last"] = Field(
        "scratch", description="Where each retraining starts: a fresh student (scratch) or the "
        "last student trained (last: fine-tuned with its tokenizer, so fewer epochs do; a tree "
        "student's new labels must use constants its tokenizer knows).")

    @model_validator(mode="after")
    def _teacher_section(self) -> FDDConfig:
        if self.teacher == "llm" and self.llm is None:
            raise ValueError("fdd: teacher 'llm' needs an `llm` section (generate: engine, "
                             "model, sampling)")
        if self.teacher == "perturb" and self.llm is not None:
            raise ValueError("fdd: an `llm` section is given but teacher is 'perturb' (set "
                             "teacher: llm, or remove the section)")
        return self
