"""Synthetic data sets whose lme4 optima lie on or near the boundary of θ (issue 18).

Writes ``tests/data/boundary/datasets/<name>.csv`` and
``tests/data/boundary/models.json`` (id, dataset_path, formula, REML of every
model); ``Rscript dev/make_reference.R --models tests/data/boundary/models.json
--out tests/data/boundary`` then fits them with lme4.

The designs are the kinds that stop optimizers short: random slopes whose
intercept variance is zero (the issue's reproducer first), correlations near
±1, variances near zero, and three-component vector terms.  Every data set is
a pure function of its seed.

Usage (from the repository root):  python dev/make_boundary_data.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "boundary"


def issue_reproducer() -> pd.DataFrame:
    """The issue's example: 100 groups of 3, a random slope with no intercept variance."""
    rs = np.random.RandomState(2410)
    exog = rs.normal(size=(300, 4))
    exog_re = rs.normal(size=300)
    groups = np.kron(np.arange(100), [1, 1, 1])
    endog = exog.sum(1) + exog_re * np.kron(rs.normal(size=100), [1, 1, 1]) + rs.normal(size=300)
    frame = pd.DataFrame(exog, columns=[f"x{i}" for i in range(4)])
    frame["z"] = exog_re
    frame["g"] = [f"g{g:03d}" for g in groups]
    frame["y"] = endog
    return frame


def _groups(n_groups: int, per_group: int) -> np.ndarray:
    return np.repeat(np.arange(n_groups), per_group)


def _labels(prefix: str, codes: np.ndarray) -> list[str]:
    width = len(str(int(codes.max())))
    return [f"{prefix}{c:0{width}d}" for c in codes]


def slope_only(seed: int, n_groups: int, per_group: int, slope_sd: float) -> pd.DataFrame:
    """y = x β + z b_g + e: a random slope, no random intercept (fitted with one)."""
    rng = np.random.default_rng(seed)
    g = _groups(n_groups, per_group)
    x = rng.normal(size=len(g))
    z = rng.normal(size=len(g))
    b = slope_sd * rng.normal(size=n_groups)
    y = 1.0 + 0.5 * x + z * b[g] + rng.normal(size=len(g))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": _labels("g", g)})


