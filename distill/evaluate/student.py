"""Which trained student a path names: a run directory or a checkpoint folder.

Used by ``mathdistill evaluate`` (a student on any dataset) and by serving (``serve/``), so
that both read a run the same way: its train stage's final checkpoint, its training target, its
evaluation's decoding settings and its sandbox limits.

* :func:`resolve_student` -- a run directory or a checkpoint folder (optionally ``NAME=PATH``)
  -> :class:`StudentSpec`.
* :func:`run_config_file` / :func:`first_run_config` -- the ``config.yaml`` of a run directory.

Importable without Ray, torch or transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from distill.configbase import ConfigError
from distill.evaluate.config import InferenceConfig
from distill.storage import is_uri, run_location

__all__ = ["StudentSpec", "first_run_config", "resolve_student", "run_config_file",
           "split_name"]


@dataclass(frozen=True)
class StudentSpec:
    """One trained student: everything needed to load it and read its outputs (JSON-able)."""

    name: str
    checkpoint: str
    target: str
    inference: dict[str, Any] = field(default_factory=dict)  # InferenceConfig fields
    sandbox: dict[str, Any] | None = None  # SandboxConfig fields (program students)
    source: str = ""  # the path the user gave
    run_dir: str | None = None  # the run directory it was trained in, when known

    def inference_config(self) -> InferenceConfig:
        return InferenceConfig.model_validate(self.inference)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudentSpec":
        return cls(**data)


def _run_sections(run_dir: Path) -> dict[str, Any]:
    """What serving reads of a run's config.yaml (a full dump of the run's resolved config):
    its name, the training target, the evaluation's decoding and the sandbox limits, each
    validated by its own section's model."""
    import yaml

    from distill.evaluate.config import EvaluateConfig
    from distill.sandbox.config import SandboxConfig
    from distill.train.config import TrainConfig

    config_file = run_dir / "config.yaml"
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        return {"name": data.get("name"),
                "target": TrainConfig.model_validate(data.get("train") or {}).target,
                "inference": EvaluateConfig.model_validate(
                    data.get("evaluate") or {}).inference.model_dump(mode="json"),
                "sandbox": SandboxConfig.model_validate(
                    data.get("sandbox") or {}).model_dump(mode="json")}
    except FileNotFoundError:
        raise ConfigError(f"{run_dir}: a run directory needs its config.yaml (missing)") from None
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{config_file}: {e}") from None


def split_name(location: str | Path) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); a path (even one holding '=') -> (None, path)."""
    text = str(location)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        return name, path
    return None, text


def run_config_file(location: str | Path) -> Path | None:
    """The config.yaml of the run directory ``location`` (``NAME=PATH`` allowed) names, or None
    when it is not a run directory."""
    path = run_location(split_name(location)[1])
    if (path / "manifest.json").is_file() and (path / "config.yaml").is_file():
        return path / "config.yaml"
    return None


def first_run_config(locations: Sequence[str | Path]) -> Path | None:
    """The config.yaml of the first run directory among ``locations`` (whose ``serve:``,
    ``sandbox:`` and ``ray:`` sections a serving command takes), or None."""
    return next((f for f in map(run_config_file, locations) if f is not None), None)


def resolve_student(location: str | Path, name: str | None = None) -> StudentSpec:
    """The student a path names: a run directory (its train stage's final checkpoint, read
    as its config's ``train.target``, decoded with its ``evaluate.inference`` settings) or a
    checkpoint folder (its target from ``trainer_state.json``, or from the run it sits in).
    ``NAME=PATH`` names the model; otherwise the run's name (a bare checkpoint: its folder name).
    Raises :class:`ConfigError` naming the path when it is neither, or has no known target."""
    from distill.train.stage import final_student
    from distill.train.students import is_student_dir

    given, text = split_name(location)
    if given == "":
        raise ConfigError(f"{location!r}: empty model name before '='")
    name = name or given
    path = run_location(text) if is_uri(text) else Path(text).expanduser().resolve()
    if not path.exists():
        raise ConfigError(f"{text}: no such run directory or checkpoint folder")
    run: Path | None = None
    if (path / "manifest.json").is_file():
        run = path
        try:
            checkpoint = final_student(path)
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    elif is_student_dir(path):
        checkpoint = path
        # the run it was trained in, when it sits in one (RUN/train/student/epoch_N)
        above = path.parent.parent.parent  # the root (a bucket) is its own parent
        run = above if run_config_file(above) else None
    else:
        raise ConfigError(f"{text}: neither a run directory (no manifest.json) nor a student "
                          "checkpoint (no config.json and tokenizer_config.json)")
    target = None
    state = checkpoint / "trainer_state.json"
    if state.is_file():
        target = json.loads(state.read_text(encoding="utf-8")).get("target")
    inference: dict[str, Any] = {}
    sandbox: dict[str, Any] | None = None
    if run is not None:
        sections = _run_sections(run)
        target = target or sections["target"]
        inference, sandbox = sections["inference"], sections["sandbox"]
        name = name or sections["name"]
    if target is None:
        raise ConfigError(f"{text}: the checkpoint does not record its training target "
                          "(trainer_state.json has no 'target') and is not inside a run "
                          "directory; serve the run directory instead")
    from distill.evaluate.infer import TARGETS_EVALUATED

    if target not in TARGETS_EVALUATED:
        raise ConfigError(f"{text}: target {target!r} cannot be evaluated or served; targets: "
                          f"{', '.join(TARGETS_EVALUATED)}")
    return StudentSpec(name=name or path.name, checkpoint=str(checkpoint), target=target,
                       inference=inference, sandbox=sandbox, source=str(location),
                       run_dir=str(run) if run is not None else None)
