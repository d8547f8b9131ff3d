"""mixedmodels: linear mixed-effects models with lme4 formulas, from Python.

>>> import mixedmodels as mm
>>> m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> print(m.summary())  # doctest: +SKIP
"""

from . import datasets, families
from .api import anova, glmer, lmer
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
    SeparationWarning,
    SingularFitWarning,
)
from .formula import parse_formula
from .frontends.dask import DaskLinearMixedModel
from .frontends.statsmodels import MixedLM, MixedLMParams, MixedLMResults, VCSpec, mixedlm
from .inference import BootstrapResult
from .models.glmm import GeneralizedLinearMixedModel
from .models.lmm import LinearMixedModel
from .models.negbin import glmer_nb

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BootstrapResult",
    "ConvergenceWarning",
    "DaskLinearMixedModel",
    "DataError",
    "FormulaError",
    "GeneralizedLinearMixedModel",
    "LinearMixedModel",
    "MissingValuesWarning",
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "MixedModelsError",
    "NotFittedError",
    "PredictorScaleWarning",
    "RankDeficiencyWarning",
    "SeparationWarning",
    "SingularFitWarning",
    "VCSpec",
    "__version__",
    "anova",
    "datasets",
    "families",
    "glmer",
    "glmer_nb",
    "lmer",
    "mixedlm",
    "parse_formula",
]
