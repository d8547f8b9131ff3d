"""Fit every lme4 GLMM reference (tests/data/glmm) and compare with lme4's answers and times.

Prints, per model: objective − lme4's, max |Δβ|/SE, max SE ratio − 1, max SD
ratio − 1, evaluations, and the median of three warm fits (wall and CPU)
against lme4's recorded median.  Run from the repository root:

    PYTHONPATH=src python dev/glmm_reference_times.py [model ids...]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mixedmodels as mm
from mixedmodels.families import get_family

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "glmm"
OFFSET_TERM = re.compile(r"\s*\+\s*offset\((?P<expr>(?:[^()]|\([^()]*\))*)\)")


def load(ref: dict) -> pd.DataFrame:
    data = pd.read_csv(DATA / "datasets" / f"{ref['dataset']}.csv.gz")
    for column, dtype in (ref.get("python_dtypes") or {}).items():
        data[column] = data[column].astype(dtype)
    return data


def fit(ref: dict, data: pd.DataFrame):
    formula, offset = ref["formula"], ref["offset"]
    match = OFFSET_TERM.search(formula)
    if match:
        formula, offset = formula.replace(match.group(0), ""), match.group("expr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ref["fit_function"] == "glmer.nb":
            return mm.glmer_nb(formula, data, weights=ref["weights"], offset=offset)
        family = get_family(ref["family"], ref["link"])
        return mm.glmer(
            formula, data, family, weights=ref["weights"], offset=offset, nagq=ref["nAGQ"]
        )


def main(ids: list[str]) -> None:
    paths = sorted(DATA.glob("*.json"))
    if ids:
        paths = [p for p in paths if p.stem in ids]
    print(
        f"{'model':34s} {'Δobj':>9s} {'Δβ/SE':>6s} {'SE':>7s} {'SD':>7s} {'evals':>5s} "
        f"{'wall':>7s} {'cpu':>7s} {'lme4':>7s} {'ratio':>6s}"
    )
    for path in paths:
        ref = json.loads(path.read_text())
        data = load(ref)
        walls, cpus = [], []
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            model = fit(ref, data)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        beta = np.array([ref["fixef"][k] for k in ref["fixef_names"]])
        se = np.array(ref["stderr"])
        sds = {}
        for term, values in zip(model.design.terms, model.random_effect_sds(), strict=True):
            for name, value in zip(term.column_names, values, strict=True):
                sds[(term.group_name, name)] = value
        sd_ratio = max(
            (abs(sds[(c["group"], t)] / s - 1) if s > 1e-6 else 0.0)
            for c in ref["varcorr"]
            for t, s in zip(c["terms"], c["sd"], strict=True)
        )
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(
            f"{ref['id']:34s} {model.objective - ref['objective']:+9.1e} "
            f"{np.max(np.abs(model.fixef.to_numpy() - beta) / se):6.3f} "
            f"{np.max(np.abs(model.coefs['std_error'].to_numpy() / se - 1)):7.4f} "
            f"{sd_ratio:7.4f} {model.optsum.n_evaluations:5d} {wall:7.3f} {cpu:7.3f} "
            f"{ref['lme4_seconds_median']:7.3f} {ref['lme4_seconds_median'] / wall:6.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
