"""Load every extra reference JSON and print a summary table.

    python dev/check_extra.py [DIR]     (default tests/data/extra)

Checks that each file parses, has the fields of the shared reference schema
in the same order (plus the optional dataset_path / formula_python), and
that a dataset_path, when present, exists under tests/data/.
"""

import json
import sys
from pathlib import Path

FIELDS = [
    "id",
    "dataset",
    "formula",
    "REML",
    "nobs",
    "ngroups",
    "fixef",
    "fixef_names",
    "stderr",
    "tvalue",
    "vcov",
    "theta",
    "theta_names",
    "sigma",
    "varcorr",
    "objective",
    "deviance_ml",
    "logLik",
    "AIC",
    "BIC",
    "df_logLik",
    "is_singular",
    "ranef",
    "fitted_head",
    "resid_head",
    "satterthwaite",
    "kenward_roger",
    "optimizer",
    "objective_by_optimizer",
    "lme4_seconds_median",
    "lme4_version",
]
OPTIONAL = {"dataset_path", "formula_python"}


def main(argv):
    root = Path(argv[0]) if argv else Path("tests/data/extra")
    rows, problems = [], []
    for f in sorted(root.glob("*.json")):
        d = json.loads(f.read_text())
        keys = [k for k in d if k not in OPTIONAL]
        if keys != FIELDS:
            problems.append(f"{f.name}: fields {keys}")
        if d["id"] != f.stem:
            problems.append(f"{f.name}: id {d['id']}")
        if "dataset_path" in d and not (root.parent / d["dataset_path"]).exists():
            problems.append(f"{f.name}: missing {d['dataset_path']}")
        p = len(d["fixef_names"])
        for k in ("stderr", "tvalue"):
            if len(d[k]) != p:
                problems.append(f"{f.name}: {k} length")
        if d["REML"] and d["nobs"] <= 1500 and d["kenward_roger"] is None:
            problems.append(f"{f.name}: no kenward_roger")
        rows.append(
            (
                d["id"],
                d["formula"],
                str(d["REML"]),
                str(d["nobs"]),
                f"{d['objective']:.6f}",
                f"{d['lme4_seconds_median']:.3f}",
            )
        )
    head = ("id", "formula", "REML", "nobs", "objective", "lme4_seconds_median")
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * n for n in w), *rows]:
        print(" | ".join(c.ljust(n) for c, n in zip(r, w, strict=False)))
    print(f"\n{len(rows)} files")
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
