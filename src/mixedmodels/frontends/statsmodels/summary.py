"""statsmodels' MixedLM summary: model facts, then a row per parameter.

``results.summary()`` returns a :class:`MixedLMSummary`: ``tables`` holds the
facts and the parameter table as DataFrames (the parameter table indexed by
the parameters' names, as statsmodels'), ``str()``/:meth:`~MixedLMSummary.as_text`
writes them in statsmodels' layout, :meth:`~MixedLMSummary.as_html` and
:meth:`~MixedLMSummary.as_latex` in those formats.  When statsmodels'
``summary2`` module is loaded, the summary is also an instance of its
``Summary`` class, so code that checks for one keeps working.
"""

from __future__ import annotations

import html
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.stats

if TYPE_CHECKING:
    from .results import MixedLMResults

__all__ = ["MixedLMSummary", "make_summary"]

DEFAULT_TITLE = "Mixed Linear Model Regression Results"


def _cell(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else ""


class MixedLMSummary:
    """The summary of a :class:`~.results.MixedLMResults` (see the module docstring).

    Attributes
    ----------
    title : str
    tables : list of pandas.DataFrame
        The model facts (four columns: label, value, label, value) and the
        parameters (Coef., Std.Err., z, P>|z| and the interval, as text).
    extra_txt : list of str
        Notes printed below the tables (a singular fit, doubtful convergence).
    """

    def __init__(
        self,
        results: MixedLMResults,
        yname: str | None = None,
        xname_fe: list[str] | None = None,
        xname_re: list[str] | None = None,
        title: str | None = None,
        alpha: float = 0.05,
    ) -> None:
        model = results.model
        names = list(model.data.param_names)
        k_fe = results.k_fe
        if xname_fe is not None:
            if len(xname_fe) != k_fe:
                raise ValueError(f"xname_fe should be a list of length {k_fe:d}")
            names[:k_fe] = list(xname_fe)
        if xname_re is not None:
            if len(xname_re) != len(names) - k_fe:
                raise ValueError(f"xname_re should be a list of length {len(names) - k_fe:d}")
            names[k_fe:] = list(xname_re)
        sizes = results.group_sizes()
        llf = results.summary_cache.setdefault("llf", results.llf)
        info = {
            "Model:": "MixedLM",
            "No. Observations:": str(results.nobs),
            "No. Groups:": str(len(sizes)),
            "Min. group size:": f"{sizes.min():.0f}",
            "Max. group size:": f"{sizes.max():.0f}",
            "Mean group size:": f"{sizes.mean():.1f}",
            "Dependent Variable:": model.endog_names if yname is None else yname,
            "Method:": results.method,
            "Scale:": f"{results.scale:.4f}",
            "Log-Likelihood:": f"{llf:.4f}",
            "Converged:": "Yes" if results.converged else "No",
        }
        pairs = list(info.items())
        half = (len(pairs) + 1) // 2
        left, right = pairs[:half], pairs[half:]
        right += [("", "")] * (half - len(right))
        facts = pd.DataFrame(
            [[lk, lv, rk, rv] for (lk, lv), (rk, rv) in zip(left, right, strict=True)]
        )

        z = scipy.stats.norm.ppf(1 - alpha / 2)
        fe = np.asarray(results.fe_params, dtype=np.float64)
        se = np.asarray(results.bse_fe, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = fe / se
        rows = []
        for j in range(k_fe):
            p = 2 * scipy.stats.norm.sf(abs(stat[j]))
            cells = [fe[j], se[j], stat[j], p, fe[j] - z * se[j], fe[j] + z * se[j]]
            rows.append([_cell(c) for c in cells])
        scaled = results.scale * np.asarray(results.params, dtype=np.float64)[k_fe:]
        bse_re = np.asarray(results.bse_re, dtype=np.float64)
        for value, err in zip(scaled, bse_re, strict=True):
            rows.append([_cell(value), _cell(err), "", "", "", ""])
        columns = ["Coef.", "Std.Err.", "z", "P>|z|", f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"]
        params = pd.DataFrame(rows, index=names, columns=columns)
        self.title = DEFAULT_TITLE if title is None else title
        self.tables = [facts, params]
        self.settings: list[dict[str, Any]] = []
        self.extra_txt: list[str] = []
        self._merge_latex = False
        if results.is_singular:
            self.extra_txt.append(
                "The fit is singular: a variance is estimated as zero or a correlation as "
                "±1, and the standard errors of its parameters are not available."
            )
        self.extra_txt.extend(results.convergence_messages)

    # -- text -----------------------------------------------------------------------------

    def as_text(self) -> str:
        """The summary as statsmodels prints it."""
        facts, params = self.tables[0], self.tables[1]
        info_cells = facts.to_numpy().tolist()
        param_cells = [
            [str(i), *row] for i, row in zip(params.index, params.to_numpy().tolist(), strict=True)
        ]
        header = ["", *params.columns]
        info_width = _natural_width(info_cells)
        param_width = _natural_width([header, *param_cells])
        widest = max(info_width, param_width)
        # statsmodels widens the narrower table by padding its column separators
        # evenly (counted without the row labels) and the first column with the rest.
        info_sep, info_pad = _padding(widest, info_width, 4)
        param_sep, param_pad = _padding(widest, param_width, len(header) - 1)
        info_lines = _render(info_cells, None, info_sep, info_pad, left_data=True)
        param_lines = _render(param_cells, header, param_sep, param_pad, left_data=False)
        info_lines[0] = "=" * widest
        lines = [*info_lines, *param_lines, "=" * widest]
        title = self.title
        if len(title) < widest:
            title = " " * int(widest / 2 - len(title) / 2) + title
        notes = "\n".join("\n".join(textwrap.wrap(note, widest)) for note in self.extra_txt)
        return f"{title}\n" + "\n".join(lines) + f"\n{notes}"

    def as_html(self) -> str:
        """The summary as HTML tables."""
        facts, params = self.tables[0], self.tables[1]
        out = [f'<table class="simpletable"><caption>{html.escape(self.title)}</caption>']
        for row in facts.to_numpy().tolist():
            out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        out.append("</table>")
        out.append('<table class="simpletable">')
        out.append(
            "<tr><th></th>"
            + "".join(f"<th>{html.escape(str(c))}</th>" for c in params.columns)
            + "</tr>"
        )
        for name, row in zip(params.index, params.to_numpy().tolist(), strict=True):
            cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
            out.append(f"<tr><th>{html.escape(str(name))}</th>{cells}</tr>")
        out.append("</table>")
        out += [f"<p>{html.escape(note)}</p>" for note in self.extra_txt]
        return "\n".join(out)

    def as_latex(self) -> str:
        """The summary as LaTeX tables."""
        facts, params = self.tables[0], self.tables[1]

        def tex(value: Any) -> str:
            text = str(value)
            for char, escaped in (
                ("\\", r"\textbackslash{}"),
                ("&", r"\&"),
                ("%", r"\%"),
                ("$", r"\$"),
                ("#", r"\#"),
                ("_", r"\_"),
                ("{", r"\{"),
                ("}", r"\}"),
                ("|", r"$|$"),
                ("~", r"\~{}"),
            ):
                text = text.replace(char, escaped)
            return text

        lines = [r"\begin{table}", rf"\caption{{{tex(self.title)}}}", r"\begin{center}"]
        lines.append(r"\begin{tabular}{llll}")
        lines += [" & ".join(tex(c) for c in row) + r" \\" for row in facts.to_numpy().tolist()]
        lines.append(r"\end{tabular}")
        lines.append(r"\begin{tabular}{l" + "r" * len(params.columns) + "}")
        lines.append(r"\hline")
        lines.append(" & " + " & ".join(tex(c) for c in params.columns) + r" \\")
        lines.append(r"\hline")
        for name, row in zip(params.index, params.to_numpy().tolist(), strict=True):
            lines.append(tex(name) + " & " + " & ".join(tex(c) for c in row) + r" \\")
        lines += [r"\hline", r"\end{tabular}", r"\end{center}", r"\end{table}"]
        lines += [tex(note) for note in self.extra_txt]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.as_html()

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()


_DUAL: list[type] = []


def make_summary(
    results: MixedLMResults,
    yname: str | None,
    xname_fe: list[str] | None,
    xname_re: list[str] | None,
    title: str | None,
    alpha: float,
) -> MixedLMSummary:
    """A :class:`MixedLMSummary`, also a statsmodels ``Summary`` when statsmodels is loaded."""
    cls: type[MixedLMSummary] = MixedLMSummary
    module = sys.modules.get("statsmodels.iolib.summary2")
    theirs = getattr(module, "Summary", None) if module is not None else None
    if isinstance(theirs, type):
        if not _DUAL or not issubclass(_DUAL[0], theirs):
            _DUAL[:] = [type("MixedLMSummary", (MixedLMSummary, theirs), {"__module__": __name__})]
        cls = _DUAL[0]
    return cls(results, yname, xname_fe, xname_re, title, alpha)


def _natural_width(rows: list[list[str]]) -> int:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return sum(widths) + len(widths) - 1


def _padding(widest: int, width: int, n_columns: int) -> tuple[int, int]:
    n_sep = max(n_columns - 1, 1)
    extra = (widest - width) // n_sep
    return extra, widest - (width + n_sep * extra)


def _render(
    rows: list[list[str]], header: list[str] | None, sep: int, pad: int, *, left_data: bool
) -> list[str]:
    """A table as statsmodels' SimpleTable writes it: rule, [header, rule,] rows."""
    rows = [[r[0] + " " * pad, *r[1:]] for r in rows]
    everything = rows if header is None else [header, *rows]
    widths = [max(len(r[c]) for r in everything) for c in range(len(everything[0]))]
    gap = " " * (sep + 1)

    def line(cells: list[str], align) -> str:
        return gap.join(align(c, w, n) for n, (c, w) in enumerate(zip(cells, widths, strict=True)))

    def data_align(cell: str, width: int, n: int) -> str:
        return cell.ljust(width) if (left_data or n == 0) else cell.rjust(width)

    def header_align(cell: str, width: int, n: int) -> str:
        return cell.ljust(width) if n == 0 else cell.center(width)

    body = [line(r, data_align) for r in rows]
    rule = "-" * len(body[-1])
    if header is None:
        return [rule, *body]
    return [rule, line(header, header_align), rule, *body]
