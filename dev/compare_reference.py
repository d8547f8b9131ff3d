"""Compare reference JSON files field by field (relative differences).

    python dev/compare_reference.py DIR_A DIR_B [--tol 1e-6]

Prints, for each id present in both, the largest relative difference of
every numeric field, and flags fields above the tolerance (timings are
ignored, structure mismatches are reported).
"""

import json
import math
import sys
from pathlib import Path

SKIP = {"lme4_seconds_median"}


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            out.append((path, "keys differ", f"{list(a)} vs {list(b)}"))
        for k in a:
            if k in b and k not in SKIP:
                walk(a[k], b[k], f"{path}.{k}" if path else k, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path, "length differs", f"{len(a)} vs {len(b)}"))
            return
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        if a != b:
            out.append((path, "differs", f"{a!r} vs {b!r}"))
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        d = abs(a - b) / max(1.0, abs(a), abs(b)) if not (math.isnan(a) or math.isnan(b)) else 0
        out.append((path, d, None))
    else:
        out.append((path, "type differs", f"{a!r} vs {b!r}"))


def main(argv):
    tol = 1e-6
    if "--tol" in argv:
        i = argv.index("--tol")
        tol = float(argv[i + 1])
        del argv[i : i + 2]
    da, db = Path(argv[0]), Path(argv[1])
    bad = 0
    for fa in sorted(da.glob("*.json")):
        fb = db / fa.name
        if not fb.exists():
            continue
        out = []
        walk(json.loads(fa.read_text()), json.loads(fb.read_text()), "", out)
        nums = [(p, d) for p, d, _ in out if isinstance(d, float)]
        worst = max(nums, key=lambda t: t[1]) if nums else ("-", 0.0)
        other = [(p, d, x) for p, d, x in out if not isinstance(d, float)]
        flag = worst[1] > tol or other
        bad += bool(flag)
        print(f"{'!!' if flag else 'ok'} {fa.stem}: max rel diff {worst[1]:.2e} at {worst[0]}")
        for p, d, x in other:
            print(f"     {p}: {d} {x}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
