"""Typed configuration of the SFT stage (the pipeline's ``sft`` section)."""

from __future__ import annotations

from pydantic import Field

from distill.configbase import StrictModel


class SFTConfig(StrictModel):
    """Building the SFT examples from the teacher's output (or the gold equations)."""

    max_per_problem: int | None = Field(
        1, ge=1, description="Training examples per problem at most: the best-ranked search "
        "match or the first correct rationales (None: every distinct correct one).")
