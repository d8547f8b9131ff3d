"""Recognising a Dask DataFrame without importing Dask for other data."""

from __future__ import annotations

from typing import Any


def is_dask_dataframe(data: Any) -> bool:
    """True for a Dask DataFrame, without importing Dask for anything else."""
    if not type(data).__module__.startswith("dask"):
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)
