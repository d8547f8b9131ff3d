"""Diagnostic plots of a fitted model (matplotlib, the ``plot`` extra).

Each function returns a :class:`matplotlib.figure.Figure`, which the caller
shows, saves (``fig.savefig("modes.png")``) or closes.  Figures are made
without ``pyplot``, so nothing is registered with a GUI backend and no global
state changes.  They display themselves in Jupyter as a cell's last value —
in a fresh kernel too, without ``%matplotlib inline`` — because they carry
their own PNG rendering (``_repr_png_``).

- :func:`caterpillar` — conditional modes with prediction intervals, one panel
  per grouping factor and random-effects column, one level order per factor;
- :func:`forest` — the fixed effects with confidence intervals;
- :func:`residuals` — residuals against fitted values;
- :func:`qq` — normal quantile plots of the residuals and of the modes;
- :func:`profile` — profile ζ plots of a model (or of a table of ζ values).

Each takes a linear or a generalized linear mixed model.  For a GLMM the
residual plot shows Pearson residuals against the fitted means (lme4's
``plot`` of a ``glmerMod``), the forest plot Wald intervals from the z tests,
and the quantile plot only the conditional modes: a GLMM's residuals are not
normal under the model (0/1 outcomes give two bands), so their normal
quantiles would show nothing about the fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import MixedModelsError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .models.lmm import LinearMixedModel

# Level labels on the caterpillar's axis only while they stay legible.
_MAX_LABELS = 60


def _figure_class() -> type:
    """A :class:`~matplotlib.figure.Figure` that Jupyter shows as a PNG by itself."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("plots need matplotlib: pip install 'mixedmodels[plot]'") from err

    class DisplayFigure(Figure):
        """A figure that renders itself for IPython's display (``_repr_png_``).

        pyplot's figures are shown by the inline backend's hooks; a figure
        made outside pyplot has none, and Jupyter would print its repr.
        """

        def _repr_png_(self) -> bytes:
            import io

            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            return buffer.getvalue()

    return DisplayFigure


