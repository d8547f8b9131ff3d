"""Time ``m.refit(y)``: 1000 refits of sleepstudy to simulated responses (issue 18).

Run from anywhere (the repository root shown):

    python bench/refit.py              # 1000 refits, 7 repeats: min and median
    python bench/refit.py --refits 200 --repeat 3

The model is fitted once; the responses (its fitted values plus normal noise
of sd 25, a fixed seed) are made before the clock starts, so each repeat
times the refits alone: new y blocks, the moment start, the quasi-Newton
fit and the refitted model returned.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def main(argv: list[str] | None = None) -> None:
    """Fit sleepstudy, then time ``--refits`` refits ``--repeat`` times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--refits", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    import numpy as np

    import mixedmodels as mm

    data = mm.datasets.load("sleepstudy")
    model = mm.lmer("Reaction ~ Days + (Days | Subject)", data)
    noise = np.random.default_rng(2026)
    fitted = model.fitted.to_numpy()
    responses = [fitted + noise.normal(scale=25.0, size=len(fitted)) for _ in range(args.refits)]
    with warnings.catch_warnings():
        # A simulated response can give a singular fit; only the time matters here.
        warnings.simplefilter("ignore")
        model.refit(responses[0])  # the refitter's setup, made once per model
        seconds = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for y in responses:
                model.refit(y)
            seconds.append(time.perf_counter() - start)
    print(
        f"{args.refits} refits of sleepstudy: min {min(seconds):.3f} s, "
        f"median {statistics.median(seconds):.3f} s over {args.repeat} repeats"
    )


if __name__ == "__main__":
    main()
