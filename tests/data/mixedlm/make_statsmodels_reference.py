"""Make statsmodels_reference.json: what statsmodels' own mixedlm reports.

The front door promises statsmodels' meanings, in particular the standard
errors it prints beside variance parameters (from its Hessian), which no lme4
reference holds.  Run from the repository root with statsmodels installed
(the ``bench`` extra):

    python tests/data/mixedlm/make_statsmodels_reference.py

Only models on which statsmodels converges to lme4's optimum are kept.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import statsmodels
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
        # statsmodels' default: vc_formula without re_formula has no group
        # intercept; mixedmodels spells that re_formula="0".
        "id": "pastes_vc_only",
        "dataset": "Pastes",
        "formula": "strength ~ 1",
        "groups": "batch",
        "vc_formula": {"cask": "0 + C(cask)"},
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
            ).fit()
        out.append(
            case
            | {
                "params": fit.params.to_dict(),
                "bse": fit.bse.to_dict(),
                "scale": fit.scale,
                "llf": fit.llf,
                "summary": str(fit.summary()),
            }
        )
    payload = {"statsmodels_version": statsmodels.__version__, "models": out}
    OUT.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
