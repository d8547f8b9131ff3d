"""Parse lme4 model formulas into a fixed part and random-effects terms.

An lme4 formula such as ``Reaction ~ Days + (Days | Subject)`` mixes ordinary
model-formula terms with *bar terms* ``(lhs | group)``.  :func:`parse_formula`
splits the two, expands lme4's shorthands (``||`` for uncorrelated terms,
``a/b`` for nested grouping factors) and translates every R expression into the
dialect understood by :mod:`formulaic`, which builds the model matrices.

Formulas are data, not code.  formulaic evaluates the Python code inside terms
(``log(x)``, ``I(x ** 2)``), so every piece of text returned here has been
checked to contain only column names, numbers, strings, arithmetic,
comparisons and calls to the functions in :data:`ALLOWED_FUNCTIONS`.  Nothing is
evaluated while parsing.
"""

from __future__ import annotations

import ast
import functools
import keyword
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from formulaic.parser.algos.tokenize import tokenize as _formulaic_tokenize
from formulaic.parser.types import Token as _FormulaicToken

from ..errors import FormulaError

__all__ = [
    "ALLOWED_FUNCTIONS",
    "TRANSFORMS",
    "ParsedFormula",
    "RandomTermSpec",
    "parse_formula",
    "random_term_to_lme4",
    "translate_expression",
]


# ---------------------------------------------------------------------------
# Public results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term ``(lhs | group)`` after expansion of ``||`` and ``/``.

    Attributes
    ----------
    lhs : str
        formulaic right-hand side for the per-row random-effects model matrix,
        with the intercept always explicit: ``"1"``, ``"1 + Days"``, ``"0 + Days"``.
    group : tuple of str
        Column names whose interaction forms the grouping factor, e.g.
        ``("Subject",)`` or ``("cask", "batch")`` for ``cask:batch``.
    """

    lhs: str
    group: tuple[str, ...]
    label: str | None = None

    @property
    def name(self) -> str:
        """lme4's name of the grouping factor, e.g. ``"cask:batch"``, ``"c:(b:a)"``."""
        return self.label if self.label is not None else ":".join(self.group)


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into response, fixed part and random-effects terms.

    Attributes
    ----------
    source : str
        The formula exactly as given.
    response : str
        The left-hand side translated for formulaic, e.g. ``"log(y)"``.
    fixed : str
        formulaic right-hand side for the fixed-effects matrix, intercept explicit
        (``"1 + x"``, ``"0 + x"``, ``"1"``).
    random : tuple of RandomTermSpec
        The random-effects terms in formula order, ``||`` and ``/`` expanded.
    """

    source: str
    response: str
    fixed: str
    random: tuple[RandomTermSpec, ...]


# ---------------------------------------------------------------------------
# Functions a formula may call
# ---------------------------------------------------------------------------


def _log(x: Any, base: float | None = None) -> Any:
    """Natural logarithm, or the logarithm to ``base`` like R's ``log(x, base)``."""
    if base is None:
        return np.log(x)
    return np.log(x) / np.log(base)


def _as_numeric(x: Any) -> pd.Series:
    """R's ``as.numeric``: numbers stay, logicals become 0/1, a factor its level codes."""
    series = x if isinstance(x, pd.Series) else pd.Series(x)
    if isinstance(series.dtype, pd.CategoricalDtype):
        # R numbers a factor's levels from 1, and as.numeric(f) returns those codes.
        codes = (series.cat.codes + 1).astype(float)
        return codes.where(series.notna())
    return pd.to_numeric(series, errors="raise").astype(float)


#: Evaluation context to pass to formulaic: the functions a formula may call that
#: formulaic does not provide itself (or whose R meaning differs from formulaic's).
TRANSFORMS: dict[str, object] = {
    "log": _log,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "log2": np.log2,
    "log10": np.log10,
    "as_numeric": _as_numeric,
}

# formulaic's own transforms and contrast helpers that formulas may use.
_FORMULAIC_FUNCTIONS = frozenset(
    {"I", "C", "Q", "center", "scale", "poly", "Treatment", "Sum", "Helmert", "Poly", "Diff"}
)

#: Every function name a translated formula may call.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(TRANSFORMS) | _FORMULAIC_FUNCTIONS

# Keyword arguments each function accepts: R spelling -> formulaic spelling.
_KEYWORDS: dict[str, dict[str, str]] = {
    "C": {"levels": "levels", "contr": "contrasts", "contrasts": "contrasts"},
    "poly": {"degree": "degree", "raw": "raw"},
    "scale": {"center": "center", "scale": "scale"},
    "log": {"base": "base"},
    "Treatment": {"reference": "reference"},
}

# R functions whose formulaic spelling differs.
_R_FUNCTIONS = {
    "factor": "C",
    "as.factor": "C",
    "as.numeric": "as_numeric",
    "as.double": "as_numeric",
}

# Contrast names accepted by R's C(f, contr) (bare or as strings), as formulaic code.
_CONTRASTS = {
    "treatment": "Treatment()",
    "sum": "Sum()",
    "helmert": "Helmert()",
    "poly": "Poly()",
}
_CONTRAST_FUNCTIONS = frozenset({"Treatment", "Sum", "Helmert", "Poly", "Diff"})


def _allowed_list() -> str:
    return ", ".join(sorted(ALLOWED_FUNCTIONS | {"factor", "as.factor", "as.numeric"}))


