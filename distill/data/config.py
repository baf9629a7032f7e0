"""Typed configuration of the data stage (the pipeline's ``data`` section): which dataset
splits to train and evaluate on (:class:`DataSource`), the synthetic generator, decontamination
and the constants an equation may use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distill.configbase import StrictModel
from distill.data.synthetic import SyntheticConfig
from distill.equations import DEFAULT_CONSTANTS


#: Where a registered dataset is read from: its files under the data dir, or its Hub copy.
Origin = Literal["local", "hub"]


class DataSource(StrictModel):
    """One dataset split to load: a registered dataset (from its files, or from its Hugging
    Face Hub copy), or a user's file with a column map."""

    name: str = Field(..., description="Registered dataset name (see `mathdistill data list`).")
    split: str = Field("all", description="Split name: train, valid, test, all, ...")
    limit: int | None = Field(None, ge=1, description="Keep the first N problems only.")
    path: str | None = Field(
        None, description="A jsonl/csv/parquet file to load instead of a registered dataset."
    )
    columns: dict[str, str] | None = Field(
        None, description="For `path`: row field -> file column, e.g. {question: q, answer: a}."
    )
    lang: Literal["en", "zh"] | None = Field(None, description="Override language detection.")
    source: Origin = Field(
        "local",
        description="Where a registered dataset is read from: local (its files under the data "
        "dir) or hub (its usual Hugging Face Hub repository via `datasets`, same rows; "
        "`mathdistill data list` shows which datasets have one).",
    )
    revision: str | None = Field(
        None, description="For source hub: a Hub commit sha, tag or branch (default: the "
        "repository's default branch).",
    )

    @model_validator(mode="after")
    def _hub_is_a_registered_dataset(self) -> "DataSource":
        if self.source == "hub" and self.path is not None:
            raise ValueError("source: hub reads a registered dataset from the Hugging Face Hub; "
                             "it cannot be combined with path: (a local file)")
        if self.revision is not None and self.source != "hub":
            raise ValueError("revision: applies to source: hub only")
        return self

    @field_validator("name", "split")
    @classmethod
    def _non_empty(cls, v: str, info: Any) -> str:
        if not v or not v.strip():
            raise ValueError(f"{info.field_name} must be a non-empty string (got {v!r})")
        return v

    @property
    def label(self) -> str:
        return f"{self.name}:{self.split}"


class DataConfig(StrictModel):
    """The data stage: which problems to train on and to evaluate on."""

    data_dir: str | None = Field(
        None, description="Folder of dataset files; default $MATHDISTILL_DATA_DIR, then ./data."
    )
    train: list[DataSource] = Field(default_factory=list, description="Training problems.")
    eval: list[DataSource] = Field(default_factory=list, description="Evaluation problems.")
    synthetic: SyntheticConfig = Field(
        default_factory=SyntheticConfig, description="Generator settings for dataset 'synthetic'."
    )
    decontaminate: bool = Field(
        True, description="Drop training problems whose normalized text matches an eval problem."
    )
    constants: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONSTANTS),
        description="Numbers an equation may use without finding them in the problem text.",
    )

    @field_validator("constants")
    @classmethod
    def _numeric_constants(cls, v: list[str]) -> list[str]:
        from distill.quantities import numeric_texts

        return numeric_texts(v)
