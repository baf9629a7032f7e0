"""The one base class of every typed config section: unknown keys are errors (a misspelt key
fails loudly instead of silently keeping a default) and assignments are validated too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: ``extra="forbid"``, ``validate_assignment=True``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
