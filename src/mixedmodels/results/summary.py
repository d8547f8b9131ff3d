"""The content of a fitted model's summary, computed once, rendered many ways.

:class:`ModelSummary` holds what lme4's (and lmerTest's) ``summary()`` shows —
fit criteria, scaled residuals, variance components, the fixed-effects table
with df and p values, their correlations and the notes — as numbers, not
text.  The renderers (:mod:`.text` for the terminal, :mod:`.notebook` for
HTML and LaTeX) and the command line's JSON all read the same object, so they
cannot disagree.

:func:`summarize` builds it from a fitted model's public attributes only.  A
generalized model fills the same fields differently: ``family``/``link``
set, ``statistic="z"`` (a ``z value`` column and ``Pr(>|z|)``, no df), no
``residual`` row for families without a scale parameter, and AIC, BIC, logLik,
deviance and df.resid as criteria.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import MixedModelsError
from .rformat import CORRELATION_MAX

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel

# Above this estimated cost (seconds) the summary leaves the Satterthwaite df
# out rather than make printing a large model slow; coef_table() computes them.
SATTERTHWAITE_BUDGET = 5.0

_DDF_LABELS = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}
_DDF_SPELLINGS = {
    "satterthwaite": "satterthwaite",
    "kenward-roger": "kenward-roger",
    "kenward_roger": "kenward-roger",
    "kr": "kenward-roger",
    "asymptotic": None,
    "none": None,
}


@dataclass(frozen=True)
class VarianceComponent:
    """One random-effect column (or the residual): its variance, sd and correlations.

    Attributes
    ----------
    group : str
        Grouping label as lme4 prints it (``Subject``, ``Subject.1`` for a
        second term of the same factor, ``Residual``).
    name : str
        Column of the term (``(Intercept)``, ``Days``; empty for the residual).
    variance, std_dev : float
    correlations : tuple of float
        Correlations with the term's earlier columns (empty for the first).
    """

    group: str
    name: str
    variance: float
    std_dev: float
    correlations: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModelSummary:
    """What a summary of a fitted mixed model shows, as numbers.

    ``str(summary)`` is lme4's text (:mod:`~mixedmodels.results.text`); in a
    notebook it displays as HTML tables (:meth:`as_html`); :meth:`as_latex`
    gives tables to paste into a paper and :meth:`as_dict` a JSON-ready
    document.

    Attributes
    ----------
    model_type : str
        ``"Linear mixed model"`` (``"Generalized linear mixed model"``).
    method : str
        ``"REML"`` or ``"maximum likelihood"`` (a GLMM adds its
        approximation, e.g. ``"maximum likelihood (Laplace Approximation)"``).
    formula : str
    data : str or None
        Name of the data, when known (``model.data_name``).
    family, link : str or None
        A generalized model's family and link (None for a linear one).
    criteria : dict
        Fit criteria in print order: ``{"REML criterion at convergence": …}``
        for REML fits, else AIC, BIC, logLik, deviance and df.resid.
    scaled_residuals : pandas.Series or None
        Min, 1Q, Median, 3Q, Max of the scaled residuals.
    residuals_exact : bool
        False when the quartiles are approximate (a Dask fit).
    random_effects : tuple of VarianceComponent
        One per random-effect column, term by term.
    residual : VarianceComponent or None
        The residual row (None for families without a scale parameter).
    nobs : int
    ngroups : dict
        Levels per grouping factor.
    n_dropped : int
        Rows dropped for missing values.
    fixed_effects : pandas.DataFrame
        ``estimate``, ``std_error``, ``df`` (when ``ddf`` is set), ``statistic``
        and ``p_value`` (when available) per coefficient.
    statistic : {"t", "z"}
        The test statistic of the table.
    ddf : str or None
        ``"Satterthwaite"``, ``"Kenward-Roger"`` or None (no df).
    correlation : pandas.DataFrame or None
        Correlations of the fixed-effects estimates; None when left out.
    correlation_omitted : int or None
        The number of fixed effects when the correlation block was left out
        because there are more than 12 (lme4's rule).
    notes : tuple of str
        Rank deficiency, singular fit, convergence, df left out.
    """

    model_type: str
    method: str
    formula: str
    data: str | None
    criteria: Mapping[str, float]
    scaled_residuals: pd.Series | None
    random_effects: tuple[VarianceComponent, ...]
    residual: VarianceComponent | None
    nobs: int
    ngroups: Mapping[str, int]
    fixed_effects: pd.DataFrame
    statistic: str = "t"
    ddf: str | None = None
    family: str | None = None
    link: str | None = None
    residuals_exact: bool = True
    n_dropped: int = 0
    correlation: pd.DataFrame | None = None
    correlation_omitted: int | None = None
    notes: tuple[str, ...] = field(default=())

    # -- derived labels ---------------------------------------------------------------

    @property
    def title(self) -> str:
        """The heading: ``Linear mixed model fit by REML. t-tests use Satterthwaite's method``."""
        text = f"{self.model_type} fit by {self.method}"
        if self.ddf is not None:
            text += f". {self.statistic}-tests use {self.ddf}'s method"
        return text

    @property
    def statistic_label(self) -> str:
        return f"{self.statistic} value"

    @property
    def p_label(self) -> str:
        return f"Pr(>|{self.statistic}|)"

    @property
    def has_p_values(self) -> bool:
        return "p_value" in self.fixed_effects.columns

    # -- renderings -------------------------------------------------------------------

    def as_text(self) -> str:
        """lme4's printed summary."""
        from .text import render_text

        return render_text(self)

    def as_html(self) -> str:
        """The summary as HTML tables (what a notebook shows)."""
        from .notebook import render_html

        return render_html(self)

    def as_latex(self) -> str:
        """The fixed-effects and variance-component tables as LaTeX ``tabular``s."""
        from .notebook import render_latex

        return render_latex(self)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready document (numbers that are not finite become None)."""
        fixed = []
        for name, row in self.fixed_effects.iterrows():
            entry = {"term": str(name)}
            for column in ("estimate", "std_error", "df", "statistic", "p_value"):
                entry[column] = _json_number(row.get(column, math.nan))
            fixed.append(entry)
        components = [
            {
                "group": vc.group,
                "name": vc.name or None,
                "variance": _json_number(vc.variance),
                "std_dev": _json_number(vc.std_dev),
                "correlations": [_json_number(c) for c in vc.correlations],
            }
            for vc in (*self.random_effects, *([self.residual] if self.residual else []))
        ]
        residuals = None
        if self.scaled_residuals is not None:
            residuals = {str(k): _json_number(v) for k, v in self.scaled_residuals.items()}
        return {
            "title": self.title,
            "formula": self.formula,
            "data": self.data,
            "family": self.family,
            "link": self.link,
            "method": self.method,
            "ddf": self.ddf,
            "statistic": self.statistic,
            "criteria": {k: _json_number(v) for k, v in self.criteria.items()},
            "scaled_residuals": residuals,
            "scaled_residuals_exact": self.residuals_exact,
            "random_effects": components,
            "nobs": self.nobs,
            "ngroups": {str(k): int(v) for k, v in self.ngroups.items()},
            "n_dropped": self.n_dropped,
            "fixed_effects": fixed,
            "correlation": None
            if self.correlation is None
            else [[_json_number(v) for v in row] for row in self.correlation.to_numpy()],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return self.as_html()

    @property
    def text(self) -> str:
        """The printed text (as ``str(summary)``)."""
        return self.as_text()


def _json_number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- building it from a fitted model -------------------------------------------------


def _ddf_method(ddf: str | None) -> str | None:
    if ddf is None:
        return None
    key = str(ddf).lower()
    if key not in _DDF_SPELLINGS:
        raise MixedModelsError(
            f"unknown ddf {ddf!r}: use 'satterthwaite', 'kenward-roger' or 'asymptotic'"
        )
    return _DDF_SPELLINGS[key]


def _criteria(model: LinearMixedModel) -> dict[str, float]:
    if model.reml:
        return {"REML criterion at convergence": float(model.objective)}
    return {
        "AIC": float(model.aic),
        "BIC": float(model.bic),
        "logLik": float(model.loglik),
        "deviance": float(model.deviance),
        "df.resid": float(model.nobs - model.n_params),
    }


def variance_components(varcorr: pd.DataFrame) -> tuple[list[VarianceComponent], Any]:
    """lme4's blocks from ``as.data.frame(VarCorr)`` rows: variances, then correlations.

    Returns the random-effect rows (:class:`VarianceComponent` per column, term by
    term) and the residual row (None when the table has none).
    """
    components: list[VarianceComponent] = []
    residual = None
    for group, rows in varcorr.groupby("group", sort=False):
        if group == "Residual":
            r = rows.iloc[0]
            residual = VarianceComponent("Residual", "", float(r.vcov), float(r.sdcor))
            continue
        variances = rows[rows["var2"].isna()]
        names = list(variances["var1"])
        corr = {(r.var1, r.var2): float(r.sdcor) for r in rows[rows["var2"].notna()].itertuples()}
        for i, r in enumerate(variances.itertuples()):
            cells = tuple(corr.get((names[j], names[i]), math.nan) for j in range(i))
            components.append(
                VarianceComponent(str(group), str(r.var1), float(r.vcov), float(r.sdcor), cells)
            )
    return components, residual


def _scaled_residuals(model: LinearMixedModel) -> tuple[pd.Series, bool]:
    q = model.scaled_residual_quantiles()
    return q, bool(q.attrs.get("exact", True))


def _satterthwaite_affordable(model: LinearMixedModel) -> bool:
    """Whether the df take under :data:`SATTERTHWAITE_BUDGET` seconds.

    They need about 4k(k + 1) evaluations of the objective (k = len(θ));
    one is timed (the fit's own time per evaluation would count a first
    call's compilation).
    """
    k = len(model.theta)
    start = time.perf_counter()
    model.problem.objective(model.theta)
    return 4 * k * (k + 1) * (time.perf_counter() - start) <= SATTERTHWAITE_BUDGET


def _fixed_effects(
    model: LinearMixedModel, method: str | None, notes: list[str]
) -> tuple[pd.DataFrame, str | None]:
    coefs = model.coefs
    plain = pd.DataFrame(
        {
            "estimate": coefs["estimate"],
            "std_error": coefs["std_error"],
            "statistic": coefs["t_value"],
        }
    )
    if method is None:
        return plain, None
    if method == "satterthwaite" and not _satterthwaite_affordable(model):
        notes.append(
            "Satterthwaite df left out: costly for this model; "
            "m.coef_table() or summary(ddf='satterthwaite') computes them"
        )
        return plain, None
    try:
        table = model.coef_table(ddf=method)
    except (np.linalg.LinAlgError, FloatingPointError) as err:
        # A summary must print; the df are left out when they cannot be had.
        notes.append(f"{_DDF_LABELS[method]} df left out: {err}")
        return plain, None
    out = pd.DataFrame(
        {
            "estimate": table["estimate"],
            "std_error": table["std_error"],
            "df": table["df"],
            "statistic": table["t_value"],
            "p_value": table["p_value"],
        }
    )
    return out, _DDF_LABELS[method]


def fixed_effect_correlation(vcov: pd.DataFrame) -> pd.DataFrame:
    """Correlations of the fixed-effects estimates from their covariance matrix."""
    v = vcov.to_numpy()
    sd = np.sqrt(np.diag(v))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = v / np.outer(sd, sd)
    return pd.DataFrame(corr, index=vcov.index, columns=vcov.columns)


def fit_notes(model: Any) -> list[str]:
    """The notes a summary shows: dropped (aliased) columns, a singular fit, convergence
    messages; read from the model's public attributes (linear or generalized)."""
    notes = []
    dropped = list(model.design.dropped_columns)
    if dropped:
        notes.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}"
        )
    if model.is_singular:
        notes.append("boundary (singular) fit: see is_singular")
    notes.extend(f"convergence warning: {m}" for m in model.convergence_messages)
    return notes


