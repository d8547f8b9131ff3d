"""Numbers and tables formatted as R prints them.

lme4's summary is R's printing of numbers: ``format()`` gives a column of
numbers one common layout (as many decimals as the element that needs most to
show ``digits`` significant digits, or scientific notation when that is
narrower), ``printCoefmat`` rounds estimates and standard errors together,
``format.pval`` writes p values, and ``abbreviate`` shortens labels.  This
module reproduces those rules (R 4.2) so the package's text summary reads as
lme4's; ``tests/results/test_rformat.py`` checks them against R's output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# R's .Machine$double.eps: format.pval prints smaller p values as "< 2e-16".
DOUBLE_EPS = 2.220446049250313e-16


def _scientific(x: float, digits: int) -> tuple[int, int, int, bool]:
    """R's ``scientific()``: (negative, power of ten, significant digits, rounding widens)."""
    if x == 0.0:
        return 0, 0, 1, False
    neg = int(x < 0)
    r = abs(x)
    mantissa, exponent = f"{r:.{digits - 1}e}".split("e")
    kpower = int(exponent)
    nsig = len(mantissa.replace(".", "").rstrip("0")) or 1
    # 9996 with 3 digits is 1.00e+04 in scientific notation but 9996 fixed.
    rgt = min(max(digits - kpower, 0), 22)
    widens = 0 < kpower <= 22 and r < 10.0**kpower - 0.5 / 10.0**rgt
    return neg, kpower, nsig, widens


def _layout(values: Sequence[float], digits: int, nsmall: int = 0) -> tuple[int, int, bool]:
    """R's ``formatReal``: (width, decimals, scientific) common to ``values``."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0, 0, False
    neg = 0
    rgt = mxsl = mxns = -(10**9)
    mxe, mne = -(10**9), 10**9
    for v in finite:
        neg_i, kpower, nsig, widens = _scientific(v, digits)
        left = kpower + 1 - int(widens)
        sleft = neg_i + (1 if left <= 0 else left)
        rgt = max(rgt, nsig - left)
        mxsl = max(mxsl, sleft)
        mxns = max(mxns, nsig)
        mxe, mne = max(mxe, kpower), min(mne, kpower)
        neg = max(neg, neg_i)
    rgt = max(rgt, 0)
    width_fixed = mxsl + rgt + (rgt != 0)
    exp_digits = 2 if (mxe >= 100 or mne <= -99) else 1
    decimals_sci = mxns - 1
    width_sci = neg + (decimals_sci > 0) + decimals_sci + 4 + exp_digits
    if width_fixed <= width_sci:
        if nsmall > rgt:
            rgt = nsmall
            width_fixed = mxsl + rgt + (rgt != 0)
        return width_fixed, rgt, False
    return width_sci, decimals_sci, True


def _special(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return "Inf" if v > 0 else "-Inf"


def format_numbers(
    values: Sequence[float] | np.ndarray, digits: int = 7, nsmall: int = 0
) -> list[str]:
    """R's ``format(x, digits = digits, nsmall = nsmall)``: one layout for all values.

    Parameters
    ----------
    values : sequence of float
        The numbers (NaN prints ``NaN``, infinities ``Inf``/``-Inf``).
    digits : int, default 7
        Significant digits the element that needs most must show.
    nsmall : int, default 0
        At least this many decimals in fixed notation.

    Returns
    -------
    list of str
        Strings of one width, right-justified.

    Examples
    --------
    >>> format_numbers([251.405, 10.467, 6.825, 1.546], digits=4)
    ['251.405', ' 10.467', '  6.825', '  1.546']
    >>> format_numbers([2.81e-08, 4.1e-4], digits=3)
    ['2.81e-08', '4.10e-04']
    """
    values = [float(v) for v in values]
    width, decimals, sci = _layout(values, digits, nsmall)
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(_special(v))
            continue
        v = 0.0 if v == 0 else v  # no "-0"
        if sci:
            text = f"{v:#.{decimals}e}" if decimals else f"{v:.0e}"
        else:
            text = f"{v:.{decimals}f}"
            if float(text) == 0:
                text = text.lstrip("-")
        out.append(text)
    width = max([width, *(len(s) for s in out)])
    return [s.rjust(width) for s in out]


def format_number(value: float, digits: int = 7) -> str:
    """One number as R's ``format``/``cat`` writes it (``1743.6``, ``247``)."""
    return format_numbers([value], digits)[0]


def round_r(values: np.ndarray | float, decimals: int) -> np.ndarray:
    """R's ``round(x, digits)``: to the nearest, the decimal nearest to x's binary value."""
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    return np.array([float(f"{v:.{decimals}f}") if math.isfinite(v) else v for v in arr])


