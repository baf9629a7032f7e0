"""Settings of the synthetic problem generator (dataset ``synthetic``): :class:`SyntheticConfig`.

The reader is whoever configures a run (the pipeline's ``data.synthetic`` section, the CLI,
benches, tests). Contract: a validated, strict (unknown keys rejected, assignments validated)
set of fields; a config that cannot describe a generation (``min_steps > max_steps``, unknown
template names, templates that cannot make the requested step counts, mismatched language
weights) is rejected here, not when generating. The same config and split always give the same
rows (:func:`distill.data.synthetic.generate`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distill.configbase import StrictModel
from distill.data.synthetic.templates import MAX_STEPS, TEMPLATES

__all__ = ["SyntheticConfig"]


class SyntheticConfig(StrictModel):
    """Settings of the synthetic problem generator (dataset ``synthetic``)."""

    seed: int = Field(0, description="Seed; each split derives its own stream from it.")
    n_train: int = Field(2000, ge=0, description="Problems in split 'train'.")
    n_valid: int = Field(200, ge=0, description="Problems in split 'valid'.")
    n_test: int = Field(200, ge=0, description="Problems in split 'test'.")
    langs: list[Literal["en", "zh"]] = Field(
        default_factory=lambda: ["en", "zh"], min_length=1, description="Languages to write in."
    )
    lang_weights: list[float] | None = Field(
        None,
        description="Share of each language in `langs` (same length, drawn at random); "
        "None alternates them round robin, so the mix is exact.",
    )
    min_steps: int = Field(
        1, ge=1, le=MAX_STEPS, description="Fewest operators in a gold equation."
    )
    max_steps: int = Field(
        MAX_STEPS, ge=1, le=MAX_STEPS, description="Most operators in a gold equation."
    )
    distractor_prob: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="Chance a problem carries a sentence with an irrelevant number.",
    )
    max_value: int = Field(
        100,
        ge=20,
        le=1_000_000,
        description="Largest number written in a question (percent signs aside).",
    )
    max_answer: int = Field(
        10_000, ge=100, description="Largest answer and intermediate result allowed."
    )
    integer_answers_only: bool = Field(
        True,
        description="Every intermediate result and the answer is an integer (learnable). False "
        "also allows a terminating decimal where it reads naturally: averages, speeds, prices.",
    )
    templates: list[str] | None = Field(
        None, description="Use only these templates (names as in `template_names()`); None: all."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "SyntheticConfig":
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) > max_steps ({self.max_steps})")
        if len(set(self.langs)) != len(self.langs):
            raise ValueError(f"langs has duplicates: {self.langs}")
        if self.lang_weights is not None:
            if len(self.lang_weights) != len(self.langs):
                raise ValueError("lang_weights must have one weight per entry of langs")
            if any(w < 0 for w in self.lang_weights) or sum(self.lang_weights) <= 0:
                raise ValueError("lang_weights must be non-negative with a positive sum")
        if self.templates is not None:
            unknown = sorted(set(self.templates) - set(TEMPLATES))
            if unknown:
                raise ValueError(f"unknown template(s) {unknown}; known: {', '.join(TEMPLATES)}")
            steps = {s for t in self.templates for s in TEMPLATES[t].steps}
            if not steps & set(range(self.min_steps, self.max_steps + 1)):
                raise ValueError(
                    f"templates {self.templates} cannot make "
                    f"{self.min_steps}..{self.max_steps} steps"
                )
        return self

    def size(self, split: str) -> int:
        return {"train": self.n_train, "valid": self.n_valid, "test": self.n_test}[split]
