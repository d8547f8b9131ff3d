"""Exceptions raised for inputs the library cannot use.

Every message names the column, level or term at fault and, where there is
one, the fix.  All classes derive from :class:`ValueError` so that callers who
catch the standard exception keep working.
"""

from __future__ import annotations


class MixedModelsError(ValueError):
    """Base class for errors about a model's specification or data."""


class FormulaError(MixedModelsError):
    """The formula cannot be parsed or names something that is not allowed."""


class DataError(MixedModelsError):
    """The data cannot be used with the formula (missing column, bad values, ...)."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its convergence checks."""


class RankDeficiencyWarning(UserWarning):
    """Columns of the fixed-effects matrix were dropped because they are aliased."""


class SingularFitWarning(UserWarning):
    """Some variance component was estimated on the boundary (zero or ±1 correlation)."""
