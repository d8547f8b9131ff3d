"""Fit a 10⁸-row model out of core on a local Dask cluster; report time and peak memory.

Usage::

    python bench/dask_large.py                       # 10⁸ rows, 10⁵ users × 10 items
    python bench/dask_large.py --rows 1e7 --users 1e6 --items 0   # (x | user) only

The synthetic events (``y ~ x + (x | user) + (1 | item)``) are written as Parquet
files under ``--dir`` (default ``/tmp/mixedmodels-dask-bench``), one chunk at a
time so that the whole table is never in memory; files already there are
reused.  The fit runs on a ``distributed.LocalCluster`` with ``--workers``
worker processes of one thread each.  A sampling thread records the resident
memory of the driver (this process) and of every worker process; the figures
printed are the peaks over the fit.  Needs the ``dask`` extra and psutil.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _seeded_effects(users: int, items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(users, 2)) * [1.0, 0.3], rng.normal(size=max(items, 1)) * 0.5


def write_parquet(
    directory: Path, rows: int, users: int, items: int, chunk_rows: int, seed: int = 7
) -> list[Path]:
    """Write the synthetic events chunk by chunk (chunks already present are kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    user_effects, item_effects = _seeded_effects(users, items, seed)
    paths = []
    n_chunks = -(-rows // chunk_rows)
    for k in range(n_chunks):
        path = directory / f"events-{k:05d}.parquet"
        paths.append(path)
        if path.exists():
            continue
        n = min(chunk_rows, rows - k * chunk_rows)
        rng = np.random.default_rng([seed, k])
        user = rng.integers(0, users, n, dtype=np.int32)
        x = rng.normal(size=n)
        y = 1.0 + 0.5 * x + user_effects[user, 0] + user_effects[user, 1] * x
        frame = {"user": user, "x": x}
        if items:
            item = rng.integers(0, items, n, dtype=np.int32)
            y += item_effects[item]
            frame["item"] = item
        frame["y"] = y + rng.normal(size=n)
        tmp = path.with_suffix(".tmp")
        pd.DataFrame(frame).to_parquet(tmp, index=False)
        tmp.rename(path)
    return paths


class MemorySampler:
    """Peak resident memory of this process and of each of its descendants, sampled."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.driver_peak = 0
        self.worker_peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = self._psutil.Process()
        while not self._stop.is_set():
            try:
                self.driver_peak = max(self.driver_peak, me.memory_info().rss)
                for child in me.children(recursive=True):
                    try:
                        rss = child.memory_info().rss
                    except self._psutil.Error:
                        continue
                    self.worker_peaks[child.pid] = max(self.worker_peaks.get(child.pid, 0), rss)
            except self._psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def local_cluster(workers: int, memory_limit: str):
    """The benchmarks' cluster: worker processes of one thread each, no dashboard."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=None,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e8)
    parser.add_argument("--users", type=float, default=1e5)
    parser.add_argument("--items", type=float, default=10, help="0: no (1 | item) term")
    parser.add_argument("--chunk-rows", type=float, default=2e6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="8GB", help="per worker")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mixedmodels-dask-bench"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    import dask.dataframe as dd
    from distributed import Client

    from mixedmodels.frontends.dask import DaskLinearMixedModel

    rows, users, items = int(args.rows), int(args.users), int(args.items)
    data_dir = args.dir / f"rows{rows}-users{users}-items{items}"
    t0 = time.perf_counter()
    write_parquet(data_dir, rows, users, items, int(args.chunk_rows))
    generate_seconds = time.perf_counter() - t0
    on_disk = sum(p.stat().st_size for p in data_dir.glob("*.parquet"))
    formula = "y ~ x + (x | user)" + (" + (1 | item)" if items else "")

    with (
        local_cluster(args.workers, args.memory_limit) as cluster,
        Client(cluster),
        MemorySampler() as memory,
    ):
        ddf = dd.read_parquet(str(data_dir / "*.parquet"))
        t0 = time.perf_counter()
        model = DaskLinearMixedModel(formula, ddf)
        blocks_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.fit()
        fit_seconds = time.perf_counter() - t0

    result = {
        "formula": formula,
        "rows": rows,
        "users": users,
        "items": items,
        "partitions": ddf.npartitions,
        "parquet_gb": round(on_disk / 1e9, 2),
        "generate_s": round(generate_seconds, 1),
        "blocks_s": round(blocks_seconds, 1),
        "theta_loop_s": round(fit_seconds, 1),
        "total_fit_s": round(blocks_seconds + fit_seconds, 1),
        "evaluations": model.optsum.n_evaluations,
        "driver_peak_gb": round(memory.driver_peak / 1e9, 2),
        "worker_peaks_gb": sorted(round(v / 1e9, 2) for v in memory.worker_peaks.values()),
        "level_pairs": [p.n_pairs for p in model.cross_products.off.values()],
        "objective": model.objective,
        "fixef": model.fixef.to_dict(),
        "sigma": model.sigma,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
