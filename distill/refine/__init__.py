"""FLTT refinement: the trained student re-decodes the training problems whose label is missing
or doubtful; accepted candidates become labels and the student is trained again, round after
round. :mod:`distill.refine.core` is the pure part, :mod:`distill.refine.stage` one round on
Ray, :class:`distill.refine.config.RefineConfig` the ``refine:`` section."""

from distill.refine.config import RefineConfig

__all__ = ["RefineConfig"]
