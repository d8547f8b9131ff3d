"""A :class:`~mixedmodels.results.summary.ModelSummary` as lme4 prints it.

The layout and the number formatting are lme4's ``print(summary(fit))``
(with lmerTest's df and p values): columns formatted together as R's
``format`` and ``printCoefmat`` do (:mod:`.rformat`).  lme4's R-only lines
(the object class, ``optimizer (nloptwrap) convergence code``) are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import rformat
from .rformat import CORRELATION_MAX

if TYPE_CHECKING:
    from .summary import ModelSummary

# lme4's print.summary.merMod: digits = max(3, getOption("digits") - 3).
DIGITS = 4
WIDTH = 80


def criteria_cells(s: ModelSummary) -> tuple[list[str], list[str]]:
    """Names and formatted values of the fit criteria (rounded to 0.1, as lme4)."""
    names = list(s.criteria)
    values = [rformat.round_r(s.criteria[n], 1)[0] for n in names]
    # lme4 formats the criteria together, df.resid on its own (an integer).
    cells = rformat.format_numbers(values)
    if "df.resid" in names:
        i = names.index("df.resid")
        cells[i] = rformat.format_number(values[i])
    return names, [c.strip() for c in cells] if len(names) == 1 else cells


def _criteria_lines(s: ModelSummary) -> list[str]:
    names, cells = criteria_cells(s)
    if names == ["REML criterion at convergence"]:
        return [f"REML criterion at convergence: {cells[0]}"]
    return [line.rstrip() for line in rformat.named_vector_lines(names, cells)]


def residual_cells(s: ModelSummary) -> tuple[list[str], list[str]]:
    """Min, 1Q, Median, 3Q, Max of the scaled residuals, as lme4 rounds them."""
    assert s.scaled_residuals is not None
    q = rformat.zapsmall(s.scaled_residuals.to_numpy(), DIGITS + 1)
    return [str(k) for k in s.scaled_residuals.index], rformat.format_numbers(q, DIGITS)


def residual_title(s: ModelSummary) -> str:
    return "Scaled residuals:" if s.residuals_exact else "Scaled residuals (quartiles approximate):"


def _residual_lines(s: ModelSummary) -> list[str]:
    lines = rformat.named_vector_lines(*residual_cells(s))
    return [residual_title(s), *(line.rstrip() for line in lines)]


def _correlation_cells(values: tuple[float, ...]) -> list[str]:
    """One term's correlations: ``format(round(x, 2), nsmall = 2)`` over its matrix."""
    return rformat.format_numbers(rformat.round_r(np.array([1.0, *values]), 2), nsmall=2)[1:]


def random_effects_cells(s: ModelSummary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of lme4's ``Random effects:`` table (Groups, Name, Variance,
    Std.Dev., Corr); the group label only on a term's first row."""
    rows = list(s.random_effects) + ([s.residual] if s.residual is not None else [])
    variances = rformat.format_numbers([r.variance for r in rows], DIGITS)
    sds = rformat.format_numbers([r.std_dev for r in rows], DIGITS)
    n_corr = max((len(r.correlations) for r in rows), default=0)
    cells = []
    previous_group = None
    for r, var, sd in zip(rows, variances, sds, strict=True):
        corr = _correlation_cells(r.correlations) if r.correlations else []
        group = "" if r.group == previous_group else r.group
        previous_group = r.group
        cells.append([group, r.name, var, sd, *corr, *[""] * (n_corr - len(corr))])
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    if n_corr:
        header += ["Corr", *[""] * (n_corr - 1)]
    return header, cells


def random_effects_lines(s: ModelSummary) -> list[str]:
    """lme4's ``Random effects:`` table."""
    header, cells = random_effects_cells(s)
    lines = rformat.matrix_lines(cells, header, [""] * len(cells), right=False)
    return [line.rstrip() for line in lines]


def groups_text(s: ModelSummary) -> str:
    """``Subject, 18; Batch, 6``: grouping factors and their levels."""
    return "; ".join(f"{name}, {n}" for name, n in s.ngroups.items())


