"""A strict check of a Serve config file (what ``serve run FILE`` / ``serve deploy FILE`` read).

Ray's :class:`ray.serve.schema.ServeDeploySchema` accepts unknown keys at several levels for
forward compatibility, so ``target_ongoing_request`` (a missing ``s``) would silently do
nothing. :func:`check_serve_file` validates the file with Ray's schema and then walks it: every
key must be a field of the schema at that level (top level, ``http_options``, each application,
each deployment, ``autoscaling_config``, ``ray_actor_options``), and the ``args`` of an
application built by :func:`serve.app.build_app` must be valid :class:`serve.app.AppArgs`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable

__all__ = ["check_serve_config", "check_serve_file"]

#: The import path of this repository's builder.
BUILDER = "serve.app:build_app"

def _unknown(keys: Iterable[str], known: Iterable[str], where: str) -> list[str]:
    known = set(known)
    out = []
    for k in keys:
        if k not in known:
            hint = difflib.get_close_matches(k, sorted(known), n=1)
            out.append(f"{where}: unknown key {k!r}" + (f" (did you mean {hint[0]!r}?)"
                                                         if hint else ""))
    return out


def check_serve_config(data: Any) -> list[str]:
    """Problems found in a parsed Serve config (an empty list when it is sound)."""
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (DeploymentSchema, HTTPOptionsSchema, RayActorOptionsSchema,
                                  ServeApplicationSchema, ServeDeploySchema)

    from serve.app import AppArgs

    if not isinstance(data, dict):
        return ["the file must hold a mapping"]
    problems = _unknown(data, ServeDeploySchema.model_fields, "top level")
    try:
        ServeDeploySchema.model_validate(data)
    except ValidationError as e:
        problems += [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    http = data.get("http_options") or {}
    if isinstance(http, dict):
        problems += _unknown(http, HTTPOptionsSchema.model_fields, "http_options")
    apps = data.get("applications") or []
    for i, app in enumerate(apps if isinstance(apps, list) else []):
        if not isinstance(app, dict):
            continue
        where = f"applications[{i}]"
        problems += _unknown(app, ServeApplicationSchema.model_fields, where)
        for j, dep in enumerate(app.get("deployments") or []):
            if not isinstance(dep, dict):
                continue
            dwhere = f"{where}.deployments[{j}]"
            problems += _unknown(dep, DeploymentSchema.model_fields, dwhere)
            auto = dep.get("autoscaling_config")
            if isinstance(auto, dict):
                problems += _unknown(auto, AutoscalingConfig.model_fields,
                                     f"{dwhere}.autoscaling_config")
            actor = dep.get("ray_actor_options")
            if isinstance(actor, dict):
                problems += _unknown(actor, RayActorOptionsSchema.model_fields,
                                     f"{dwhere}.ray_actor_options")
        if app.get("import_path") == BUILDER:
            try:
                AppArgs.model_validate(app.get("args") or {})
            except ValidationError as e:
                problems += [f"{where}.args.{'.'.join(map(str, err['loc']))}: {err['msg']}"
                             for err in e.errors()]
    return problems


def check_serve_file(path: str | Path) -> list[str]:
    """Problems found in a Serve config file (read errors included)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        return [str(e)]
    return check_serve_config(data)