# ---------------------------------------------------------------------------
# Errors with a caret under the offending character
# ---------------------------------------------------------------------------


def _error(source: str, pos: int, message: str) -> FormulaError:
    """Build a FormulaError that shows ``source`` with a caret at ``pos``."""
    # Every whitespace character is one column wide once replaced by a space, so
    # the caret lines up even for formulas written over several lines.
    line = "".join(" " if ch.isspace() else ch for ch in source)
    pos = max(0, min(pos, len(source)))
    return FormulaError(f"{message} (at character {pos}):\n  {line}\n  {' ' * pos}^")


# ---------------------------------------------------------------------------
# Tokenizer for R formula text
# ---------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    | (?P<name>(?:[^\W\d]|\.(?!\d))[\w.]*)
    | (?P<quoted>`[^`]*`)
    | (?P<string>"[^"]*"|'[^']*')
    | (?P<op>%[^%\s]*%|\|\||\*\*|==|!=|<=|>=|[-+*/^:~|<>=(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "quoted", "string" or "op"
    text: str  # raw text; for "quoted" and "string" the unquoted content
    start: int
    end: int  # exclusive


def _tokenize(source: str) -> list[_Token]:
    """Split R formula text into tokens, refusing characters formulas never need."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN_RE.match(source, pos)
        if match is None:
            char = source[pos]
            if char in "\"'`":
                raise _error(source, pos, f"unclosed quote {char}")
            raise _error(source, pos, f"unexpected character {char!r} in formula")
        kind = match.lastgroup or ""
        text = match.group()
        if kind in ("quoted", "string"):
            text = text[1:-1]
            if "\\" in text:
                raise _error(source, pos, "escape sequences (\\) are not supported in formulas")
        if kind == "op" and text == "**":
            text = "^"  # R reads ** as ^
        if kind != "space":
            tokens.append(_Token(kind, text, match.start(), match.end()))
        pos = match.end()
    return tokens


def _check_parentheses(source: str, tokens: list[_Token]) -> None:
    """Report the first unmatched ``)`` or an unclosed ``(``."""
    stack: list[_Token] = []
    for tok in tokens:
        if tok.kind != "op":
            continue
        if tok.text == "(":
            stack.append(tok)
        elif tok.text == ")":
            if not stack:
                raise _error(source, tok.start, "unbalanced parentheses: `)` without `(`")
            stack.pop()
    if stack:
        raise _error(source, stack[-1].start, "unbalanced parentheses: `(` is never closed")


# ---------------------------------------------------------------------------
# Expression tree
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    start: int
    end: int


@dataclass(frozen=True)
class _Name(_Node):
    name: str


@dataclass(frozen=True)
class _Num(_Node):
    text: str


@dataclass(frozen=True)
class _Str(_Node):
    value: str


@dataclass(frozen=True)
class _Call(_Node):
    func: str
    args: tuple[_Node, ...]
    kwargs: tuple[tuple[str, _Node], ...]


@dataclass(frozen=True)
class _BinOp(_Node):
    op: str
    op_pos: int
    left: _Node
    right: _Node


@dataclass(frozen=True)
class _Unary(_Node):
    op: str
    operand: _Node


@dataclass(frozen=True)
class _Paren(_Node):
    inner: _Node


_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_BARS = frozenset({"|", "||"})
_MAX_DEPTH = 50  # each level costs ~13 Python frames in the parser


