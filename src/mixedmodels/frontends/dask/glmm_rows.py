"""A GLMM's rows on a Dask cluster: the working rows PIRLS asks, as map-reduces.

The engine's PIRLS, Laplace gradient and quadrature ask their
:class:`~mixedmodels.engine.working_rows.WorkingRows` for sums over rows at
a point (β, b) of the linear predictor.  Here those rows are a Dask
DataFrame's partitions, built once into arrays and persisted on the workers
(:class:`PartitionRows`, each holding a
:class:`~mixedmodels.engine.working_rows.RowsInMemory` per PIRLS solver, laid
out as the whole data's blocks).  :class:`ClusterRows` answers each question
with one map-reduce: every partition computes its share with the in-memory
code, the shares are summed in a tree (deviances, blocks, gradient sums; the
change of η by its maximum), and the driver keeps only the sum — the
weighted blocks, O(levels + level pairs + p²), never a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...engine.blocks import CrossProducts, cross_products
from ...engine.glm_kernels import compiled
from ...engine.weighted import WeightedCrossProducts
from ...engine.working_rows import PassResult, Point, RowsInMemory, SelectedInverse
from ...families import Family
from .passes import SPLIT_EVERY, tree_reduce

#: The column a prepared partition adds: the prior weights of every row.
WEIGHTS = "__mixedmodels_prior_weights__"


class PartitionRows:
    """One partition's rows as arrays (kept on a worker), and its working rows.

    Parameters
    ----------
    y, prior_weights, offset : ndarray
        Response (as the family sees it), prior weights, offset.
    x : ndarray
        The fixed-effects columns kept.
    codes, z : list of ndarray
        Per term, level codes (of the whole data's levels) and model matrix.
    n_levels : list of int
        Levels per term.
    """

    def __init__(self, y, prior_weights, offset, x, codes, z, n_levels) -> None:
        self.y, self.prior_weights, self.offset, self.x = y, prior_weights, offset, x
        self.codes, self.z, self.n_levels = codes, z, list(n_levels)
        self.working: dict[bool, RowsInMemory] = {}

    @property
    def n_obs(self) -> int:
        return len(self.y)

    def structure(self) -> CrossProducts:
        """The level pairs of these rows (for the whole data's block layout)."""
        n = self.n_obs
        return cross_products(self.codes, self.z, self.n_levels, np.empty((n, 0)), np.zeros(n))

    def attach(self, structure: CrossProducts, family: Family) -> PartitionRows:
        """Build the working rows of both PIRLS solvers, laid out as ``structure``."""
        for fixed_inside in (False, True):
            self.working[fixed_inside] = RowsInMemory(
                self.y,
                self.prior_weights,
                self.offset,
                self.x,
                self.codes,
                self.z,
                self.n_levels,
                family,
                fixed_inside=fixed_inside,
                structure=structure,
            )
        return self

    def saturated_aic(self, family: Family) -> float | None:
        return family.saturated_aic(self.y, self.prior_weights)


def _call(part: PartitionRows, fixed_inside: bool, family: Family, method: str, *args: Any):
    """One partition's answer to a working-rows question (runs on a worker)."""
    rows = part.working[fixed_inside]
    rows.family = family
    if method == "evaluate":
        found = rows.evaluate(*args)
        filled = args[2] is not None and np.isfinite(found.deviance)
        return found.deviance, found.eta_change, rows.blocks.buffer.copy() if filled else None
    return getattr(rows, method)(*args)


def _sum_floats(*parts: float) -> float:
    return float(sum(parts))


def _sum_arrays(*parts):
    """Element-wise sums of tuples of arrays (None stays None)."""
    if not isinstance(parts[0], tuple):
        return sum(parts[1:], parts[0])
    return tuple(
        None if parts[0][i] is None else sum((p[i] for p in parts[1:]), parts[0][i])
        for i in range(len(parts[0]))
    )


def _sum_evaluations(*parts):
    """(Σ deviance, max change of η, Σ blocks) of partitions' evaluations."""
    deviance = float(sum(p[0] for p in parts))
    change = float(max(p[1] for p in parts))
    buffers = [p[2] for p in parts]
    total = None if any(b is None for b in buffers) else sum(buffers[1:], buffers[0])
    return deviance, change, total


def _sum_optional(*parts):
    """Sums of optional floats (None if any part is None)."""
    if any(p is None for p in parts):
        return None
    return float(sum(parts))


class DaskRowSource:
    """A GLMM's rows in a Dask cluster's persisted partitions (a row source of
    :class:`~mixedmodels.engine.glmm_problem.GeneralizedProblem`).

    Parameters
    ----------
    parts : list of dask.delayed
        Persisted :class:`PartitionRows` with their working rows attached.
    structure : CrossProducts
        The whole data's block structure (level pairs).
    n_obs, n_fixed : int
        Rows used and columns of X.
    split_every : int
        Partial results summed per task of the tree reductions.
    """

    def __init__(
        self,
        parts: Sequence[Any],
        structure: CrossProducts,
        n_obs: int,
        n_fixed: int,
        split_every: int = SPLIT_EVERY,
    ) -> None:
        self.parts = list(parts)
        self.structure = structure
        self._n_obs = int(n_obs)
        self._n_fixed = int(n_fixed)
        self.split_every = split_every
        self._working: dict[bool, ClusterRows] = {}

    @property
    def n_obs(self) -> int:
        return self._n_obs

    @property
    def n_fixed(self) -> int:
        return self._n_fixed

    def map_reduce(self, combine: Callable, function: Callable, *args: Any):
        """``function(part, *args)`` on every partition, combined in a tree; one compute.

        Each argument is one graph key, sent to a worker once whatever the
        number of partitions.  On a distributed cluster each partition's task
        is pinned to the worker that holds the partition: the scheduler would
        otherwise move idle workers' share of the tasks, and with them the
        partitions' arrays (hundreds of megabytes each), at every iteration.
        """
        import dask

        refs = [dask.delayed(a, traverse=False) for a in args]
        task = dask.delayed(function, pure=False)
        holders = _holders(self.parts)
        mapped = []
        for part, holder in zip(self.parts, holders, strict=True):
            if holder is None:
                mapped.append(task(part, *refs))
                continue
            with dask.annotate(workers=holder, allow_other_workers=False):
                mapped.append(task(part, *refs))
        total = tree_reduce(mapped, combine, self.split_every)
        return dask.compute(total, optimize_graph=False)[0]

    def working(self, fixed_inside: bool, family: Family) -> ClusterRows:
        """The working rows of a PIRLS solver (shared by workspaces: evaluations on a
        cluster run one at a time)."""
        rows = self._working.get(fixed_inside)
        if rows is None:
            rows = self._working[fixed_inside] = ClusterRows(self, fixed_inside, family)
        rows.family = family
        return rows

    def saturated_aic(self, family: Family) -> float | None:
        return self.map_reduce(_sum_optional, PartitionRows.saturated_aic, family)


def _holders(parts: Sequence[Any]) -> list[list[str] | None]:
    """The workers holding each persisted partition (None without a distributed client)."""
    try:
        from distributed import futures_of, get_client

        client = get_client()
    except (ImportError, ValueError):
        return [None] * len(parts)
    futures = [futures_of(part) for part in parts]
    if not all(len(f) == 1 for f in futures):
        return [None] * len(parts)
    where = client.who_has([f[0] for f in futures])
    return [list(where.get(f[0].key, ())) or None for f in futures]


class ClusterRows:
    """The working rows of one PIRLS solver on the cluster (see the module docstring).

    Its blocks are a row-less layout on the driver, loaded with the summed
    blocks of every evaluation that fills them.
    """

    def __init__(self, source: DaskRowSource, fixed_inside: bool, family: Family) -> None:
        self.source = source
        self.fixed_inside = bool(fixed_inside)
        self.n_fixed = source.n_fixed
        structure = source.structure
        carried = self.n_fixed if fixed_inside else 0
        self.blocks = WeightedCrossProducts(
            [np.zeros(0, dtype=np.int64) for _ in structure.q],
            [np.zeros((0, q)) for q in structure.q],
            structure.n_levels,
            np.zeros((0, carried)),
            structure=structure,
        )
        self.family = family
        self.has_newton = compiled() is not None

    def _ask(self, combine: Callable, method: str, *args: Any):
        return self.source.map_reduce(combine, _call, self.fixed_inside, self.family, method, *args)

    def evaluate(
        self, at: Point, previous: Point | None = None, fill: str | None = None
    ) -> PassResult:
        deviance, change, buffer = self._ask(_sum_evaluations, "evaluate", at, previous, fill)
        if fill is not None and buffer is not None:
            self.blocks.load(buffer)
            # The partitions each set the response's pivot; the sum is set once.
            if fill == "newton":
                self.blocks.cp.xx[-1, -1] = 1e30
            elif fill == "observed":
                self.blocks.cp.xx[-1, -1] = 1.0
        return PassResult(deviance, change)

    def aic(self, at: Point, deviance: float) -> float:
        return self._ask(_sum_floats, "aic", at, deviance)

    def pearson_chi2(self, at: Point) -> float:
        return self._ask(_sum_floats, "pearson_chi2", at)

    def gradient_rhs(
        self, at: Point, lams: np.ndarray, inverse: SelectedInverse, deviance: float
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._ask(_sum_arrays, "gradient_rhs", at, lams, inverse, deviance)

    def gradient_sums(
        self,
        at: Point,
        lams: np.ndarray,
        inverse: SelectedInverse,
        u: np.ndarray,
        solved: np.ndarray,
        deviance: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self._ask(_sum_arrays, "gradient_sums", at, lams, inverse, u, solved, deviance)

    def level_deviances(self, beta: np.ndarray, lam: np.ndarray, shifted: np.ndarray) -> np.ndarray:
        return self._ask(_sum_arrays, "level_deviances", beta, lam, shifted)

    def means(self, at: Point) -> None:  # noqa: ARG002 (the WorkingRows signature)
        """None: the rows stay on the cluster (fitted values are lazy Dask series)."""
        return None