def _figure(n_panels: int, ncols: int, panel_size: tuple[float, float]) -> Figure:
    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    fig = _figure_class()(
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig


def _require_fitted(model: Any) -> None:
    if not hasattr(model, "state"):
        raise MixedModelsError(
            f"expected a fitted LinearMixedModel or GeneralizedLinearMixedModel, got "
            f"{type(model).__name__}"
        )
    model.state  # noqa: B018 - raises NotFittedError before a fit


def _formula_text(model: Any) -> str:
    """The formula as the user wrote it (a GLMM keeps it; its design's names a prepared
    response column)."""
    given = getattr(model, "formula", None)
    return given if isinstance(given, str) else model.design.formula.source


def _is_generalized(model: Any) -> bool:
    """Whether the model is a GLMM (it has a family)."""
    return getattr(model, "family", None) is not None


# -- conditional variances of the modes ----------------------------------------------


def conditional_covariances(model: LinearMixedModel) -> dict[str, np.ndarray]:
    """Covariance of each level's random effects given the data, as lme4's ``condVar``.

    The model's :attr:`~mixedmodels.LinearMixedModel.ranef_cov`: grouping
    factor → array ``(n_levels, Q, Q)``.
    """
    _require_fitted(model)
    return {g: np.asarray(v, dtype=float) for g, v in model.ranef_cov.items()}


# -- caterpillar ----------------------------------------------------------------------


def caterpillar(
    model: LinearMixedModel,
    *,
    level: float | None = 0.95,
    groups: list[str] | None = None,
    ncols: int = 3,
) -> Figure:
    """Conditional modes of the random effects with prediction intervals.

    One panel per grouping factor and random-effects column, as lme4's
    ``dotplot(ranef(m, condVar = TRUE))``: the levels of a grouping factor are
    sorted by their mode in the factor's first column (the intercept) and
    keep that order in every panel of the factor, so a row is one level.

    Parameters
    ----------
    model : LinearMixedModel
        A fitted model.
    level : float or None, default 0.95
        Coverage of the intervals, mode ± z·sd with the conditional standard
        deviations of :func:`conditional_covariances`; ``None`` for points only.
    groups : list of str, optional
        Grouping factors to show (default all).
    ncols : int, default 3
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_fitted(model)
    ranef = model.ranef
    chosen = list(ranef) if groups is None else list(groups)
    unknown = [g for g in chosen if g not in ranef]
    if unknown:
        raise MixedModelsError(
            f"no grouping factor {unknown[0]!r} in the model (it has: {', '.join(ranef)})"
        )
    if level is not None and not 0 < level < 1:
        raise MixedModelsError(f"level must be between 0 and 1, got {level}")
    covs = conditional_covariances(model) if level is not None else {}
    z = stats.norm.ppf(0.5 + level / 2) if level is not None else 0.0
    panels = [(g, j, c) for g in chosen for j, c in enumerate(ranef[g].columns)]
    n_levels = max(len(ranef[g]) for g in chosen)
    height = min(12.0, max(2.5, 0.16 * min(n_levels, _MAX_LABELS) + 1.0))
    fig = _figure(len(panels), ncols, (3.6, height))
    orders = {g: np.argsort(ranef[g].iloc[:, 0].to_numpy(), kind="stable") for g in chosen}
    for ax, (group, j, column) in zip(fig.axes, panels, strict=False):
        modes = ranef[group][column].to_numpy()
        order = orders[group]
        position = np.arange(len(modes))
        if level is not None:
            sd = np.sqrt(np.maximum(covs[group][:, j, j], 0.0))
            ax.errorbar(
                modes[order],
                position,
                xerr=z * sd[order],
                fmt="none",
                ecolor="0.55",
                elinewidth=0.9,
            )
        ax.plot(
            modes[order], position, "o", color="C0", markersize=3.5 if len(modes) < 200 else 1.5
        )
        ax.axvline(0.0, color="0.3", linewidth=0.8, linestyle="--")
        labels = ranef[group].index.astype(str)
        if len(modes) <= _MAX_LABELS:
            ax.set_yticks(position, labels[order], fontsize=7)
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{len(modes)} levels, sorted by {ranef[group].columns[0]}")
        ax.set_ylim(-0.7, len(modes) - 0.3)
        ax.set_title(f"{group}: {column}", fontsize=10)
        ax.set_xlabel("conditional mode")
    if level is not None:
        fig.suptitle(f"Conditional modes with {level:.0%} prediction intervals", fontsize=11)
    return fig


# -- residuals and quantile plots -----------------------------------------------------


def residuals(model: LinearMixedModel, *, scaled: bool = False) -> Figure:
    """Residuals against fitted values, with a smooth of their mean.

    Parameters
    ----------
    model : LinearMixedModel
        A fitted model.
    scaled : bool, default False
        Divide the residuals by σ (lme4's scaled residuals).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_fitted(model)
    fitted = model.fitted.to_numpy()
    generalized = _is_generalized(model)
    # A GLMM's residuals are a method (of a type); lme4 plots the Pearson ones.
    resid = model.residuals(type="pearson") if generalized else model.residuals
    resid = resid.to_numpy()
    if scaled:
        resid = resid / model.sigma
    fig = _figure(1, 1, (5.5, 4.0))
    ax = fig.axes[0]
    ax.scatter(fitted, resid, s=10 if len(resid) < 2000 else 2, alpha=0.6, color="C0")
    ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle="--")
    centers, means = _binned_means(fitted, resid)
    ax.plot(centers, means, color="C3", linewidth=1.5, label="mean in bins of fitted")
    ax.set_xlabel("fitted means" if generalized else "fitted values")
    label = "Pearson residuals" if generalized else "residuals"
    ax.set_ylabel(f"scaled {label}" if scaled else label)
    ax.set_title(_formula_text(model), fontsize=9)
    ax.legend(fontsize=8, loc="best")
    return fig


def _binned_means(x: np.ndarray, y: np.ndarray, n_bins: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Means of y in equal-count bins of x: a trend line without a smoother dependency."""
    n_bins = max(1, min(n_bins, len(x) // 10))
    order = np.argsort(x, kind="stable")
    chunks = np.array_split(order, n_bins)
    return (
        np.array([x[c].mean() for c in chunks]),
        np.array([y[c].mean() for c in chunks]),
    )


def _normal_quantiles(n: int) -> np.ndarray:
    """Expected normal order statistics (Blom's plotting positions, as R's ``qqnorm``)."""
    a = 3 / 8 if n <= 10 else 0.5
    return stats.norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))


def _qq_panel(ax, values: np.ndarray, title: str) -> None:
    sample = np.sort(values)
    theory = _normal_quantiles(len(sample))
    ax.plot(theory, sample, "o", markersize=3 if len(sample) < 2000 else 1, color="C0")
    # Reference line through the quartiles, as R's qqline.
    q_sample = np.quantile(sample, [0.25, 0.75])
    q_theory = stats.norm.ppf([0.25, 0.75])
    slope = (q_sample[1] - q_sample[0]) / (q_theory[1] - q_theory[0])
    intercept = q_sample[0] - slope * q_theory[0]
    ends = np.array([theory[0], theory[-1]])
    ax.plot(ends, intercept + slope * ends, color="C3", linewidth=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel("sample quantiles")


def qq(model: LinearMixedModel, *, ncols: int = 3) -> Figure:
    """Normal quantile plots of the residuals and of each column of conditional modes.

    For a GLMM, of the conditional modes only (see the module docstring).

    Parameters
    ----------
    model : LinearMixedModel
        A fitted model.
    ncols : int, default 3
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_fitted(model)
    panels: list[tuple[np.ndarray, str]] = []
    if not _is_generalized(model):  # a GLMM's residuals are not normal (module docstring)
        panels.append((model.residuals.to_numpy(), "residuals"))
    for group, frame in model.ranef.items():
        for column in frame.columns:
            panels.append((frame[column].to_numpy(), f"{group}: {column}"))
    fig = _figure(len(panels), ncols, (3.4, 3.2))
    for ax, (values, title) in zip(fig.axes, panels, strict=False):
        _qq_panel(ax, values, title)
    return fig


# -- profile ζ ------------------------------------------------------------------------

PROFILE_COLUMNS = ("parameter", "value", "zeta")


def profile_intervals(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Interval limits where each parameter's ζ crosses ±z (linear interpolation).

    Parameters
    ----------
    table : pandas.DataFrame
        Long format with columns ``parameter``, ``value``, ``zeta`` (see
        :func:`profile`).
    level : float, default 0.95
        Confidence level.

    Returns
    -------
    pandas.DataFrame
        Index the parameters, columns ``lower`` and ``upper`` (NaN where the
        profile does not reach the level).
    """
    _check_profile_table(table)
    z = stats.norm.ppf(0.5 + level / 2)
    rows = {}
    for name, part in table.groupby("parameter", sort=False):
        part = part.sort_values("zeta")
        zeta = part["zeta"].to_numpy(dtype=float)
        value = part["value"].to_numpy(dtype=float)
        limits = []
        for target in (-z, z):
            inside = (zeta.min() <= target <= zeta.max()) and len(zeta) > 1
            limits.append(float(np.interp(target, zeta, value)) if inside else np.nan)
        rows[name] = limits
    return pd.DataFrame.from_dict(rows, orient="index", columns=["lower", "upper"])


def _check_profile_table(table: Any) -> None:
    if not isinstance(table, pd.DataFrame):
        raise MixedModelsError(
            f"a profile must be a DataFrame with columns {', '.join(PROFILE_COLUMNS)}, "
            f"not {type(table).__name__}"
        )
    absent = [c for c in PROFILE_COLUMNS if c not in table.columns]
    if absent:
        raise MixedModelsError(
            f"the profile table has no column {absent[0]!r} "
            f"(it needs {', '.join(PROFILE_COLUMNS)}; it has {', '.join(map(str, table.columns))})"
        )


def _wrap_title(name: str, width: int = 24) -> str:
    """Long parameter names (``cor_Days.(Intercept)|Subject``) broken at ``|``."""
    if len(name) <= width or "|" not in name:
        return name
    head, group = name.rsplit("|", 1)
    return f"{head}\n| {group}"


def profile(
    source: Any,
    *,
    interval: float | None = 0.95,
    ncols: int = 3,
    progress: bool | None = None,
) -> Figure:
    """Profile ζ plots: ζ against each parameter's value.

    ζ(p) = sign(p − p̂) √(d(p) − d(p̂)), d the objective minimised over the
    other parameters with p held fixed.  A straight line means a quadratic
    log-likelihood, where Wald intervals are fine; bends show where they are
    not.  The profile interval at ``interval`` is marked where ζ crosses ±z
    (dotted, with the ±z levels as light lines).

    Parameters
    ----------
    source : model or pandas.DataFrame
        A fitted model (profiled first, with ``source.profile()``), or a
        profile in long format: one row per evaluation, columns ``parameter``
        (name), ``value`` (the parameter's value) and ``zeta``.
    interval : float or None, default 0.95
        Confidence level of the interval marked on each panel (None: none).
    ncols : int, default 3
        Panels per row.
    progress : bool, optional
        Passed to the model's ``profile()`` (None: its default).

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = source
    if not isinstance(source, pd.DataFrame) and callable(getattr(source, "profile", None)):
        table = source.profile() if progress is None else source.profile(progress=progress)
    _check_profile_table(table)
    if table.empty:
        raise MixedModelsError("the profile table is empty")
    if interval is not None and not 0 < interval < 1:
        raise MixedModelsError(f"interval must be between 0 and 1, got {interval}")
    names = list(dict.fromkeys(table["parameter"]))
    fig = _figure(len(names), ncols, (3.2, 2.8))
    limits = profile_intervals(table, interval) if interval is not None else None
    z = stats.norm.ppf(0.5 + interval / 2) if interval is not None else None
    for ax, name in zip(fig.axes, names, strict=False):
        part = table[table["parameter"] == name].sort_values("value")
        ax.plot(part["value"], part["zeta"], "-", color="C0", linewidth=1.4)
        ax.axhline(0.0, color="0.3", linewidth=0.6)
        if limits is not None:
            for sign in (-1, 1):
                ax.axhline(sign * z, color="0.85", linewidth=0.7)
            for edge in limits.loc[name]:
                if np.isfinite(edge):
                    ax.axvline(edge, color="C3", linewidth=0.9, linestyle=":")
        ax.set_title(_wrap_title(str(name)), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_ylabel("ζ")
    if interval is not None:
        fig.suptitle(f"Profile ζ; {interval:.0%} profile intervals dotted", fontsize=10)
    return fig


# -- fixed effects ----------------------------------------------------------------------


def forest(
    model: LinearMixedModel,
    *,
    level: float = 0.95,
    ddf: str = "satterthwaite",
    intercept: bool = True,
) -> Figure:
    """The fixed effects with their confidence intervals (a forest plot).

    Parameters
    ----------
    model : LinearMixedModel
        A fitted model.
    level : float, default 0.95
        Coverage of the intervals: estimate ± t quantile × standard error with
        the ``ddf`` degrees of freedom (``coef_table(conf_int=True)``); a
        GLMM's are Wald intervals (normal quantiles) whatever ``ddf``.
    ddf : str, default "satterthwaite"
        ``"satterthwaite"``, ``"kenward-roger"`` or ``"asymptotic"`` (Wald).
    intercept : bool, default True
        Include ``(Intercept)`` (often on another scale than the slopes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_fitted(model)
    if not 0 < level < 1:
        raise MixedModelsError(f"level must be between 0 and 1, got {level}")
    table = model.coef_table(ddf=ddf, conf_int=True, level=level)
    if not intercept:
        table = table.drop(index="(Intercept)", errors="ignore")
    if table.empty:
        raise MixedModelsError("no fixed effects to draw")
    n = len(table)
    fig = _figure(1, 1, (5.5, min(10.0, 0.35 * n + 1.4)))
    ax = fig.axes[0]
    position = np.arange(n)[::-1]
    ax.errorbar(
        table["estimate"],
        position,
        xerr=[table["estimate"] - table["conf_low"], table["conf_high"] - table["estimate"]],
        fmt="o",
        color="C0",
        ecolor="0.4",
        elinewidth=1.2,
        capsize=2.5,
        markersize=4,
    )
    ax.axvline(0.0, color="0.3", linewidth=0.8, linestyle="--")
    ax.set_yticks(position, [str(name) for name in table.index], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"estimate with {level:.0%} confidence interval")
    ax.set_title(_formula_text(model), fontsize=9)
    return fig
