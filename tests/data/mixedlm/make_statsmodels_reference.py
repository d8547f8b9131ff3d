"""Make statsmodels_reference.json: what statsmodels' own mixedlm reports.

The front door promises statsmodels' meanings, in particular the standard
errors it prints beside variance parameters (from its Hessian), which no lme4
reference holds.  Run from the repository root with statsmodels installed
(the ``bench`` extra):

    python tests/data/mixedlm/make_statsmodels_reference.py

Only models on which statsmodels converges to lme4's optimum are kept.

The ``simulated`` cases fit a small simulated data set (stored in the JSON,
so tests need nothing else) through statsmodels' array interface and through
forms lme4 cannot write: variance components of several columns sharing one
variance, ``fit(free=...)``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels
import statsmodels.api as sm
import statsmodels.formula.api as smf

DATASETS = Path("/work/shared/reference/datasets")
OUT = Path(__file__).with_name("statsmodels_reference.json")

CASES = [
    {
        "id": "dietox_notebook",
        "dataset": "dietox",
        "formula": "Weight ~ Time",
        "groups": "Pig",
        "groups_as_array": True,
    },
    {
        "id": "sleepstudy_slope",
        "dataset": "sleepstudy",
        "formula": "Reaction ~ Days",
        "groups": "Subject",
        "re_formula": "~Days",
    },
    {
        "id": "pastes_vc",
        "dataset": "Pastes",
        "formula": "strength ~ 1",
        "groups": "batch",
        "re_formula": "1",
        "vc_formula": {"cask": "0 + C(cask)"},
    },
    {
        # statsmodels' default: vc_formula without re_formula has no group intercept.
        "id": "pastes_vc_only",
        "dataset": "Pastes",
        "formula": "strength ~ 1",
        "groups": "batch",
        "vc_formula": {"cask": "0 + C(cask)"},
    },
    {
        "id": "pastes_vc_ml",
        "dataset": "Pastes",
        "formula": "strength ~ 1",
        "groups": "batch",
        "re_formula": "1",
        "vc_formula": {"cask": "0 + C(cask)"},
        "reml": False,
    },
    {
        "id": "sleepstudy_vc_slope",
        "dataset": "sleepstudy",
        "formula": "Reaction ~ Days",
        "groups": "Subject",
        "re_formula": "1",
        "vc_formula": {"Days": "0 + Days"},
    },
]


def simulated_data() -> pd.DataFrame:
    """40 groups of 6 rows: a random intercept and slope on z, and two columns a, b
    whose random slopes share one variance."""
    rs = np.random.RandomState(20240611)
    n_groups, size = 40, 6
    g = np.repeat(np.arange(n_groups), size)
    x, z, a, b = (rs.normal(size=n_groups * size) for _ in range(4))
    u = rs.normal(size=(n_groups, 2)) * [1.0, 0.7]
    v = rs.normal(size=(n_groups, 2)) * 0.8
    y = 1 + 0.5 * x + u[g, 0] + u[g, 1] * z + v[g, 0] * a + v[g, 1] * b
    y = y + rs.normal(size=n_groups * size)
    return pd.DataFrame({"y": y, "x": x, "z": z, "a": a, "b": b, "g": g})


def simulated_cases(data: pd.DataFrame) -> list[dict]:
    out = []
    exog = np.column_stack([np.ones(len(data)), data["x"]])
    exog_re = np.column_stack([np.ones(len(data)), data["z"]])
    vc = {"ab": {k: rows[["a", "b"]].to_numpy() for k, rows in data.groupby("g")}}
    fits = {
        "simulated_formula_multi_vc": lambda: smf.mixedlm(
            "y ~ x", data, groups="g", re_formula="~z", vc_formula={"ab": "0 + a + b"}
        ).fit(reml=False),
        "simulated_arrays_vc_dict": lambda: sm.MixedLM(
            data["y"].to_numpy(), exog, data["g"].to_numpy(), exog_re, exog_vc=vc
        ).fit(),
        "simulated_arrays_free_diag": lambda: sm.MixedLM(
            data["y"].to_numpy(), exog, data["g"].to_numpy(), exog_re
        ).fit(
            free=sm.regression.mixed_linear_model.MixedLMParams.from_components(
                np.ones(2), cov_re=np.eye(2)
            ),
            reml=False,
        ),
    }
    for case_id, fit_it in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_it()
        out.append(
            {
                "id": case_id,
                "params": np.asarray(fit.params).tolist(),
                "bse": np.asarray(fit.bse).tolist(),
                "scale": fit.scale,
                "llf": fit.llf,
                "aic": fit.aic,
                "random_effects_0": np.asarray(fit.random_effects[0]).tolist(),
                "param_names": list(fit.model.data.param_names),
            }
        )
    return out


def main() -> None:
    out = []
    for case in CASES:
        data = pd.read_csv(DATASETS / f"{case['dataset']}.csv")
        groups = data[case["groups"]] if case.get("groups_as_array") else case["groups"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = smf.mixedlm(
                case["formula"],
                data,
                groups=groups,
                re_formula=case.get("re_formula"),
                vc_formula=case.get("vc_formula"),
            ).fit(reml=case.get("reml", True))
        out.append(
            case
            | {
                "params": fit.params.to_dict(),
                "bse": fit.bse.to_dict(),
                "scale": fit.scale,
                "llf": fit.llf,
                "aic": fit.aic,
                "summary": str(fit.summary()),
            }
        )
    data = simulated_data()
    payload = {
        "statsmodels_version": statsmodels.__version__,
        "models": out,
        "simulated_data": data.to_dict(orient="list"),
        "simulated": simulated_cases(data),
    }
    OUT.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
