"""Fit one model with one Python engine, in a subprocess of the harness.

Usage (the harness runs it; from anywhere):
``python bench/worker.py --engine glmm --model sleepstudy --repeat 5 --budget 10``

Reports one JSON object per line on stdout so the harness can time out each
fit separately: ``ready`` once the data are built, ``fit`` per fit (seconds,
objective, warm-up or not), then ``done``; ``error`` with a message on failure.
A fit is timed from formula and data frame to fitted model; importing the
engine and building the data are not timed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository root importable for ``bench``.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.models import get_model, load_data
from bench.peers import engine


def _emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory since it started, or None.

    Read from ``VmHWM`` in ``/proc/self/status`` (Linux) rather than
    ``getrusage``: a process started with vfork+exec inherits its parent's
    peak in ``ru_maxrss``, which would charge the harness's memory to the engine.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def timed_repeats(first_seconds: float, repeat: int, budget: float) -> int:
    """How many timed fits follow a warm-up that took ``first_seconds``.

    As many as fit in ``budget`` seconds, at most ``repeat``, at least one:
    slow fits are timed once, fast ones ``repeat`` times for a steady median.
    """
    if first_seconds <= 0:
        return repeat
    return max(1, min(repeat, int(budget // first_seconds)))


def run(engine_name: str, model_id: str, repeat: int, budget: float, warmup: bool) -> None:
    """Build the data, then warm up and time the fits, reporting each on stdout."""
    module = engine(engine_name)
    model = get_model(model_id)
    data = load_data(model)
    # Import the engine's package now so the first fit does not pay for it.
    importlib.import_module(module.PACKAGE)
    _emit(event="ready", rows=len(data))

    def fit_once(is_warmup: bool) -> float:
        start = time.perf_counter()
        objective = module.fit(model, data)
        seconds = time.perf_counter() - start
        _emit(
            event="fit",
            seconds=seconds,
            objective=objective,
            warmup=is_warmup,
            peak_rss_bytes=peak_rss_bytes(),
        )
        return seconds

    first = fit_once(True) if warmup else 0.0
    for _ in range(timed_repeats(first, repeat, budget)):
        fit_once(False)
    _emit(event="done")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of the worker."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    args = parser.parse_args(argv)
    try:
        run(args.engine, args.model, args.repeat, args.budget, args.warmup)
    except Exception as exc:  # report any engine failure to the harness, then exit
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        _emit(event="error", message=last[:500])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
