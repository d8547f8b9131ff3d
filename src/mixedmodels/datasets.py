"""Data sets that users of lme4 and statsmodels know, shipped inside the package.

They load offline from compressed CSV files: ``load("sleepstudy")``.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from .errors import DataError

_PACKAGE = "mixedmodels.data"


def names() -> list[str]:
    """Names of the bundled data sets, sorted case-insensitively."""
    files = resources.files(_PACKAGE).iterdir()
    found = [f.name[: -len(".csv.gz")] for f in files if f.name.endswith(".csv.gz")]
    return sorted(found, key=str.lower)


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a pandas DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`names` (case-insensitive).

    Examples
    --------
    >>> from mixedmodels import datasets
    >>> datasets.load("sleepstudy").shape
    (180, 3)
    """
    by_lower = {n.lower(): n for n in names()}
    if name.lower() not in by_lower:
        raise DataError(f"no data set named {name!r}; available: {', '.join(names())}")
    resource = resources.files(_PACKAGE) / f"{by_lower[name.lower()]}.csv.gz"
    with resources.as_file(resource) as path:
        return pd.read_csv(path, compression="gzip")
