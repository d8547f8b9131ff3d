"""lme4's ``summary(glmer(...))`` layout, as plain text.

The building blocks (aligned tables, p-value formatting, significance
stars, abbreviated names) are the linear model's summary's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

# The linear summary's table helpers, shared rather than copied (transitional:
# they are private names of results.text until it exposes them).
from .text import _abbreviate, _format_p, _stars, _table

if TYPE_CHECKING:
    from ..models.glmm import GeneralizedLinearMixedModel


def _method(nagq: int) -> str:
    if nagq == 1:
        return "Laplace Approximation"
    return f"Adaptive Gauss-Hermite Quadrature, nAGQ = {nagq}"


def _random_effects_lines(model: GeneralizedLinearMixedModel) -> list[str]:
    rows: list[list[str]] = []
    corr_cols = 0
    blocks = []
    for label, term, cov in zip(
        model.term_labels, model.design.terms, model.covariance_matrices(), strict=True
    ):
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(sd, sd)
        blocks.append((label, term.column_names, np.diag(cov), sd, corr))
        corr_cols = max(corr_cols, len(term.column_names) - 1)
    for label, names, var, sd, corr in blocks:
        for i, name in enumerate(names):
            row = [label if i == 0 else "", name, f"{var[i]:.4g}", f"{sd[i]:.4g}"]
            cells = [f"{corr[i, j]:.2f}" if np.isfinite(corr[i, j]) else "NaN" for j in range(i)]
            rows.append(row + cells + [""] * (corr_cols - len(cells)))
    if model.family.has_dispersion:
        sigma = model.sigma
        rows.append(["Residual", "", f"{sigma**2:.4g}", f"{sigma:.4g}"] + [""] * corr_cols)
    header = ["Groups", "Name", "Variance", "Std.Dev."] + (
        ["Corr"] + [""] * (corr_cols - 1) if corr_cols else []
    )
    return _table(header, rows, align_left=2)


def glmer_summary(model: GeneralizedLinearMixedModel) -> str:
    """The text of lme4's ``summary()`` for a fitted GLMM."""
    state = model.state
    family = model.family
    lines = [
        f"Generalized linear mixed model fit by maximum likelihood ({_method(state.nagq)})",
        f" Family: {family.name}  ( {family.link.name} )",
        f"Formula: {model.design.formula.source}",
    ]
    if model.data_name:
        lines.append(f"   Data: {model.data_name}")
    lines.append("")
    stats = [
        ("AIC", model.aic),
        ("BIC", model.bic),
        ("logLik", model.loglik),
        ("deviance", model.objective),
        ("df.resid", float(model.nobs - model.n_params)),
    ]
    width = max(len(f"{v:.1f}") for _, v in stats)
    lines.append("  ".join(name.rjust(width) for name, _ in stats))
    lines.append("  ".join(f"{v:.1f}".rjust(width) for _, v in stats))
    lines.append("")
    q = model.scaled_residual_quantiles()
    lines.append("Scaled residuals:")
    lines += _table(["Min", "1Q", "Median", "3Q", "Max"], [[f"{v:.4f}" for v in q]], align_left=0)
    lines.append("")
    lines.append("Random effects:")
    lines += _random_effects_lines(model)
    groups = "; ".join(f"{name}, {n}" for name, n in model.ngroups.items())
    lines.append(f"Number of obs: {model.nobs}, groups:  {groups}")
    if model.n_dropped_missing:
        lines.append(f"({model.n_dropped_missing} observations deleted due to missingness)")
    lines.append("")
    coefs = model.coefs
    # lme4 labels the statistic t for families with a dispersion, its p value stays normal.
    statistic = "t value" if family.has_dispersion else "z value"
    lines.append("Fixed effects:")
    rows = [
        [
            name,
            f"{r.estimate:.4g}",
            f"{r.std_error:.4g}",
            f"{r.z_value:.3f}",
            _format_p(r.p_value),
            _stars(r.p_value),
        ]
        for name, r in coefs.iterrows()
    ]
    lines += _table(["", "Estimate", "Std. Error", statistic, "Pr(>|z|)", ""], rows)
    lines.append("---")
    lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
    p = len(coefs)
    if 1 < p <= 12:
        vc = model.vcov.to_numpy()
        se = np.sqrt(np.diag(vc))
        corr = vc / np.outer(se, se)
        short = [_abbreviate(n) for n in coefs.index]
        lines.append("")
        lines.append("Correlation of Fixed Effects:")
        rows = [
            [short[i]] + [f"{corr[i, j]:.3f}" for j in range(i)] + [""] * (p - 1 - i)
            for i in range(1, p)
        ]
        lines += _table(["", *short[: p - 1]], rows)
    if model.design.dropped_columns:
        lines.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(model.design.dropped_columns)} columns: "
            + ", ".join(model.design.dropped_columns)
        )
    if model.is_singular:
        lines.append("boundary (singular) fit: see is_singular")
    for message in model.convergence_messages:
        lines.append(f"convergence warning: {message}")
    return "\n".join(lines)
