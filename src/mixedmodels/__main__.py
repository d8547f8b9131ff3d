"""``python -m mixedmodels``: fit the sleepstudy example and print its summary."""

from __future__ import annotations

import mixedmodels as mm


def main() -> None:
    data = mm.datasets.load("sleepstudy")
    model = mm.lmer("Reaction ~ Days + (Days | Subject)", data)
    model.data_name = "sleepstudy"
    print(model.summary())


if __name__ == "__main__":
    main()
