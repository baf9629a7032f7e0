"""What every `mathdistill` command shares: errors, ``--data`` handling, option help taken from
the config fields, and the configs a stage command runs with (``--config`` / ``--ray``).

distill.cli mounts the stage commands (distill.search.cli, distill.generate.cli); they and it
import this module, never each other. Its module-level imports are typer, pydantic,
distill.resources and distill.data.config (for ``Origin``; neither imports a stage) only
(distill.config, which imports every stage's config, is imported where it is used), so a
stage's CLI importing it makes no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from distill.data.config import Origin
from distill.resources import StageResources

if TYPE_CHECKING:
    from distill.config import DataSource, RayConfig
    from distill.sandbox.config import SandboxConfig

__all__ = [
    "CONFIG_HELP",
    "FILE_SUFFIXES",
    "Origin",
    "RAY_HELP",
    "StageConfigs",
    "fail",
    "field_help",
    "init_ray",
    "load_problems",
    "load_stage_configs",
    "parse_columns",
    "source",
]

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
CONFIG_HELP = ("Pipeline config YAML (what `mathdistill run` takes): its {section}, sandbox and "
               "ray sections are used; options given here override it. A file with only the "
               "keys of a {section} section is read as that section.")
RAY_HELP = ("Ray config YAML (like ray_config.yaml: address, resources per stage); replaces the "
            "ray section of the --config file.")
M = TypeVar("M", bound=BaseModel)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit 2 (the user's to fix)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def parse_columns(columns: str | None) -> dict[str, str] | None:
    if not columns:
        return None
    mapping = {}
    for pair in columns.split(","):
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            fail(f"--columns: expected field=column pairs, got {pair!r}")
        mapping[field.strip()] = column.strip()
    return mapping


def _is_file_name(name: str) -> bool:
    """Whether a NAME argument names a user's file rather than a registered dataset."""
    return name.endswith(FILE_SUFFIXES) or Path(name).is_file()


def source(name: str, split: str, limit: int | None, columns: str | None,
           origin: Origin = "local", revision: str | None = None) -> DataSource:
    """``--data NAME``: a registered dataset's split, or a jsonl/csv/parquet file.
    ``origin`` / ``revision`` (``--source`` / ``--revision``) are DataSource.source and
    .revision: ``hub`` reads a registered dataset from its Hugging Face Hub copy."""
    from distill.config import DataSource

    if origin == "hub" and _is_file_name(name):
        fail(f"--source hub reads a registered dataset from the Hugging Face Hub; {name!r} is a "
             "file (leave --source at local)")
    if revision is not None and origin != "hub":
        fail("--revision applies to --source hub only")
    if _is_file_name(name):
        return DataSource(
            name=Path(name).stem, split="all", limit=limit, path=name,
            columns=parse_columns(columns),
        )
    return DataSource(name=name, split=split, limit=limit, source=origin, revision=revision)


def load_problems(src: DataSource, data_dir: Path | None):
    """Load one source (a :class:`distill.data.stage.LoadResult`); errors exit 2."""
    from distill.config import ConfigError, DataConfig
    from distill.data.base import DataError
    from distill.data.stage import load_source

    try:
        return load_source(src, DataConfig(data_dir=str(data_dir) if data_dir else None))
    except (DataError, ConfigError) as e:
        fail(str(e))


def field_help(model: type[BaseModel], name: str, prefix: str = "") -> str:
    """An option's help from the config field it sets: its description and its default (both
    defined once, on the model). ``prefix`` names where the field lives, e.g. ``sampling.``."""
    info = model.model_fields[name]
    text = (info.description or "").strip()
    default = info.default
    if info.default_factory is None and default is not PydanticUndefined:
        shown = "none" if default is None else default
        text += f" (config: {prefix}{name}; default: {shown})"
    else:
        text += f" (config: {prefix}{name})"
    return text


def _source_option_help(name: str) -> str:
    from distill.config import DataSource

    return field_help(DataSource, name)


# --source / --revision of every command that takes --data (DataSource.source / .revision)
SourceOpt = typer.Option("local", "--source", help=_source_option_help("source"))
RevisionOpt = typer.Option(None, "--revision", help=_source_option_help("revision"))


@dataclass
class StageConfigs(Generic[M]):
    """What a stage command runs with: its own config section, the sandbox section (None: the
    default) and the Ray side."""

    stage: M
    sandbox: SandboxConfig | None
    ray: RayConfig

    def resources(self, stage: str) -> StageResources:
        """``ray.resources.<stage>`` (defaults when the Ray config has no entry for it)."""
        return self.ray.for_stage(stage)


def _is_pipeline_config(data: dict[str, Any], stage_model: type[BaseModel]) -> bool:
    from distill.config import PipelineConfig

    # a key of the pipeline's top level that the stage's own config does not have
    own = set(stage_model.model_fields)
    return any(k in PipelineConfig.model_fields and k not in own for k in data)


def load_stage_configs(config: Path | None, ray: Path | None, section: str,
                       stage_model: type[M], options: dict[str, Any] | None = None,
                       required: dict[str, str] | None = None) -> StageConfigs[M]:
    """The configs of a stage command from ``--config``, ``--ray`` and its options; errors
    exit 2.

    ``--config`` is a pipeline config YAML (what `mathdistill run` takes, read by the same
    loader; a ``ray: FILE`` in it is read relative to it): its ``section`` (``search`` /
    ``generate``) with ``options`` (the command line's, nested like the section) merged over
    it, its ``sandbox`` and its ``ray`` sections are used, validated as `run` validates them.
    A file holding only the section's own keys (a SearchConfig / GenerateConfig) is read as
    that section. ``--ray`` is a Ray config file (``ray_config.yaml``, read with the same
    loader); it replaces the pipeline's ``ray`` section. Without either: the section from the
    options alone and a local Ray. ``required``: section key -> the error when neither the
    file nor the options give it."""
    from distill.config import (
        ConfigError,
        RayConfig,
        _read_yaml,
        load_config,
        merge_mappings,
        validate_config,
    )
    from distill.storage import run_location

    options = {k: v for k, v in (options or {}).items() if v not in (None, {})}
    sandbox: SandboxConfig | None = None
    ray_cfg = RayConfig()
    try:
        raw = _read_yaml(run_location(config)) if config is not None else {}
        pipeline = config is not None and _is_pipeline_config(raw, stage_model)
        section_data = raw.get(section) if pipeline else raw
        merged = merge_mappings(section_data if isinstance(section_data, dict) else {}, options)
        for key, message in (required or {}).items():
            if key not in merged:
                fail(message)
        if pipeline:
            loaded = load_config(config, patch={section: options} if options else None)
            stage = getattr(loaded, section)
            sandbox, ray_cfg = loaded.sandbox, loaded.ray
        else:
            where = str(config) if config is not None else "options"
            stage = validate_config(merged, stage_model, where)
        if ray is not None:
            ray_cfg = load_config(ray, RayConfig)
    except ConfigError as e:
        fail(str(e))
    return StageConfigs(stage=stage, sandbox=sandbox, ray=ray_cfg)


def init_ray(ray_cfg: RayConfig) -> None:
    """Start or join Ray as the pipeline does (:meth:`RayConfig.init_ray`); a seam the stage
    commands call, so tests can stand in for it."""
    ray_cfg.init_ray()