def correlated(seed: int, n_groups: int, per_group: int, rho: float) -> pd.DataFrame:
    """Intercept and slope with correlation ρ near ±1."""
    rng = np.random.default_rng(seed)
    g = _groups(n_groups, per_group)
    x = np.tile(np.linspace(-1, 1, per_group), n_groups) + 0.1 * rng.normal(size=len(g))
    cov = np.array([[1.0, rho * 0.6], [rho * 0.6, 0.36]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=n_groups)
    y = 2.0 + x + b[g, 0] + b[g, 1] * x + 0.7 * rng.normal(size=len(g))
    return pd.DataFrame({"y": y, "x": x, "g": _labels("g", g)})


def tiny_variance(seed: int, n_a: int, n_b: int, n_rows: int, sd_b: float) -> pd.DataFrame:
    """Crossed factors, the second with a standard deviation near zero."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_a, n_rows)
    b = rng.integers(0, n_b, n_rows)
    x = rng.normal(size=n_rows)
    y = 3.0 - 0.4 * x + rng.normal(size=n_a)[a] + sd_b * rng.normal(size=n_b)[b]
    y = y + rng.normal(size=n_rows)
    return pd.DataFrame({"y": y, "x": x, "a": _labels("a", a), "b": _labels("b", b)})


def three_component(seed: int, n_groups: int, per_group: int, kind: str) -> pd.DataFrame:
    """(1 + x1 + x2 | g) with a full, a rank-two or a rank-one covariance."""
    rng = np.random.default_rng(seed)
    g = _groups(n_groups, per_group)
    x1 = rng.normal(size=len(g))
    x2 = rng.uniform(-1, 1, size=len(g))
    if kind == "full":
        cov = np.array([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.4]])
    elif kind == "rank2":
        f = np.array([[1.0, 0.0], [0.6, 0.4], [-0.3, 0.5]])
        cov = f @ f.T
    else:
        f = np.array([[1.0], [0.7], [-0.5]])
        cov = f @ f.T
    b = rng.multivariate_normal(np.zeros(3), cov, size=n_groups)
    y = 1.0 + 0.5 * x1 - x2 + b[g, 0] + b[g, 1] * x1 + b[g, 2] * x2
    y = y + rng.normal(size=len(g))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": _labels("g", g)})


# (id, data set name, generator, formula, REML)
MODELS = [
    ("issue18_reproducer_reml", "issue18", issue_reproducer,
     "y ~ 0 + x0 + x1 + x2 + x3 + (1 + z | g)", True),
    ("issue18_reproducer_ml", "issue18", issue_reproducer,
     "y ~ 0 + x0 + x1 + x2 + x3 + (1 + z | g)", False),
    ("slope_only_a_reml", "slope_only_a", lambda: slope_only(1801, 80, 3, 1.0),
     "y ~ x + (1 + z | g)", True),
    ("slope_only_b_reml", "slope_only_b", lambda: slope_only(1802, 40, 6, 0.7),
     "y ~ x + (1 + z | g)", True),
    ("slope_only_c_ml", "slope_only_c", lambda: slope_only(1803, 100, 3, 1.2),
     "y ~ x + (1 + z | g)", False),
    ("slope_only_d_reml", "slope_only_d", lambda: slope_only(1804, 60, 4, 0.3),
     "y ~ x + (z | g)", True),
    ("corr_plus_reml", "corr_plus", lambda: correlated(1811, 30, 6, 0.99),
     "y ~ x + (x | g)", True),
    ("corr_minus_reml", "corr_minus", lambda: correlated(1812, 25, 8, -0.99),
     "y ~ x + (x | g)", True),
    ("corr_minus_ml", "corr_minus", lambda: correlated(1812, 25, 8, -0.99),
     "y ~ x + (x | g)", False),
    ("corr_plus_few_reml", "corr_plus_few", lambda: correlated(1813, 12, 5, 0.995),
     "y ~ x + (x | g)", True),
    ("tiny_variance_reml", "tiny_variance", lambda: tiny_variance(1821, 30, 12, 400, 0.02),
     "y ~ x + (1 | a) + (1 | b)", True),
    ("tiny_variance_ml", "tiny_variance", lambda: tiny_variance(1821, 30, 12, 400, 0.02),
     "y ~ x + (1 | a) + (1 | b)", False),
    ("tiny_variance_slope_reml", "tiny_variance_slope",
     lambda: tiny_variance(1822, 40, 8, 500, 0.05), "y ~ x + (x | a) + (1 | b)", True),
    ("three_full_reml", "three_full", lambda: three_component(1831, 40, 8, "full"),
     "y ~ x1 + x2 + (1 + x1 + x2 | g)", True),
    ("three_rank2_reml", "three_rank2", lambda: three_component(1832, 40, 8, "rank2"),
     "y ~ x1 + x2 + (1 + x1 + x2 | g)", True),
    ("three_rank1_reml", "three_rank1", lambda: three_component(1833, 40, 8, "rank1"),
     "y ~ x1 + x2 + (1 + x1 + x2 | g)", True),
    ("three_rank1_ml", "three_rank1", lambda: three_component(1833, 40, 8, "rank1"),
     "y ~ x1 + x2 + (1 + x1 + x2 | g)", False),
    ("three_rank1_few_reml", "three_rank1_few", lambda: three_component(1834, 15, 6, "rank1"),
     "y ~ x1 + x2 + (1 + x1 + x2 | g)", True),
]  # fmt: skip


def main() -> None:
    (OUT / "datasets").mkdir(parents=True, exist_ok=True)
    written = {}
    specs = []
    for model_id, name, make, formula, reml in MODELS:
        if name not in written:
            frame = make()
            frame.to_csv(OUT / "datasets" / f"{name}.csv", index=False, float_format="%.10g")
            written[name] = len(frame)
        specs.append(
            {
                "id": model_id,
                "dataset": name,
                "dataset_path": f"boundary/datasets/{name}.csv",
                "formula": formula,
                "REML": reml,
            }
        )
    (OUT / "models.json").write_text(json.dumps(specs, indent=1) + "\n")
    for name, rows in written.items():
        print(f"{name}: {rows} rows")


if __name__ == "__main__":
    main()
