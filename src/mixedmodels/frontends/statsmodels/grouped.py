"""The data of a statsmodels-style model: response, fixed effects, groups and their effects.

statsmodels' ``MixedLM(endog, exog, groups, exog_re, exog_vc)`` describes a
model whose random effects all live inside the groups: the columns of
``exog_re`` get correlated effects per group (covariance ``cov_re``), and each
variance component gets, in every group, independent effects with one shared
variance for the columns of its per-group matrix.  :class:`GroupedData` holds
these arrays, checked and named as statsmodels names them; models written with
lme4 bar terms (the formula front door's extensions) add
:class:`ExtraTerm` objects, engine terms of their own grouping factors.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...engine.terms import RandomEffectsTerm
from ...errors import DataError, MixedModelsError, user_stacklevel

__all__ = [
    "ExtraTerm",
    "GroupedData",
    "ModelData",
    "VCSpec",
    "VarianceComponent",
    "check_missing_option",
    "exog_names_of",
    "from_arrays",
]

MISSING_OPTIONS = ("none", "drop", "raise")


@dataclass
class VCSpec:
    """statsmodels' description of variance components.

    Attributes
    ----------
    names : list of str
        ``names[k]`` is the name of component k.
    colnames : list of list of list of str
        ``colnames[k][i]`` names the columns of ``mats[k][i]``.
    mats : list of list of array-like
        ``mats[k][i]`` is component k's matrix for the i-th group (groups in
        sorted order), one row per row of that group, in data order.
    """

    names: list[str]
    colnames: list[list[list[str]]]
    mats: list[list[Any]]


@dataclass(frozen=True)
class VarianceComponent:
    """One variance component: per group, columns whose effects share one variance.

    Attributes
    ----------
    name : str
        The component's name (``vc_formula`` key).
    values : ndarray, shape (n, width)
        Row i's entries in the columns of its group (``width`` is the most
        columns any group has; a group's unused columns hold zeros).
    widths : ndarray of int, shape (n_groups,)
        Number of columns in each group.
    column_names : list of list of str
        Per group, the names of its columns.
    """

    name: str
    values: np.ndarray
    widths: np.ndarray
    column_names: list[list[str]]

    def group_matrix(self, codes: np.ndarray, g: int) -> np.ndarray:
        """Group ``g``'s matrix (its rows, its columns)."""
        return self.values[codes == g, : self.widths[g]]


@dataclass(frozen=True)
class ExtraTerm:
    """An lme4 term of a grouping other than the groups (formula front door only).

    Attributes
    ----------
    term : RandomEffectsTerm
        The engine's term.
    labels : list of str
        statsmodels-style names of its random effects: the grouping factor for
        an intercept, ``x|g`` for a slope.
    correlated : bool
        Whether its effects are correlated (a full covariance matrix).
    """

    term: RandomEffectsTerm
    labels: list[str]


@dataclass
class GroupedData:
    """The model's arrays, checked, with statsmodels' names.

    Attributes
    ----------
    endog : ndarray (n,)
    exog : ndarray (n, k_fe)
    endog_name : str
    exog_names : list of str
    groups : ndarray (n,)
        The group of each row, as given.
    group_labels : list
        The distinct groups in sorted order.
    group_codes : ndarray of int (n,)
        Index of each row's group in ``group_labels``.
    exog_re : ndarray (n, k_re) or None
        Columns with correlated random effects per group.
    exog_re_names : list of str
    re_structural_zeros : list of (int, int)
        Entries (i, j), i > j, of ``cov_re`` that the model holds at zero (the
        formula front door's ``||`` and ``"diag"`` for the groups).
    vc : list of VarianceComponent
        Sorted by name, as statsmodels orders them.
    extra : list of ExtraTerm
    row_labels : pandas.Index or None
        Labels of the rows used when the input was pandas (results are then
        pandas objects, as statsmodels' wrappers return them).
    """

    endog: np.ndarray
    exog: np.ndarray
    endog_name: str
    exog_names: list[str]
    groups: np.ndarray
    group_labels: list[Any]
    group_codes: np.ndarray
    exog_re: np.ndarray | None
    exog_re_names: list[str]
    vc: list[VarianceComponent] = field(default_factory=list)
    extra: list[ExtraTerm] = field(default_factory=list)
    re_structural_zeros: list[tuple[int, int]] = field(default_factory=list)
    row_labels: pd.Index | None = None

    @property
    def nobs(self) -> int:
        return len(self.endog)

    @property
    def n_groups(self) -> int:
        return len(self.group_labels)

    @property
    def k_re(self) -> int:
        return 0 if self.exog_re is None else self.exog_re.shape[1]


