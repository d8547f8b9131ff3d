"""Stage 1a: lme4 formula text → parsed formula (response, fixed part, random-effects terms).

The stage, module by module: :mod:`.tokens` (R formula text → tokens),
:mod:`.parser` (tokens → expression tree), :mod:`.translate`,
:mod:`.expressions` and :mod:`.calls` (tree → formulaic text, Python code
inside calls checked against the function table, or R's text), :mod:`.functions` (the functions a
formula may call and their parameters), :mod:`.transforms`, :mod:`.factors`,
:mod:`.contrasts` and :mod:`.splines` (their implementations: R's arithmetic
and logic, factors and contrasts, ``ns``/``bs``), :mod:`.rtext` (numbers and
levels as R prints them), :mod:`.limits` (the bounds on the work a formula
can cause), :mod:`.safety` (the allow-list check on what formulaic will
evaluate), :mod:`.split` (a formula → its parts, ``||``, ``/`` and offsets
handled), :mod:`.parsed` (what parsing gives, with lme4's names) and
:mod:`.update` (R's ``update()`` of a formula).
"""

from .functions import ALLOWED_FUNCTIONS, FUNCTIONS, TRANSFORMS, FormulaFunction
from .parsed import (
    GroupExpression,
    ModelPart,
    Offset,
    ParsedFormula,
    RandomTermSpec,
    Term,
    random_term_to_lme4,
)
from .safety import check_python, check_translated
from .split import WrittenBar, WrittenFormula, parse_formula, split_terms, translate_expression
from .tokens import is_bare_name, r_name, rename_calls
from .update import update_formula

__all__ = [
    "ALLOWED_FUNCTIONS",
    "FUNCTIONS",
    "TRANSFORMS",
    "FormulaFunction",
    "GroupExpression",
    "ModelPart",
    "Offset",
    "ParsedFormula",
    "RandomTermSpec",
    "Term",
    "WrittenBar",
    "WrittenFormula",
    "check_python",
    "check_translated",
    "is_bare_name",
    "parse_formula",
    "r_name",
    "random_term_to_lme4",
    "rename_calls",
    "split_terms",
    "translate_expression",
    "update_formula",
]
