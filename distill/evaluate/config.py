"""Typed configuration of evaluation: how a trained student decodes (:class:`InferenceConfig`)
and the pipeline's ``evaluate`` section (:class:`EvaluateConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distill.configbase import StrictModel


class InferenceConfig(StrictModel):
    """How a trained student decodes: greedy, a beam search's best output, or k samples per
    problem for maj@k."""

    batch_size: int = Field(64, ge=1, description="Sources per generate() call.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens generated per output at most.")
    max_source_length: int = Field(256, ge=8, description="Source tokens kept (truncated).")
    num_samples: int = Field(1, ge=1, description="Outputs per source; >1 samples (maj@k).")
    num_beams: int = Field(1, ge=1, description="Beam search of this width, its most likely "
                           "output kept (1: greedy). Not with num_samples > 1.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature (num_samples > 1).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling (num_samples > 1).")
    seed: int = Field(0, description="Seed of sampling.")
    constrain_equations: bool = Field(
        True, description="Equation students (equation_prefix) decode under the equation "
        "grammar: every output is a well-formed expression over the problem's N0..Nk and "
        "numbers, ended once complete (no answer lost as 'unparsable').")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights' dtype when decoding: auto (bfloat16 on a CUDA device that "
        "supports it, else float32), float32, bfloat16, or float16 (CUDA only). The device is "
        "the one the process holds: the GPU Ray assigned to the actor, else the CPU.",
    )

    @model_validator(mode="after")
    def _beam_or_samples(self) -> "InferenceConfig":
        if self.num_beams > 1 and self.num_samples > 1:
            raise ValueError(f"num_beams ({self.num_beams}) and num_samples "
                             f"({self.num_samples}): decode by a beam or by samples, not both")
        return self


class EvaluateConfig(StrictModel):
    """The evaluation stage: which sets, how the student decodes, what to compare with."""

    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="Decoding: "
                                       "greedy (num_samples 1) or k samples voted (maj@k).")
    sets: list[str] | None = Field(None, description="Evaluation sets by label (name:split, as "
                                   "in data.eval); None: every one.")
    limit: int | None = Field(None, ge=1, description="First N problems of each set only.")
    batch_size: int = Field(64, ge=1, description="Problems per Ray Data batch.")
    compare_with: str | None = Field(None, description="An earlier report.json to compare with "
                                     "(its differences go into the report).")
