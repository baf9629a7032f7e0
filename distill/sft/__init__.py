"""The SFT stage: Problem rows plus the teacher's output (search matches, verified rationales)
or the dataset's own equations -> the (source text, target text) pairs a student trains on.

* :mod:`.config` -- :class:`SFTConfig` (the pipeline's ``sft`` section);
* :mod:`.core`   -- the pure core: masked gold equations, targets per ``train.target``,
  :func:`build_sft_examples`;
* :mod:`.stage`  -- :func:`write_sft_stage`: reads the run's earlier stages, writes
  ``examples.parquet`` and ``summary.json``.
"""

from distill.sft.config import SFTConfig
from distill.sft.core import (
    STAGE_KEYPOINTS,
    STAGE_SOLVE,
    SFTBuild,
    build_sft_examples,
    masked_gold_equation,
    masked_gold_equations,
)
from distill.sft.stage import write_sft_stage

__all__ = [
    "STAGE_KEYPOINTS",
    "STAGE_SOLVE",
    "SFTBuild",
    "SFTConfig",
    "build_sft_examples",
    "masked_gold_equation",
    "masked_gold_equations",
    "write_sft_stage",
]
