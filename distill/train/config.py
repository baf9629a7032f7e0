"""Typed configuration of student training.

:class:`TrainConfig` is the ``train`` section of a pipeline config (how a trained student
decodes is :class:`distill.evaluate.config.InferenceConfig`). Unknown keys are errors, like
every config of the project.

Per-worker resources (CPUs, GPUs) are not repeated here: they come from the Ray side
(``RayConfig.resources["train"]``, a :class:`distill.config.StageResources`) and are passed to
:func:`distill.train.stage.fit` next to this config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distill.configbase import StrictModel

TARGETS = ("equation_prefix", "equation_infix", "pot", "cot", "kpdd")
Target = Literal["equation_prefix", "equation_infix", "pot", "cot", "kpdd"]


class StudentConfig(StrictModel):
    """Which student to train: a registered kind plus what that kind needs."""

    kind: str = Field(
        "scratch",
        description="Registered student kind: 'scratch' (built from a size preset with a "
        "tokenizer trained on the training data), 'hf_seq2seq' (T5 / FlanT5 ...), "
        "'hf_causal' (Qwen2 / Llama / GPT-2 ...).",
    )
    name_or_path: str | None = Field(
        None,
        description="hf_* kinds: a hub name (google/flan-t5-small) or a local directory "
        "written by save_pretrained.",
    )
    preset: Literal["tiny", "small"] = Field(
        "tiny", description="scratch: size preset (tiny: a few M parameters; small: tens of M)."
    )
    architecture: Literal["t5", "qwen2", "tree"] = Field(
        "t5",
        description="scratch: 't5' (encoder-decoder, suits question -> equation), 'qwen2' "
        "(decoder-only) or 'tree' (a GRU encoder and a goal-driven tree decoder writing prefix "
        "equations over the question's quantities; target equation_prefix only).",
    )
    vocab_size: int | None = Field(
        None, ge=300, description="scratch: tokenizer vocabulary size; None takes the preset's."
    )
    model_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="scratch: fields of the model config to change from the preset "
        "(e.g. {d_model: 256, num_layers: 4} for t5).",
    )
    trust_remote_code: bool = Field(False, description="hf_*: passed to from_pretrained.")

    @field_validator("kind")
    @classmethod
    def _registered(cls, v: str) -> str:
        from distill.train.students import UnknownStudentError, get_student

        try:
            get_student(v)
        except UnknownStudentError as e:
            raise ValueError(str(e)) from None  # names the valid kinds
        return v

    @model_validator(mode="after")
    def _needs_name(self) -> StudentConfig:
        if self.kind.startswith("hf_") and not self.name_or_path:
            raise ValueError(f"student kind {self.kind!r} needs name_or_path")
        return self


class DeepSpeedConfig(StrictModel):
    """DeepSpeed ZeRO for the training workers; off means plain DDP (or one process)."""

    enabled: bool = Field(False, description="Train through deepspeed.initialize.")
    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage 0 (off), 1, 2 or 3.")
    offload_optimizer: bool = Field(
        False, description="ZeRO-Offload: keep optimizer states in CPU memory (stage >= 1)."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged last into the generated DeepSpeed config (advanced knobs).",
    )

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> DeepSpeedConfig:
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage >= 1")
        return self


class CheckpointingConfig(StrictModel):
    """Where checkpoints go. Starting a run with the same storage_path and name resumes it."""

    storage_path: str | None = Field(
        None,
        description="Ray Train storage (local folder or s3:// / gs:// URI); "
        "default <run_dir>/train.",
    )
    name: str = Field("student", description="Run name inside storage_path.")
    num_to_keep: int | None = Field(
        2, ge=1, description="Epoch checkpoints kept (oldest deleted); None keeps all."
    )
    resume: bool = Field(
        True,
        description="Continue from the run's last checkpoint when the run exists. False makes "
        "an existing run an error (choose another name) instead of resuming it.",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError(f"name must be a plain folder name (got {v!r})")
        return v


class TrainConfig(StrictModel):
    """Student training on Ray Train: one worker per process, DDP or DeepSpeed ZeRO."""

    student: StudentConfig = Field(default_factory=StudentConfig, description="The student.")
    target: Target = Field(
        "equation_prefix",
        description="What the student learns to write: equation_prefix / equation_infix "
        "(over N-placeholders), pot (program), cot (text), kpdd (key points, then solution).",
    )
    kpdd_schedule: Literal["joint", "sequential"] = Field(
        "joint",
        description="kpdd: train both stages together, or key points first and then the "
        "solve stage starting from that model.",
    )
    epochs: int = Field(30, ge=1, description="Passes over the training examples.")
    batch_size: int = Field(32, ge=1, description="Examples per step and worker.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps per optimizer update.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases/norms).")
    schedule: Literal["constant", "linear", "cosine"] = Field(
        "linear", description="Learning-rate decay after warmup."
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of updates spent warming up.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; None: off.")
    max_source_length: int = Field(256, ge=8, description="Source tokens kept (truncated).")
    max_target_length: int = Field(128, ge=4, description="Target tokens kept (truncated).")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (processes).")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="fp32, or bf16 (DeepSpeed's bf16 mode, else torch autocast over float32 "
        "weights). Checkpoint weights are float32, bfloat16 under DeepSpeed bf16. fp16 is not "
        "offered: it does not run on CPU.",
    )
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig, description="ZeRO.")
    seed: int = Field(0, description="Seed of model init, data order and dropout.")
    log_every_steps: int = Field(
        50, ge=1, description="Report loss, lr and tokens/s to Ray and TensorBoard every N steps."
    )
    tensorboard: bool = Field(True, description="Write TensorBoard events (rank 0).")
    checkpointing: CheckpointingConfig = Field(
        default_factory=CheckpointingConfig, description="Checkpoint storage and resume."
    )
    max_failures: int = Field(
        1, ge=-1, description="Restarts of the worker group after a lost worker (-1: no limit)."
    )

    @model_validator(mode="after")
    def _tree_writes_prefix_equations(self) -> TrainConfig:
        if (self.student.kind == "scratch" and self.student.architecture == "tree"
                and self.target != "equation_prefix"):
            raise ValueError(f"a tree student (student.architecture: tree) writes prefix "
                             f"equations only: set target: equation_prefix (got {self.target!r})")
        return self
