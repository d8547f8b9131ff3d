"""The Python code inside a formula's function calls, from R's expressions.

:class:`ExpressionTranslator` is the part of the :class:`~.translate.Translator`
that renders an expression inside a call (``I(a + b)``, ``log(x / 2)``,
``factor(g == "b")``) as the Python formulaic evaluates, with R's meaning in
floating point: constants are folded here and refused unless finite,
comparisons and logical operators become calls of R's three-valued versions
(:mod:`.transforms`), a logical in arithmetic counts 0/1, strings are only
values, and every operand's kind is checked on the way.
"""

from __future__ import annotations

import math
from typing import NoReturn

import numpy as np

from .calls import CallTranslator, Code, number_code
from .parser import (
    BARS,
    COMPARISONS,
    BinOp,
    Call,
    Name,
    Node,
    Num,
    Paren,
    Str,
    Unary,
    number_value,
)

__all__ = ["ExpressionTranslator"]

# R's arithmetic operators and what they are in Python.
_ARITHMETIC = {"+": "+", "-": "-", "*": "*", "/": "/", "^": "**", "%%": "%", "%/%": "//"}
# Comparisons as calls of R's three-valued comparisons.
_COMPARE_CALLS = {"==": "r_eq", "!=": "r_ne", "<": "r_lt", "<=": "r_le", ">": "r_gt", ">=": "r_ge"}