@dataclass
class ModelData:
    """statsmodels' ``model.data``: the names of everything.

    Attributes
    ----------
    xnames : list of str
        The fixed effects (``exog_names``).
    ynames : str
        The response (``endog_names``).
    exog_re_names : list of str
        The groups' random effects (the rows and columns of ``cov_re``).
    exog_re_names_full : list of str
        Names of ``cov_re``'s parameters (``"a Var"``, ``"a x b Cov"``).
    vcomp_names : list of str
        Names of the variance components (and of other terms' parameters).
    param_names : list of str
        Everything in ``params``.
    row_labels : pandas.Index or None
        Labels of the rows used (pandas input).
    frame : pandas.DataFrame or None
        The data rows used (formula models).
    """

    xnames: list[str]
    ynames: str
    exog_re_names: list[str]
    exog_re_names_full: list[str]
    vcomp_names: list[str]
    param_names: list[str]
    row_labels: pd.Index | None = None
    frame: pd.DataFrame | None = None
    use_pandas: bool = False


def check_missing_option(missing: Any) -> str:
    if missing not in MISSING_OPTIONS:
        raise MixedModelsError(f"missing must be one of {MISSING_OPTIONS}, got {missing!r}")
    return missing


# ---------------------------------------------------------------------------
# Names, as statsmodels makes them
# ---------------------------------------------------------------------------


def exog_names_of(exog: Any, matrix: np.ndarray, prefix: str = "x") -> list[str]:
    """Column names: a DataFrame's columns, a Series' name, else statsmodels' defaults.

    statsmodels names unnamed columns ``x1, x2, ...`` and the first constant
    column ``const`` (numbering the others around it).
    """
    if isinstance(exog, pd.DataFrame):
        return [str(c) for c in exog.columns]
    if isinstance(exog, pd.Series) and exog.name is not None:
        return [str(exog.name)]
    k = matrix.shape[1]
    if prefix != "x" or k == 0 or matrix.shape[0] == 0:
        return [f"{prefix}{j + 1}" for j in range(k)]
    constant = np.flatnonzero(np.ptp(matrix, axis=0) == 0)
    if len(constant):
        names = [f"x{j}" for j in range(1, k)]
        names.insert(int(constant[0]), "const")
        return names
    return [f"x{j + 1}" for j in range(k)]


def _name_of(endog: Any) -> str:
    name = getattr(endog, "name", None)
    if isinstance(endog, pd.DataFrame) and endog.shape[1] == 1:
        name = endog.columns[0]
    return str(name) if name is not None else "y"


# ---------------------------------------------------------------------------
# The array interface
# ---------------------------------------------------------------------------


def _matrix(values: Any, what: str, n: int | None) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{what} must be numeric: {err}") from None
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2:
        raise DataError(f"{what} must be one- or two-dimensional, got shape {out.shape}")
    if n is not None and out.shape[0] != n:
        raise DataError(f"{what} has {out.shape[0]} rows but endog has {n}")
    return out


def _vector(values: Any, what: str) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{what} must be numeric: {err}") from None
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1:
        raise DataError(f"{what} must be one-dimensional, got shape {out.shape}")
    return out


