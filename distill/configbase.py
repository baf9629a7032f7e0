"""The one base class of every typed config section -- unknown keys are errors (a misspelt key
fails loudly instead of silently keeping a default) and assignments are validated too -- and
:class:`ConfigError`, the error a bad configuration file or value raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: ``extra="forbid"``, ``validate_assignment=True``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names file and key."""
