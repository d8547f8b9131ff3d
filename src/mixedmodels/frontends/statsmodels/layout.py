"""statsmodels' variance parameters as the engine's terms and relative covariance factors.

The engine (stages 2–4) knows random-effects terms — level codes and a
per-row matrix — and, for each θ, one relative covariance factor λ per term.
A statsmodels model maps onto it as follows:

* everything statsmodels puts inside the groups is one term grouped by the
  groups, whose columns are ``exog_re``'s then each variance component's
  (a group with fewer columns than another is padded with zero columns, which
  changes nothing).  Its λ is block diagonal: for ``exog_re`` the lower
  Cholesky factor of ``cov_re / scale`` — whose lower triangle, row by row, is
  statsmodels' packed ``use_sqrt`` vector — and √v·I for a component of
  relative variance v, one variance shared by its columns.  The engine then
  factors each group's block on its own (its first term is block diagonal),
  as statsmodels' group-by-group algebra does.  A component of many columns
  per group whose rows each have one non-zero entry (a factor with many
  levels within each group) is instead a term of its own with a level per
  (group, column) — lme4's nested term ``(1 | group:factor)``;
* each lme4 term of another grouping (formula front door): its own term and
  full λ.

:class:`Layout` holds the terms (in the engine's order, most levels first) and
the packed vector φ of these square-root parameters; ψ is the same vector in
statsmodels' "full" parameterization (covariance entries and variances).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...engine.terms import RandomEffectsTerm
from .grouped import GroupedData, VarianceComponent

__all__ = ["Block", "Layout", "lower_root"]

# A pivot below this (relative to the matrix's largest diagonal entry) is zero
# when taking the lower root of a positive semi-definite matrix.
_PSD_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Block:
    """One covariance block: its slice of φ and ψ and the engine term it sets.

    Attributes
    ----------
    role : {"re", "vc", "extra"}
        The groups' random effects, a variance component, or an lme4 term.
    kind : {"full", "shared"}
        A lower-triangular factor (``q(q+1)/2`` parameters) or √v·I (one).
    q : int
        Size of the term's λ.
    term : int
        Index of the term in :attr:`Layout.terms`.
    column : int
        The block's first column in its term.
    offset : int
        Position of the block's first parameter in φ and ψ.
    labels : tuple of str
        Names of the block's random effects (full) or the component's name.
    """

    role: str
    kind: str
    q: int
    term: int
    column: int
    offset: int
    labels: tuple[str, ...]

    @property
    def n_params(self) -> int:
        return self.q * (self.q + 1) // 2 if self.kind == "full" else 1

    @property
    def stop(self) -> int:
        return self.offset + self.n_params

    def entries(self) -> list[tuple[int, int]]:
        """(row, column) of each parameter, row by row over the lower triangle."""
        if self.kind == "shared":
            return [(0, 0)]
        rows, cols = np.tril_indices(self.q)
        return list(zip(rows.tolist(), cols.tolist(), strict=True))

    def param_names(self) -> list[str]:
        """statsmodels' names: ``"a Var"``, ``"a x b Cov"``; a component's ``"name Var"``."""
        if self.kind == "shared":
            return [f"{self.labels[0]} Var"]
        return [
            f"{self.labels[i]} Var" if i == j else f"{self.labels[j]} x {self.labels[i]} Cov"
            for i, j in self.entries()
        ]

    def factor(self, phi: np.ndarray) -> np.ndarray:
        """λ from the block's square-root parameters."""
        values = phi[self.offset : self.stop]
        if self.kind == "shared":
            return values[0] * np.eye(self.q)
        lam = np.zeros((self.q, self.q))
        lam[np.tril_indices(self.q)] = values
        return lam

    def covariance(self, phi: np.ndarray) -> np.ndarray:
        """λλᵀ (relative to the scale)."""
        lam = self.factor(phi)
        return lam @ lam.T


def lower_root(psi: np.ndarray) -> np.ndarray | None:
    """A lower-triangular L with LLᵀ = ψ for positive semi-definite ψ; None otherwise.

    The Cholesky factor when ψ is positive definite; on the boundary (zero
    pivots, e.g. a zero variance) the column of a zero pivot is zero.
    """
    psi = np.asarray(psi, dtype=np.float64)
    q = psi.shape[0]
    if q == 0:
        return np.zeros((0, 0))
    try:
        return np.linalg.cholesky(psi)
    except np.linalg.LinAlgError:
        pass
    scale = max(float(np.max(np.abs(np.diag(psi)))), 1e-300)
    tol = _PSD_TOLERANCE * scale
    lam = np.zeros((q, q))
    for j in range(q):
        pivot = psi[j, j] - lam[j, :j] @ lam[j, :j]
        if pivot < -tol * 1e3:
            return None
        if pivot <= tol:
            below = psi[j + 1 :, j] - lam[j + 1 :, :j] @ lam[j, :j]
            if np.any(np.abs(below) > 1e3 * np.sqrt(tol * scale)):
                return None
            continue
        lam[j, j] = np.sqrt(pivot)
        lam[j + 1 :, j] = (psi[j + 1 :, j] - lam[j + 1 :, :j] @ lam[j, :j]) / lam[j, j]
    return lam


