"""statsmodels' ``MixedLM`` API (arrays, formulas, results) on this package's engine."""

from ...errors import BoundaryWarning, MixedLMConvergenceWarning, SingularMatrixWarning
from .grouped import VCSpec
from .model import MixedLM, mixedlm
from .params import MixedLMParams
from .results import MixedLMResults

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