def zapsmall(values: np.ndarray, digits: int) -> np.ndarray:
    """R's ``zapsmall``: round so that values tiny next to the largest print as 0."""
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    mx = float(np.max(np.abs(finite))) if finite.size else 0.0
    # R rounds to ``digits - log10(mx)`` decimals, itself rounded half up.
    decimals = max(0.0, digits - math.log10(mx)) if mx > 0 else digits
    return round_r(arr, math.floor(decimals + 0.5))


def format_pvalues(p: Sequence[float], digits: int = 3, eps: float = DOUBLE_EPS) -> list[str]:
    """R's ``format.pval``: p values below ``eps`` as ``< 2e-16``; NaN as ``NA``."""
    p = [float(v) for v in p]
    out = ["NA"] * len(p)
    present = [i for i, v in enumerate(p) if not math.isnan(v)]
    small = [i for i in present if p[i] < eps]
    rest = [i for i in present if p[i] >= eps]
    if rest:
        expo = {i: math.floor(math.log10(p[i])) if p[i] > 0 else -50 for i in rest}
        fixp = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
        other = [i for i in rest if i not in fixp]
        for group in (fixp, other):
            if group:
                for i, text in zip(
                    group, format_numbers([p[i] for i in group], digits), strict=True
                ):
                    out[i] = text
    if small:
        eps_digits = max(1, digits - 2)
        sep = "" if eps_digits == 1 else " "
        if rest:
            nc = max(len(out[i]) for i in rest)
            if eps_digits > 1 and eps_digits + 6 > nc:
                eps_digits = max(1, nc - 7)
            sep = "" if (eps_digits == 1 and nc <= 6) else " "
        label = "<" + sep + format_number(eps, eps_digits)
        for i in small:
            out[i] = label
    return out


def significance_stars(p: float) -> str:
    """R's ``symnum`` codes: ``***`` below 0.001, ``**`` 0.01, ``*`` 0.05, ``.`` 0.1."""
    if not math.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p <= cut:
            return mark
    return ""


SIGNIF_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