class Layout:
    """The engine terms of a :class:`GroupedData` and the map φ ↔ their λ.

    Attributes
    ----------
    terms : list of RandomEffectsTerm
        In the engine's order (most levels first).
    blocks : list of Block
        In statsmodels' parameter order: the groups' effects, the variance
        components (by name), then lme4 terms of other groupings.
    widths : list of ndarray
        For each variance component, its number of columns in each group.
    structural : ndarray of bool
        Parameters the model holds at zero (``||`` between the groups' effects).
    """

    def __init__(self, data: GroupedData) -> None:
        unordered: list[RandomEffectsTerm] = []
        # (role, kind, q, unordered term, column, labels) of each block
        specs: list[tuple[str, str, int, int, int, tuple[str, ...]]] = []
        columns: list[np.ndarray] = []
        names: list[str] = []
        if data.k_re:
            columns.append(data.exog_re)
            names += list(data.exog_re_names)
            specs.append(("re", "full", data.k_re, 0, 0, tuple(data.exog_re_names)))
        self.widths = [component.widths for component in data.vc]
        apart = _component_apart(data)
        self._offsets: dict[int, np.ndarray] = {}
        for k, component in enumerate(data.vc):
            if k == apart:
                term, offsets = _indicator_term(component, data.group_codes)
                self._offsets[k] = offsets
                specs.append(("vc", "shared", 1, -1, 0, (component.name,)))
                continue
            width = component.values.shape[1]
            specs.append(("vc", "shared", width, 0, len(names), (component.name,)))
            columns.append(component.values)
            names += [f"{component.name}[{j}]" for j in range(width)]
        if columns:
            unordered.append(
                RandomEffectsTerm(
                    group_name="groups",
                    codes=data.group_codes.astype(np.int32),
                    levels=pd.RangeIndex(data.n_groups),
                    z=np.ascontiguousarray(np.hstack(columns), dtype=np.float64),
                    column_names=names,
                )
            )
        if apart is not None:
            # The component with a term of its own: the slot after the groups' term.
            specs = [
                (r, k, q, len(unordered) if t == -1 else t, c, lab) for r, k, q, t, c, lab in specs
            ]
            unordered.append(term)
        for extra in data.extra:
            specs.append(("extra", "full", extra.term.q, len(unordered), 0, tuple(extra.labels)))
            unordered.append(extra.term)
        order = sorted(range(len(unordered)), key=lambda i: -unordered[i].n_levels)
        position = {original: k for k, original in enumerate(order)}
        self.terms = [unordered[i] for i in order]
        self.blocks: list[Block] = []
        offset = 0
        for role, kind, q, term_index, column, labels in specs:
            block = Block(role, kind, q, position[term_index], column, offset, labels)
            self.blocks.append(block)
            offset = block.stop
        self.n_params = offset
        self.structural = np.zeros(offset, dtype=bool)
        main = self.main
        if main is not None:
            entries = main.entries()
            for i, j in data.re_structural_zeros:
                self.structural[main.offset + entries.index((i, j))] = True

    def component_effects(self, modes: list[np.ndarray], k: int, g: int) -> np.ndarray:
        """Variance component ``k``'s effects in group ``g``, from the terms' modes."""
        block = [b for b in self.blocks if b.role == "vc"][k]
        width = self.widths[k][g]
        if k in self._offsets:  # a term of its own, a level per (group, column)
            start = self._offsets[k][g]
            return modes[block.term][start : start + width, 0]
        return modes[block.term][g, block.column : block.column + width]

    # -- structure --------------------------------------------------------------------

    @property
    def main(self) -> Block | None:
        """The groups' random-effects block (None when the model has none)."""
        return next((b for b in self.blocks if b.role == "re"), None)

    @property
    def k_re(self) -> int:
        main = self.main
        return 0 if main is None else main.q

    @property
    def k_re2(self) -> int:
        main = self.main
        return 0 if main is None else main.n_params

    @property
    def k_vc(self) -> int:
        """Parameters after ``cov_re``'s: variance components, then other terms' entries."""
        return self.n_params - self.k_re2

    def param_names(self) -> list[str]:
        return [name for block in self.blocks for name in block.param_names()]

    def lower_bounds(self) -> np.ndarray:
        """φ's bounds: diagonal entries of λ (and shared roots) are non-negative."""
        lower = np.full(self.n_params, -np.inf)
        for block in self.blocks:
            for k, (i, j) in enumerate(block.entries()):
                if i == j:
                    lower[block.offset + k] = 0.0
        return lower

    def diagonal(self) -> np.ndarray:
        """Which parameters of φ are diagonal entries of a λ (variances in ψ)."""
        return np.isfinite(self.lower_bounds())

    def default_phi(self) -> np.ndarray:
        """statsmodels' default start: ``cov_re`` the identity, variances 1 (relative)."""
        return self.diagonal().astype(np.float64)

    # -- maps -------------------------------------------------------------------------

    def lambdas(self, phi: np.ndarray) -> list[np.ndarray]:
        """Each engine term's λ for φ, in the engine's order."""
        out = [np.zeros((t.q, t.q)) for t in self.terms]
        for block in self.blocks:
            at = block.column
            out[block.term][at : at + block.q, at : at + block.q] = block.factor(phi)
        return out

    def psi(self, phi: np.ndarray) -> np.ndarray:
        """statsmodels' full parameters (entries of λλᵀ, variances) for φ."""
        out = np.empty(self.n_params)
        for block in self.blocks:
            if block.kind == "shared":
                out[block.offset] = phi[block.offset] ** 2
            else:
                cov = block.covariance(phi)
                out[block.offset : block.stop] = cov[np.tril_indices(block.q)]
        return out

    def phi_from_psi(self, psi: np.ndarray) -> np.ndarray | None:
        """φ (lower roots, with non-negative diagonals) for ψ; None outside the model."""
        out = np.empty(self.n_params)
        for block in self.blocks:
            values = np.asarray(psi[block.offset : block.stop], dtype=np.float64)
            if block.kind == "shared":
                if values[0] < 0:
                    return None
                out[block.offset] = np.sqrt(values[0])
                continue
            lower = np.zeros((block.q, block.q))
            lower[np.tril_indices(block.q)] = values
            lam = lower_root(lower + np.tril(lower, -1).T)
            if lam is None:
                return None
            out[block.offset : block.stop] = lam[np.tril_indices(block.q)]
        return out

    def engine_theta(self, theta: np.ndarray) -> np.ndarray | None:
        """φ nearest the engine's θ (full λ per term) within this layout's structure."""
        out = self.default_phi()
        bounds = np.cumsum([0] + [t.n_theta for t in self.terms])
        for block in self.blocks:
            term = self.terms[block.term]
            lam = term.lambda_matrix(theta[bounds[block.term] : bounds[block.term + 1]])
            at = slice(block.column, block.column + block.q)
            psi = (lam @ lam.T)[at, at]
            if block.kind == "shared":
                out[block.offset] = np.sqrt(np.mean(np.diag(psi)))
                continue
            root = lower_root(psi)
            if root is None:
                return None
            out[block.offset : block.stop] = root[np.tril_indices(block.q)]
        return out


