"""Numbers in problem text and in answers: the one place where they are read.

Takes plain strings, gives exact values (:class:`fractions.Fraction`); no Ray, no sympy, and no
float on the way (a float *input* is read through its ``repr``). Two readers, one module each:

* :mod:`distill.quantities.text` -- numbers in a question's TEXT: :func:`extract_quantities`
  (spans, values, kinds), :func:`mask_question` (quantities as ``N0``, ``N1``, ...),
  :func:`detect_lang`;
* :mod:`distill.quantities.answers` -- ANSWER values: :func:`parse_answer`,
  :func:`canonical_answer_text`,
  :func:`parse_number`, :func:`canonical`, :func:`decimal_fraction`, the bounds
  (:data:`MAX_EXPONENT`, :data:`MAX_DIGITS`, :class:`QuantityTooLarge`), ``boxed_content`` and
  ``numeric_texts``;

and :mod:`distill.quantities._numbers` for what both read alike (:func:`normalize_text`, number
words, Chinese integers, vulgar fractions). Import from here: every name is re-exported.
"""

from __future__ import annotations

from distill.quantities._numbers import normalize_text, number_words
from distill.quantities.answers import (
    MAX_DIGITS,
    MAX_EXPONENT,
    ParsedAnswer,
    QuantityTooLarge,
    _unwrap,  # noqa: F401  (tests read it from here)
    boxed_content,
    canonical,
    canonical_answer_text,
    decimal_fraction,
    numeric_texts,
    parse_answer,
    parse_number,
)
from distill.quantities.text import (
    Quantity,
    QuantityKind,
    detect_lang,
    extract_quantities,
    mask_question,
)

__all__ = [
    "QuantityKind",
    "Quantity",
    "ParsedAnswer",
    "extract_quantities",
    "mask_question",
    "detect_lang",
    "parse_answer",
    "parse_number",
    "canonical",
    "canonical_answer_text",
    "decimal_fraction",
    "normalize_text",
    "number_words",
    "MAX_EXPONENT",
    "MAX_DIGITS",
    "QuantityTooLarge",
]
# also importable from here, as before the split (not in __all__, as before): boxed_content,
# numeric_texts
