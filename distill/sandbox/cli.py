"""``mathdistill sandbox``: run one program file, or show which isolation layers are active.

The lead mounts this sub-app with ``app.add_typer(sandbox_app, name="sandbox")``.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import typer

from distill.sandbox.config import SandboxConfig
from distill.sandbox.pool import SandboxError, SandboxPool, SandboxWarning
from distill.sandbox.sizing import pool_size

sandbox_app = typer.Typer(
    help="Run untrusted programs in the sandbox; show the isolation layers in force.",
    no_args_is_help=True,
)

IsolationOpt = typer.Option(
    "auto", "--isolation", help="auto (strongest that works), bwrap, unshare or none."
)


def _probes(outside: Path) -> list[tuple[str, str, str]]:
    """Small programs that try to get out; ``check`` runs them with the AST check off, so what
    stops them is the OS layers. (name, program, what "held" means)."""
    target = str(outside / "probe")
    return [
        ("write outside scratch", f"open({target!r}, 'w').write('x')\nans = 1", "no file"),
        ("open a socket",
         "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 22))\nans = 1", "fails"),
        ("start a process", "import os\nans = os.system('true')\nassert ans == 0", "fails"),
        ("read host environment",
         ("import os\nans = len([k for k in os.environ if k not in "
          "('HOME', 'TMPDIR', 'LANG', 'PATH')])"), "answer 0"),
        # non-destructive: files are opened for writing, never written; the worker's limit is
        # set to the value it already has
        ("open a host kernel setting (/proc/sys) for writing",
         "import os\nans = 0\nfor d, _, fs in os.walk('/proc/sys'):\n    for f in fs:\n"
         "        try:\n            os.close(os.open(os.path.join(d, f), os.O_WRONLY))\n"
         "            ans += 1\n        except OSError:\n            pass", "answer 0"),
        ("change the worker's limits",
         "import os, resource\np = os.getppid()\ntry:\n"
         "    resource.prlimit(p, resource.RLIMIT_NOFILE, resource.prlimit(p, resource.RLIMIT_NOFILE))\n"
         "    ans = 1\nexcept OSError:\n    ans = 0", "answer 0"),
    ]


def _config(timeout: float | None, memory_mb: int | None, isolation: str, ast_check: bool,
            workers: int = 1) -> SandboxConfig:
    kw: dict = {"isolation": isolation, "ast_check": ast_check, "workers": workers,
                "light_workers": False}
    if timeout is not None:
        kw["timeout_s"] = timeout
    if memory_mb is not None:
        kw["memory_mb"] = memory_mb
    try:
        return SandboxConfig(**kw)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _start(cfg: SandboxConfig) -> SandboxPool:
    pool = SandboxPool(cfg)
    pool_log = logging.getLogger("distill.sandbox.pool")
    level = pool_log.level
    with warnings.catch_warnings():
        # the commands print the warnings themselves, once
        warnings.simplefilter("ignore", SandboxWarning)
        pool_log.setLevel(logging.ERROR)
        try:
            pool.start()
        except SandboxError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        finally:
            pool_log.setLevel(level)
    return pool


def _print_warnings(pool: SandboxPool) -> None:
    for w in pool.report.warnings:
        typer.secho(f"WARNING: {w}", fg=typer.colors.RED, bold=True, err=True)


@sandbox_app.command("run")
def run(
    file: Path = typer.Argument(..., help="Python file to run ('-' reads standard input)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    timeout: float | None = typer.Option(None, "--timeout", help="Wall-clock limit, s (default 5)."),
    memory_mb: int | None = typer.Option(None, "--memory-mb", help="Memory limit, MiB (default 512)."),
    isolation: str = IsolationOpt,
    ast_check: bool = typer.Option(True, "--ast-check/--no-ast-check",
                                   help="Vet imports and names before running."),
) -> None:
    """Run FILE in the sandbox and print its answer (exit 1 when it gives none)."""
    if str(file) == "-":
        code = sys.stdin.read()
    else:
        try:
            code = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            typer.echo(f"error: cannot read {file}: {e}", err=True)
            raise typer.Exit(2) from None
    pool = _start(_config(timeout, memory_mb, isolation, ast_check))
    try:
        report = pool.report
        _print_warnings(pool)
        result = pool.run(code)
    finally:
        pool.close()
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "isolation": report.mode}, ensure_ascii=False))
    else:
        if result.stdout:
            typer.echo(result.stdout.rstrip("\n"))
            typer.echo("---")
        if result.ok:
            typer.echo(f"answer: {result.answer}  (from {result.source}, {result.duration_s * 1000:.1f} ms)")
        else:
            typer.echo(f"error: {result.error}: {result.detail}")
    raise typer.Exit(0 if result.ok else 1)


@sandbox_app.command("check")
def check(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    isolation: str = IsolationOpt,
) -> None:
    """Start one worker, print the isolation layers in force and try a few escapes; say how
    many workers a pool with ``workers`` auto would start in this process, and why."""
    auto = pool_size(None)
    pool = _start(_config(None, None, isolation, ast_check=False))
    with tempfile.TemporaryDirectory(prefix="mathdistill-check-") as outside:
        specs = _probes(Path(outside))
        try:
            report = pool.report
            results = pool.run_many([code for _, code, _ in specs], timeout_s=5.0)
        finally:
            pool.close()
        probes = []
        for (name, _, held_when), res in zip(specs, results):
            if held_when == "answer 0":
                held = res.answer == "0"
            elif held_when == "no file":
                held = not (Path(outside) / "probe").exists()
            else:
                held = not res.ok
            probes.append({"probe": name, "held": held, "error": res.error, "detail": res.detail})
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "probes": probes,
                               "auto_workers": {"workers": auto.workers, "source": auto.source,
                                                "reason": auto.reason}}, ensure_ascii=False))
    else:
        typer.echo(f"isolation: {report.mode}")
        typer.echo(f"workers: {report.workers} of each kind ({', '.join(report.kinds)}) in this "
                   f"check ({report.workers_reason}); a pool with workers=auto here: "
                   f"{auto.workers} of each kind ({auto.reason})")
        for name, why in report.skipped.items():
            typer.echo(f"  (skipped {name}: {why})")
        typer.echo("active layers:")
        for layer in report.layers:
            typer.echo(f"  - {layer}")
        typer.echo("  - ast check: import allow-list, no eval/exec/open/dunders (on by default; "
                   "off for the probes below)")
        typer.echo("escape probes (AST check off, so the OS layers answer):")
        for p in probes:
            mark = "held" if p["held"] else "NOT HELD"
            typer.echo(f"  - {p['probe']}: {mark} ({p['error']}: {p['detail']})")
    for w in report.warnings:
        typer.secho(f"WARNING: {w}", fg=typer.colors.RED, bold=True, err=True)
    if not all(p["held"] for p in probes) and report.mode != "none":
        raise typer.Exit(1)
