"""mixedmodels: linear mixed-effects models with lme4 formulas, from Python.

>>> import mixedmodels as mm
>>> m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> print(m.summary())  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from . import datasets
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
from .models.lmm import LinearMixedModel

if TYPE_CHECKING:
    from . import families
    from .formula import parse_formula
    from .frontends.dask import DaskLinearMixedModel
    from .frontends.statsmodels import MixedLM, MixedLMParams, MixedLMResults, VCSpec, mixedlm
    from .inference import BootstrapResult
    from .models.glmm import GeneralizedLinearMixedModel
    from .models.negbin import glmer_nb

# Names whose modules are imported on first use (PEP 562): the GLMM (scipy.special),
# the Dask and statsmodels front ends, the bootstrap's result and the formula
# language (formulaic) are not needed to import the package, and importing them
# all made ``import mixedmodels`` take a second (the first fit imports the formula
# and design stages).
_LAZY = {
    "families": (".families", None),
    "BootstrapResult": (".inference.bootstrap", "BootstrapResult"),
    "DaskLinearMixedModel": (".frontends.dask", "DaskLinearMixedModel"),
    "GeneralizedLinearMixedModel": (".models.glmm", "GeneralizedLinearMixedModel"),
    "glmer_nb": (".models.negbin", "glmer_nb"),
    "MixedLM": (".frontends.statsmodels", "MixedLM"),
    "MixedLMParams": (".frontends.statsmodels", "MixedLMParams"),
    "MixedLMResults": (".frontends.statsmodels", "MixedLMResults"),
    "VCSpec": (".frontends.statsmodels", "VCSpec"),
    "mixedlm": (".frontends.statsmodels", "mixedlm"),
    "parse_formula": (".formula", "parse_formula"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