def summarize(
    model: LinearMixedModel,
    *,
    ddf: str | None = "satterthwaite",
    correlation: bool | None = None,
) -> ModelSummary:
    """The summary content of a fitted linear mixed model.

    Parameters
    ----------
    model : LinearMixedModel
        A fitted model.
    ddf : {"satterthwaite", "kenward-roger", "asymptotic"} or None
        Degrees of freedom of the t tests, as lmerTest's ``summary(ddf=)``:
        Satterthwaite's (default, REML and ML fits; left out with a note when
        they would take more than a few seconds), Kenward–Roger's (REML fits),
        or none (``"asymptotic"``/None: lme4's table without df and p values).
    correlation : bool, optional
        Show the correlations of the fixed effects (default: up to 12 of them,
        as lme4).

    Returns
    -------
    ModelSummary
    """
    method = _ddf_method(ddf)
    notes = fit_notes(model)
    fixed, ddf_label = _fixed_effects(model, method, notes)
    components, residual = variance_components(model.varcorr)
    residuals, exact = _scaled_residuals(model)
    p = len(fixed)
    show_corr = (p <= CORRELATION_MAX) if correlation is None else bool(correlation)
    corr = fixed_effect_correlation(model.vcov) if show_corr and p > 1 else None
    omitted = p if (correlation is None and p > CORRELATION_MAX) else None
    return ModelSummary(
        model_type="Linear mixed model",
        method="REML" if model.reml else "maximum likelihood",
        formula=model.design.formula.source,
        data=getattr(model, "data_name", None),
        criteria=_criteria(model),
        scaled_residuals=residuals,
        residuals_exact=exact,
        random_effects=tuple(components),
        residual=residual,
        nobs=int(model.nobs),
        ngroups=dict(model.ngroups),
        n_dropped=int(model.n_dropped_missing),
        fixed_effects=fixed,
        statistic="t",
        ddf=ddf_label,
        correlation=corr,
        correlation_omitted=omitted,
        notes=tuple(notes),
    )