class ExpressionTranslator(CallTranslator):
    """Rendering of expressions inside calls; the base of :class:`~.translate.Translator`.

    Besides :class:`~.calls.CallTranslator`'s interface it relies on the
    translator's ``r_spelling`` and ``logical`` (the logical columns),
    ``deparse`` and ``stray_bar``.
    """

    r_spelling: bool
    logical: frozenset[str]

    def deparse(self, node: Node) -> str:
        raise NotImplementedError

    def stray_bar(self, node: BinOp) -> NoReturn:
        raise NotImplementedError

    def python(self, node: Node) -> str:
        """Render ``node`` as Python code, the language inside function calls."""
        if self.r_spelling:
            self.expression(node)  # the checks
            return self.deparse(node)
        return self.expression(node).code

    def expression(self, node: Node) -> Code:
        """Python code of an expression inside a call, checked, constants folded."""
        if isinstance(node, Name):
            if node.name in ("TRUE", "FALSE"):
                return Code(str(node.name == "TRUE"), "logical")
            if node.name == "pi":
                return Code(repr(math.pi), "number", math.pi)
            kind = "logical" if node.name in self.logical else "any"
            return Code(self.name(node, node.name), kind)
        if isinstance(node, Num):
            value = number_value(node.text)
            if not math.isfinite(value):
                self.fail(node.start, f"the number `{node.text}` is too large for floating point")
            return Code(number_code(value), "number", value)
        if isinstance(node, Str):
            return Code(self.string(node), "string")
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Paren):
            inner = self.expression(node.inner)
            return Code(f"({inner.code})", inner.kind, inner.value)
        if isinstance(node, Unary):
            return self.unary(node)
        assert isinstance(node, BinOp)
        return self.binary(node)

    def unary(self, node: Unary) -> Code:
        operand = self.expression(node.operand)
        if node.op == "!":
            self.value_operand(operand, node.operand, "`!`")
            return Code(f"r_not({operand.code})", "logical")
        code = self.arithmetic_operand(operand, node.operand, node.op)
        if operand.value is not None:
            value = operand.value if node.op == "+" else -operand.value
            return Code(number_code(value), "number", value)
        return Code(f"{node.op}({code})", "number")

    def binary(self, node: BinOp) -> Code:
        op = node.op
        if op in ("||", "&&"):
            self.fail(
                node.op_pos,
                f"`{op}` compares single values; use `{op[0]}` for each row, e.g. I(a {op[0]} b)",
            )
        if op in _ARITHMETIC:
            return self.arithmetic(node)
        left = self.expression(node.left)
        right = self.expression(node.right)
        if op == "|" and left.value in (0.0, 1.0):
            self.stray_bar(node)  # (1 | g) inside a call is a misplaced random-effects term
        if op in ("&", "|"):
            self.value_operand(left, node.left, f"`{op}`")
            self.value_operand(right, node.right, f"`{op}`")
            function = "r_and" if op == "&" else "r_or"
            return Code(f"{function}({left.code}, {right.code})", "logical")
        if op in COMPARISONS:
            for side, code in ((node.left, left), (node.right, right)):
                if code.kind in ("columns", "vector"):
                    self.fail(side.start, f"`{self.text(side)}` cannot be compared with `{op}`")
            if left.kind == "string" and right.kind == "string":
                self.fail(node.start, f"`{self.text(node)}` compares two constants")
            return Code(f"{_COMPARE_CALLS[op]}({left.code}, {right.code})", "logical")
        if op == "%in%":
            self.value_operand(left, node.left, "`%in%`")
            return Code(
                f"is_in({left.code}, {self.values(node.right, 'the right of %in%')})", "logical"
            )
        if op in BARS:
            self.stray_bar(node)
        self.fail(
            node.op_pos,
            f"the formula operator `{op}` cannot be used inside a function call",
        )

    def arithmetic(self, node: BinOp) -> Code:
        left = self.expression(node.left)
        right = self.expression(node.right)
        left_code = self.arithmetic_operand(left, node.left, node.op)
        right_code = self.arithmetic_operand(right, node.right, node.op)
        if left.value is not None and right.value is not None:
            value = self.fold(node, left.value, right.value)
            return Code(number_code(value), "number", value)
        return Code(f"({left_code}) {_ARITHMETIC[node.op]} ({right_code})", "number")

    def fold(self, node: BinOp, a: float, b: float) -> float:
        """``a op b`` for two constants, in floating point as R; refused unless finite."""
        op = node.op
        try:
            with np.errstate(all="raise"):
                if op == "+":
                    value = a + b
                elif op == "-":
                    value = a - b
                elif op == "*":
                    value = a * b
                elif op == "/":
                    value = a / b
                elif op == "^":
                    value = math.pow(a, b)
                elif op == "%%":
                    value = float(np.mod(a, b))
                else:
                    value = float(np.floor_divide(a, b))
        except (OverflowError, ZeroDivisionError, ValueError, FloatingPointError):
            value = math.nan
        if not math.isfinite(value):
            self.fail(
                node.start,
                f"`{self.text(node)}` is not a finite number in floating point "
                "(it overflows, or divides by zero)",
            )
        return value

    def arithmetic_operand(self, code: Code, node: Node, op: str) -> str:
        """An operand of arithmetic: numbers as they are, a logical as 0/1, else refused."""
        if code.kind == "string":
            self.fail(
                node.start, f"the string {self.text(node)} cannot be used in arithmetic (`{op}`)"
            )
        if code.kind == "factor":
            self.fail(
                node.start,
                f"`{self.text(node)}` is a factor: arithmetic (`{op}`) on it is not "
                "meaningful (as.numeric() gives its level codes)",
            )
        if code.kind in ("columns", "vector"):
            self.fail(
                node.start,
                f"`{self.text(node)}` is several columns or values; it cannot be used in "
                f"arithmetic (`{op}`)",
            )
        if code.kind == "logical":
            return f"as_numeric({code.code})"
        return code.code

    def value_operand(self, code: Code, node: Node, what: str) -> None:
        """An operand of a logical operator: one value per row."""
        if code.kind in ("string", "columns", "vector"):
            self.fail(node.start, f"`{self.text(node)}` cannot be an operand of {what}")

    def string(self, node: Str) -> str:
        # formulaic's tokenizer does not see quotes inside calls, so a bracket or
        # backtick inside a string could end the call early and expose the rest
        # of the string as code.
        bad = set(node.value) & set("()[]{}`")
        if bad or not node.value.isprintable():
            self.fail(
                node.start,
                f"the string {self.text(node)} may not contain brackets, backticks or "
                "control characters",
            )
        return repr(node.value)
