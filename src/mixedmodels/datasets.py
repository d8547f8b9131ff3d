"""Data sets that users of lme4 and statsmodels know, shipped inside the package.

They load offline from compressed CSV files: ``load("sleepstudy")``.

Column types
------------
Columns that R holds as factors come back as :class:`pandas.Categorical`, so
that a formula treats them as factors whatever their labels look like
(``Subject`` in sleepstudy is labelled ``308``, ``309``, ...; as an integer
column ``y ~ Subject`` would fit a slope, which is never what is meant):

- labels that are text (``"A"``, ``"Male"``, ``"Evit100"``) have their
  categories in byte order, the order R's levels had when lme4's reference
  results were made, so treatment contrasts pick the same reference level;
- identifiers that are whole numbers (subjects, pigs, schools, students,
  instructors) have integer categories in numeric order.

Measurements and counts stay numeric.  A few 0/1 indicators that R stores as
factors (``service`` in InstEval; ``retained``, ``black``, ``hispanic`` in
egsingle) stay integer columns: in a formula they give the same fixed effect
as the factor, under the column's own name (``service`` rather than lme4's
``service1``).  ``load`` returns a new frame on every call, so changing it
never affects the next caller.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

from .errors import DataError

_PACKAGE = "mixedmodels.data"
_SUFFIX = ".csv.gz"

# Per data set, the columns that are factors (grouping factors and categorical
# covariates); everything else keeps the type read_csv gives it.
FACTORS: dict[str, tuple[str, ...]] = {
    "cake": ("replicate", "recipe"),
    "cbpp": ("herd", "period"),
    "Contraception": ("woman", "district", "use", "livch", "urban"),
    "dietox": ("Pig", "Evit", "Cu", "Litter"),
    "Dyestuff": ("Batch",),
    "Dyestuff2": ("Batch",),
    "egsingle": ("schoolid", "childid", "female"),
    "Exam": ("school", "student", "schgend", "vr", "intake", "sex", "type"),
    "grouseticks": ("INDEX", "BROOD", "YEAR", "LOCATION"),
    "InstEval": ("s", "d", "dept"),
    "Machines": ("Worker", "Machine"),
    "Orthodont": ("Subject", "Sex"),
    "Pastes": ("batch", "cask", "sample"),
    "Penicillin": ("plate", "sample"),
    "ScotsSec": ("primary", "second", "sex"),
    "sleepstudy": ("Subject",),
    "students": ("student_id", "province", "school", "classroom", "sex"),
    "VerbAgg": ("id", "item", "Gender", "btype", "situ", "mode", "resp", "r2"),
}


def names() -> list[str]:
    """Names of the bundled data sets, sorted case-insensitively.

    Examples
    --------
    >>> from mixedmodels import datasets
    >>> "sleepstudy" in datasets.names()
    True
    """
    files = resources.files(_PACKAGE).iterdir()
    found = [f.name[: -len(_SUFFIX)] for f in files if f.name.endswith(_SUFFIX)]
    return sorted(found, key=str.lower)


def _as_factor(column: pd.Series) -> pd.Series:
    """A categorical with the column's distinct values as categories, sorted.

    Python sorts strings by code point, which for these ASCII labels is the
    byte order lme4's reference levels were put in; integers sort numerically.
    """
    values = column.dropna().unique()
    categories = sorted(values.tolist())
    return column.astype(pd.CategoricalDtype(categories=categories, ordered=False))


@functools.cache
def _read(name: str) -> pd.DataFrame:
    resource = resources.files(_PACKAGE) / f"{name}{_SUFFIX}"
    with resources.as_file(resource) as path:
        frame = pd.read_csv(path, compression="gzip")
    for column in FACTORS.get(name, ()):
        frame[column] = _as_factor(frame[column])
    return frame


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a pandas DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`names` (case-insensitive).

    Returns
    -------
    pandas.DataFrame
        A fresh copy (the file is parsed once per session and cached).  Factor
        columns are categoricals; see the module documentation.

    Raises
    ------
    DataError
        If there is no data set of that name.

    Examples
    --------
    >>> from mixedmodels import datasets
    >>> data = datasets.load("sleepstudy")
    >>> data.shape
    (180, 3)
    >>> data["Subject"].dtype.name
    'category'
    """
    if not isinstance(name, str):
        raise DataError(f"a data set name must be a string, not {type(name).__name__}")
    by_lower = {n.lower(): n for n in names()}
    if name.lower() not in by_lower:
        raise DataError(f"no data set named {name!r}; available: {', '.join(names())}")
    return _read(by_lower[name.lower()]).copy(deep=True)


def describe() -> pd.DataFrame:
    """One row per data set: its name, numbers of rows and columns, factor columns.

    Examples
    --------
    >>> from mixedmodels import datasets
    >>> datasets.describe().loc["Dyestuff", "rows"]
    30
    """
    rows = []
    for name in names():
        frame = _read(name)
        rows.append(
            {
                "name": name,
                "rows": len(frame),
                "columns": frame.shape[1],
                "factors": ", ".join(FACTORS.get(name, ())),
            }
        )
    return pd.DataFrame(rows).set_index("name")
