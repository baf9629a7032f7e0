"""Typed configuration: one pydantic model per stage, nested into :class:`PipelineConfig`.

YAML files are instances of these models (``load_config`` reads one, ``dump_config`` writes
one). Unknown keys are errors, so a typo never silently falls back to a default. A bad file
raises :class:`ConfigError` whose message names the file, the key path and what is wrong::

    configs/x.yaml: data.train[0].split: split must be a non-empty string (got '')

``ray_config.yaml`` (the Ray side: address, runtime_env for jobs, resources per stage) is read
through :class:`RayConfig`, either on its own or as the ``ray`` section of a pipeline config
(which may also name the file: ``ray: ray_config.yaml``).

Nothing here reads the environment at import time; the data folder is resolved when data is
loaded (see :func:`distill.data.resolve_data_dir`).
"""

from __future__ import annotations

import os
import re

from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from distill.configbase import ConfigError, StrictModel  # noqa: F401 - ConfigError re-exported
from distill.data.config import DataConfig, DataSource  # noqa: F401 - re-exported
from distill.evaluate.config import EvaluateConfig
from distill.fdd.config import FDDConfig
from distill.generate.config import GenerateConfig
from distill.refine.config import RefineConfig
from distill.resources import StageResources  # noqa: F401 - re-exported; defined there
from distill.sandbox.config import SandboxConfig
from distill.search.config import SearchConfig
from distill.sft.config import SFTConfig
from distill.train.config import TrainConfig
from serve.config import ServeConfig


# ----------------------------------------------------------------------------------- Ray side
class RayConfig(StrictModel):
    """How to reach Ray and what each stage may use. The embedded default is a local cluster."""

    address: str | None = Field(
        None,
        description="None or 'local' starts a local Ray; 'auto' joins the cluster this process "
        "runs on (the case under `ray job submit`); 'ray://host:10001' connects a client.",
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs a local Ray may use (ignored when joining a cluster)."
    )
    namespace: str = Field("mathdistill", description="Ray namespace for named actors.")
    runtime_env: dict[str, Any] = Field(
        default_factory=dict,
        description="Ray runtime_env for jobs: working_dir, pip, env_vars, excludes ...",
    )
    include_dashboard: bool | None = Field(None, description="Start the dashboard locally.")
    metrics_export_port: int | None = Field(
        None, ge=1, le=65535, description="The port where a local Ray exports its metrics "
        "(Prometheus text at /metrics: Ray's and mathdistill's); None: a free one. Ignored "
        "when joining a cluster (there `ray start --metrics-export-port` decides).")
    resources: dict[str, StageResources] = Field(
        default_factory=dict,
        description="Per-stage resources, keyed by stage name (data, search, generate, "
        "verify, train, evaluate, serve).",
    )

    def for_stage(self, stage: str) -> StageResources:
        return self.resources.get(stage, StageResources())

    def init_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ray.init``."""
        kwargs: dict[str, Any] = {"namespace": self.namespace, "ignore_reinit_error": True}
        if self.address not in (None, "local"):
            kwargs["address"] = self.address
        else:
            if self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            if self.metrics_export_port is not None:
                kwargs["_metrics_export_port"] = self.metrics_export_port
        if self.runtime_env and str(self.address).startswith("ray://"):
            # A Ray Client driver ships its environment itself; a job's comes from
            # `ray job submit --runtime-env-json` (see README), a local Ray needs none.
            kwargs["runtime_env"] = self.runtime_env
        if self.include_dashboard is not None:
            kwargs["include_dashboard"] = self.include_dashboard
        return kwargs

    def joins_a_cluster(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the driver joins an existing Ray cluster rather than starting a local one:
        ``address`` is set, or it runs under ``ray job submit`` (whose entry points always get
        ``RAY_ADDRESS``)."""
        environ = os.environ if environ is None else environ
        return self.address not in (None, "local") or bool(environ.get("RAY_ADDRESS"))

    def init_ray(self) -> None:
        """``ray.init(**init_kwargs())`` (driver logs off) unless Ray is already up in this
        process: the one way the pipeline and the stage commands start or join Ray."""
        import ray

        if not ray.is_initialized():
            ray.init(**self.init_kwargs(), log_to_driver=False)


