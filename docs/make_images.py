"""Draw the pictures of the plots page: ``python docs/make_images.py``.

Writes PNGs to ``docs/images/``; the plots page shows them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import mixedmodels as mm
from mixedmodels import plots

OUT = Path(__file__).parent / "images"


def theta_profile(model: mm.LinearMixedModel, index: int, grid: np.ndarray) -> pd.DataFrame:
    """ζ along one θ of a one-parameter model (β and σ are profiled out exactly)."""
    best = model.objective
    values = []
    for value in grid:
        theta = model.theta.copy()
        theta[index] = value
        values.append(model.objective_at(theta))
    model.objective_at(model.theta)  # leave the factor at the estimate
    zeta = np.sign(grid - model.theta[index]) * np.sqrt(np.maximum(np.array(values) - best, 0))
    return pd.DataFrame({"parameter": model.theta_names[index], "value": grid, "zeta": zeta})


def main() -> None:
    OUT.mkdir(exist_ok=True)
    sleep = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    plots.caterpillar(sleep).savefig(OUT / "caterpillar.png", dpi=90)
    plots.residuals(sleep).savefig(OUT / "residuals.png", dpi=90)
    plots.qq(sleep).savefig(OUT / "qq.png", dpi=90)
    dyes = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"), reml=False)
    table = theta_profile(dyes, 0, np.linspace(0.0, 2.5, 101))
    plots.profile(table).savefig(OUT / "profile.png", dpi=90)


if __name__ == "__main__":
    main()