# The groups' term takes every variance component while it has at most this
# many columns: each group's block is then factored on its own, whatever the
# number of groups.  Beyond it (a factor with many levels per group, such as
# students within schools), the widest component whose rows each have one
# non-zero entry becomes a term of its own with a level per (group, column):
# the engine factors its many small levels one by one, as lme4's nested term
# (1 | group:factor) would be.
_MERGE_LIMIT = 32


def _component_apart(data: GroupedData) -> int | None:
    """Which variance component (if any) gets a term of its own; see ``_MERGE_LIMIT``."""
    width = data.k_re + sum(c.values.shape[1] for c in data.vc)
    if width <= _MERGE_LIMIT:
        return None
    indicators = [
        (c.values.shape[1], k)
        for k, c in enumerate(data.vc)
        if np.all(np.count_nonzero(c.values, axis=1) <= 1)
    ]
    return max(indicators)[1] if indicators else None


def _indicator_term(
    component: VarianceComponent, codes: np.ndarray
) -> tuple[RandomEffectsTerm, np.ndarray]:
    """A component whose rows have one non-zero entry as a term with a level per (group, column)."""
    values, widths = component.values, component.widths
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.intp)
    slot = np.argmax(values != 0, axis=1)
    term = RandomEffectsTerm(
        group_name=component.name,
        codes=(offsets[codes] + slot).astype(np.int32),
        levels=pd.RangeIndex(int(widths.sum())),
        z=np.ascontiguousarray(values[np.arange(len(codes)), slot][:, None]),
        column_names=[component.name],
    )
    return term, offsets
