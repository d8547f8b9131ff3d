"""Exceptions raised for inputs the library cannot use.

Every message names the column, level or term at fault and, where there is
one, the fix.  All classes derive from :class:`ValueError` so that callers who
catch the standard exception keep working.
"""

from __future__ import annotations

import inspect
import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` at which a warning points at the user's line.

    Call it in the function that calls :func:`warnings.warn`: it counts the
    frames up to the first one outside this package, so the warning names
    the user's call (``mm.lmer(...)``) whatever path led into the library.
    """
    here = inspect.currentframe()
    frame = here.f_back if here is not None else None
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


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


class SeparationWarning(SingularFitWarning):
    """The fixed effects separate a GLMM's outcomes: some estimates head to ±∞.

    A boundary fit: the likelihood has no maximum at finite values, the fit
    returned is its limit (see :mod:`mixedmodels.models.separation`).
    """


class PredictorScaleWarning(UserWarning):
    """Columns of the fixed-effects matrix differ in scale by more than a factor of 1000.

    lme4 gives the same warning (``check.scaleX``); the optimizer can then stop
    short, so rescaling the columns named in the message is the remedy.
    """


class MissingValuesWarning(UserWarning):
    """Rows were dropped because a transform in the formula gave NaN (e.g. ``log(-1)``).

    Rows with values missing in the data are dropped silently, as lme4 does, and
    counted in the summary; this warns about the ones the formula made missing.
    """


class NotFittedError(RuntimeError):
    """A result was asked of a model that has not been fitted."""


class Type3Error(MixedModelsError):
    """The type III hypotheses of a model's terms cannot be built (the message says why)."""


class RowsNeededError(MixedModelsError):
    """A result needs the model's rows, which this fit does not hold (a Dask fit)."""


class ArgumentError(MixedModelsError, TypeError):
    """An argument of the wrong kind (a string where a boolean or a number is meant).

    Both a :class:`MixedModelsError` and a :class:`TypeError`, so either catch works.
    """


class CommandError(Exception):
    """A problem to report on one line of stderr, without a traceback."""


class PirlsError(RuntimeError):
    """PIRLS did not converge, or step halving could not reduce the penalized deviance."""


class NonIntegerResponseWarning(UserWarning):
    """Counts or numbers of successes that are not whole numbers (R warns too)."""


# The statsmodels front door's warnings, under statsmodels' names
# (frontends/statsmodels/warning_classes.py also makes them statsmodels' own
# classes when statsmodels is loaded).


class MixedLMConvergenceWarning(ConvergenceWarning):
    """The optimizer did not meet its convergence checks (statsmodels' ConvergenceWarning)."""

    statsmodels_name = "ConvergenceWarning"


class BoundaryWarning(SingularFitWarning):
    """A variance is estimated on the boundary (statsmodels warns a ConvergenceWarning)."""

    statsmodels_name = "ConvergenceWarning"


class SingularMatrixWarning(SingularFitWarning):
    """The random effects covariance matrix is singular (statsmodels' SingularMatrixWarning)."""

    statsmodels_name = "SingularMatrixWarning"
