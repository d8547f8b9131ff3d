"""The formula language on a Dask DataFrame: offsets, codings and contrasts as in memory.

Dask's synchronous scheduler runs the passes here (the cluster itself is
tested in test_dask.py); the fit must be the in-memory one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

dd = pytest.importorskip("dask.dataframe")
dask = pytest.importorskip("dask")


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, object]:
    data = pd.read_csv("tests/data/formula/datasets/formula_synth.csv.gz")
    data["o"] = pd.Categorical(data.o, categories=["low", "mid", "high", "top"], ordered=True)
    data["off"] = np.log1p(data.u)
    return data, dd.from_pandas(data, npartitions=3)


@pytest.mark.parametrize(
    ("formula", "options"),
    [
        ("y ~ x + offset(log1p(u)) + (1 | g)", {}),
        ("y ~ x + (1 | g)", {"offset": "off"}),
        ("y ~ flag * x + I(x > 0) + (1 | g)", {}),
        ("y ~ o + x + (1 | g)", {}),
        ("y ~ a * x + b + (1 | g)", {"contrasts": {"a": "contr.sum", "b": "contr.helmert"}}),
        ("y ~ I(w^2) + pmin(x, 1) + (1 | g)", {}),
    ],
)
def test_dask_fit_is_the_in_memory_fit(frames, formula, options) -> None:
    data, ddf = frames
    memory = mm.lmer(formula, data, **options)
    with dask.config.set(scheduler="synchronous"):
        fitted = mm.lmer(formula, ddf, **options)
        fitted_values = fitted.fitted.compute().to_numpy()
        predicted = fitted.predict(ddf.head(20, npartitions=3, compute=False)).compute()
    assert list(fitted.fixef.index) == list(memory.fixef.index)
    np.testing.assert_allclose(fitted.fixef, memory.fixef, rtol=1e-6)
    assert fitted.objective == pytest.approx(memory.objective, rel=1e-8)
    np.testing.assert_allclose(fitted_values, memory.fitted.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(predicted, memory.predict(data.head(20)), rtol=1e-6)


@pytest.mark.parametrize(
    ("formula", "options", "fragment"),
    [
        ("y ~ x + (1 | factor(g))", {}, "expression"),
        ("y ~ x + offset(scale(u)) + (1 | g)", {}, "offset"),
        ("y ~ x + (1 | g)", {"offset": np.zeros(600)}, "name of a column"),
    ],
)
def test_what_dask_cannot_do_is_refused_by_name(frames, formula, options, fragment) -> None:
    _, ddf = frames
    with (
        dask.config.set(scheduler="synchronous"),
        pytest.raises(mm.errors.MixedModelsError, match=fragment),
    ):
        mm.lmer(formula, ddf, **options)