# ------------------------------------------------------------------------------- the pipeline
class PipelineConfig(StrictModel):
    """A whole run: data -> teacher -> SFT examples -> train -> evaluate. Unknown keys are
    errors."""

    name: str = Field(..., description="Run name; the run directory is runs/<name> by default. "
                      "Letters, digits, '.', '_' and '-' only (no path separators, not '.' "
                      "or '..').")
    run_dir: str | None = Field(None, description="Where the run writes: a folder, a shared "
                                "mount or an object-store URI (s3://bucket/prefix, gs://…); "
                                "default $MATHDISTILL_RUNS/<name>, else runs/<name>.")
    seed: int = Field(0, description="Seed of the run: every stage's seed that the config does "
                      "not set itself (data.synthetic.seed, generate.sampling.seed, train.seed, "
                      "evaluate.inference.seed) takes this value.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray side, or a path to it.")
    data: DataConfig = Field(default_factory=DataConfig, description="The data stage.")
    teacher: Literal["search", "gold", "generate"] = Field(
        "search", description="Where the training signal comes from: 'search' (equation "
        "search over the quantities, from answers only), 'gold' (the dataset's own equations) "
        "or 'generate' (a teacher LLM's rationales, verified).")
    search: SearchConfig = Field(default_factory=SearchConfig, description="Equation search "
                                 "(teacher 'search').")
    generate: GenerateConfig | None = Field(None, description="Teacher generation (teacher "
                                            "'generate'): engine, model, strategy, samples.")
    sft: SFTConfig = Field(default_factory=SFTConfig, description="Building SFT examples.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Student training.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Evaluation "
                                     "of the trained student on data.eval.")
    refine: RefineConfig | None = Field(None, description="FLTT refinement rounds after the "
                                        "first evaluation (teacher search, equation_prefix "
                                        "students); None: no refinement.")
    fdd: FDDConfig | None = Field(None, description="FDD rounds after evaluation (and "
                                  "refinement): the student's failures drive new problems "
                                  "(equation_prefix students, labels from search or gold); "
                                  "None: no FDD rounds.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="How generated "
                                   "programs run (verification, evaluation, serving).")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving the trained "
                               "student over HTTP (mathdistill serve RUN_DIR).")

    @model_validator(mode="before")
    @classmethod
    def _ray_from_file(cls, values: Any) -> Any:
        # `ray: path/to/ray_config.yaml` is resolved by load_config (it knows the file's folder);
        # reaching here with a string means the model was built from a dict directly.
        if isinstance(values, dict) and isinstance(values.get("ray"), str):
            values = dict(values)
            values["ray"] = _read_yaml(Path(values["ray"]))
        return values

    @field_validator("name")
    @classmethod
    def _name_is_one_folder(cls, v: str) -> str:
        # the name becomes runs/<name>: a separator or '..' would put the run (and what it
        # deletes when it starts a stage over) outside runs/
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v) or v in (".", ".."):
            raise ValueError(f"run name {v!r} must be one folder name: letters, digits, '.', "
                             "'_' and '-' only, not '.' or '..'")
        return v

    @model_validator(mode="after")
    def _seed_the_stages(self) -> PipelineConfig:
        # `seed` seeds the whole run: each stage seed left unset takes it
        generate = self.generate.sampling if self.generate is not None else None
        for holder in (self.data.synthetic, self.train, self.evaluate.inference, generate):
            if holder is not None and "seed" not in holder.model_fields_set:
                holder.seed = self.seed
        return self

    @model_validator(mode="after")
    def _teacher_fits_target(self) -> PipelineConfig:
        target = self.train.target
        if self.teacher == "generate" and self.generate is None:
            raise ValueError("teacher 'generate' needs a `generate` section (engine, model, "
                             "strategy)")
        if self.teacher == "generate" and target.startswith("equation_"):
            raise ValueError(f"train.target {target!r} is trained from teacher 'search' or "
                             "'gold'; a generating teacher gives pot, cot or kpdd targets")
        if self.teacher in ("search", "gold") and target in ("cot", "kpdd"):
            raise ValueError(f"train.target {target!r} needs teacher 'generate' (teacher "
                             f"{self.teacher!r} gives equations and programs)")
        if self.refine is not None and (self.teacher != "search"
                                        or target != "equation_prefix"):
            raise ValueError("refine: refinement re-labels the search's problems with an "
                             "equation student: it needs teacher 'search' and train.target "
                             f"'equation_prefix' (got teacher {self.teacher!r}, target "
                             f"{target!r})")
        if self.fdd is not None:
            equation_run = self.teacher in ("search", "gold") and target == "equation_prefix"
            rationale_run = self.teacher == "generate" and self.fdd.teacher == "llm"
            if not (equation_run or rationale_run):
                raise ValueError(
                    "fdd: the rounds retrain an equation student (teacher 'search' or 'gold', "
                    "train.target 'equation_prefix'; fdd.teacher perturb or llm) or a student "
                    "trained on a teacher's rationales (teacher 'generate'; fdd.teacher llm, "
                    "whose new problems are solved with the run's generate strategy); got "
                    f"teacher {self.teacher!r}, target {target!r}, fdd.teacher "
                    f"{self.fdd.teacher!r}")
        return self

    def resolved_run_dir(self, environ: Mapping[str, str] | None = None) -> Any:
        """Where the run writes: ``run_dir`` (a folder, or an object-store URI as a
        :class:`distill.storage.RemotePath`), default ``<runs>/<name>`` where ``<runs>`` is
        ``$MATHDISTILL_RUNS`` (a shared folder or a URI such as ``s3://bucket/runs``: what a
        cluster's nodes set, so that a job's runs outlive its working directory) or ``runs``."""
        from distill.storage import run_location

        if self.run_dir:
            return run_location(self.run_dir)
        root = (os.environ if environ is None else environ).get("MATHDISTILL_RUNS") or "runs"
        return run_location(f"{root.rstrip('/')}/{self.name}")


