"""``python -m mixedmodels``: the ``mixedmodels`` command line.

``python -m mixedmodels fit data.csv "y ~ x + (1 | g)"`` is ``mixedmodels fit
...``; without arguments it fits the sleepstudy example and prints its summary
(saying so on stderr).
"""

from __future__ import annotations

import sys

from .frontends.cli import main

if __name__ == "__main__":
    sys.exit(main())
