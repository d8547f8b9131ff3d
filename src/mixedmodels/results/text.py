"""lme4's ``summary(lmer(...))`` layout, as plain text.

REML fits of a model with the inference methods show lmerTest's t tests:
Satterthwaite df and p values next to the estimates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if np.isfinite(value) else "NaN"


def _table(header: list[str], rows: list[list[str]], align_left: int = 1) -> list[str]:
    """Right-aligned columns except the first ``align_left`` ones."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            r[i].ljust(widths[i]) if i < align_left else r[i].rjust(widths[i])
            for i in range(len(header))
        ]
        lines.append(" " + " ".join(cells).rstrip())
    return lines


def _random_effects_lines(model: LinearMixedModel) -> list[str]:
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
            row += cells + [""] * (corr_cols - len(cells))
            rows.append(row)
    sigma = model.sigma
    rows.append(["Residual", "", f"{sigma**2:.4g}", f"{sigma:.4g}"] + [""] * corr_cols)
    header = ["Groups", "Name", "Variance", "Std.Dev."] + (
        ["Corr"] + [""] * (corr_cols - 1) if corr_cols else []
    )
    return _table(header, rows, align_left=2)


def lme4_summary(model: LinearMixedModel) -> str:
    """The text of lme4's ``summary()`` for a fitted model."""
    method = "REML" if model.reml else "maximum likelihood"
    header = f"Linear mixed model fit by {method}"
    if model.reml and hasattr(model, "coef_table"):
        header += ". t-tests use Satterthwaite's method"
    lines = [header]
    lines.append(f"Formula: {model.design.formula.source}")
    if model.data_name:
        lines.append(f"   Data: {model.data_name}")
    lines.append("")
    if model.reml:
        lines.append(f"REML criterion at convergence: {model.objective:.1f}")
    else:
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
    exact = q.attrs.get("exact", True)
    lines.append("Scaled residuals:" if exact else "Scaled residuals (quartiles approximate):")
    lines += _table(["Min", "1Q", "Median", "3Q", "Max"], [[f"{v:.4f}" for v in q]], align_left=0)
    lines.append("")

    lines.append("Random effects:")
    lines += _random_effects_lines(model)
    groups = ", ".join(f"{name}, {n}" for name, n in model.ngroups.items())
    lines.append(f"Number of obs: {model.nobs}, groups:  {groups}")
    if model.n_dropped_missing:
        lines.append(f"({model.n_dropped_missing} observations deleted due to missingness)")
    lines.append("")

    coefs = model.coefs
    lines.append("Fixed effects:")
    tests = _satterthwaite_tests(model)
    if tests is None:
        rows = [
            [name, f"{r.estimate:.4g}", f"{r.std_error:.4g}", f"{r.t_value:.3f}"]
            for name, r in coefs.iterrows()
        ]
        lines += _table(["", "Estimate", "Std. Error", "t value"], rows)
        if model.reml and hasattr(model, "coef_table"):
            lines.append("(Satterthwaite df skipped: costly for this model; see coef_table())")
    else:
        rows = [
            [
                name,
                f"{r.estimate:.4g}",
                f"{r.std_error:.4g}",
                f"{r.df:.3f}",
                f"{r.t_value:.3f}",
                _format_p(r.p_value),
                _stars(r.p_value),
            ]
            for name, r in tests.iterrows()
        ]
        lines += _table(["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)", ""], rows)
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


# Above this estimated cost (seconds) the summary leaves the df out rather than
# make printing a large model slow; coef_table() computes them on request.
_SATTERTHWAITE_BUDGET = 5.0


def _satterthwaite_tests(model: LinearMixedModel):
    """lmerTest's t tests for a REML fit (None for ML fits or when too costly)."""
    if not model.reml or not hasattr(model, "coef_table"):
        return None
    # The df need about 4k(k + 1) refreshes of the factor (k = len(θ)).
    optimizer = model.optsum
    per_eval = optimizer.seconds / max(optimizer.n_evaluations, 1)
    k = len(model.theta)
    if 4 * k * (k + 1) * per_eval > _SATTERTHWAITE_BUDGET:
        return None
    try:
        return model.coef_table(ddf="satterthwaite")
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        # A summary must print; the df are left out when they cannot be had.
        return None


def _format_p(p: float) -> str:
    """R's ``format.pval`` with 3 significant digits and eps 2e-16."""
    if not np.isfinite(p):
        return "NaN"
    if p < 2e-16:
        return "< 2e-16"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


def _abbreviate(name: str, width: int = 6) -> str:
    """Short column labels for the correlation table, as R's ``abbreviate``."""
    if len(name) <= width:
        return name
    core = name.strip("()")
    vowels_dropped = core[0] + "".join(c for c in core[1:] if c.lower() not in "aeiou")
    short = vowels_dropped[:width]
    return f"({short[: width - 2]})" if name.startswith("(") else short
