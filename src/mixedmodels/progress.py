"""Progress bars for long work (bootstrap, profiles, Satterthwaite and Kenward–Roger df).

One rule for every long loop, through ``progress=``:

- ``None`` (the default): a bar appears only once the work has run for
  :data:`DELAY_SECONDS`, so quick calls print nothing and long ones show
  how far they are;
- ``True``: a bar from the start;
- ``False``: never a bar.

Bars are tqdm's ``tqdm.auto`` (a widget in notebooks where ipywidgets is
installed, text on stderr elsewhere), tick once per step of the work and stay
on screen when finished.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# An automatic bar shows once the work has taken this long.
DELAY_SECONDS = 3.0


class _NoBar:
    """What :func:`step_bar` hands back when no bar is wanted: does nothing."""

    n: float = 0
    total: float | None = None

    def refresh(self) -> None:
        pass

    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def step_bar(total: float | None, desc: str, enabled: bool | None = None, unit: str = "it"):
    """A progress bar to ``update()`` by hand (use it as a context manager).

    Parameters
    ----------
    total : float or None
        Steps the work will take (None when unknown).
    desc : str
        Label in front of the bar, e.g. ``"bootstrap"``.
    enabled : bool or None, default None
        None: appear after :data:`DELAY_SECONDS`; True: at once; False: never.
    unit : str, default "it"
        What one step is (``"replicate"``, ``"evaluation"``).

    Returns
    -------
    tqdm.auto.tqdm or a do-nothing stand-in
    """
    if enabled is False:
        return _NoBar()
    try:
        with warnings.catch_warnings():
            # tqdm.auto warns in a notebook without ipywidgets, then uses text.
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    return tqdm(
        total=total,
        desc=desc or None,
        unit=unit,
        file=sys.stderr,
        leave=True,
        delay=0.0 if enabled else DELAY_SECONDS,
        dynamic_ncols=True,
    )


def progress_bar(
    iterable: Iterable[T],
    total: int | None = None,
    enabled: bool | None = None,
    desc: str = "",
    unit: str = "it",
) -> Iterable[T]:
    """Iterate with a progress bar that ticks once per item (see :func:`step_bar`).

    Examples
    --------
    >>> from mixedmodels.progress import progress_bar
    >>> sum(progress_bar(range(4), enabled=False))
    6
    """
    if enabled is False:
        return iterable
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return _ticking(iterable, step_bar(total, desc, enabled, unit))


def _ticking(iterable: Iterable[T], bar: Any) -> Iterator[T]:
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()


def counting(func: Callable[..., T], bar: Any) -> Callable[..., T]:
    """``func``, ticking ``bar`` once per call (for evaluations inside a library call)."""

    def ticking(*args: Any, **kwargs: Any) -> T:
        value = func(*args, **kwargs)
        bar.update(1)
        return value

    return ticking
