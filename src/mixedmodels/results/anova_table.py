"""``mm.anova``'s result: a DataFrame that prints as R's anova tables.

:class:`AnovaTable` is a :class:`pandas.DataFrame` (index, columns and numbers
as before) with a heading and notes, printed in full as R prints
``anova(m0, m1)`` (lme4) or ``anova(m)`` (lmerTest): R's column formatting,
significance stars and their legend.  Tables derived from it (a column, a
slice, ``.round()``) are plain DataFrames.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from . import rformat

# R's print.anova: digits = max(getOption("digits") - 2, 3).
_DIGITS = 5

# Our column → (R's heading, how R's print.anova formats it).
_LRT_COLUMNS = {
    "npar": ("npar", "zap"),
    "aic": ("AIC", "zap"),
    "bic": ("BIC", "zap"),
    "loglik": ("logLik", "zap"),
    "deviance": ("deviance", "zap"),
    "chisq": ("Chisq", "test"),
    "df": ("Df", "plain"),
    "p_value": ("Pr(>Chisq)", "p"),
}
_F_COLUMNS = {
    "sum_sq": ("Sum Sq", "zap"),
    "mean_sq": ("Mean Sq", "zap"),
    "num_df": ("NumDF", "zap"),
    "den_df": ("DenDF", "zap"),
    "f_value": ("F value", "test"),
    "p_value": ("Pr(>F)", "p"),
}


class AnovaTable(pd.DataFrame):
    """A DataFrame of anova results that prints as R does.

    Attributes
    ----------
    heading : list of str
        Lines printed above the table (the models compared, the method).
    notes : list of str
        Lines printed below it (e.g. that REML fits were refitted by ML).
    """

    _metadata: ClassVar[list[str]] = ["heading", "notes"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def _columns(self) -> dict[str, tuple[str, str]]:
        return _LRT_COLUMNS if "chisq" in self.columns else _F_COLUMNS

    def _cells(self) -> tuple[list[str], list[list[str]], bool]:
        spec = {k: v for k, v in self._columns().items() if k in self.columns}
        header = [label for label, _ in spec.values()]
        columns = []
        p_values = None
        for name, (_, kind) in spec.items():
            values = self[name].to_numpy(dtype=float)
            present = ~np.isnan(values)
            cells = [""] * len(values)
            if present.any():
                shown = values[present]
                if kind == "p":
                    p_values = values
                    texts = rformat.format_pvalues(shown, _DIGITS - 1)
                elif kind == "test":
                    texts = rformat.format_numbers(rformat.round_r(shown, _DIGITS - 1), _DIGITS)
                elif kind == "zap":
                    texts = rformat.format_numbers(rformat.zapsmall(shown, _DIGITS), _DIGITS)
                else:
                    texts = rformat.format_numbers(shown, _DIGITS)
                for i, text in zip(np.flatnonzero(present), texts, strict=True):
                    cells[i] = text
            columns.append(cells)
        rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
        stars = False
        if p_values is not None and np.any(p_values[~np.isnan(p_values)] < 0.1):
            stars = True
            marks = [rformat.significance_stars(p) for p in p_values]
            width = max(len(m) for m in marks)
            for row, mark in zip(rows, marks, strict=True):
                row.append(mark.ljust(width))
            header.append("")
        return header, rows, stars

    def as_text(self) -> str:
        """The table as R prints it, with heading, stars and notes."""
        header, rows, stars = self._cells()
        names = [str(i) for i in self.index]
        lines = list(getattr(self, "heading", None) or [])
        lines += [line.rstrip() for line in rformat.matrix_lines(rows, header, names)]
        if stars:
            lines += ["---", rformat.SIGNIF_LEGEND]
        lines += list(getattr(self, "notes", None) or [])
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.as_text()

    def __str__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        header, rows, stars = self._cells()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["", *header])
        body = "".join(
            "<tr>"
            + f'<td class="mm-label">{html.escape(str(name))}</td>'
            + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row)
            + "</tr>"
            for name, row in zip(self.index, rows, strict=True)
        )
        parts = ['<div class="mm-summary">']
        parts += [f"<p>{html.escape(line)}</p>" for line in getattr(self, "heading", None) or []]
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if stars:
            parts.append(f"<p><small>{html.escape(rformat.SIGNIF_LEGEND)}</small></p>")
        parts += [f"<p>{html.escape(line)}</p>" for line in getattr(self, "notes", None) or []]
        parts.append("</div>")
        return "".join(parts)


def as_anova_table(
    table: pd.DataFrame, heading: Sequence[str] = (), notes: Sequence[str] = ()
) -> AnovaTable:
    """Wrap an anova DataFrame for display."""
    out = AnovaTable(table)
    out.heading = list(heading)
    out.notes = list(notes)
    return out


def model_labels(formulas: Sequence[str], names: Sequence[str] | None) -> list[str]:
    """Row labels: the names given, else the formulas (made distinct)."""
    if names is not None:
        return [str(n) for n in names]
    labels: list[str] = []
    for formula in formulas:
        label, k = formula, 2
        while label in labels:
            label = f"{formula} #{k}"
            k += 1
        labels.append(label)
    return labels


def lrt_heading(
    labels: Sequence[str], formulas: Sequence[str], data_names: Sequence[str | None]
) -> list[str]:
    """lme4's ``Data:`` and ``Models:`` lines (models listed when named by keywords)."""
    lines = []
    known = {d for d in data_names if d}
    if len(known) == 1:
        lines.append(f"Data: {known.pop()}")
    if any(label != formula for label, formula in zip(labels, formulas, strict=True)):
        lines.append("Models:")
        lines += [f"{label}: {formula}" for label, formula in zip(labels, formulas, strict=True)]
    return lines


REFIT_NOTE = "refitting model(s) with ML (instead of REML)"