def _group_values(groups: Any, n: int) -> np.ndarray:
    if groups is None:
        raise DataError("groups is required: one group label per row")
    values = groups.to_numpy() if isinstance(groups, (pd.Series, pd.Index)) else groups
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or len(values) != n:
        raise DataError(f"groups must have one value per row ({n}), got shape {values.shape}")
    return values


def _missing_groups(values: np.ndarray) -> np.ndarray:
    return pd.isna(pd.Series(values, dtype=object if values.dtype.kind == "O" else None))


def _refuse_missing(bad: dict[str, np.ndarray], missing: str) -> None:
    culprits = [f"{what} (row {int(np.flatnonzero(rows)[0])})" for what, rows in bad.items()]
    hint = "" if missing == "raise" else "; pass missing='drop' to drop those rows"
    raise DataError(f"missing values in {', '.join(culprits)}{hint}")


def group_coding(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Codes into the sorted distinct groups, and those groups."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError as err:
        raise DataError(f"the group labels cannot be sorted: {err}") from None
    return codes.astype(np.intp), list(uniques)


def from_arrays(
    endog: Any,
    exog: Any,
    groups: Any,
    exog_re: Any = None,
    exog_vc: Any = None,
    missing: str = "none",
) -> GroupedData:
    """Check and name statsmodels' array inputs; see :class:`~.model.MixedLM`."""
    check_missing_option(missing)
    y = _vector(endog, "endog")
    n = len(y)
    x = np.zeros((n, 0)) if exog is None else _matrix(exog, "exog", n)
    g = _group_values(groups, n)
    z = None if exog_re is None else _matrix(exog_re, "exog_re", n)

    bad = {"endog": ~np.isfinite(y), "exog": ~np.isfinite(x).all(axis=1)}
    bad["groups"] = np.asarray(_missing_groups(g))
    if z is not None:
        bad["exog_re"] = ~np.isfinite(z).all(axis=1)
    bad = {what: rows for what, rows in bad.items() if rows.any()}
    keep = None
    if bad:
        if missing != "drop":
            _refuse_missing(bad, missing)
        keep = ~np.logical_or.reduce(list(bad.values()))
        if exog_vc is not None:
            raise DataError(
                "missing='drop' cannot drop rows when exog_vc is given (its per-group "
                "matrices would no longer match the rows): drop them before building exog_vc"
            )
        if not keep.any():
            raise DataError("every row has a missing value")

    row_labels = None
    pandas_input = isinstance(endog, (pd.Series, pd.DataFrame)) or isinstance(
        exog, (pd.Series, pd.DataFrame)
    )
    if pandas_input:
        source = endog if isinstance(endog, (pd.Series, pd.DataFrame)) else exog
        row_labels = source.index
    if keep is not None:
        y, x, g = y[keep], x[keep], g[keep]
        z = None if z is None else z[keep]
        row_labels = None if row_labels is None else row_labels[keep]

    codes, labels = group_coding(g)
    if exog_vc is not None and isinstance(exog_vc, Mapping):
        warnings.warn(
            "Using deprecated variance components format: statsmodels deprecates the "
            "dict of dicts for exog_vc; pass a VCSpec",
            FutureWarning,
            stacklevel=user_stacklevel(),
        )
    components = [] if exog_vc is None else variance_components(exog_vc, labels, codes)
    if z is None and not components:
        z = np.ones((len(y), 1))
        re_names = ["Group"]
    elif z is None:
        re_names = []
    else:
        re_names = exog_names_of(exog_re, z, prefix="x_re")
    exog_names = exog_names_of(exog, x) if exog is not None else []
    return GroupedData(
        endog=y,
        exog=x,
        endog_name=_name_of(endog),
        exog_names=exog_names,
        groups=g,
        group_labels=labels,
        group_codes=codes,
        exog_re=z,
        exog_re_names=re_names,
        vc=components,
        row_labels=row_labels,
    )


# ---------------------------------------------------------------------------
# Variance components
# ---------------------------------------------------------------------------


def _as_spec(exog_vc: Any, labels: list[Any]) -> VCSpec:
    """A VCSpec from a VCSpec-like object or statsmodels' (deprecated) dict of dicts."""
    if isinstance(exog_vc, Mapping):
        names, colnames, mats = [], [], []
        for name, by_group in exog_vc.items():
            if not isinstance(by_group, Mapping):
                raise DataError(
                    f"exog_vc[{name!r}] must be a dict of group -> matrix, "
                    f"got {type(by_group).__name__}"
                )
            unknown = [key for key in by_group if key not in set(labels)]
            if unknown:
                raise DataError(
                    f"exog_vc[{name!r}] has a matrix for group {unknown[0]!r}, "
                    "which is not a group of the data"
                )
            matrices, names_g = [], []
            for label in labels:
                if label not in by_group:
                    raise DataError(f"exog_vc[{name!r}] has no matrix for group {label!r}")
                mat = by_group[label]
                matrices.append(mat)
                cols = getattr(mat, "columns", None)
                width = np.shape(mat)[1] if np.ndim(mat) == 2 else 1
                names_g.append(
                    [str(c) for c in cols] if cols is not None else [str(j) for j in range(width)]
                )
            names.append(str(name))
            colnames.append(names_g)
            mats.append(matrices)
        return VCSpec(names, colnames, mats)
    for attribute in ("names", "colnames", "mats"):
        if not hasattr(exog_vc, attribute):
            raise DataError(
                "exog_vc must be a VCSpec (names, colnames, mats) or a dict of dicts "
                f"{{name: {{group: matrix}}}}, got {type(exog_vc).__name__}"
            )
    return VCSpec(list(exog_vc.names), list(exog_vc.colnames), list(exog_vc.mats))


def variance_components(
    exog_vc: Any, labels: list[Any], codes: np.ndarray
) -> list[VarianceComponent]:
    """statsmodels' variance components as :class:`VarianceComponent` objects, sorted by name."""
    spec = _as_spec(exog_vc, labels)
    if not (len(spec.names) == len(spec.colnames) == len(spec.mats)):
        raise DataError("exog_vc: names, colnames and mats must have one entry per component")
    n_groups = len(labels)
    rows_of = [np.flatnonzero(codes == g) for g in range(n_groups)]
    out = []
    for name, colnames, mats in zip(spec.names, spec.colnames, spec.mats, strict=True):
        if len(mats) != n_groups:
            raise DataError(
                f"variance component {name!r} has {len(mats)} matrices for {n_groups} groups"
            )
        dense = []
        for g, mat in enumerate(mats):
            if hasattr(mat, "toarray"):
                mat = mat.toarray()
            arr = np.asarray(mat, dtype=np.float64)
            if arr.ndim == 1:
                arr = arr[:, None]
            if arr.ndim != 2 or arr.shape[0] != len(rows_of[g]):
                raise DataError(
                    f"variance component {name!r}: the matrix of group {labels[g]!r} has shape "
                    f"{arr.shape}, but the group has {len(rows_of[g])} rows"
                )
            if not np.isfinite(arr).all():
                raise DataError(
                    f"variance component {name!r}: missing or infinite values in the matrix "
                    f"of group {labels[g]!r}"
                )
            dense.append(arr)
        widths = np.array([arr.shape[1] for arr in dense], dtype=np.intp)
        values = np.zeros((len(codes), int(widths.max(initial=0))))
        for g, arr in enumerate(dense):
            values[rows_of[g], : arr.shape[1]] = arr
        names_g = [list(map(str, colnames[g]))[: widths[g]] for g in range(n_groups)]
        for g in range(n_groups):
            if len(names_g[g]) < widths[g]:
                names_g[g] += [str(j) for j in range(len(names_g[g]), widths[g])]
        out.append(VarianceComponent(str(name), values, widths, names_g))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise DataError(f"variance component names must be distinct, got {names}")
    return sorted(out, key=lambda c: c.name)
