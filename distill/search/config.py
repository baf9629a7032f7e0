"""Configuration of the equation search stage (one pydantic model, nested by the pipeline)."""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import Field, field_validator

from distill.configbase import StrictModel
from distill.equations import DEFAULT_CONSTANTS
from distill.grading import DEFAULT_REL_TOL
from distill.search.rank import RankWeights

SEARCH_MODES = ("first", "minimal", "top")


def _check_constants(values: list[str]) -> list[str]:
    from distill.quantities import numeric_texts

    return numeric_texts(values)


class SearchConfig(StrictModel):
    """Weak-supervision equation search: grammar, stop rule, budget, ranking, Ray resources."""


    max_ops: int = Field(3, ge=0, le=8, description="Largest number of binary operators (K).")
    ops: str = Field("+-*/", description="Operators, any of + - * / ^ ('^' takes a constant "
                     "integer exponent 2..8).")
    constants: list[str] | None = Field(
        None, description="Numbers an expression may use (any number of times) besides the "
        "problem's quantities; None = the project's default allowed constants (1, 2, 3.14, 100).")
    constants_by_lang: dict[str, list[str]] = Field(
        default_factory=dict, description="Per-language constants replacing `constants`, e.g. "
        "{zh: ['1', '2', '3.14', '100']}.")
    mode: Literal["first", "minimal", "top"] = Field(
        "top", description="Stop rule: 'first' match of the smallest operator count; every "
        "match of the 'minimal' count (ranked); 'top': every match up to max_ops, ranked, "
        "the best top_n kept.")
    top_n: int = Field(5, ge=1, description="Rationale rows per problem in modes minimal/top "
                       "(rank 0 is the pseudo-label; the match count covers all).")
    allow_reuse: bool = Field(False, description="Let a quantity appear twice in an expression.")
    reuse_fallback: bool = Field(
        True, description="With allow_reuse off: search a problem that nothing matches again "
        "with reuse (within what is left of its budget); only unsolved problems pay for it.")
    allow_negative: bool = Field(
        False, description="Keep negative intermediate values (no positive value needs them).")
    rel_tol: float = Field(DEFAULT_REL_TOL, gt=0, lt=0.1, description="Relative tolerance of a "
                           "match where rounding is possible (non-integer answer or rounded "
                           "quantities); integer answers from exact quantities match exactly.")
    max_expressions: int | None = Field(
        5_000_000, ge=1, description="Budget per problem: partial expressions examined.")
    max_ms: float | None = Field(2000.0, gt=0, description="Budget per problem: milliseconds.")
    weights: RankWeights = Field(default_factory=RankWeights, description="Ranking weights.")
    prior: bool = Field(True, description="Learn the template prior in a first pass over the "
                        "dataset and rank with it (modes minimal/top).")
    batch_size: int = Field(256, ge=1, description="Problems per Ray Data batch (workers and "
                            "CPUs per worker are the `search` entry of the Ray resources).")

    @field_validator("ops")
    @classmethod
    def _ops(cls, v: str) -> str:
        v = v.replace(" ", "").replace(",", "")
        bad = sorted(set(v) - set("+-*/^"))
        if bad or not v or len(set(v)) != len(v):
            raise ValueError(f"expected distinct operators among + - * / ^, got {v!r}")
        return "".join(o for o in "+-*/^" if o in v)

    @field_validator("constants")
    @classmethod
    def _constants(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_constants(v)

    @field_validator("constants_by_lang")
    @classmethod
    def _constants_by_lang(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {lang: _check_constants(cs) for lang, cs in v.items()}

    def constant_texts(self, lang: str | None = None) -> list[str]:
        """The constants for a problem in ``lang`` (as written)."""
        if lang and lang in self.constants_by_lang:
            return list(self.constants_by_lang[lang])
        return list(self.constants if self.constants is not None else DEFAULT_CONSTANTS)

    def constant_values(self, lang: str | None = None) -> list[Fraction]:
        from distill.quantities import parse_number

        return [parse_number(c) for c in self.constant_texts(lang)]

    @property
    def engine_mode(self) -> str:
        return {"first": "first", "minimal": "minimal", "top": "all"}[self.mode]
