"""The allow-list check on everything formulaic will evaluate as Python.

Formulas are data, not code, yet formulaic evaluates the Python code inside
terms (``log(x)``, ``I(x ** 2)``).  The translator only writes calls it has
checked against :data:`~.functions.FUNCTIONS`; as a second, independent line
of defence, :func:`check_translated` splits the translated text the way
formulaic does and refuses any piece of Python beyond column names, numbers,
strings, arithmetic, comparisons and calls of the allowed functions.
"""

from __future__ import annotations

import ast
import re
from typing import NoReturn

from ..errors import FormulaError
from .functions import ALLOWED_FUNCTIONS, TRANSLATED_KEYWORDS

__all__ = ["check_python", "check_translated", "is_dunder"]

_SAFE_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.FloorDiv)
_SAFE_UNARYOPS = (ast.UAdd, ast.USub)
_SAFE_CMPOPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
# Nodes that are checked where they occur (operators, contexts, keywords).
_CHECKED_BY_PARENT = (
    ast.Expression,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
    ast.expr_context,
    ast.keyword,
)
_DESCRIPTIONS = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambda functions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.BoolOp: "and/or",
    ast.IfExp: "if/else expressions",
    ast.NamedExpr: "assignment",
    ast.Starred: "* unpacking",
}
_WORD = re.compile(r"[\w.]+")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def is_dunder(name: str) -> bool:
    """True if any dot- or space-separated part of ``name`` looks like ``__x__``."""
    return any(part.startswith("__") and part.endswith("__") for part in re.split(r"[.\s]", name))


def _refuse(code: str, node: ast.AST, what: str) -> NoReturn:
    segment = ast.get_source_segment(code, node) or code
    raise FormulaError(
        f"`{segment}` is not allowed in a formula ({what}); formulas may only use column "
        "names, numbers, strings, arithmetic, comparisons and calls to: "
        f"{', '.join(sorted(ALLOWED_FUNCTIONS))}"
    )


def check_python(code: str) -> None:
    """Refuse any Python in ``code`` beyond the formula allow-list.

    Backticked names (formulaic's quoting of column names) count as names.

    Raises
    ------
    FormulaError
        Naming the construct refused (attribute access, subscripts, a call of
        a function not allowed, a double-underscore name...).
    """

    def placeholder(match: re.Match[str]) -> str:
        if is_dunder(match.group()[1:-1]):
            raise FormulaError(f"{match.group()} is not allowed: double-underscore names")
        return "_quoted_column"

    plain = re.sub(r"`[^`]*`", placeholder, code)
    try:
        tree = ast.parse(plain, mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"`{code}` is not a valid expression") from exc
    for node in ast.walk(tree):
        if isinstance(node, _CHECKED_BY_PARENT):
            continue
        if isinstance(node, ast.Name):
            if is_dunder(node.id):
                _refuse(plain, node, "double-underscore names")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, complex) or not isinstance(
                node.value, (bool, int, float, str)
            ):
                _refuse(plain, node, "only numbers and strings are allowed as constants")
        elif isinstance(node, ast.BinOp):
            if not isinstance(node.op, _SAFE_BINOPS):
                _refuse(plain, node, "operator")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _SAFE_UNARYOPS):
                _refuse(plain, node, "operator")
        elif isinstance(node, ast.Compare):
            if not all(isinstance(op, _SAFE_CMPOPS) for op in node.ops):
                _refuse(plain, node, "operator")
        elif isinstance(node, ast.Call):
            _check_call(plain, node)
        elif not isinstance(node, (ast.List, ast.Tuple)):
            _refuse(plain, node, _DESCRIPTIONS.get(type(node), type(node).__name__))


def _check_call(code: str, node: ast.Call) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in ALLOWED_FUNCTIONS:
        _refuse(code, node.func, "only calls to allowed functions by bare name")
    allowed = TRANSLATED_KEYWORDS[node.func.id]
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in allowed:
            _refuse(code, node, f"keyword `{kw.arg}` is not allowed for {node.func.id}()")


def check_translated(text: str) -> None:
    """Check every piece of translated formula text that formulaic would evaluate.

    The text is split as formulaic's tokenizer splits it (nothing is
    evaluated): a backticked name is a column name; a word directly followed
    by ``(`` or ``[`` starts Python code that runs to the matching bracket
    (brackets inside backticks do not count; quotes do not protect brackets,
    which is why the translator refuses brackets inside strings); ``{...}`` is
    Python code; any other word is a name, unless it starts with a digit.

    Raises
    ------
    FormulaError
        For a piece that :func:`check_python` refuses, or text whose brackets
        or backticks do not close.
    """
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise FormulaError(f"unclosed backtick in the translated formula {text!r}")
            if is_dunder(text[pos + 1 : end]):
                raise FormulaError(f"{text[pos : end + 1]} is not allowed: double-underscore names")
            pos = end + 1
        elif char in "'\"%":
            # A string, or an operator such as %in%: nothing to evaluate.
            end = text.find(char, pos + 1)
            if end < 0:
                raise FormulaError(f"unclosed {char} in the translated formula {text!r}")
            pos = end + 1
        elif char == "{":
            end = _closing(text, pos)
            check_python(text[pos + 1 : end])
            pos = end + 1
        elif (word := _WORD.match(text, pos)) is not None:
            end = word.end()
            if end < len(text) and text[end] in "([":
                close = _closing(text, end)
                check_python(text[pos : close + 1])
                pos = close + 1
            else:
                if not word.group()[0].isdigit() and word.group()[0] != ".":
                    check_python(word.group())
                pos = end
        else:
            pos += 1


def _closing(text: str, pos: int) -> int:
    """Position of the bracket closing the one at ``pos``, as formulaic pairs them.

    Each ``(`` or ``[`` inside expects its own closer; backticked names are
    skipped whole; quotes are not special.
    """
    stack = [_CLOSERS[text[pos]]]
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == "`":
            end = text.find("`", i + 1)
            if end < 0:
                break
            i = end
        elif char == stack[-1]:
            stack.pop()
            if not stack:
                return i
        elif char in "([":
            stack.append(_CLOSERS[char])
        i += 1
    raise FormulaError(f"unbalanced brackets in the translated formula {text!r}")
