"""A fitted model's summary as HTML tables, for notebooks (``_repr_html_``).

The content is that of :meth:`~mixedmodels.results.FitResultsMixin.summary`
(lme4's summary): the fit criterion, scaled residuals, variance components and
fixed effects, each as a table, followed by the notes lme4 prints (rank
deficiency, singular fit, convergence).  Numbers are rounded as in the text
summary; the full-precision values are the model's attributes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel

# Scoped to the summary's own element so a notebook's other tables keep their look.
_STYLE = (
    "<style>"
    ".mm-summary table{border-collapse:collapse;margin:0 0 0.8em 0;}"
    ".mm-summary th,.mm-summary td{padding:0.15em 0.6em;text-align:right;}"
    ".mm-summary th{border-bottom:1px solid currentColor;}"
    ".mm-summary td.mm-label{text-align:left;}"
    ".mm-summary caption{text-align:left;font-weight:bold;padding-bottom:0.2em;}"
    "</style>"
)


def _number(value: float, digits: int = 4) -> str:
    """Significant digits as lme4 prints them; ``NaN`` for what is not finite."""
    return f"{value:.{digits}g}" if np.isfinite(value) else "NaN"


def _table(
    caption: str, header: Sequence[str], rows: Sequence[Sequence[str]], n_labels: int = 1
) -> str:
    """An HTML table whose first ``n_labels`` columns are left-aligned labels."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="mm-label">{html.escape(c)}</td>' if i < n_labels else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<table><caption>{html.escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _fit_table(model: LinearMixedModel) -> str:
    if model.reml:
        header = ["REML criterion", "nobs"]
        row = [f"{model.objective:.1f}", str(model.nobs)]
    else:
        header = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        row = [
            f"{v:.1f}"
            for v in (
                model.aic,
                model.bic,
                model.loglik,
                model.objective,
                model.nobs - model.n_params,
            )
        ]
    return _table("Fit", header, [row], n_labels=0)


def _residuals_table(model: LinearMixedModel) -> str:
    quartiles = model.scaled_residual_quantiles()
    return _table(
        "Scaled residuals",
        ["Min", "1Q", "Median", "3Q", "Max"],
        [[f"{v:.4f}" for v in quartiles]],
        n_labels=0,
    )


def _random_table(model: LinearMixedModel) -> str:
    blocks = list(
        zip(model.term_labels, model.design.terms, model.covariance_matrices(), strict=True)
    )
    n_corr = max((len(term.column_names) - 1 for _, term, _ in blocks), default=0)
    rows = []
    for label, term, cov in blocks:
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(sd, sd)
        for i, name in enumerate(term.column_names):
            cells = [f"{corr[i, j]:.2f}" if np.isfinite(corr[i, j]) else "NaN" for j in range(i)]
            rows.append(
                [label if i == 0 else "", name, _number(cov[i, i]), _number(sd[i])]
                + cells
                + [""] * (n_corr - len(cells))
            )
    sigma = model.sigma
    rows.append(["Residual", "", _number(sigma**2), _number(sigma)] + [""] * n_corr)
    header = ["Groups", "Name", "Variance", "Std.Dev."] + (
        ["Corr"] + [""] * (n_corr - 1) if n_corr else []
    )
    groups = ", ".join(f"{html.escape(str(g))}, {n}" for g, n in model.ngroups.items())
    caption = "Random effects"
    return _table(caption, header, rows, n_labels=2) + (
        f"<p>Number of obs: {model.nobs}, groups: {groups}</p>"
    )


def _fixed_table(model: LinearMixedModel) -> str:
    coefs = model.coefs
    rows = [
        [str(name), _number(r.estimate), _number(r.std_error), f"{r.t_value:.3f}"]
        for name, r in coefs.iterrows()
    ]
    return _table("Fixed effects", ["", "Estimate", "Std. Error", "t value"], rows)


def _notes(model: LinearMixedModel) -> list[str]:
    notes = []
    if model.n_dropped_missing:
        notes.append(f"{model.n_dropped_missing} observations deleted due to missingness")
    dropped = model.design.dropped_columns
    if dropped:
        notes.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} columns: {', '.join(dropped)}"
        )
    if model.is_singular:
        notes.append("boundary (singular) fit: see is_singular")
    notes.extend(f"convergence warning: {m}" for m in model.convergence_messages)
    return notes


def summary_html(model: LinearMixedModel) -> str:
    """The summary of a fitted model as HTML, the way a notebook shows it.

    Parameters
    ----------
    model : LinearMixedModel
        A fitted model.

    Returns
    -------
    str
        A self-contained HTML fragment (a ``<div>`` with its own scoped style).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> from mixedmodels.results.notebook import summary_html
    >>> m = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"))
    >>> summary_html(m).startswith('<div class="mm-summary">')
    True
    """
    model.state  # noqa: B018 - raises NotFittedError before a fit
    method = "REML" if model.reml else "maximum likelihood"
    title = [f"<p><b>Linear mixed model fit by {method}</b><br>"]
    title.append(f"Formula: <code>{html.escape(model.design.formula.source)}</code>")
    if getattr(model, "data_name", None):
        title.append(f"<br>Data: {html.escape(str(model.data_name))}")
    title.append("</p>")
    parts = [
        '<div class="mm-summary">',
        _STYLE,
        "".join(title),
        _fit_table(model),
        _residuals_table(model),
        _random_table(model),
        _fixed_table(model),
    ]
    notes = _notes(model)
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f"<ul>{items}</ul>")
    parts.append("</div>")
    return "".join(parts)
