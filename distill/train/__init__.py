"""Student training: students, SFT data, the Ray Train loop, inference.

Importing this package loads neither torch, transformers, Ray nor DeepSpeed; they are imported
where they are used (DeepSpeed inside the training workers).

* :mod:`.config`   -- :class:`TrainConfig` (the pipeline's ``train`` section), :class:`InferenceConfig`
* :mod:`.students` -- student kinds behind a registry; tokenizer training; :func:`load_student`
* :mod:`.sft`      -- Problem rows (+ equations / rationales) -> SFTExample rows; masked gold equations
* :mod:`.collate`  -- token layout and batching shared by training and inference
* :mod:`.loop`     -- the per-worker training loop (runs without Ray too)
* :mod:`.trainer`  -- :func:`fit`: the loop on a Ray Train TorchTrainer, checkpoints, resume
* :mod:`.infer`    -- generation, equation outputs -> answers, prediction rows
* :mod:`.devices`  -- which device and dtype a student runs on (one seam, no GPU needed to test)
"""

from distill.train.config import (
    CheckpointingConfig,
    DeepSpeedConfig,
    InferenceConfig,
    StudentConfig,
    TrainConfig,
)
from distill.train.infer import (
    equation_answer,
    generate,
    generate_kpdd,
    prediction_rows,
)
from distill.train.sft import (
    build_sft_examples,
    masked_gold_equation,
    masked_gold_equations,
)
from distill.train.students import (
    get_student,
    load_student,
    register_student,
    student_names,
    train_tokenizer,
)
from distill.train.trainer import TrainResult, fit

__all__ = [
    "CheckpointingConfig",
    "DeepSpeedConfig",
    "InferenceConfig",
    "StudentConfig",
    "TrainConfig",
    "TrainResult",
    "build_sft_examples",
    "equation_answer",
    "fit",
    "generate",
    "generate_kpdd",
    "get_student",
    "load_student",
    "masked_gold_equation",
    "masked_gold_equations",
    "prediction_rows",
    "register_student",
    "student_names",
    "train_tokenizer",
]
