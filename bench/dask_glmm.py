"""Fit a logistic GLMM to 10⁷ rows on a local Dask cluster; report time and peak memory.

Usage::

    python bench/dask_glmm.py                          # 10⁷ rows, 10⁵ groups, 2 workers
    python bench/dask_glmm.py --rows 1e6 --groups 1e4 --compare   # also fit in memory

The model is issue 13's benchmark, ``y ~ x + (1 | g)`` with a binary
response: the synthetic rows are written as Parquet under ``--dir`` (default
``/tmp/mixedmodels-dask-glmm``), one chunk at a time so that the whole table
is never in memory; files already there are reused.  The fit runs on a
``distributed.LocalCluster`` of ``--workers`` processes with one thread each:
the passes read the partitions once into arrays kept on the workers, then
every PIRLS iteration is one map-reduce over them.  A sampling thread records
the resident memory of the driver (this process) and of every worker; the
figures printed are the peaks over the fit.  ``--compare`` also fits the rows
in memory (``ddf.compute()``) and prints the largest relative difference of
the estimates.  Needs the ``dask`` extra and psutil.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dask_large import MemorySampler, local_cluster


def write_parquet(directory: Path, rows: int, groups: int, chunk_rows: int, seed: int = 11):
    """Write the synthetic binary outcomes chunk by chunk (chunks already present are kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    effects = np.random.default_rng(seed).normal(0.0, 0.8, groups)
    paths = []
    for k in range(-(-rows // chunk_rows)):
        path = directory / f"part-{k:05d}.parquet"
        paths.append(path)
        if path.exists():
            continue
        n = min(chunk_rows, rows - k * chunk_rows)
        rng = np.random.default_rng([seed, k])
        g = rng.integers(0, groups, n, dtype=np.int32)
        x = rng.normal(size=n)
        eta = -0.5 + 0.8 * x + effects[g]
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
        tmp = path.with_suffix(".tmp")
        pd.DataFrame({"y": y, "x": x, "g": g}).to_parquet(tmp, index=False)
        tmp.rename(path)
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e7)
    parser.add_argument("--groups", type=float, default=1e5)
    parser.add_argument("--chunk-rows", type=float, default=5e5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="6GB", help="per worker")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mixedmodels-dask-glmm"))
    parser.add_argument("--compare", action="store_true", help="also fit in memory")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    import dask.dataframe as dd
    from distributed import Client

    import mixedmodels as mm

    rows, groups = int(args.rows), int(args.groups)
    data_dir = args.dir / f"rows{rows}-groups{groups}"
    t0 = time.perf_counter()
    write_parquet(data_dir, rows, groups, int(args.chunk_rows))
    generate_seconds = time.perf_counter() - t0
    formula = "y ~ x + (1 | g)"

    with (
        local_cluster(args.workers, args.memory_limit) as cluster,
        Client(cluster),
        MemorySampler() as memory,
    ):
        # g as a category: the level set is read from the data, as lme4's factor(g).
        ddf = dd.read_parquet(str(data_dir / "*.parquet"))
        ddf = ddf.assign(g=ddf["g"].astype(str))
        t0 = time.perf_counter()
        model = mm.frontends.dask.dask_glmm(formula, ddf, "binomial", progress=False)
        passes_seconds = time.perf_counter() - t0
        counter = _count_map_reduces(model)
        t0 = time.perf_counter()
        model.fit()
        fit_seconds = time.perf_counter() - t0
        map_reduces = counter()
        result = {
            "formula": formula,
            "rows": rows,
            "groups": groups,
            "partitions": ddf.npartitions,
            "workers": args.workers,
            "generate_s": round(generate_seconds, 1),
            "passes_s": round(passes_seconds, 1),
            "fit_s": round(fit_seconds, 1),
            "total_s": round(passes_seconds + fit_seconds, 1),
            "map_reduces_in_fit": map_reduces,
            "evaluations": model.optsum.n_evaluations,
            "driver_peak_gb": round(memory.driver_peak / 1e9, 2),
            "worker_peaks_gb": sorted(round(v / 1e9, 2) for v in memory.worker_peaks.values()),
            "objective": model.objective,
            "fixef": model.fixef.to_dict(),
            "theta": model.theta.tolist(),
            "stderr": model.coefs["std_error"].to_dict(),
        }
    if args.compare:
        frame = pd.concat(pd.read_parquet(p) for p in sorted(data_dir.glob("*.parquet")))
        frame["g"] = frame["g"].astype(str)
        t0 = time.perf_counter()
        memory_model = mm.glmer(formula, frame.reset_index(drop=True), "binomial")
        result["in_memory_fit_s"] = round(time.perf_counter() - t0, 1)
        ours = np.concatenate([model.fixef.to_numpy(), model.theta])
        theirs = np.concatenate([memory_model.fixef.to_numpy(), memory_model.theta])
        result["max_relative_difference"] = float(np.max(np.abs(ours / theirs - 1)))
        result["objective_difference"] = model.objective - memory_model.objective
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


def _count_map_reduces(model):
    """Count the fit's map-reduces over the partitions (each is one dask.compute)."""
    source = model.problem.rows
    calls = [0]
    original = source.map_reduce

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    source.map_reduce = counted
    return lambda: calls[0]


if __name__ == "__main__":
    main()