class _Parser:
    """Recursive-descent parser using R's operator precedence.

    From loosest to tightest: ``|``/``||``, comparisons, ``+ -``, ``* /``,
    ``%op%``, ``:``, unary ``+ -``, ``^`` (right-associative).
    """

    def __init__(self, source: str, tokens: list[_Token], end: int) -> None:
        self.source = source
        self.tokens = tokens
        self.end = end
        self.i = 0
        self.depth = 0

    # -- token helpers -----------------------------------------------------

    def _peek(self, ahead: int = 0) -> _Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def _at_op(self, *ops: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "op" and tok.text in ops

    def _next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _fail(self, pos: int, message: str) -> NoReturn:
        raise _error(self.source, pos, message)

    def _enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self._fail(pos, "formula is nested too deeply")

    # -- grammar -------------------------------------------------------------

    def parse(self) -> _Node:
        node = self._bar()
        tok = self._peek()
        if tok is not None:
            if tok.kind != "op" or tok.text == "(":
                self._fail(tok.start, f"missing operator before `{self._show(tok)}`")
            self._fail(tok.start, f"unexpected `{tok.text}`")
        return node

    def _binary(self, ops: Iterable[str], operand: Callable[[], _Node]) -> _Node:
        """Parse a left-associative chain of the binary operators ``ops``."""
        ops = tuple(ops)
        left = operand()
        while self._at_op(*ops):
            op = self._next()
            right = operand()
            left = _BinOp(left.start, right.end, op.text, op.start, left, right)
        return left

    def _bar(self) -> _Node:
        left = self._compare()
        while self._at_op(*_BARS):
            op = self._next()
            nxt = self._peek()
            if nxt is None or (nxt.kind == "op" and nxt.text in {")", ",", "|", "||"}):
                self._fail(
                    op.start,
                    f"nothing on the right of `{op.text}`: a random-effects term needs a "
                    "grouping factor, e.g. (1 | g)",
                )
            right = self._compare()
            left = _BinOp(left.start, right.end, op.text, op.start, left, right)
        return left

    def _compare(self) -> _Node:
        return self._binary(_COMPARISONS, self._sum)

    def _sum(self) -> _Node:
        return self._binary(("+", "-"), self._product)

    def _product(self) -> _Node:
        return self._binary(("*", "/"), self._special)

    def _special(self) -> _Node:
        left = self._colon()
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text[0] == "%":
            self._next()
            right = self._colon()
            left = _BinOp(left.start, right.end, tok.text, tok.start, left, right)
        return left

    def _colon(self) -> _Node:
        return self._binary((":",), self._unary)

    def _unary(self) -> _Node:
        if self._at_op("+", "-"):
            op = self._next()
            self._enter(op.start)
            operand = self._unary()
            self.depth -= 1
            return _Unary(op.start, operand.end, op.text, operand)
        return self._power()

    def _power(self) -> _Node:
        base = self._primary()
        if self._at_op("^"):
            op = self._next()
            self._enter(op.start)
            exponent = self._unary()  # R allows 2^-1 and reads a^b^c as a^(b^c)
            self.depth -= 1
            return _BinOp(base.start, exponent.end, "^", op.start, base, exponent)
        return base

    def _primary(self) -> _Node:
        tok = self._peek()
        if tok is None:
            self._fail(self.end, "formula ends where a term was expected")
        if tok.kind == "number":
            self._next()
            return _Num(tok.start, tok.end, tok.text)
        if tok.kind == "string":
            self._next()
            return _Str(tok.start, tok.end, tok.text)
        if tok.kind == "quoted":
            self._next()
            if self._at_op("("):
                self._fail(tok.start, f"`{tok.text}` cannot be called like a function")
            return _Name(tok.start, tok.end, tok.text)
        if tok.kind == "name":
            self._next()
            if self._at_op("("):
                return self._call(tok)
            return _Name(tok.start, tok.end, tok.text)
        if tok.text == "(":
            self._next()
            self._enter(tok.start)
            if self._at_op(")"):
                self._fail(tok.start, "empty parentheses")
            inner = self._bar()
            close = self._expect_close(tok)
            self.depth -= 1
            return _Paren(tok.start, close.end, inner)
        if tok.text in _BARS:
            self._fail(
                tok.start,
                f"nothing on the left of `{tok.text}`: a random-effects term needs a "
                "model on the left, e.g. (1 | g)",
            )
        self._fail(tok.start, f"unexpected `{tok.text}` where a term was expected")

    def _call(self, func: _Token) -> _Node:
        open_tok = self._next()
        self._enter(open_tok.start)
        args: list[_Node] = []
        kwargs: list[tuple[str, _Node]] = []
        if not self._at_op(")"):
            while True:
                nxt = self._peek(1)
                tok = self._peek()
                if (
                    tok is not None
                    and tok.kind == "name"
                    and nxt is not None
                    and (nxt.kind == "op" and nxt.text == "=")
                ):
                    self.i += 2
                    kwargs.append((tok.text, self._bar()))
                else:
                    if kwargs:
                        self._fail(
                            tok.start if tok else self.end,
                            "positional argument after a keyword argument",
                        )
                    args.append(self._bar())
                if not self._at_op(","):
                    break
                self._next()
        close = self._expect_close(open_tok)
        self.depth -= 1
        return _Call(func.start, close.end, func.text, tuple(args), tuple(kwargs))

    def _expect_close(self, open_tok: _Token) -> _Token:
        tok = self._peek()
        if tok is None:
            self._fail(open_tok.start, "unbalanced parentheses: `(` is never closed")
        if not (tok.kind == "op" and tok.text == ")"):
            if tok.kind != "op" or tok.text == "(":
                self._fail(tok.start, f"missing operator before `{self._show(tok)}`")
            self._fail(tok.start, f"unexpected `{tok.text}`: expected `)`")
        return self._next()

    @staticmethod
    def _show(tok: _Token) -> str:
        if tok.kind == "quoted":
            return f"`{tok.text}`"
        if tok.kind == "string":
            return f'"{tok.text}"'
        return tok.text


def _unwrap(node: _Node) -> _Node:
    """Strip redundant parentheses: ``((x))`` -> ``x``."""
    while isinstance(node, _Paren):
        node = node.inner
    return node


def _is_bar(node: _Node) -> bool:
    return isinstance(node, _BinOp) and node.op in _BARS


def _number_value(text: str) -> float:
    return float(text.rstrip("L"))


def _is_dunder(name: str) -> bool:
    """True if any dot- or space-separated part of ``name`` looks like ``__x__``."""
    return any(part.startswith("__") and part.endswith("__") for part in re.split(r"[.\s]", name))


def _split_intercept(terms: list[tuple[int, _Node]]) -> tuple[bool, list[tuple[int, _Node]]]:
    """Separate the intercept markers ``0``/``1`` from the other signed terms.

    As in R, the intercept is present unless removed by ``0`` or ``-1``; a later
    ``1`` (or ``-0``) puts it back.
    """
    intercept = True
    rest: list[tuple[int, _Node]] = []
    for sign, term in terms:
        core = _unwrap(term)
        if isinstance(core, _Num) and _number_value(core.text) in (0.0, 1.0):
            intercept = (_number_value(core.text) == 1.0) == (sign > 0)
        else:
            rest.append((sign, term))
    return intercept, rest


def _label(term: frozenset[str], order: dict[str, int]) -> str:
    """R's label of an interaction term: its factors in order of first appearance."""
    return ":".join(sorted(term, key=order.__getitem__))


def _ordered_union(*groups: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    seen: dict[frozenset[str], None] = {}
    for group in groups:
        for term in group:
            seen.setdefault(term, None)
    return list(seen)


# ---------------------------------------------------------------------------
# Translation of trees to formulaic text
# ---------------------------------------------------------------------------

# formulaic's operator precedences (see formulaic.parser.DefaultOperatorResolver);
# R's differ (e.g. %in% binds tighter than * in R), so we add parentheses where
# formulaic would otherwise group differently.
_FORMULA_PREC = {"+": 100, "-": 100, "*": 200, "/": 200, "%in%": 200, ":": 300, "^": 500}
# Python's precedences, with R's %% and %/% mapped to % and //.
_PY_PREC = {op: 10 for op in _COMPARISONS} | {
    "+": 20,
    "-": 20,
    "*": 30,
    "/": 30,
    "%%": 30,
    "%/%": 30,
    "^": 50,
}
_PY_OPS = {"^": "**", "%%": "%", "%/%": "//"}
_PY_UNARY_PREC = 40


def _needs_parens(child: _Node, parent_op: str, side: str, prec: dict[str, int]) -> bool:
    """Whether ``child`` must be parenthesised as the ``side`` operand of ``parent_op``."""
    if not isinstance(child, _BinOp) or child.op not in prec:
        return False
    child_prec, parent_prec = prec[child.op], prec[parent_op]
    if child_prec != parent_prec:
        return child_prec < parent_prec
    if parent_op in _COMPARISONS:
        return True  # Python would chain a < b < c
    # Equal precedence: only the side the operator associates towards is safe.
    return side == ("left" if parent_op == "^" else "right")


class _Translator:
    """Render parsed R expressions as formulaic formula text or Python code."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, pos: int, message: str) -> NoReturn:
        raise _error(self.source, pos, message)

    def text(self, node: _Node) -> str:
        """The source text of ``node``, whitespace-collapsed, for messages."""
        return " ".join(self.source[node.start : node.end].split())

    # -- names -----------------------------------------------------------------

    def name(self, node: _Node, name: str) -> str:
        """A column name as formulaic text: bare if Python allows it, else backticked."""
        if name == ".":
            self.fail(node.start, "`.` (all other columns) is not supported; list the columns")
        if not name or not name.isprintable() or "`" in name:
            self.fail(node.start, f"invalid column name {name!r}")
        if _is_dunder(name):
            self.fail(
                node.start,
                f"`{name}` is not allowed: double-underscore names are refused because "
                "formulas are data, not code",
            )
        if name.isidentifier() and not keyword.iskeyword(name):
            return name
        # Backticks make formulaic look the name up as a column, never evaluate it,
        # which is also how R's dotted names like Sepal.Length stay column names.
        return f"`{name}`"

    def stray_bar(self, node: _BinOp) -> NoReturn:
        self.fail(
            node.op_pos,
            f"stray `{node.op}`: bars may only appear in a random-effects term "
            "( lhs | group ) added to the formula with +",
        )

    # -- formula level -----------------------------------------------------------

    def formula(self, node: _Node) -> str:
        """Render ``node`` as formulaic formula text (``+ - * / : %in% **``)."""
        if isinstance(node, _Name):
            return self.name(node, node.name)
        if isinstance(node, _Num):
            if _number_value(node.text) in (0.0, 1.0):
                return str(int(_number_value(node.text)))
            self.fail(node.start, f"the number `{node.text}` is not a model term")
        if isinstance(node, _Str):
            self.fail(
                node.start,
                f"the string {self.text(node)} is not a model term; write column names "
                'bare, in backticks or as Q("name")',
            )
        if isinstance(node, _Call):
            return self.call(node)
        if isinstance(node, _Paren):
            return f"({self.formula(node.inner)})"
        if isinstance(node, _Unary):
            if node.op == "+":
                return self.formula(node.operand)
            operand = self.formula(node.operand)
            return f"-({operand})" if isinstance(node.operand, _BinOp) else f"-{operand}"
        assert isinstance(node, _BinOp)
        return self.formula_binop(node)

    def formula_binop(self, node: _BinOp) -> str:
        if node.op in _BARS:
            self.stray_bar(node)
        if node.op in _COMPARISONS or node.op not in _FORMULA_PREC:
            self.fail(
                node.op_pos,
                f"`{node.op}` is not a formula operator; put arithmetic and comparisons "
                f"inside I(...), e.g. I({self.text(node)})",
            )
        if node.op == "%in%":
            # formulaic's %in% adds main effects of the right side that R's does not,
            # so spell out R's terms instead.
            order: dict[str, int] = {}
            terms = self.expand(node, order)
            return f"({' + '.join(_label(term, order) for term in terms)})"
        left = self.formula_operand(node.left, node.op, "left")
        if node.op == "^":
            return f"{left} ** {self.crossing_degree(node)}"
        right = self.formula_operand(node.right, node.op, "right")
        if node.op == ":":
            return f"{left}:{right}"
        return f"{left} {node.op} {right}"

    def formula_operand(self, child: _Node, parent_op: str, side: str) -> str:
        if isinstance(child, _Unary) and child.op == "-" and parent_op not in ("+", "-"):
            self.fail(child.start, "`-` removes terms; use it between terms, e.g. y ~ x - 1")
        if isinstance(_unwrap(child), _Num) and parent_op not in ("+", "-"):
            self.fail(
                child.start,
                f"`{self.text(child)}` can only be added or removed as the intercept, "
                "e.g. y ~ 0 + x",
            )
        text = self.formula(child)
        already_wrapped = isinstance(child, _BinOp) and child.op == "%in%"
        if not already_wrapped and _needs_parens(child, parent_op, side, _FORMULA_PREC):
            return f"({text})"
        return text

    def crossing_degree(self, node: _BinOp) -> int:
        """The exponent of ``(a + b)^n``, clamped to the number of variables crossed."""
        exponent = _unwrap(node.right)
        if not (isinstance(exponent, _Num) and re.fullmatch(r"\d+L?", exponent.text)):
            self.fail(
                node.right.start,
                f"`^` in a formula crosses terms and needs a whole number, got "
                f"`{self.text(node.right)}`; for powers use I(x^2)",
            )
        degree = int(exponent.text.rstrip("L"))
        if degree < 1:
            self.fail(node.right.start, "the crossing degree after `^` must be at least 1")
        # Crossing more times than there are variables changes nothing (in R), and
        # formulaic's expansion time grows exponentially with the exponent.
        variables = set().union(*self.expand(node.left, {}))
        return min(degree, max(1, len(variables)))

    # -- term algebra (for ||) -------------------------------------------------

    def expand(self, node: _Node, order: dict[str, int]) -> list[frozenset[str]]:
        """Expand formula operators into R's terms, each a set of factor texts.

        ``order`` records each factor's first appearance, which is how R orders
        the variables inside an interaction label.
        """
        if isinstance(node, _Paren):
            return self.expand(node.inner, order)
        if isinstance(node, (_Name, _Call)):
            key = self.formula(node)
            order.setdefault(key, len(order))
            return [frozenset({key})]
        if not isinstance(node, _BinOp) or node.op not in _FORMULA_PREC:
            self.formula(node)  # raises the precise error for this construct
            self.fail(node.start, f"`{self.text(node)}` cannot be used in this term")
        left = self.expand(node.left, order)
        if node.op == "^":
            result = left
            for _ in range(self.crossing_degree(node) - 1):
                result = _ordered_union(result, left, [a | b for a in result for b in left])
            return result
        right = self.expand(node.right, order)
        if node.op == "+":
            return _ordered_union(left, right)
        if node.op == "-":
            return [term for term in left if term not in set(right)]
        if node.op == ":":
            return _ordered_union([a | b for a in left for b in right])
        if node.op == "%in%":
            # R nests each left term in all right variables at once:
            # a %in% (b + c) is a:b:c, not a:b + a:c.
            inner = frozenset().union(*right)
            return _ordered_union([a | inner for a in left])
        if node.op == "*":
            return _ordered_union(left, right, [a | b for a in left for b in right])
        outer = frozenset().union(*left)  # a/b means a + a:b
        return _ordered_union(left, [outer | b for b in right])

    # -- Python code inside calls ---------------------------------------------------

    def python(self, node: _Node) -> str:
        """Render ``node`` as Python code, the language inside function calls."""
        if isinstance(node, _Name):
            if node.name in ("TRUE", "FALSE"):
                return "True" if node.name == "TRUE" else "False"
            return self.name(node, node.name)
        if isinstance(node, _Num):
            return node.text.rstrip("L")
        if isinstance(node, _Str):
            return self.string(node)
        if isinstance(node, _Call):
            return self.call(node)
        if isinstance(node, _Paren):
            return f"({self.python(node.inner)})"
        if isinstance(node, _Unary):
            operand = self.python(node.operand)
            if isinstance(node.operand, _BinOp) and _PY_PREC.get(node.operand.op, 0) < (
                _PY_UNARY_PREC
            ):
                operand = f"({operand})"
            return f"{node.op}{operand}"
        assert isinstance(node, _BinOp)
        if node.op in _BARS:
            self.stray_bar(node)
        if node.op not in _PY_PREC:
            self.fail(
                node.op_pos,
                f"the formula operator `{node.op}` cannot be used inside a function call",
            )
        left = self.python(node.left)
        if _needs_parens(node.left, node.op, "left", _PY_PREC):
            left = f"({left})"
        right = self.python(node.right)
        if _needs_parens(node.right, node.op, "right", _PY_PREC):
            right = f"({right})"
        return f"{left} {_PY_OPS.get(node.op, node.op)} {right}"

    def string(self, node: _Str) -> str:
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

    def call(self, node: _Call) -> str:
        """Translate one function call, checking it against the allow-list."""
        if node.func == "Q":
            return self.q_name(node)
        if node.func == "c":
            self.fail(
                node.start,
                'c() is only allowed as factor levels, e.g. factor(g, levels = c("b", "a"))',
            )
        func = _R_FUNCTIONS.get(node.func, node.func)
        if func not in ALLOWED_FUNCTIONS:
            self.fail(
                node.start,
                f"function `{node.func}` is not allowed in a formula (formulas are data, "
                f"not code); allowed functions: {_allowed_list()}",
            )
        if not node.args and func not in _CONTRAST_FUNCTIONS:  # Sum() takes none
            self.fail(node.start, f"`{node.func}()` needs an argument")
        if func == "C":
            return self.factor_call(node)
        parts = [self.python(arg) for arg in node.args]
        parts += [self.keyword(node, func, key, value) for key, value in node.kwargs]
        return f"{func}({', '.join(parts)})"

    def keyword(self, node: _Call, func: str, key: str, value: _Node) -> str:
        allowed = _KEYWORDS.get(func, {})
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            self.fail(
                value.start,
                f"keyword argument `{key}` is not allowed for {node.func}(); allowed: {accepted}",
            )
        # R users write T and F for TRUE and FALSE in arguments such as raw = T.
        if isinstance(value, _Name) and value.name in ("T", "F"):
            return f"{allowed[key]}={value.name == 'T'}"
        return f"{allowed[key]}={self.python(value)}"

    def q_name(self, node: _Call) -> str:
        """``Q("my col")`` names a column; render it as a (backticked) name."""
        return self.name(node, self.q_value(node))

    def q_value(self, node: _Call) -> str:
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], _Str):
            self.fail(node.start, f"Q() takes one quoted column name, got `{self.text(node)}`")
        return node.args[0].value

    def factor_call(self, node: _Call) -> str:
        """``factor(x)``, ``as.factor(x)`` or ``C(x, contr)`` -> formulaic ``C(...)``."""
        max_args = 2 if node.func == "C" else 1
        if len(node.args) > max_args:
            self.fail(node.args[max_args].start, f"too many arguments for {node.func}()")
        parts = [self.python(node.args[0])]
        if len(node.args) == 2:
            parts.append(self.contrasts(node.args[1]))
        for key, value in node.kwargs:
            target = _KEYWORDS["C"].get(key)
            if target == "contrasts" and node.func == "C" and len(node.args) == 1:
                parts.append(f"contrasts={self.contrasts(value)}")
            elif target == "levels":
                parts.append(f"levels={self.levels(value)}")
            else:
                allowed = "contr, levels" if node.func == "C" else "levels"
                self.fail(
                    value.start,
                    f"keyword argument `{key}` is not allowed for {node.func}(); "
                    f"allowed: {allowed}",
                )
        return f"C({', '.join(parts)})"

    def contrasts(self, node: _Node) -> str:
        if isinstance(node, (_Name, _Str)):
            label = node.name if isinstance(node, _Name) else node.value
            code = _CONTRASTS.get(label.removeprefix("contr."))
            if code is not None:
                return code
        if isinstance(node, _Call) and node.func in _CONTRAST_FUNCTIONS:
            return self.call(node)
        self.fail(
            node.start,
            f"unsupported contrasts `{self.text(node)}`; use contr.treatment, contr.sum, "
            "contr.helmert or contr.poly",
        )

    def levels(self, node: _Node) -> str:
        values = node.args if isinstance(node, _Call) and node.func == "c" else (node,)
        if (isinstance(node, _Call) and node.kwargs) or not all(
            isinstance(value, (_Str, _Num)) for value in values
        ):
            self.fail(
                node.start,
                f'levels must be strings or numbers, e.g. c("b", "a"); got `{self.text(node)}`',
            )
        return f"[{', '.join(self.python(value) for value in values)}]"

    # -- the parts of a model formula ------------------------------------------------

    def response(self, node: _Node) -> str:
        core = _unwrap(node)
        if isinstance(core, (_Name, _Call)):
            return self.formula(core)
        if isinstance(core, (_Num, _Str)):
            self.fail(
                node.start,
                f"the response must be a column or an expression of columns, got "
                f"`{self.text(node)}`",
            )
        # In R the response is an ordinary expression (y1 + y2 is a sum, not two
        # terms), which formulaic computes as such only inside I().
        return f"I({self.python(node)})"

    def spine(self, node: _Node) -> list[tuple[int, _Node]]:
        """Flatten the ``+``/``-`` chain of a formula side into signed terms, in order."""
        out: list[tuple[int, _Node]] = []
        # An explicit stack rather than recursion: long formulas are left-deep trees.
        stack: list[tuple[int, _Node]] = [(1, node)]
        while stack:
            sign, node = stack.pop()
            if isinstance(node, _BinOp) and node.op in ("+", "-"):
                stack.append((sign if node.op == "+" else -sign, node.right))
                stack.append((sign, node.left))
            elif isinstance(node, _Unary):
                stack.append((sign if node.op == "+" else -sign, node.operand))
            elif isinstance(node, _Paren) and sign > 0 and not _is_bar(_unwrap(node)):
                # (x + (1|g)) is searched for bar terms as lme4's findbars does.
                stack.append((sign, _unwrap(node)))
            else:
                out.append((sign, node))
        return out

    def intercept_and_terms(self, node: _Node) -> tuple[bool, list[tuple[int, _Node]]]:
        """Flatten a side and split off its intercept flag."""
        return _split_intercept(self.spine(node))

    def join_terms(self, intercept: bool, terms: list[tuple[int, _Node]]) -> str:
        parts = ["1" if intercept else "0"]
        for sign, term in terms:
            text = self.formula(term)
            if isinstance(term, _BinOp) and term.op in ("+", "-"):
                text = f"({text})"
            parts.append(f"{'+' if sign > 0 else '-'} {text}")
        return " ".join(parts)

    def rhs(self, node: _Node) -> tuple[str, list[RandomTermSpec]]:
        """Split the right-hand side into the fixed part and random-effects terms."""
        terms = self.spine(node)
        fixed_terms: list[tuple[int, _Node]] = []
        random: list[RandomTermSpec] = []
        for sign, term in terms:
            core = _unwrap(term)
            if _is_bar(core) and term is core:
                assert isinstance(core, _BinOp)
                self.stray_bar(core)
            if _is_bar(core):
                if sign < 0:
                    self.fail(term.start, "a random-effects term cannot be removed with `-`")
                assert isinstance(core, _BinOp)
                random.extend(self.bar_term(term, core))
            else:
                fixed_terms.append((sign, term))
        intercept, rest = _split_intercept(fixed_terms)
        return self.join_terms(intercept, rest), random

    def bar_term(self, term: _Node, bar: _BinOp) -> list[RandomTermSpec]:
        """Expand one ``(lhs | group)`` or ``(lhs || group)`` term."""
        groups = self.groups(bar.right)
        intercept, terms = self.intercept_and_terms(bar.left)
        if bar.op == "|":
            has_columns = intercept or any(sign > 0 for sign, _ in terms)
            lhs_list = [self.join_terms(intercept, terms)] if has_columns else []
        else:
            # lme4's expandDoubleVerts: (1|g) if there is an intercept, then one
            # (0 + t|g) for each of R's term labels t of the left-hand side.
            order: dict[str, int] = {}
            labels: list[frozenset[str]] = []
            for sign, node in terms:
                expanded = self.expand(node, order)
                if sign > 0:
                    labels = _ordered_union(labels, expanded)
                else:
                    labels = [label for label in labels if label not in set(expanded)]
            labels.sort(key=len)  # R lists main effects before interactions
            lhs_list = ["1"] if intercept else []
            lhs_list += ["0 + " + _label(term, order) for term in labels]
        if not lhs_list:
            self.fail(term.start, f"random-effects term `{self.text(term)}` has no columns")
        return [
            RandomTermSpec(lhs, group, label if ":" in label else None)
            for lhs in lhs_list
            for group, label in groups
        ]

    def groups(self, node: _Node) -> list[tuple[tuple[str, ...], str]]:
        """Grouping factors of ``a``, ``a:b`` or ``a/b`` (-> ``a`` and ``b:a``)."""
        levels: list[tuple[str, ...]] = []
        while isinstance(node, _BinOp) and node.op == "/":
            levels.insert(0, self.interaction(node.right))
            node = node.left
        levels.insert(0, self.interaction(node))
        # Level k of a/b/c is nested in all outer levels; lme4 names it inner-first,
        # bracketing an outer interaction: a, b:a, c:(b:a).
        groups: list[tuple[tuple[str, ...], str]] = []
        for k, level in enumerate(levels):
            group = tuple(name for outer in reversed(levels[: k + 1]) for name in outer)
            inner = ":".join(level)
            if k == 0:
                label = inner
            else:
                outer = groups[-1]
                label = f"{inner}:{outer[1] if len(outer[0]) == 1 else f'({outer[1]})'}"
            groups.append((group, label))
        return groups

    def interaction(self, node: _Node) -> tuple[str, ...]:
        if isinstance(node, _BinOp) and node.op == ":":
            return self.interaction(node.left) + self.interaction(node.right)
        if isinstance(node, _Name):
            return (node.name,)
        if isinstance(node, _Call) and node.func == "Q":
            return (self.q_value(node),)
        self.fail(
            node.start,
            f"invalid grouping factor `{self.text(node)}`: the right of a bar must be a "
            "column name, an interaction a:b or a nesting a/b",
        )


# ---------------------------------------------------------------------------
# Final safety check on everything formulaic will evaluate
# ---------------------------------------------------------------------------

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


def _refuse(code: str, node: ast.AST, what: str) -> NoReturn:
    segment = ast.get_source_segment(code, node) or code
    raise FormulaError(
        f"`{segment}` is not allowed in a formula ({what}); formulas may only use column "
        "names, numbers, strings, arithmetic, comparisons and calls to: "
        f"{', '.join(sorted(ALLOWED_FUNCTIONS))}"
    )


def _check_python(code: str) -> None:
    """Refuse any Python in ``code`` beyond the formula allow-list."""

    def placeholder(match: re.Match[str]) -> str:
        if _is_dunder(match.group()[1:-1]):
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
            if _is_dunder(node.id):
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
    allowed = set(_KEYWORDS.get(node.func.id, {}).values())
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in allowed:
            _refuse(code, node, f"keyword `{kw.arg}` is not allowed for {node.func.id}()")


def _check_evaluable(formula: str) -> None:
    """Validate every piece of ``formula`` that formulaic would evaluate as Python.

    formulaic's own tokenizer decides which text becomes Python code, so it is
    used here (it only splits text; nothing is evaluated).
    """
    try:
        tokens = list(_formulaic_tokenize(formula))
    except Exception as exc:  # formulaic raises its own syntax errors
        raise FormulaError(
            f"formulaic cannot read the translated formula {formula!r}: {exc}"
        ) from exc
    for tok in tokens:
        if tok.kind is _FormulaicToken.Kind.PYTHON:
            _check_python(tok.token)
        elif tok.kind is _FormulaicToken.Kind.NAME:
            quoted = tok.source_start is not None and formula[tok.source_start] == "`"
            if quoted:
                if _is_dunder(tok.token):
                    raise FormulaError(f"`{tok.token}` is not allowed: double-underscore names")
            else:
                _check_python(tok.token)


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def _parse_side(source: str, tokens: list[_Token], end: int) -> _Node:
    return _Parser(source, tokens, end).parse()


def translate_expression(expr: str) -> str:
    """Translate one side of an R model formula into formulaic text.

    Parameters
    ----------
    expr : str
        R formula text without ``~``, e.g. ``"x + I(x^2) + factor(g)"``.

    Returns
    -------
    str
        Equivalent formulaic text, e.g. ``"x + I(x ** 2) + C(g)"``; ``^`` becomes
        ``**`` (power inside calls, crossing outside), ``factor``/``as.factor``
        become ``C``, ``as.numeric`` becomes ``as_numeric`` and dotted or unusual
        column names are backticked.  The intercept is left as written.

    Raises
    ------
    FormulaError
        If the text is not a valid formula side or uses anything outside the
        allow-list (see :data:`ALLOWED_FUNCTIONS`).
    """
    if not isinstance(expr, str):
        raise FormulaError(f"a formula must be a string, got {type(expr).__name__}")
    try:
        tokens = _tokenize(expr)
        if not tokens:
            raise _error(expr, 0, "empty expression")
        _check_parentheses(expr, tokens)
        for tok in tokens:
            if tok.kind == "op" and tok.text == "~":
                raise _error(expr, tok.start, "`~` is not allowed in one side of a formula")
        text = _Translator(expr).formula(_parse_side(expr, tokens, len(expr)))
        _check_evaluable(text)
    except RecursionError:
        raise FormulaError("formula is too long or too deeply nested") from None
    return text


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4 model formula.

    Parameters
    ----------
    formula : str
        An lme4 formula such as ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula
        The response, the fixed part (intercept explicit) and the random-effects
        terms in formula order, with ``(x || g)`` expanded to ``(1 | g) + (0 + x | g)``
        and ``(1 | a/b)`` to ``(1 | a) + (1 | b:a)``.

    Raises
    ------
    FormulaError
        For syntax errors (with the character position) and for anything that is
        not allowed in a formula.

    Examples
    --------
    >>> parse_formula("Reaction ~ Days + (Days | Subject)").random
    (RandomTermSpec(lhs='1 + Days', group=('Subject',)),)
    """
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, got {type(formula).__name__}")
    try:
        return _parse_formula(formula)
    except RecursionError:
        raise FormulaError("formula is too long or too deeply nested") from None


# Parsing is pure and its result immutable, and a model is often refitted with
# the same formula (bootstraps, the CLI, benchmarks): parsing costs more than
# building a small design.  Errors are not cached, so they are raised each time.
@functools.lru_cache(maxsize=256)
def _parse_formula(source: str) -> ParsedFormula:
    tokens = _tokenize(source)
    if not tokens:
        raise _error(source, 0, "empty formula; expected `response ~ terms`")
    _check_parentheses(source, tokens)
    tilde = _find_tilde(source, tokens)
    split = tokens.index(tilde)
    lhs_tokens, rhs_tokens = tokens[:split], tokens[split + 1 :]
    if not lhs_tokens:
        raise _error(source, tilde.start, "missing response on the left of `~`")
    if not rhs_tokens:
        raise _error(source, tilde.end, "nothing on the right of `~`; use `y ~ 1` for no terms")
    translator = _Translator(source)
    response = translator.response(_parse_side(source, lhs_tokens, tilde.start))
    fixed, random = translator.rhs(_parse_side(source, rhs_tokens, len(source)))
    for text in (response, fixed, *(spec.lhs for spec in random)):
        _check_evaluable(text)
    return ParsedFormula(source=source, response=response, fixed=fixed, random=tuple(random))


def _find_tilde(source: str, tokens: list[_Token]) -> _Token:
    tildes = [tok for tok in tokens if tok.kind == "op" and tok.text == "~"]
    if not tildes:
        raise _error(source, 0, "missing `~`: a formula has the form `response ~ terms`")
    if len(tildes) > 1:
        raise _error(source, tildes[1].start, "more than one `~` in formula")
    depth = 0
    for tok in tokens:
        if tok is tildes[0]:
            break
        if tok.kind == "op" and tok.text in "()":
            depth += 1 if tok.text == "(" else -1
    if depth:
        raise _error(source, tildes[0].start, "`~` must not be inside parentheses")
    return tildes[0]


def random_term_to_lme4(spec: RandomTermSpec) -> str:
    """Write a random-effects term back in lme4 syntax, e.g. ``"(1 + Days | Subject)"``.

    Parameters
    ----------
    spec : RandomTermSpec
        The term.

    Returns
    -------
    str
        The term as lme4 would print it in a formula, for messages and summaries.
    """
    lhs = spec.lhs.replace(" ** ", "^").replace("as_numeric(", "as.numeric(")
    lhs = re.sub(r"\bC\(([^(),]+)\)", r"factor(\1)", lhs)
    group = ":".join(_r_name(part) for part in spec.group)
    return f"({lhs} | {group})"


def _r_name(name: str) -> str:
    """Backtick a column name unless R could read it bare."""
    if re.fullmatch(r"(?:[^\W\d_]|\.(?!\d))[\w.]*", name):
        return name
    return f"`{name}`"
