"""statsmodels' ``MixedLM`` API (arrays, formulas, results) on this package's engine."""

from .grouped import VCSpec
from .model import MixedLM, mixedlm
from .params import MixedLMParams
from .results import MixedLMResults
from .warning_classes import BoundaryWarning, MixedLMConvergenceWarning, SingularMatrixWarning

__all__ = [
    "BoundaryWarning",
    "MixedLM",
    "MixedLMConvergenceWarning",
    "MixedLMParams",
    "MixedLMResults",
    "SingularMatrixWarning",
    "VCSpec",
    "mixedlm",
]
