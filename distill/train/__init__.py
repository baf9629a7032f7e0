"""The train stage: students and the Ray Train loop that fine-tunes them on SFT examples.

Importing this package loads neither torch, transformers, Ray nor DeepSpeed; they are imported
where they are used (DeepSpeed inside the training workers).

* :mod:`.config`   -- :class:`TrainConfig` (the pipeline's ``train`` section)
* :mod:`.students` -- student kinds behind a registry; tokenizer training; :func:`load_student`
* :mod:`.collate`  -- token layout and batching shared by training and inference
* :mod:`.loop`     -- the per-worker training loop (runs without Ray too)
* :mod:`.stage`    -- :func:`fit`: the loop on a Ray Train TorchTrainer, checkpoints, resume

The SFT examples come from :mod:`distill.sft`; decoding a trained student is
:mod:`distill.evaluate.infer`.
"""

from distill.train.config import (
    CheckpointingConfig,
    DeepSpeedConfig,
    StudentConfig,
    TrainConfig,
)
from distill.train.students import (
    get_student,
    load_student,
    register_student,
    student_names,
    train_tokenizer,
)
from distill.train.stage import TrainResult, fit

__all__ = [
    "CheckpointingConfig",
    "DeepSpeedConfig",
    "StudentConfig",
    "TrainConfig",
    "TrainResult",
    "fit",
    "get_student",
    "load_student",
    "register_student",
    "student_names",
    "train_tokenizer",
]
