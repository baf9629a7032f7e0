"""Teachers: engines, strategies (prompt templates + parsers) and the generation stage.

Public surface::

    from distill.generate import GenerateConfig, generate_dataset, read_rationales
    from distill.generate import strategy_names, engine_names

* :class:`GenerateConfig` -- the stage's typed config (:mod:`distill.generate.config`);
* :func:`generate_dataset` -- Problem rows -> verified Rationale rows in an output folder,
  resumable (:mod:`distill.generate.stage`); :func:`read_rationales` reads them back;
* strategies (:mod:`distill.generate.strategies`): cot, pot, kpdd_cot, kpdd_pot,
  fltt_equation, fltt_masked_equation, fdd_harder, fdd_similar; templates in ``prompts/``;
* engines (:mod:`distill.generate.engines`): hf, openai, vllm;
* verification lives in :mod:`distill.generate.verify`.
"""

from distill.generate.config import GenerateConfig
from distill.generate.engines import engine_names
from distill.generate.stage import generate_dataset, read_rationales
from distill.generate.strategies import strategy_names

__all__ = ["GenerateConfig", "engine_names", "generate_dataset", "read_rationales", "strategy_names"]
