"""Seeded synthetic math word problems (English and Chinese) with exact gold equations.

Takes a :class:`SyntheticConfig` and a split name; :func:`generate` gives Problem rows (dataset
``synthetic``, registered as :class:`SyntheticLoader`) that need no files and no downloads. One
module per reader:

* :mod:`~distill.data.synthetic.config` -- :class:`SyntheticConfig`, the settings;
* :mod:`~distill.data.synthetic.templates` -- the kinds of problem (``TEMPLATES``, each defined
  once, written natively in both languages) and what they write with;
* :mod:`~distill.data.synthetic.generator` -- drawing, checking the gold
  (:mod:`distill.equations` trees), rendering the rows, the loader; what a row guarantees is in
  its docstring.

Import from here: every name the single module had is re-exported.
"""

from __future__ import annotations

from distill.data.synthetic.config import SyntheticConfig
from distill.data.synthetic.generator import (
    DATASET,
    GENERATOR,
    SPLITS,
    SyntheticLoader,
    generate,
)
from distill.data.synthetic.templates import (
    ALLOWED_CONSTANTS,
    MAX_STEPS,
    TEMPLATES,
    template_names,
)

__all__ = [
    "ALLOWED_CONSTANTS",
    "GENERATOR",
    "SPLITS",
    "SyntheticConfig",
    "SyntheticLoader",
    "generate",
    "template_names",
]
# also importable from here, as before the split (not in __all__, as before): DATASET,
# MAX_STEPS, TEMPLATES
