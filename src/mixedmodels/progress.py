"""Progress bars for long loops (bootstrap, profiling), written to stderr.

tqdm is optional (the ``progress`` extra): without it, or when progress is not
asked for, :func:`progress_bar` hands back the iterable untouched, so callers
never need to check.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T], total: int | None = None, enabled: bool = False, desc: str = ""
) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm progress bar on stderr when ``enabled``.

    Parameters
    ----------
    iterable : iterable
        What the loop runs over.
    total : int, optional
        Number of items, for iterables without a length (generators).
    enabled : bool, default False
        Show the bar.  Library code passes its caller's ``progress=`` here.
    desc : str, default ""
        Label in front of the bar, e.g. ``"bootstrap"``.

    Returns
    -------
    iterable
        The tqdm wrapper, or ``iterable`` itself when the bar is disabled or
        tqdm is not installed.

    Examples
    --------
    >>> from mixedmodels.progress import progress_bar
    >>> sum(progress_bar(range(4)))
    6
    """
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc or None, file=sys.stderr, leave=False)
