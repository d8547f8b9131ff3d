"""Bounds on the work a formula can cause, checked before the work is done.

A formula may come from an untrusted source (a web form, a configuration
file), so nothing in it may make parsing or evaluation hang or exhaust memory.
The parser reads at most :data:`MAX_FORMULA_LENGTH` characters and nests at
most a fixed depth; the translator folds constant arithmetic in floating
point (so ``9^9^9`` overflows at once instead of computing a Python integer
with 370 million digits), expands crossings itself and stops at
:data:`MAX_TERMS` terms, and the functions that make columns
(``poly``, ``ns``, ``bs``, ``cut``) refuse more than :data:`MAX_BASIS_COLUMNS`.
Strings only ever appear as values to compare with or as arguments, never in
arithmetic.

The bounds are far above what any model uses: R itself accepts more, but a
model with more terms than these cannot be fitted in memory anyway.
"""

from __future__ import annotations

__all__ = ["MAX_BASIS_COLUMNS", "MAX_DENSE_BYTES", "MAX_FORMULA_LENGTH", "MAX_TERMS"]

#: Characters of formula text read (a formula of 2 000 covariates with
#: 40-character names fits).
MAX_FORMULA_LENGTH = 100_000

#: Terms one model part may expand to: ``(a + b + ... + n)^14`` would give
#: 16 383, which is refused before any is built.
MAX_TERMS = 10_000

#: Columns one call may make (``poly(x, k)``, ``ns(x, df)``, the breaks of
#: ``cut(x, k)``).
MAX_BASIS_COLUMNS = 1_000

#: The largest dense block one factor may make (rows × levels × 8 bytes): a
#: factor with a level per row (an identifier written as a fixed effect,
#: ``y ~ factor(id)``) would otherwise ask for rows² × 8 bytes.
MAX_DENSE_BYTES = 8 * 2**30
