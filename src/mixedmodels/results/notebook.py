"""A :class:`~mixedmodels.results.summary.ModelSummary` as HTML (notebooks) and LaTeX.

The cells are the text summary's (:mod:`.text`): the same numbers, formatted
the same way, in the same order — fit criteria, scaled residuals, variance
components, the fixed-effects table with df, p values and significance
codes, the correlations of the fixed effects and the notes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import text
from .rformat import SIGNIF_LEGEND

if TYPE_CHECKING:
    from .summary import ModelSummary

# Scoped to the summary's own element so a notebook's other tables keep their look.
_STYLE = (
    "<style>"
    ".mm-summary table{border-collapse:collapse;margin:0 0 0.8em 0;}"
    ".mm-summary th,.mm-summary td{padding:0.15em 0.6em;text-align:right;"
    "font-variant-numeric:tabular-nums;white-space:pre;}"
    ".mm-summary th{border-bottom:1px solid currentColor;}"
    ".mm-summary td.mm-label{text-align:left;}"
    ".mm-summary caption{text-align:left;font-weight:bold;padding-bottom:0.2em;}"
    ".mm-summary p{margin:0.2em 0;}"
    "</style>"
)


def _table(
    caption: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    n_labels: int = 1,
) -> str:
    """An HTML table whose first ``n_labels`` columns are left-aligned labels."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="mm-label">{html.escape(c.strip())}</td>'
            if i < n_labels
            else f"<td>{html.escape(c.strip())}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<table><caption>{html.escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def render_html(s: ModelSummary) -> str:
    """The summary as a self-contained HTML fragment (a ``<div>`` with scoped style).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> m = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"))
    >>> m.summary().as_html().startswith('<div class="mm-summary">')
    True
    """
    title = [f"<p><b>{html.escape(s.title)}</b></p>"]
    if s.family is not None:
        link = f" ({html.escape(s.link)})" if s.link else ""
        title.append(f"<p>Family: {html.escape(s.family)}{link}</p>")
    title.append(f"<p>Formula: <code>{html.escape(s.formula)}</code></p>")
    if s.data:
        title.append(f"<p>Data: {html.escape(str(s.data))}</p>")
    names, cells = text.criteria_cells(s)
    parts = ['<div class="mm-summary">', _STYLE, *title]
    parts.append(_table("Fit", names, [cells], n_labels=0))
    if s.scaled_residuals is not None:
        names, cells = text.residual_cells(s)
        parts.append(_table(text.residual_title(s).rstrip(":"), names, [cells], n_labels=0))
    header, rows = text.random_effects_cells(s)
    parts.append(_table("Random effects", header, rows, n_labels=2))
    groups = f"Number of obs: {s.nobs}, groups: {text.groups_text(s)}"
    if s.n_dropped:
        groups += f" ({s.n_dropped} observations deleted due to missingness)"
    parts.append(f"<p>{html.escape(groups)}</p>")
    if len(s.fixed_effects):
        header, names, rows, stars = text.fixed_effects_cells(s)
        parts.append(
            _table(
                "Fixed effects", ["", *header], [[n, *r] for n, r in zip(names, rows, strict=True)]
            )
        )
        if stars:
            parts.append(f"<p><small>{html.escape(SIGNIF_LEGEND)}</small></p>")
        if s.correlation_omitted is not None:
            note = " ".join(text.correlation_omitted_lines(s.correlation_omitted))
            parts.append(f"<p>{html.escape(note)}</p>")
        elif s.correlation is not None and len(s.correlation) > 1:
            header, names, rows = text.correlation_cells(s)
            parts.append(
                _table(
                    "Correlation of fixed effects",
                    ["", *header],
                    [[n, *r] for n, r in zip(names, rows, strict=True)],
                )
            )
    if s.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in s.notes)
        parts.append(f"<ul>{items}</ul>")
    parts.append("</div>")
    return "".join(parts)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def _latex(value: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in value.strip())


def _latex_table(
    caption: str, header: Sequence[str], rows: Sequence[Sequence[str]], n_labels: int
) -> str:
    align = "l" * n_labels + "r" * (len(header) - n_labels)
    lines = [
        "\\begin{table}[ht]",
        "\\centering",
        f"\\caption{{{_latex(caption)}}}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\hline",
        " & ".join(_latex(h) for h in header) + " \\\\",
        "\\hline",
        *(" & ".join(_latex(c) for c in row) + " \\\\" for row in rows),
        "\\hline",
        "\\end{tabular}",
        "\\end{table}",
    ]
    return "\n".join(lines)


def render_latex(s: ModelSummary) -> str:
    """The fixed-effects and variance-component tables as LaTeX ``table`` floats.

    Plain ``tabular`` (no package needed); the numbers as the text summary
    rounds them.
    """
    header, names, rows, _ = text.fixed_effects_cells(s)
    fixed = _latex_table(
        f"Fixed effects: {s.formula}",
        ["", *header],
        [[n, *r] for n, r in zip(names, rows, strict=True)],
        n_labels=1,
    )
    header, rows = text.random_effects_cells(s)
    random = _latex_table("Random effects", header, rows, n_labels=2)
    names, cells = text.criteria_cells(s)
    fit = _latex_table(
        f"Number of obs: {s.nobs}, groups: {text.groups_text(s)}", names, [cells], n_labels=0
    )
    return "\n\n".join([fixed, random, fit]) + "\n"