def groups_lines(s: ModelSummary) -> list[str]:
    """``Number of obs: 180, groups:  Subject, 18`` (factors separated by ``;``)."""
    lines = rformat.filled_line([f"Number of obs: {s.nobs}, groups: ", groups_text(s)], WIDTH)
    if s.n_dropped:
        lines.append(f"  ({s.n_dropped} observations deleted due to missingness)")
    return lines


def fixed_effects_cells(
    s: ModelSummary,
) -> tuple[list[str], list[str], list[list[str]], bool]:
    """Header, row names, rows of the coefficient table, and whether stars show."""
    table = s.fixed_effects
    columns = ["estimate", "std_error"]
    header = ["Estimate", "Std. Error"]
    if "df" in table.columns:
        columns.append("df")
        header.append("df")
    columns.append("statistic")
    header.append(s.statistic_label)
    if s.has_p_values:
        columns.append("p_value")
        header.append(s.p_label)
    values = table[columns].to_numpy(dtype=float)
    n_coef = len(columns) - 1 - int(s.has_p_values)
    cells = rformat.coefficient_cells(values, n_coef, s.has_p_values, DIGITS)
    stars = bool(cells) and len(cells[0]) > len(columns)
    if stars:
        header.append("")
    return header, [str(n) for n in table.index], cells, stars


def fixed_effects_lines(s: ModelSummary) -> list[str]:
    """lme4's (lmerTest's) coefficient table, with significance codes when p values show."""
    header, names, cells, stars = fixed_effects_cells(s)
    lines = [line.rstrip() for line in rformat.matrix_lines(cells, header, names)]
    if stars:
        lines += ["---", rformat.SIGNIF_LEGEND]
    return lines


def correlation_cells(s: ModelSummary) -> tuple[list[str], list[str], list[list[str]]]:
    """The lower triangle of the fixed effects' correlations, R's abbreviated labels."""
    corr = s.correlation
    assert corr is not None
    names = [str(n) for n in corr.index]
    p = len(names)
    flat = rformat.format_numbers(rformat.round_r(corr.to_numpy().ravel(), 3), nsmall=3)
    grid = np.array(flat, dtype=object).reshape(p, p)
    rows = rformat.abbreviate(names, 11)
    cols = rformat.abbreviate(names, 6)
    cells = [[grid[i, j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
    return cols[: p - 1], rows[1:], cells


def correlation_lines(s: ModelSummary) -> list[str]:
    """``Correlation of Fixed Effects:``."""
    if s.correlation is None or s.correlation.shape[0] < 2:
        return []
    header, names, cells = correlation_cells(s)
    lines = rformat.matrix_lines(cells, header, names, right=False)
    return ["Correlation of Fixed Effects:", *(line.rstrip() for line in lines)]


def correlation_omitted_lines(p: int) -> list[str]:
    return [
        f"Correlation matrix not shown by default, as p = {p} > {CORRELATION_MAX}.",
        "Use m.summary(correlation=True) or m.vcov if you need it",
    ]


def render_text(s: ModelSummary) -> str:
    """The text of lme4's ``summary()`` from the summary content."""
    lines = [s.title]
    if s.family is not None:
        link = f"  ( {s.link} )" if s.link else ""
        lines.append(f" Family: {s.family}{link}")
    lines.append(f"Formula: {s.formula}")
    if s.data:
        lines.append(f"   Data: {s.data}")
    lines += ["", *_criteria_lines(s), ""]
    if s.scaled_residuals is not None:
        lines += [*_residual_lines(s), ""]
    lines += ["Random effects:", *random_effects_lines(s), *groups_lines(s)]
    if len(s.fixed_effects):
        lines += ["", "Fixed effects:", *fixed_effects_lines(s)]
        if s.correlation_omitted is not None:
            lines += ["", *correlation_omitted_lines(s.correlation_omitted)]
        elif s.correlation is not None and len(s.correlation) > 1:
            lines += ["", *correlation_lines(s)]
    lines += s.notes
    return "\n".join(lines)
