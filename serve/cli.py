"""``mathdistill serve``: trained students behind HTTP until Ctrl-C / SIGTERM, and
``mathdistill serve-check``: a Serve config file checked before ``serve run`` / ``serve deploy``.

Mounted by :mod:`distill.cli`; imports only typer and the configs at module level (Ray when a
command runs).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import List, Optional

import typer

from distill.cli_common import RAY_HELP, fail, field_help, init_ray, load_stage_configs
from serve.config import ServeConfig

__all__ = ["serve_command", "serve_check_command", "APP_NAME"]

#: The Serve application's name (``serve status``, the dashboard's Serve tab).
APP_NAME = "mathdistill"


def _replicas(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    fail(f"--replicas: a number >= 1 or 'auto' (got {value!r})")


def starts_local_ray(address: str | None, environ: dict | os._Environ) -> bool:
    """Whether Ray started for this command is a local cluster of its own (stopped with it),
    rather than a cluster it joins (an address, or RAY_ADDRESS), which it leaves running."""
    return address in (None, "local") and not environ.get("RAY_ADDRESS")


def serve_command(
    runs: List[str] = typer.Argument(..., help="Run directories (their final student) or "
                                     "checkpoint folders; NAME=PATH names the model."),
    host: Optional[str] = typer.Option(None, help=field_help(ServeConfig, "host", "serve.")),
    port: Optional[int] = typer.Option(None, help=field_help(ServeConfig, "port", "serve.")),
    replicas: Optional[str] = typer.Option(None, help=field_help(ServeConfig, "replicas",
                                                                   "serve.")),
    config: Optional[Path] = typer.Option(None, "--config", help="A YAML file with the serve "
                                          "section (a pipeline config, or only serve's keys). "
                                          "Default: the first run's config.yaml."),
    ray: Optional[Path] = typer.Option(None, "--ray", help=RAY_HELP),
) -> None:
    """Serve trained students over HTTP (Ray Serve) until Ctrl-C or SIGTERM."""
    from distill.configbase import ConfigError
    from serve.app import build, on_a_cluster, specs_for
    from serve.solver import first_run_config

    options = {"host": host, "port": port, "replicas": _replicas(replicas)}
    configs = load_stage_configs(config or first_run_config(runs), ray, "serve", ServeConfig,
                                 options)
    cfg = configs.stage
    try:
        specs = specs_for(runs)
    except ConfigError as e:
        fail(str(e))
    if configs.ray.joins_a_cluster():  # programs never run unisolated on a cluster's nodes
        specs, cfg = on_a_cluster(specs, cfg)
    import ray as ray_module
    from ray import serve

    started_ray = not ray_module.is_initialized() and starts_local_ray(configs.ray.address,
                                                                      os.environ)
    init_ray(configs.ray)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options=cfg.http_options())
        try:
            serve.run(build(specs, cfg), name=APP_NAME, route_prefix=cfg.route_prefix,
                      blocking=False)
        except RuntimeError as e:  # a replica failed to start: say why, without our traceback
            fail(f"{e}\n{_deployment_errors()}")
        typer.echo(f"serving at {cfg.url()}")
        for s in specs:
            typer.echo(f"  model {s.name}: {s.target} student, {s.checkpoint}")
        typer.echo(f"routes: {cfg.url()}/v1/solve, /v1/solve/batch, /v1/chat/completions, "
                   "/v1/completions, /v1/models, /healthz  (Ctrl-C stops)")
        while not stop.wait(0.5):
            pass
        typer.echo("stopping")
    finally:
        try:  # on a cluster we joined, only our application goes; Serve and Ray stay up
            serve.shutdown() if started_ray else serve.delete(APP_NAME)
        finally:
            if started_ray:
                ray_module.shutdown()


def _deployment_errors() -> str:
    """The last lines of each failed deployment's message (Serve keeps the replica's error)."""
    from ray import serve

    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return ""
    lines = []
    for name, dep in (app.deployments.items() if app else ()):
        if dep.message and str(dep.status).endswith(("UNHEALTHY", "DEPLOY_FAILED")):
            tail = [ln for ln in dep.message.strip().splitlines() if ln.strip()][-3:]
            lines.append(f"{name}: " + "\n  ".join(tail))
    return "\n".join(lines)


def serve_check_command(
    files: List[Path] = typer.Argument(..., help="Serve config files (serve/config.yaml)."),
) -> None:
    """Check Serve config files strictly: Ray's schema, every key known (Serve ignores a
    misspelled one), and mathdistill's application args."""
    from serve.schema_check import check_serve_file

    bad = 0
    for f in files:
        problems = check_serve_file(f)
        for p in problems:
            typer.echo(f"{f}: {p}", err=True)
        if problems:
            bad += 1
        else:
            typer.echo(f"{f}: ok")
    if bad:
        raise typer.Exit(1)
