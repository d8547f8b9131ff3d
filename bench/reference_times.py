"""Fit time of every lme4 reference model next to lme4's own (``lme4_seconds_median``).

Run from the repository root:  python bench/reference_times.py [--repeat 5]

Times are medians of in-process fits (formula and data frame to fitted model,
convergence check included) after one warm-up fit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd

import mixedmodels as mm

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIRS = [
    ROOT / "tests" / "data" / name for name in ("lmm", "extra", "mixedlm", "boundary")
]


def _data(ref: dict) -> pd.DataFrame:
    if "dataset_path" in ref:
        return pd.read_csv(ROOT / "tests" / "data" / ref["dataset_path"])
    return mm.datasets.load(ref["dataset"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", help="substring of the model ids to time")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()

    rows = []
    for directory in REFERENCE_DIRS:
        for path in sorted(directory.glob("*.json")):
            ref = json.loads(path.read_text())
            if "formula" not in ref:
                continue
            if args.only and args.only not in ref["id"]:
                continue
            data = _data(ref)
            formula = ref.get("formula_python", ref["formula"])
            times = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mm.lmer(formula, data, reml=ref["REML"])
                repeat = 1 if ref["nobs"] > 50_000 else args.repeat
                for _ in range(repeat):
                    start = time.perf_counter()
                    model = mm.lmer(formula, data, reml=ref["REML"])
                    times.append(time.perf_counter() - start)
            ours = statistics.median(times)
            lme4 = ref.get("lme4_seconds_median")
            rows.append(
                (
                    ref["id"],
                    ref["nobs"],
                    ours,
                    lme4,
                    model.objective - ref["objective"],
                    model.optsum.n_evaluations,
                    getattr(model.optsum, "n_gradients", 0),
                    model.converged,
                )
            )

    print(
        f"{'model':34} {'rows':>7} {'ours (s)':>9} {'lme4 (s)':>9} {'lme4/ours':>9} "
        f"{'Δobjective':>11} {'evals':>6} {'grads':>6} {'conv':>5}"
    )
    for name, n, ours, lme4, delta, n_eval, n_grad, converged in rows:
        ratio = f"{lme4 / ours:9.1f}" if lme4 else f"{'-':>9}"
        lme4_text = f"{lme4:9.3f}" if lme4 else f"{'-':>9}"
        print(
            f"{name:34} {n:7d} {ours:9.4f} {lme4_text} {ratio} {delta:11.2e} "
            f"{n_eval:6d} {n_grad:6d} {converged!s:>5}"
        )
    if args.json:
        keys = (
            "id",
            "rows",
            "seconds",
            "lme4_seconds",
            "objective_gap",
            "evaluations",
            "gradients",
        )
        records = [dict(zip(keys, row[:-1], strict=True)) | {"converged": row[-1]} for row in rows]
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