def coefficient_cells(
    table: np.ndarray, n_coef: int, has_pvalue: bool, digits: int = 4
) -> list[list[str]]:
    """The cells of R's ``printCoefmat``: rows of formatted strings.

    Parameters
    ----------
    table : ndarray (rows, columns)
        Columns: ``n_coef`` columns rounded together (estimate, standard
        error and, for lmerTest, df), the test statistic, then the p value
        when ``has_pvalue``.
    n_coef : int
        How many leading columns are formatted as coefficients.
    has_pvalue : bool
        The last column holds p values (stars are added when any is < 0.1).
    digits : int, default 4
        lme4's ``max(3, getOption("digits") - 3)``.

    Returns
    -------
    list of list of str
        One list per row; with p values a last column of stars when any p
        value is below 0.1.
    """
    x = np.asarray(table, dtype=float)
    nrow, ncol = x.shape
    cells = [[""] * ncol for _ in range(nrow)]
    coef = x[:, :n_coef]
    finite = np.abs(coef[np.isfinite(coef)])
    nonzero = finite[finite != 0]
    if finite.size:
        if nonzero.size:
            digmin = 1 + np.floor(np.log10([nonzero.min(), nonzero.max()]))
        else:
            digmin = np.array([1.0, 1.0])
        decimals = int(max(1, *(digits - digmin)))
        flat = format_numbers(round_r(coef.ravel(), decimals), digits)
        for k, text in enumerate(flat):
            cells[k // n_coef][k % n_coef] = text
    dig_tst = max(1, min(5, digits - 1))
    stat = x[:, n_coef]
    for i, text in enumerate(format_numbers(round_r(stat, dig_tst), digits)):
        cells[i][n_coef] = text
    # A nonzero coefficient that rounded to zero is shown with fewer digits.
    for i in range(nrow):
        for j in range(n_coef):
            v = x[i, j]
            if math.isfinite(v) and v != 0 and float(cells[i][j]) == 0:
                cells[i][j] = format_number(v, max(1, digits - 1))
    for i in range(nrow):
        for j in range(n_coef + 1):
            if math.isnan(x[i, j]):
                cells[i][j] = "NaN"
    if has_pvalue:
        pv = x[:, -1]
        for i, text in enumerate(format_pvalues(pv, dig_tst)):
            cells[i][-1] = text
        if np.any(pv[~np.isnan(pv)] < 0.1):
            stars = [significance_stars(v) for v in pv]
            width = max(len(s) for s in stars)
            for row, s in zip(cells, stars, strict=True):
                row.append(s.ljust(width))
    return cells


def matrix_lines(
    cells: Sequence[Sequence[str]],
    header: Sequence[str],
    row_names: Sequence[str],
    right: bool = True,
) -> list[str]:
    """R's ``print`` of a character matrix (``quote = FALSE``), one string per line.

    Row names are left-justified; columns (header and cells) right-justified
    (``right=True``) or left-justified; one space between columns.
    """
    w0 = max((len(r) for r in row_names), default=0)
    ncol = len(header)
    widths = [max([len(header[j]), *(len(row[j]) for row in cells)]) for j in range(ncol)]

    def justify(text: str, width: int) -> str:
        return text.rjust(width) if right else text.ljust(width)

    lines = [" " * w0 + "".join(" " + justify(header[j], widths[j]) for j in range(ncol))]
    for name, row in zip(row_names, cells, strict=True):
        lines.append(
            name.ljust(w0) + "".join(" " + justify(row[j], widths[j]) for j in range(ncol))
        )
    return lines


def named_vector_lines(names: Sequence[str], cells: Sequence[str]) -> list[str]:
    """R's ``print`` of a named vector: names over values, one common column width."""
    width = max(len(s) for s in [*names, *cells])
    return [
        "".join(n.rjust(width) + " " for n in names),
        "".join(c.rjust(width) + " " for c in cells),
    ]


def filled_line(pieces: Sequence[str], width: int = 80) -> list[str]:
    """R's ``cat(..., fill = TRUE)``: pieces joined by spaces, broken before a piece
    that would run past ``width``."""
    lines: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    lines.append(current)
    return lines


def _is_lower_vowel(c: str) -> bool:
    return c in "aeiou"


def _strip_chars(text: str, minlength: int) -> str:
    """R's C ``stripchars`` (``abbreviate``'s ``use.classes = TRUE``)."""
    buf = list(text.lstrip())
    if len(buf) <= minlength:
        return "".join(buf)
    n_space = 0
    upper = len(buf) - 1

    def length() -> int:
        return len(buf) - n_space

    def done() -> str:
        out = buf
        if len(out) > minlength:
            out = [out[0]] + [c for c in out[1:] if not c.isspace()]
        return "".join(out)

    # Trailing spaces go; inner spaces are counted (they mark word starts).
    trailing = True
    for i in range(upper, 0, -1):
        if buf[i].isspace():
            if trailing:
                del buf[i]
            else:
                n_space += 1
        else:
            trailing = False
        if length() <= minlength:
            return done()

    def first_char(i: int) -> bool:
        return buf[i - 1].isspace()

    def last_char(i: int) -> bool:
        return not buf[i - 1].isspace() and (i + 1 >= len(buf) or buf[i + 1].isspace())

    def at(i: int) -> str:
        return buf[i] if i < len(buf) else ""

    passes = (
        lambda i: _is_lower_vowel(at(i)) and last_char(i),
        lambda i: _is_lower_vowel(at(i)) and not first_char(i),
        lambda i: at(i).islower() and last_char(i),
        lambda i: at(i).islower() and not first_char(i),
    )
    for drop in passes:
        for i in range(upper, 0, -1):
            if i < len(buf) and drop(i):
                del buf[i]
            if length() <= minlength:
                return done()
    upper = len(buf) - 1
    for i in range(upper, 0, -1):
        if i < len(buf) and not first_char(i) and not buf[i].isspace():
            del buf[i]
        if length() <= minlength:
            return done()
    return done()


def abbreviate(names: Sequence[str], minlength: int = 4) -> list[str]:
    """R's ``abbreviate(names, minlength)``: labels shortened, kept distinct.

    Examples
    --------
    >>> abbreviate(["(Intercept)", "Days"], 6)
    ['(Intr)', 'Days']
    """
    names = [str(n).strip() for n in names]
    unique = list(dict.fromkeys(names))
    short = {n: n for n in unique}
    pending = list(unique)
    length = minlength
    while pending:
        for n in pending:
            short[n] = _strip_chars(n, length)
        seen: dict[str, list[str]] = {}
        for n in unique:
            seen.setdefault(short[n], []).append(n)
        clashes = [group for group in seen.values() if len(group) > 1]
        if not clashes:
            break
        # R lengthens the duplicated abbreviations (and those they clash with).
        length += 1
        pending = [n for group in clashes for n in group]
    return [short[n] for n in names]


# lme4 prints the correlation of the fixed effects up to this many of them.
CORRELATION_MAX = 12
