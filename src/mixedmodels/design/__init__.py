"""Stage 1b: data frame → design (fixed-effects matrix, response, random-effects terms)."""

from .build import (  # noqa: F401  (private names: transitional, until the stage is split)
    _CONTEXT,
    RANK_TOLERANCE,
    Design,
    _required_columns,
    as_data_frame,
    build_design,
    group_codes,
    lme4_column_name,
)

__all__ = [
    "RANK_TOLERANCE",
    "Design",
    "as_data_frame",
    "build_design",
    "group_codes",
    "lme4_column_name",
]
