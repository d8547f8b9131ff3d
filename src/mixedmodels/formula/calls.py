"""Function calls inside a formula, checked against the function table.

:class:`CallTranslator` is the part of the :class:`~.translate.Translator`
that renders a call: it finds the function in
:data:`~.functions.FUNCTIONS`, matches the arguments to its parameters as R
matches them (by position, then by name), checks each against its kind (an
expression of columns, a number, a whole number within the bounds of
:mod:`.limits`, TRUE/FALSE, a vector ``c(...)`` of constants, a level,
contrasts) and writes the Python call formulaic evaluates.  A math function
of a constant is computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from .functions import (
    CONTRAST_FUNCTIONS,
    CONTRASTS,
    FACTOR_INPUT_FUNCTIONS,
    FUNCTIONS,
    FormulaFunction,
    Parameter,
    allowed_names,
)
from .limits import MAX_BASIS_COLUMNS
from .parser import Call, Name, Node, Str, unwrap

__all__ = ["CallTranslator", "Code", "number_code"]


def number_code(value: float) -> str:
    """A folded constant as Python code (integral values as integers, as written)."""
    if value.is_integer() and abs(value) < 2.0**53:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class Code:
    """Python code of an expression, what kind of value it gives, and its value if constant.

    ``kind`` is ``"number"``, ``"logical"``, ``"string"``, ``"factor"``,
    ``"columns"`` (several columns), ``"vector"`` (``c(...)``) or ``"any"``
    (a column, or a function whose result depends on the data).
    """

    code: str
    kind: str
    value: float | None = None


class CallTranslator:
    """Rendering of function calls; mixed into :class:`~.translate.Translator`.

    It relies on the translator's ``fail``, ``text``, ``name``,
    ``expression`` and ``string`` (declared here as the interface it uses)
    and records the factor columns it finds in ``factor_columns``.
    """

    source: str
    factor_columns: dict[str, None]

    def fail(self, pos: int, message: str) -> NoReturn:
        raise NotImplementedError

    def text(self, node: Node) -> str:
        raise NotImplementedError

    def name(self, node: Node, name: str) -> str:
        raise NotImplementedError

    def expression(self, node: Node) -> Code:
        raise NotImplementedError

    def string(self, node: Str) -> str:
        raise NotImplementedError

    # -- calls -------------------------------------------------------------------

    def function(self, node: Call) -> FormulaFunction:
        if node.func == "c":
            self.fail(
                node.start,
                "c() is only allowed as a vector of constants given to an argument, e.g. "
                'factor(g, levels = c("b", "a"))',
            )
        spec = FUNCTIONS.get(node.func)
        if spec is None or node.func == "Q":
            self.fail(
                node.start,
                f"function `{node.func}` is not allowed in a formula (formulas are data, "
                f"not code); allowed functions: {allowed_names()}",
            )
        return spec

    def call(self, node: Call) -> Code:
        """Translate one function call, checking it against the function table."""
        if node.func == "Q":
            return Code(self.name(node, self.q_value(node)), "any")
        spec = self.function(node)
        bound = self.bind(node, spec)
        parts: list[str] = []
        kinds: list[str] = []
        for parameter, value, positional in bound:
            code = self.argument(node, parameter, value)
            if parameter.kind == "data":
                kinds.append(code.kind)
            parts.append(code.code if positional else f"{parameter.python}={code.code}")
        parts += [f"{key}={value}" for key, value in (spec.fixed_keywords or {}).items()]
        if node.func in FACTOR_INPUT_FUNCTIONS:
            for parameter, value, _ in bound:
                core = unwrap(value)
                if parameter.kind == "data" and isinstance(core, Name):
                    self.factor_columns.setdefault(core.name, None)
        kind = spec.result
        if kind == "same":
            kind = kinds[0] if kinds else "any"
        if node.func in _FOLDABLE and len(bound) == 1:
            folded = self.fold_call(node, spec, bound[0][1])
            if folded is not None:
                return folded
        return Code(f"{spec.name}({', '.join(parts)})", kind)

    def bind(self, node: Call, spec: FormulaFunction) -> list[tuple[Parameter, Node, bool]]:
        """Match a call's arguments to the function's parameters, as R matches them.

        Returns (parameter, argument, given by position) in the order given;
        variadic data arguments come first, each as the parameter ``...``.
        """
        bound: list[tuple[Parameter, Node, bool]] = []
        used: set[str] = set()
        if spec.variadic:
            if not node.args:
                self.fail(node.start, f"`{node.func}()` needs at least one argument")
            bound += [(Parameter("..."), arg, True) for arg in node.args]
        else:
            if len(node.args) > len(spec.parameters):
                self.fail(
                    node.args[len(spec.parameters)].start, f"too many arguments for {node.func}()"
                )
            for parameter, arg in zip(spec.parameters, node.args, strict=False):
                bound.append((parameter, arg, True))
                used.add(parameter.name)
        by_name = {p.name: p for p in spec.parameters}
        for key, value in node.kwargs:
            parameter = by_name.get(key)
            if parameter is None:
                accepted = ", ".join(by_name) or "none"
                self.fail(
                    value.start,
                    f"keyword argument `{key}` is not allowed for {node.func}(); "
                    f"allowed: {accepted}",
                )
            if key in used:
                self.fail(value.start, f"argument `{key}` of {node.func}() is given twice")
            used.add(key)
            bound.append((parameter, value, False))
        missing = [p.name for p in spec.parameters[: spec.required] if p.name not in used]
        if missing and not spec.variadic:
            what = "an argument" if not node.args and not node.kwargs else f"`{missing[0]}`"
            self.fail(node.start, f"`{self.text(node)}` needs {what}")
        return bound

    def argument(self, call: Call, parameter: Parameter, value: Node) -> Code:
        """The Python code of one argument, checked against its kind."""
        kind = parameter.kind
        where = f"argument `{parameter.name}` of {call.func}()"
        if parameter.name == "...":
            where = f"an argument of {call.func}()"
        if kind == "data":
            code = self.expression(value)
            if code.kind in ("string", "vector"):
                self.fail(
                    value.start,
                    f"{where} must be an expression of columns, got `{self.text(value)}`",
                )
            if code.kind == "columns":
                self.fail(
                    value.start, f"`{self.text(value)}` makes several columns; it cannot be {where}"
                )
            return code
        return Code(self.constant_argument(kind, value, where), kind)

    def constant_argument(self, kind: str, value: Node, where: str) -> str:
        """The Python code of an argument that must be a constant of ``kind``."""
        core = unwrap(value)
        is_logical = isinstance(core, Name) and core.name in _LOGICAL_NAMES
        if kind == "logical" or (kind == "number_or_logical" and is_logical):
            return self.logical_constant(value, where)
        if kind in ("number", "count", "number_or_logical"):
            number = self.number_constant(value, where)
            if kind == "count" and not (number.is_integer() and 1 <= number <= MAX_BASIS_COLUMNS):
                self.fail(
                    value.start,
                    f"{where} must be a whole number from 1 to {MAX_BASIS_COLUMNS}, got "
                    f"`{self.text(value)}`",
                )
            return number_code(number)
        if kind in ("values", "numbers"):
            return self.values(value, where, numbers=kind == "numbers")
        if kind == "labels":
            if is_logical:
                if self.logical_constant(value, where) == "True":
                    self.fail(value.start, f"{where} may be FALSE or a vector of labels")
                return "False"
            return self.values(value, where)
        if kind == "breaks":
            if isinstance(core, Call) and core.func == "c":
                if len(core.args) > MAX_BASIS_COLUMNS + 1:
                    self.fail(value.start, f"{where} has more than {MAX_BASIS_COLUMNS + 1} breaks")
                return self.values(value, where, numbers=True)
            number = self.number_constant(value, where)
            if not (number.is_integer() and 2 <= number <= MAX_BASIS_COLUMNS):
                self.fail(
                    value.start,
                    f"{where} must be the number of intervals (2 to {MAX_BASIS_COLUMNS}) or "
                    f"c(...) of cut points, got `{self.text(value)}`",
                )
            return number_code(number)
        if kind == "level":
            if isinstance(core, Str):
                return self.string(core)
            return number_code(self.number_constant(value, where))
        if kind == "string":
            if not isinstance(core, Str):
                self.fail(value.start, f"{where} must be a string, got `{self.text(value)}`")
            return self.string(core)
        assert kind == "contrasts"
        return self.contrasts(value)

    def logical_constant(self, value: Node, where: str) -> str:
        core = unwrap(value)
        if not (isinstance(core, Name) and core.name in _LOGICAL_NAMES):
            self.fail(value.start, f"{where} must be TRUE or FALSE, got `{self.text(value)}`")
        return str(core.name in ("TRUE", "T"))

    def number_constant(self, value: Node, where: str) -> float:
        code = self.expression(value)
        if code.value is None:
            self.fail(value.start, f"{where} must be a number, got `{self.text(value)}`")
        return code.value

    def values(self, node: Node, where: str, *, numbers: bool = False) -> str:
        """A vector of constants ``c(...)`` (or one constant) as a Python list."""
        core = unwrap(node)
        items = list(core.args) if isinstance(core, Call) and core.func == "c" else [node]
        if isinstance(core, Call) and core.func == "c" and core.kwargs:
            self.fail(node.start, f"{where}: c() takes values, not names")
        codes = []
        for item in items:
            inner = unwrap(item)
            if isinstance(inner, Str) and not numbers:
                codes.append(self.string(inner))
            elif isinstance(inner, Name) and inner.name in ("TRUE", "FALSE") and not numbers:
                codes.append(str(inner.name == "TRUE"))
            else:
                code = self.expression(item)
                if code.value is None:
                    what = "numbers" if numbers else "strings or numbers"
                    self.fail(
                        item.start, f"{where} must be {what}, e.g. c(1, 2); got `{self.text(item)}`"
                    )
                codes.append(number_code(code.value))
        return f"[{', '.join(codes)}]"

    def fold_call(self, node: Call, spec: FormulaFunction, argument: Node) -> Code | None:
        """A math function of a constant, computed here (None if the argument is not one)."""
        code = self.expression(argument)
        if code.value is None:
            return None
        assert spec.implementation is not None
        with np.errstate(all="ignore"):
            value = float(spec.implementation(np.float64(code.value)))
        if not math.isfinite(value):
            self.fail(node.start, f"`{self.text(node)}` is not a finite number")
        return Code(number_code(value), "number", value)

    def q_value(self, node: Call) -> str:
        """The column named by ``Q("my col")``."""
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], Str):
            self.fail(node.start, f"Q() takes one quoted column name, got `{self.text(node)}`")
        return node.args[0].value

    def contrasts(self, node: Node) -> str:
        """Contrasts as R (``sum``, ``"contr.sum"``, ``contr.treatment(base = 2)``) or
        patsy (``Sum``, ``Treatment("b")``) names them, as translated code."""
        core = unwrap(node)
        if isinstance(core, (Name, Str)):
            label = core.name if isinstance(core, Name) else core.value
            code = CONTRASTS.get(label.removeprefix("contr."))
            if code is not None:
                return code
            if label in CONTRAST_FUNCTIONS:
                return f"{label}()"
        if isinstance(core, Call):
            if core.func in ("contr.treatment", "Treatment"):
                keys = {"base", "reference"}
                if len(core.args) > 1 or any(k not in keys for k, _ in core.kwargs):
                    self.fail(core.start, f"`{self.text(core)}`: give only the base level")
                values = [*core.args, *(v for _, v in core.kwargs)]
                if len(values) > 1:
                    self.fail(core.start, f"`{self.text(core)}`: give only the base level")
                if not values:
                    return "Treatment()"
                level = self.constant_argument("level", values[0], "the base level")
                return f"Treatment(reference={level})"
            if core.func in CONTRAST_FUNCTIONS and not core.args and not core.kwargs:
                return f"{core.func}()"
        self.fail(
            node.start,
            f"unsupported contrasts `{self.text(node)}`; use contr.treatment, contr.sum, "
            "contr.helmert, contr.poly or contr.SAS",
        )


_LOGICAL_NAMES = frozenset({"TRUE", "FALSE", "T", "F"})

# Functions of one number computed here when their argument is a constant.
_FOLDABLE = frozenset(
    name
    for name, spec in FUNCTIONS.items()
    if spec.result == "number"
    and not spec.variadic
    and spec.implementation is not None
    and not getattr(spec.implementation, "__is_stateful_transform__", False)
)
