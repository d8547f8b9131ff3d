"""R's text for numbers, strings and factor levels, as R prints them in names.

lme4 names a coefficient by R's deparsed term (``I(x * 1e+05)``) followed by
a level label made by ``as.character`` (``factor(x)1e+05``, ``flagTRUE``).
Both print a double with at most 15 significant digits, in fixed notation
unless scientific notation is narrower, which is what :func:`r_number`
reproduces.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["r_level", "r_number", "r_number_literal", "r_string"]


def r_number(value: float, digits: int = 15) -> str:
    """A double as R's ``as.character`` and ``deparse`` write it.

    At most ``digits`` significant digits, as few as give the same value at
    that precision; fixed notation unless scientific notation is narrower
    (R's rule with ``scipen = 0``): ``1e+05``, ``120000``, ``1e-04``,
    ``0.00012``, ``0.333333333333333``.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    # The fewest significant digits that round to the same digits-digit value.
    full = f"{abs(value):.{digits - 1}e}"
    mantissa, exponent = full.split("e")
    significant = mantissa.replace(".", "").rstrip("0") or "0"
    n_sig = max(1, len(significant))
    e10 = int(exponent)
    if significant != "0" and len(significant) > 0:
        # Rounding to n_sig digits can carry into a new power of ten (9.99... -> 10).
        rounded = f"{abs(value):.{n_sig - 1}e}"
        e10 = int(rounded.split("e")[1])
        mantissa = rounded.split("e")[0]
    sign = "-" if value < 0 else ""
    sci_exponent = f"{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    sci = f"{sign}{mantissa}e{sci_exponent}"
    decimals = max(0, n_sig - e10 - 1)
    fixed = f"{sign}{abs(value):.{decimals}f}"
    return fixed if len(fixed) <= len(sci) else sci


def r_number_literal(text: str) -> str:
    """A number as written in a formula, deparsed as R deparses it.

    ``2L`` stays ``2L`` (an R integer), ``1e5`` becomes ``1e+05``, ``1.50``
    becomes ``1.5``, ``.5`` becomes ``0.5``.
    """
    if text.endswith("L"):
        return f"{int(float(text[:-1]))}L"
    return r_number(float(text))


def r_string(value: str) -> str:
    """A string literal as R deparses it: in double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def r_level(value: Any) -> str:
    """The label R gives a factor level made from ``value`` (``as.character``).

    Logicals are ``TRUE``/``FALSE``; numbers print as :func:`r_number` does,
    integral values without a decimal point (R's integers, as read from a
    file); anything else is its text.
    """
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return r_number(number)
    return str(value)
