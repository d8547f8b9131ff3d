"""mixedmodels: linear mixed-effects models with lme4 formulas, from Python.

>>> import mixedmodels as mm
>>> m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> print(m.summary())  # doctest: +SKIP
"""

from . import datasets
from .api import anova, lmer
from .errors import (
    ArgumentError,
    ConvergenceWarning,
    DataError,
    FormulaError,
    MissingValuesWarning,
    MixedModelsError,
    NotFittedError,
    PredictorScaleWarning,
    RankDeficiencyWarning,
    SingularFitWarning,
)
from .formula import parse_formula
from .frontends.dask import DaskLinearMixedModel
from .frontends.statsmodels.model import MixedLM, mixedlm
from .frontends.statsmodels.results import MixedLMResults
from .inference import BootstrapResult
from .models.lmm import LinearMixedModel

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BootstrapResult",
    "ConvergenceWarning",
    "DaskLinearMixedModel",
    "DataError",
    "FormulaError",
    "LinearMixedModel",
    "MissingValuesWarning",
    "MixedLM",
    "MixedLMResults",
    "MixedModelsError",
    "NotFittedError",
    "PredictorScaleWarning",
    "RankDeficiencyWarning",
    "SingularFitWarning",
    "__version__",
    "anova",
    "datasets",
    "lmer",
    "mixedlm",
    "parse_formula",
]
