"""Stage 1a: lme4 formula text → parsed formula (fixed part, random-effects terms)."""

from .core import (  # noqa: F401  (private names: transitional, until the parser is split)
    ALLOWED_FUNCTIONS,
    TRANSFORMS,
    ParsedFormula,
    RandomTermSpec,
    _check_python,
    _find_tilde,
    _is_bar,
    _parse_side,
    _tokenize,
    _Translator,
    _unwrap,
    parse_formula,
    random_term_to_lme4,
    translate_expression,
)

__all__ = [
    "ALLOWED_FUNCTIONS",
    "TRANSFORMS",
    "ParsedFormula",
    "RandomTermSpec",
    "parse_formula",
    "random_term_to_lme4",
    "translate_expression",
]
