"""The evaluation stage: a trained student on the evaluation sets -> predictions and a report.

Importing this package loads neither torch, transformers nor Ray.

* :mod:`.config` -- :class:`EvaluateConfig` (the pipeline's ``evaluate`` section) and
  :class:`InferenceConfig` (how a student decodes);
* :mod:`.infer`  -- the pure core of decoding: generation, outputs -> answers, prediction rows;
* :mod:`.report` -- the pure core of scoring: maj@k votes, accuracy per set / operator count /
  error kind, ``report.json`` / ``report.md`` / plots;
* :mod:`.stage`  -- the Ray Data wrapper (:func:`evaluate_student`).
"""

from distill.evaluate.config import EvaluateConfig, InferenceConfig
from distill.evaluate.report import compare, majority_answer, score_problems, summarize, write_report
from distill.evaluate.stage import evaluate_student

__all__ = [
    "EvaluateConfig",
    "InferenceConfig",
    "compare",
    "evaluate_student",
    "majority_answer",
    "score_problems",
    "summarize",
    "write_report",
]
