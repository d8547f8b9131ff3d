"""GLMMs fitted to Dask DataFrames: the in-memory fit's answer, each PIRLS iteration a
map-reduce over the partitions.

Most tests run Dask's synchronous scheduler on small frames (the same code on
the partitions, without processes); the slow one runs a LocalCluster of two
worker processes on Parquet files, where the partitions' arrays are pickled
between processes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

from mixedmodels.errors import DataError, RowsNeededError  # noqa: E402


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _assert_same_fit(dask_fit, memory_fit, rtol=1e-6) -> None:
    """The same answer to 1e-6 relative (issue 13): objective, β, θ, standard errors."""
    assert _rel(dask_fit.objective, memory_fit.objective) < 1e-9
    assert list(dask_fit.fixef.index) == list(memory_fit.fixef.index)
    assert _rel(dask_fit.fixef, memory_fit.fixef) < rtol
    assert _rel(dask_fit.theta, memory_fit.theta) < rtol
    assert _rel(dask_fit.coefs["std_error"], memory_fit.coefs["std_error"]) < 1e-4
    assert dask_fit.nobs == memory_fit.nobs
    assert dask_fit.ngroups == memory_fit.ngroups
    for group, modes in memory_fit.ranef.items():
        assert dask_fit.ranef[group].index.equals(modes.index)
        np.testing.assert_allclose(dask_fit.ranef[group], modes, rtol=1e-5, atol=1e-7)


def _binary(n=4000, groups=150, seed=5):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    h = rng.integers(0, 9, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.7 * x + rng.normal(0, 0.8, groups)[g] + rng.normal(0, 0.4, 9)[h]
    eta += rng.normal(0, 0.5, groups)[g] * x
    return pd.DataFrame(
        {
            "y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float),
            "x": x,
            "g": [f"g{k}" for k in g],
            "h": [f"h{k}" for k in h],
        }
    )


@pytest.fixture
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.mark.parametrize(
    "formula", ["y ~ x + (1 | g)", "y ~ x + (1 | g) + (1 | h)", "y ~ x + (x | g)"]
)
@pytest.mark.usefixtures("synchronous")
def test_logistic_fits_equal_the_in_memory_ones(formula):
    frame = _binary()
    memory = mm.glmer(formula, frame)
    fitted = mm.glmer(formula, dd.from_pandas(frame, npartitions=4), progress=False)
    _assert_same_fit(fitted, memory)
    assert str(fitted.summary()).splitlines()[:2] == str(memory.summary()).splitlines()[:2]


@pytest.mark.usefixtures("synchronous")
def test_cbind_weights_offset_and_quadrature():
    cbpp = mm.datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    by_parts = mm.glmer(formula, dd.from_pandas(cbpp, npartitions=3))
    _assert_same_fit(by_parts, mm.glmer(formula, cbpp))
    rng = np.random.default_rng(2)
    n = 2000
    g, x, e = rng.integers(0, 80, n), rng.normal(size=n), rng.uniform(0.5, 2.0, n)
    counts = rng.poisson(e * np.exp(0.2 + 0.3 * x + rng.normal(0, 0.5, 80)[g]))
    frame = pd.DataFrame({"y": counts.astype(float), "x": x, "g": g.astype(str), "e": e})
    ddf = dd.from_pandas(frame, npartitions=4)
    for nagq in (1, 0, 7):
        memory = mm.glmer("y ~ x + (1 | g)", frame, "poisson", offset="log(e)", nagq=nagq)
        fitted = mm.glmer("y ~ x + (1 | g)", ddf, "poisson", offset="log(e)", nagq=nagq)
        _assert_same_fit(fitted, memory)
    # A link that is not canonical: Newton steps on the observed information.
    sqrt = mm.families.Poisson("sqrt")
    by_parts = mm.glmer("y ~ x + (1 | g)", ddf, sqrt)
    _assert_same_fit(by_parts, mm.glmer("y ~ x + (1 | g)", frame, sqrt))


@pytest.mark.usefixtures("synchronous")
def test_fitted_values_residuals_and_predictions_are_lazy_and_equal():
    cbpp = mm.datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    memory = mm.glmer(formula, cbpp)
    fitted = mm.glmer(formula, dd.from_pandas(cbpp, npartitions=3))
    lazy = fitted.fitted
    assert isinstance(lazy, dd.Series)
    np.testing.assert_allclose(lazy.compute().sort_index(), memory.fitted, rtol=1e-8)
    for kind in ("deviance", "pearson", "response", "working"):
        ours = fitted.residuals(type=kind).compute().sort_index()
        np.testing.assert_allclose(ours, memory.residuals(type=kind), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        fitted.predict(type="response").compute().sort_index(),
        memory.predict(type="response"),
        rtol=1e-8,
    )
    new = cbpp.head(12)
    np.testing.assert_allclose(
        fitted.predict(dd.from_pandas(new, npartitions=2), random=False).compute(),
        memory.predict(new, random=False),
        rtol=1e-8,
    )
    quantiles = fitted.scaled_residual_quantiles()
    np.testing.assert_allclose(quantiles, memory.scaled_residual_quantiles(), rtol=1e-6)


@pytest.mark.usefixtures("synchronous")
def test_what_a_dask_glmm_cannot_do_is_refused_by_name():
    frame = _binary(n=600)
    ddf = dd.from_pandas(frame, npartitions=2)
    model = mm.glmer("y ~ x + (1 | g)", ddf)
    for call in (model.simulate, lambda: model.bootstrap(2), lambda: model.prior_weights):
        with pytest.raises(RowsNeededError, match="rows in memory"):
            call()
    with pytest.raises(DataError, match="Gamma family is not available"):
        mm.glmer("y ~ x + (1 | g)", ddf.assign(y=ddf["x"].abs() + 1), family="Gamma")
    text = dd.from_pandas(frame.assign(y=np.where(frame["y"] > 0, "yes", "no")), npartitions=2)
    with pytest.raises(DataError, match="code it as 0/1 first"):
        mm.glmer("y ~ x + (1 | g)", text)
    with pytest.raises(DataError, match="glmer_nb needs the rows in memory"):
        mm.glmer_nb("y ~ x + (1 | g)", ddf)
    with pytest.raises(DataError, match="offset as a column name"):
        mm.glmer("y ~ x + (1 | g)", ddf, offset=np.zeros(600))
    negative = dd.from_pandas(frame.assign(y=-frame["y"]), npartitions=2)
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        mm.glmer("y ~ x + (1 | g)", negative)


@pytest.mark.slow
def test_logistic_fit_on_a_local_cluster_equals_the_in_memory_one(tmp_path):
    """Two worker processes reading Parquet: every PIRLS iteration a map-reduce over the
    persisted partitions, which move between processes pickled."""
    frame = _binary(n=60_000, groups=2_000, seed=9)
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 6)):
        frame.iloc[rows].to_parquet(tmp_path / f"part-{k}.parquet")
    memory = mm.glmer("y ~ x + (1 | g) + (1 | h)", frame)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # distributed's port and memory notes
        ddf = dd.read_parquet(str(tmp_path / "*.parquet"))
        fitted = mm.glmer("y ~ x + (1 | g) + (1 | h)", ddf, progress=False)
        _assert_same_fit(fitted, memory)
        np.testing.assert_allclose(
            fitted.fitted.compute().to_numpy(), memory.fitted.to_numpy(), rtol=1e-6
        )
