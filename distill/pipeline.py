"""A whole run: stages in order into ``runs/<name>/``, recorded in ``manifest.json``.

The stages that exist today: ``data`` (load, decontaminate, write Parquet). Search/generate,
verify, train and evaluate join this list as they land. Each stage's entry in the manifest
holds its status, the hash of the config section it ran with, its counts and its timing; a
stage whose output is complete for the same config hash is skipped on a re-run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from distill.config import PipelineConfig, dump_config

MANIFEST = "manifest.json"


def code_version() -> str:
    """The git commit of the code (with '+dirty' for local changes), else the package version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here, capture_output=True, text=True, timeout=5,
            )
            return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mathdistill")
    except PackageNotFoundError:
        return "unknown"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def _write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = run_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    tmp.replace(run_dir / MANIFEST)  # atomic: a kill never leaves half a manifest


def _data_stage(config: PipelineConfig, out: Path) -> dict[str, Any]:
    from distill.data.stage import prepare_data, write_data_stage

    return write_data_stage(prepare_data(config.data), out)


# (stage name, config section it depends on, function(config, out_dir) -> counts)
STAGES: list[tuple[str, Callable[[PipelineConfig], Any], Callable[[PipelineConfig, Path], dict]]] = [
    ("data", lambda c: c.data.model_dump(mode="json"), _data_stage),
]


def init_ray(config: PipelineConfig) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(**config.ray.init_kwargs(), log_to_driver=False)


def run_pipeline(
    config: PipelineConfig, run_dir: str | Path | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every stage not already complete for this config; returns the manifest."""
    run_dir = Path(run_dir) if run_dir else config.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    manifest = _read_manifest(run_dir)
    manifest.update(
        {"name": config.name, "config": config.model_dump(mode="json"), "code_version": code_version()}
    )
    stages = manifest.setdefault("stages", {})
    init_ray(config)
    for name, section, fn in STAGES:
        key = _hash(section(config))
        prev = stages.get(name, {})
        if prev.get("status") == "complete" and prev.get("config_hash") == key:
            log(f"[{name}] complete for this config, skipped")
            continue
        log(f"[{name}] running")
        stages[name] = {"status": "running", "config_hash": key, "started": time.time()}
        _write_manifest(run_dir, manifest)
        t0 = time.perf_counter()
        counts = fn(config, run_dir / name)
        stages[name].update(
            {"status": "complete", "seconds": round(time.perf_counter() - t0, 3), "counts": counts}
        )
        _write_manifest(run_dir, manifest)
        log(f"[{name}] complete in {stages[name]['seconds']} s")
    return manifest
