"""The functions a formula may call: their R names, parameters and implementations.

:data:`FUNCTIONS` is the table the translator checks every call against: a
function is callable from a formula only if it is listed here, and each of
its arguments must be of the kind its :class:`Parameter` says (a column
expression, a number, a whole number, TRUE/FALSE, a vector ``c(...)`` of
constants, a level, contrasts).  Arguments that size the result (``df``,
``degree``, the number of ``breaks``) are bounded by
:data:`~.limits.MAX_BASIS_COLUMNS`.  :data:`TRANSFORMS` holds the
implementations, by the names translated formulas call: pass it as the
evaluation context of every model matrix built from a translated formula and
of every model spec evaluated again on new data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import factors, splines, transforms

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ARGUMENT_KINDS",
    "CONTRASTS",
    "CONTRAST_FUNCTIONS",
    "FACTOR_INPUT_FUNCTIONS",
    "FUNCTIONS",
    "TRANSFORMS",
    "TRANSLATED_KEYWORDS",
    "FormulaFunction",
    "Parameter",
    "allowed_names",
]

#: What an argument may be: ``data`` (an expression of columns), ``number``
#: (a numeric constant), ``count`` (a whole number from 1 to
#: MAX_BASIS_COLUMNS), ``logical`` (TRUE/FALSE/T/F), ``values`` (a constant or
#: ``c(...)`` of constants), ``numbers`` (the same, numbers only), ``level``
#: (a string or a number), ``string``, ``contrasts``, ``breaks`` (a count or
#: numbers), ``labels`` (values or FALSE), ``number_or_logical``.
ARGUMENT_KINDS = frozenset(
    {
        "data",
        "number",
        "count",
        "logical",
        "values",
        "numbers",
        "level",
        "string",
        "contrasts",
        "breaks",
        "labels",
        "number_or_logical",
    }
)


@dataclass(frozen=True)
class Parameter:
    """One parameter of a formula function.

    Attributes
    ----------
    name : str
        R's name (``na.rm``, ``Boundary.knots``).
    kind : str
        One of :data:`ARGUMENT_KINDS`.
    python : str
        The keyword of the translated call (``na_rm``); R's name with dots
        as underscores by default.
    """

    name: str
    kind: str = "data"
    python: str = ""

    def __post_init__(self) -> None:
        assert self.kind in ARGUMENT_KINDS, self.kind
        if not self.python:
            object.__setattr__(self, "python", self.name.replace(".", "_").lower())


@dataclass(frozen=True)
class FormulaFunction:
    """A function a formula may call.

    Attributes
    ----------
    name : str
        The name the translated formula calls (a key of :data:`TRANSFORMS`),
        e.g. ``"C"`` for R's ``factor``.
    parameters : tuple of Parameter
        In R's order; the first ``required`` must be given.
    variadic : bool
        Whether any number of data arguments come first (``pmin(a, b, c)``).
    result : str
        What the call gives: ``"number"``, ``"logical"``, ``"factor"``,
        ``"columns"`` (several columns: ``poly``, ``ns``), ``"same"`` (its
        argument's kind: ``I``) or ``"any"``.
    required : int
        Leading parameters that must be given.
    implementation : callable or None
        What formulaic calls.
    fixed_keywords : mapping of str to str
        Keywords the translated call always passes (``ordered()`` is
        ``C(x, ordered=True)``).
    """

    name: str
    parameters: tuple[Parameter, ...] = (Parameter("x"),)
    variadic: bool = False
    result: str = "number"
    required: int = 1
    implementation: Callable[..., Any] | None = None
    fixed_keywords: Mapping[str, str] | None = None

    @property
    def keywords(self) -> dict[str, str]:
        """Keyword arguments accepted: R spelling → translated spelling."""
        return {p.name: p.python for p in self.parameters}

    @property
    def max_args(self) -> int | None:
        """Most positional arguments accepted (None: any number)."""
        return None if self.variadic else len(self.parameters)

    @property
    def needs_argument(self) -> bool:
        """Whether a call without arguments is refused."""
        return self.required > 0 or self.variadic


_X = Parameter("x")
_NA_RM = Parameter("na.rm", "logical")


def _math(name: str, implementation: Callable[..., Any], *extra: Parameter) -> FormulaFunction:
    return FormulaFunction(name, (_X, *extra), implementation=implementation)


_FACTOR = FormulaFunction(
    "C",
    (
        _X,
        Parameter("levels", "values"),
        Parameter("labels", "values"),
        Parameter("ordered", "logical"),
    ),
    result="factor",
    implementation=factors.C,
)
_AS_FACTOR = FormulaFunction("C", (_X,), result="factor", implementation=factors.C)
_AS_NUMERIC = FormulaFunction("as_numeric", implementation=transforms.as_numeric)
_LOG = FormulaFunction("log", (_X, Parameter("base")), implementation=transforms.log)


def _summary(name: str, variadic: bool = False) -> FormulaFunction:
    implementation = transforms.SUMMARIES[name]
    if variadic:
        return FormulaFunction(
            name, (_NA_RM,), variadic=True, required=0, implementation=implementation
        )
    return FormulaFunction(name, (_X, _NA_RM), implementation=implementation)


#: Every function a formula may call, by the name written in the formula.
FUNCTIONS: dict[str, FormulaFunction] = {
    # Arithmetic and math
    "log": _LOG,
    **{name: _math(name, func) for name, func in transforms.MATH_FUNCTIONS.items()},
    "atan2": FormulaFunction(
        "atan2", (Parameter("y"), Parameter("x")), required=2, implementation=transforms.atan2
    ),
    "round": FormulaFunction(
        "round", (_X, Parameter("digits", "number")), implementation=transforms.r_round
    ),
    "signif": FormulaFunction(
        "signif", (_X, Parameter("digits", "number")), implementation=transforms.signif
    ),
    "pmin": FormulaFunction(
        "pmin", (_NA_RM,), variadic=True, required=0, implementation=transforms.pmin
    ),
    "pmax": FormulaFunction(
        "pmax", (_NA_RM,), variadic=True, required=0, implementation=transforms.pmax
    ),
    "ifelse": FormulaFunction(
        "ifelse",
        (Parameter("test"), Parameter("yes"), Parameter("no")),
        required=3,
        result="any",
        implementation=transforms.ifelse,
    ),
    "is.na": FormulaFunction("is_na", result="logical", implementation=transforms.is_na),
    "as.logical": FormulaFunction(
        "as_logical", result="logical", implementation=transforms.as_logical
    ),
    "as.numeric": _AS_NUMERIC,
    "as.double": _AS_NUMERIC,
    "as_numeric": _AS_NUMERIC,
    "as.integer": FormulaFunction("as_integer", implementation=transforms.as_integer),
    # Whole-column summaries
    **{name: _summary(name) for name in ("mean", "median", "sd", "var", "length")},
    **{name: _summary(name, variadic=True) for name in ("min", "max", "sum")},
    "scale": FormulaFunction(
        "scale",
        (_X, Parameter("center", "number_or_logical"), Parameter("scale", "number_or_logical")),
        implementation=transforms.scale,
    ),
    "center": FormulaFunction("center", implementation=transforms.center),
    # Bases
    "poly": FormulaFunction(
        "poly",
        (_X, Parameter("degree", "count"), Parameter("raw", "logical")),
        result="columns",
        implementation=transforms.poly,
    ),
    "ns": FormulaFunction(
        "ns",
        (
            _X,
            Parameter("df", "count"),
            Parameter("knots", "numbers"),
            Parameter("intercept", "logical"),
            Parameter("Boundary.knots", "numbers"),
        ),
        result="columns",
        implementation=splines.ns,
    ),
    "bs": FormulaFunction(
        "bs",
        (
            _X,
            Parameter("df", "count"),
            Parameter("knots", "numbers"),
            Parameter("degree", "count"),
            Parameter("intercept", "logical"),
            Parameter("Boundary.knots", "numbers"),
        ),
        result="columns",
        implementation=splines.bs,
    ),
    # Factors
    "factor": _FACTOR,
    "as.factor": _AS_FACTOR,
    "ordered": FormulaFunction(
        "C",
        (_X, Parameter("levels", "values"), Parameter("labels", "values")),
        result="factor",
        implementation=factors.C,
        fixed_keywords={"ordered": "True"},
    ),
    "C": FormulaFunction(
        "C",
        (_X, Parameter("contr", "contrasts", python="contrasts")),
        result="factor",
        implementation=factors.C,
    ),
    "relevel": FormulaFunction(
        "relevel",
        (_X, Parameter("ref", "level")),
        required=2,
        result="factor",
        implementation=factors.relevel,
    ),
    "interaction": FormulaFunction(
        "interaction",
        (Parameter("sep", "string"),),
        variadic=True,
        required=0,
        result="factor",
        implementation=factors.interaction,
    ),
    "cut": FormulaFunction(
        "cut",
        (
            _X,
            Parameter("breaks", "breaks"),
            Parameter("labels", "labels"),
            Parameter("include.lowest", "logical"),
            Parameter("right", "logical"),
            Parameter("dig.lab", "count"),
            Parameter("ordered_result", "logical"),
        ),
        required=2,
        result="factor",
        implementation=factors.cut,
    ),
    # Terms
    "I": FormulaFunction("I", result="same", implementation=transforms.I),
    "Q": FormulaFunction("Q", (Parameter("name", "string"),), result="any"),
}

# numpy's spellings of the math functions, as statsmodels users write them.
_NUMPY_NAMES = {
    "log": "log",
    "exp": "exp",
    "sqrt": "sqrt",
    "abs": "abs",
    "sign": "sign",
    "floor": "floor",
    "ceil": "ceiling",
    "trunc": "trunc",
    "log1p": "log1p",
    "expm1": "expm1",
    "log2": "log2",
    "log10": "log10",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
}
for _prefix in ("np", "numpy"):
    for _numpy, _r in _NUMPY_NAMES.items():
        _spec = FUNCTIONS[_r]
        FUNCTIONS[f"{_prefix}.{_numpy}"] = FormulaFunction(
            _spec.name, (_X,), implementation=_spec.implementation
        )

#: Functions whose data arguments are factors (their columns are levels to
#: learn: the Dask front end scans them).
FACTOR_INPUT_FUNCTIONS = frozenset(
    {"factor", "as.factor", "ordered", "C", "relevel", "interaction"}
)

#: The contrast functions, as ``C(f, Sum())`` and lme4's ``contrasts=`` name them
#: (patsy's spelling), by their translated name.
CONTRAST_FUNCTIONS = frozenset(factors.CONTRAST_CONSTRUCTORS)

#: Contrast names accepted by R's ``C(f, contr)`` and ``contrasts=`` (bare or
#: as strings, with or without ``contr.``), as translated code.
CONTRASTS: dict[str, str] = {
    "treatment": "Treatment()",
    "SAS": "SAS()",
    "sum": "Sum()",
    "helmert": "Helmert()",
    "poly": "Poly()",
}

#: The Python-side helpers the translator writes for R's operators.
_OPERATORS: dict[str, Callable[..., Any]] = {
    **transforms.LOGICAL_FUNCTIONS,
}

#: Evaluation context for formulaic: every implementation, by translated name.
TRANSFORMS: dict[str, Any] = {
    **{spec.name: spec.implementation for spec in FUNCTIONS.values() if spec.implementation},
    **_OPERATORS,
    "logical": factors.logical,  # how the design stage codes a logical column
    **factors.CONTRAST_CONSTRUCTORS,
}

#: Every function name a translated formula may call.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(TRANSFORMS)

#: Keyword arguments each translated function accepts (translated spelling).
TRANSLATED_KEYWORDS: dict[str, frozenset[str]] = {
    name: frozenset(
        keyword
        for spec in FUNCTIONS.values()
        if spec.name == name
        for keyword in (*spec.keywords.values(), *(spec.fixed_keywords or {}))
    )
    for name in ALLOWED_FUNCTIONS
}
TRANSLATED_KEYWORDS["Treatment"] = frozenset({"reference", "base"})
TRANSLATED_KEYWORDS["C"] = TRANSLATED_KEYWORDS["C"] | {"contrasts"}
TRANSLATED_KEYWORDS["logical"] = frozenset({"contrasts"})


def allowed_names() -> str:
    """The functions a formula may call, as R users write them, for messages."""
    hidden = {"as.double", "as_numeric"}
    return ", ".join(
        sorted(
            (
                name
                for name in FUNCTIONS
                if name not in hidden and not name.startswith(("np.", "numpy."))
            ),
            key=str.lower,
        )
    )
