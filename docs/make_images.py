"""Draw the pictures of the plots page: ``python docs/make_images.py``.

Writes PNGs to ``docs/images/``; the plots page shows them.
"""

from __future__ import annotations

from pathlib import Path

import mixedmodels as mm
from mixedmodels import plots

OUT = Path(__file__).parent / "images"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    sleep = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    plots.caterpillar(sleep).savefig(OUT / "caterpillar.png", dpi=90)
    plots.forest(sleep).savefig(OUT / "forest.png", dpi=90)
    plots.residuals(sleep).savefig(OUT / "residuals.png", dpi=90)
    plots.qq(sleep).savefig(OUT / "qq.png", dpi=90)
    dyes = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"))
    plots.profile(dyes).savefig(OUT / "profile.png", dpi=90)


if __name__ == "__main__":
    main()
