"""Stage 1b: formula and data → design (response, fixed-effects matrix, random-effects terms).

The stage passes once through its modules: :mod:`.frame` (the data as the
model reads them), :mod:`.codings` (logical columns, ordered factors and
lme4's ``contrasts=`` coded as R codes them), :mod:`.computed` (offsets and
grouping factors written as expressions), :mod:`.plain` (parts built
without formulaic), :mod:`.matrices` (y, X and each term's Z), :mod:`.grouping`
(grouping factors and the terms), with the checks of :mod:`.checks` on the
way; :mod:`.build` strings them together in :func:`build_design`.
"""

from .build import Design, SpecBuilder, build_design
from .frame import as_data_frame
from .grouping import group_codes
from .matrices import RANK_TOLERANCE, aliased_columns

__all__ = [
    "RANK_TOLERANCE",
    "Design",
    "SpecBuilder",
    "aliased_columns",
    "as_data_frame",
    "build_design",
    "group_codes",
]
