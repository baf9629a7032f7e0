"""Building the Serve application: runs -> one gateway + one deployment per student.

* :func:`build` -- student specs + a :class:`ServeConfig` -> a bound ``Application``
  (what ``mathdistill serve`` runs).
* :func:`build_app` -- the builder a Serve config file names (``import_path:
  serve.app:build_app``): its ``args`` are :class:`AppArgs` (``runs``: run directories or
  checkpoints, optionally ``NAME=PATH``; ``serve``: a ServeConfig section, or ``config``: a
  YAML file holding one). Relative paths are read from the directory the builder runs in.
* :func:`serve_config_for` -- the ServeConfig a set of runs is served with: ``--config`` file,
  else the first run's own ``serve:`` section, else the defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from pydantic import Field, model_validator

from distill.configbase import ConfigError, StrictModel
from serve.config import ServeConfig
from serve.solver import StudentSpec, first_run_config, resolve_student

__all__ = ["AppArgs", "build", "build_app", "on_a_cluster", "read_serve_config",
           "serve_config_for", "specs_for"]


class AppArgs(StrictModel):
    """``args`` of the Serve config file's application."""

    runs: list[str] = Field(..., min_length=1, description="Run directories or checkpoint "
                            "folders to serve (NAME=PATH names the model).")
    serve: ServeConfig | None = Field(None, description="The serving section, inline.")
    config: str | None = Field(None, description="A YAML file with the serving section (its "
                               "top level, or its 'serve:' key).")
    on_a_cluster: bool = Field(False, description="The replicas run on a cluster's nodes: a "
                               "program student's sandbox left at isolation 'auto' must "
                               "isolate (it refuses to start rather than run programs "
                               "unisolated). The KubeRay RayService sets it.")

    @model_validator(mode="after")
    def _one_source(self) -> "AppArgs":
        if self.serve is not None and self.config is not None:
            raise ValueError("give the serving section inline (serve) or as a file (config), "
                             "not both")
        return self


def read_serve_config(path: str | Path, pipeline: bool = False) -> ServeConfig:
    """A ServeConfig from a YAML file: its ``serve:`` key when present (a pipeline config),
    else the whole file; with ``pipeline`` (a run's config.yaml) only the ``serve:`` key, the
    defaults when it has none."""
    import yaml

    from distill.storage import run_location

    path = run_location(path)  # a run's config.yaml may sit on an object store
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    section = data.get("serve") if (pipeline or "serve" in data) else data
    try:
        return ServeConfig.model_validate(section or {})
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def serve_config_for(runs: Sequence[str], config_file: str | Path | None = None) -> ServeConfig:
    if config_file is not None:
        return read_serve_config(config_file)
    run_config = first_run_config(runs)
    return read_serve_config(run_config, pipeline=True) if run_config else ServeConfig()


def specs_for(runs: Sequence[str]) -> list[StudentSpec]:
    """One spec per run; two runs under one model name are refused."""
    specs = [resolve_student(r) for r in runs]
    seen: dict[str, str] = {}
    for s in specs:
        if s.name in seen:
            raise ConfigError(f"two students are named {s.name!r} ({seen[s.name]} and "
                              f"{s.source}); name them with NAME=PATH")
        seen[s.name] = s.source
    return specs


def on_a_cluster(specs: Sequence[StudentSpec], config: ServeConfig
                 ) -> tuple[list[StudentSpec], ServeConfig]:
    """The students and the serving config for replicas on nodes nobody watches: each
    student's sandbox (the serving section's, else its run's) made to isolate
    (:meth:`~distill.sandbox.SandboxConfig.on_a_cluster`)."""
    from distill.sandbox import SandboxConfig

    def isolating(sandbox: dict[str, Any] | None) -> dict[str, Any]:
        return SandboxConfig.model_validate(sandbox or {}).on_a_cluster().model_dump(mode="json")

    return ([dataclasses.replace(s, sandbox=isolating(s.sandbox)) for s in specs],
            config.model_copy(update={"sandbox": config.sandbox.on_a_cluster()})
            if config.sandbox is not None else config)


def build(specs: Sequence[StudentSpec], config: ServeConfig):
    """The application: a gateway bound to one student deployment per spec."""
    from serve.deployments import Gateway, StudentServer

    body = config.model_dump(mode="json")
    students = {
        spec.name: StudentServer.options(
            **config.student_deployment_options(f"student-{i}")).bind(spec.to_json(), body)
        for i, spec in enumerate(specs)
    }
    return Gateway.options(**config.gateway_deployment_options()).bind(students, body)


def build_app(args: dict[str, Any]):
    """The builder for ``serve run`` / ``serve deploy`` (``import_path: serve.app:build_app``)."""
    parsed = AppArgs.model_validate(args)
    config = parsed.serve or serve_config_for(parsed.runs, parsed.config)
    specs = specs_for(parsed.runs)
    if parsed.on_a_cluster:
        specs, config = on_a_cluster(specs, config)
    return build(specs, config)