M = TypeVar("M", bound=BaseModel)


def _read_yaml(path: Any) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = _format_loc(tuple(p for p in e["loc"] if p not in ("function-after",)))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the model's fields)"
        elif "input" in e and e["type"] not in ("missing",):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], model: type[M], source: str = "<config>") -> M:
    """Validate a mapping into ``model``; errors name ``source`` and each bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def merge_mappings(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` laid over it, mapping into mapping (a value that is not a mapping
    replaces what was there)."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path, model: type[M] = PipelineConfig,  # type: ignore[assignment]
                patch: Mapping[str, Any] | None = None) -> M:
    """Read a YAML file into ``model``. A ``ray: FILE`` entry is read relative to the file.
    ``patch`` (e.g. a command line's options) is merged over the file's keys before they are
    validated (:func:`merge_mappings`). ``path`` may be an object-store URI (a run's
    config.yaml on S3)."""
    from distill.storage import run_location

    path = run_location(path)
    data = _read_yaml(path)
    if patch:
        data = merge_mappings(data, patch)
    if model is PipelineConfig and isinstance(data.get("ray"), str):
        ray_path = Path(data["ray"])
        if not ray_path.is_absolute():
            beside = path.parent / ray_path
            ray_path = beside if beside.exists() else ray_path
        data = dict(data)
        data["ray"] = validate_config(_read_yaml(ray_path), RayConfig, str(ray_path)).model_dump()
    return validate_config(data, model, str(path))


def dump_config(config: BaseModel, path: Any = None) -> str:
    """The config as YAML text (written to ``path`` -- a local path or an object-store URI --
    when given); load_config reads it back."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    if path is not None:
        from distill.storage import run_location

        target = run_location(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return text
