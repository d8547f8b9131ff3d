"""Inference for fitted linear mixed models.

* :class:`InferenceMixin` — ``coef_table`` (Satterthwaite / Kenward–Roger df),
  ``confint`` (profile, Wald, bootstrap), ``ranef_cov``, ``predict``,
  ``simulate``, ``bootstrap``;
* :mod:`.lrt` — the tables behind :func:`mixedmodels.anova`: likelihood-ratio
  tests of nested models, or a model's type III F tests (Satterthwaite df).
"""

from .bootstrap import BootstrapResult
from .mixin import InferenceMixin

__all__ = ["BootstrapResult", "InferenceMixin"]
