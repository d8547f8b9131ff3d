"""Inference for fitted linear mixed models.

* :class:`InferenceMixin` — ``coef_table`` (Satterthwaite / Kenward–Roger df),
  ``confint`` (profile, Wald, bootstrap), ``ranef_cov``, ``predict``,
  ``simulate``, ``bootstrap``;
* :func:`anova` — likelihood-ratio tests of nested models, or a model's
  type III F tests (Satterthwaite df, as lmerTest).
"""

from .bootstrap import BootstrapResult
from .lrt import anova
from .mixin import InferenceMixin

__all__ = ["BootstrapResult", "InferenceMixin", "anova"]
