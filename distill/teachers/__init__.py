"""Teachers: engines, strategies (prompt templates + parsers) and the generation stage.

Public surface::

    from distill.teachers import GenerateConfig, generate_dataset, read_rationales
    from distill.teachers import strategy_names, engine_names

* :class:`GenerateConfig` -- the stage's typed config (:mod:`distill.teachers.config`);
* :func:`generate_dataset` -- Problem rows -> verified Rationale rows in an output folder,
  resumable (:mod:`distill.teachers.stage`); :func:`read_rationales` reads them back;
* strategies (:mod:`distill.teachers.strategies`): cot, pot, kpdd_cot, kpdd_pot,
  fltt_equation, fltt_masked_equation, fdd_harder, fdd_similar; templates in ``prompts/``;
* engines (:mod:`distill.teachers.engines`): hf, openai, vllm;
* verification lives in :mod:`distill.verify`.
"""

from distill.teachers.config import GenerateConfig
from distill.teachers.engines import engine_names
from distill.teachers.stage import generate_dataset, read_rationales
from distill.teachers.strategies import strategy_names

__all__ = ["GenerateConfig", "engine_names", "generate_dataset", "read_rationales", "strategy_names"]
