"""The expression tree of R formula text and its recursive-descent parser.

The parser builds a tree for any R expression a formula may contain, with R's
operator precedence; what the operators *mean* (crossing, nesting, bars,
arithmetic inside calls) is decided later, by :mod:`.translate`.  Every node
keeps its position in the source so that errors can point at it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NoReturn

from .tokens import Token, formula_error

__all__ = [
    "BARS",
    "COMPARISONS",
    "LOGICAL",
    "BinOp",
    "Call",
    "Name",
    "Node",
    "Num",
    "Paren",
    "Str",
    "Unary",
    "is_bar",
    "number_value",
    "parse_side",
    "signed_terms",
    "unwrap",
]

#: Comparison operators (allowed inside calls only).
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
#: The bars of random-effects terms: ``(x | g)`` and ``(x || g)``; inside a
#: call, ``|`` is R's elementwise "or".
BARS = frozenset({"|", "||"})
#: Logical operators (inside calls only): elementwise ``&`` and ``|``, and the
#: scalar ``&&`` and ``||`` (refused by the translator).
LOGICAL = frozenset({"&", "&&", "|", "||"})
_MAX_DEPTH = 50  # each level costs ~13 Python frames in the parser


@dataclass(frozen=True)
class Node:
    """A node of the expression tree, spanning ``source[start:end]``."""

    start: int
    end: int


@dataclass(frozen=True)
class Name(Node):
    """A name (bare or backticked), e.g. ``Days`` or ``my col``."""

    name: str


@dataclass(frozen=True)
class Num(Node):
    """A number as written, e.g. ``2``, ``1e-3``, ``2L``."""

    text: str


@dataclass(frozen=True)
class Str(Node):
    """A string literal (its value, without quotes)."""

    value: str


@dataclass(frozen=True)
class Call(Node):
    """A function call ``func(args..., key = value...)``."""

    func: str
    args: tuple[Node, ...]
    kwargs: tuple[tuple[str, Node], ...]


@dataclass(frozen=True)
class BinOp(Node):
    """A binary operation; ``op_pos`` is where the operator is."""

    op: str
    op_pos: int
    left: Node
    right: Node


@dataclass(frozen=True)
class Unary(Node):
    """Unary ``+``, ``-`` or ``!``."""

    op: str
    operand: Node


@dataclass(frozen=True)
class Paren(Node):
    """Parentheses around an expression."""

    inner: Node


def unwrap(node: Node) -> Node:
    """Strip redundant parentheses: ``((x))`` -> ``x``."""
    while isinstance(node, Paren):
        node = node.inner
    return node


def is_bar(node: Node) -> bool:
    """Whether ``node`` is a bar ``lhs | group`` or ``lhs || group``."""
    return isinstance(node, BinOp) and node.op in BARS


def number_value(text: str) -> float:
    """The value of a number token (R's ``2L`` is 2)."""
    return float(text.rstrip("L"))


def signed_terms(node: Node) -> list[tuple[int, Node]]:
    """Flatten the ``+``/``-`` chain of a formula side into signed terms, in order.

    ``y ~ a - b + (1 | g)`` gives ``[(1, a), (-1, b), (1, (1 | g))]``.
    Parenthesised sums are opened (``(x + (1 | g))`` is searched for bar terms,
    as lme4's ``findbars`` does); bar terms keep their parentheses.
    """
    out: list[tuple[int, Node]] = []
    # An explicit stack rather than recursion: long formulas are left-deep trees.
    stack: list[tuple[int, Node]] = [(1, node)]
    while stack:
        sign, node = stack.pop()
        if isinstance(node, BinOp) and node.op in ("+", "-"):
            stack.append((sign if node.op == "+" else -sign, node.right))
            stack.append((sign, node.left))
        elif isinstance(node, Unary) and node.op in ("+", "-"):
            stack.append((sign if node.op == "+" else -sign, node.operand))
        elif isinstance(node, Paren) and sign > 0 and not is_bar(unwrap(node)):
            stack.append((sign, unwrap(node)))
        else:
            out.append((sign, node))
    return out


def parse_side(source: str, tokens: list[Token], end: int) -> Node:
    """Parse the tokens of one side of a formula (``end``: where the side ends in ``source``).

    Raises
    ------
    FormulaError
        For a syntax error, with its position.
    """
    return _Parser(source, tokens, end).parse()


class _Parser:
    """Recursive-descent parser using R's operator precedence.

    From loosest to tightest: ``|``/``||``, ``&``/``&&``, ``!``, comparisons,
    ``+ -``, ``* /``, ``%op%``, ``:``, unary ``+ -``, ``^`` (right-associative).
    """

    def __init__(self, source: str, tokens: list[Token], end: int) -> None:
        self.source = source
        self.tokens = tokens
        self.end = end
        self.i = 0
        self.depth = 0

    # -- token helpers -----------------------------------------------------

    def _peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def _at_op(self, *ops: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.is_op(*ops)

    def _next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _fail(self, pos: int, message: str) -> NoReturn:
        raise formula_error(self.source, pos, message)

    def _enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self._fail(pos, "formula is nested too deeply")

    # -- grammar -------------------------------------------------------------

    def parse(self) -> Node:
        node = self._bar()
        tok = self._peek()
        if tok is not None:
            if tok.kind != "op" or tok.text == "(":
                self._fail(tok.start, f"missing operator before `{_show(tok)}`")
            self._fail(tok.start, f"unexpected `{tok.text}`")
        return node

    def _binary(self, ops: Iterable[str], operand: Callable[[], Node]) -> Node:
        """Parse a left-associative chain of the binary operators ``ops``."""
        ops = tuple(ops)
        left = operand()
        while self._at_op(*ops):
            op = self._next()
            right = operand()
            left = BinOp(left.start, right.end, op.text, op.start, left, right)
        return left

    def _bar(self) -> Node:
        left = self._and()
        while self._at_op(*BARS):
            op = self._next()
            nxt = self._peek()
            if nxt is None or nxt.is_op(")", ",", "|", "||"):
                self._fail(
                    op.start,
                    f"nothing on the right of `{op.text}`: a random-effects term needs a "
                    "grouping factor, e.g. (1 | g)",
                )
            right = self._and()
            left = BinOp(left.start, right.end, op.text, op.start, left, right)
        return left

    def _and(self) -> Node:
        return self._binary(("&", "&&"), self._not)

    def _not(self) -> Node:
        # R's ! binds more loosely than comparisons: !x > 1 is !(x > 1).
        if self._at_op("!"):
            op = self._next()
            self._enter(op.start)
            operand = self._not()
            self.depth -= 1
            return Unary(op.start, operand.end, "!", operand)
        return self._compare()

    def _compare(self) -> Node:
        left = self._sum()
        if self._at_op(*COMPARISONS):
            op = self._next()
            right = self._sum()
            left = BinOp(left.start, right.end, op.text, op.start, left, right)
            if self._at_op(*COMPARISONS):
                # R does not chain comparisons: a < b < c is a syntax error there.
                nxt = self._next()
                self._fail(
                    nxt.start,
                    f"comparisons cannot be chained; write (a {op.text} b) {nxt.text} c "
                    "with parentheses",
                )
        return left

    def _sum(self) -> Node:
        return self._binary(("+", "-"), self._product)

    def _product(self) -> Node:
        return self._binary(("*", "/"), self._special)

    def _special(self) -> Node:
        left = self._colon()
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.text[0] == "%":
            self._next()
            right = self._colon()
            left = BinOp(left.start, right.end, tok.text, tok.start, left, right)
        return left

    def _colon(self) -> Node:
        return self._binary((":",), self._unary)

    def _unary(self) -> Node:
        if self._at_op("+", "-"):
            op = self._next()
            self._enter(op.start)
            operand = self._unary()
            self.depth -= 1
            return Unary(op.start, operand.end, op.text, operand)
        return self._power()

    def _power(self) -> Node:
        base = self._primary()
        if self._at_op("^"):
            op = self._next()
            self._enter(op.start)
            exponent = self._unary()  # R allows 2^-1 and reads a^b^c as a^(b^c)
            self.depth -= 1
            return BinOp(base.start, exponent.end, "^", op.start, base, exponent)
        return base

    def _primary(self) -> Node:
        tok = self._peek()
        if tok is None:
            self._fail(self.end, "formula ends where a term was expected")
        if tok.kind == "number":
            self._next()
            return Num(tok.start, tok.end, tok.text)
        if tok.kind == "string":
            self._next()
            return Str(tok.start, tok.end, tok.text)
        if tok.kind == "quoted":
            self._next()
            if self._at_op("("):
                self._fail(tok.start, f"`{tok.text}` cannot be called like a function")
            return Name(tok.start, tok.end, tok.text)
        if tok.kind == "name":
            self._next()
            if self._at_op("("):
                return self._call(tok)
            return Name(tok.start, tok.end, tok.text)
        if tok.text == "(":
            self._next()
            self._enter(tok.start)
            if self._at_op(")"):
                self._fail(tok.start, "empty parentheses")
            inner = self._bar()
            close = self._expect_close(tok)
            self.depth -= 1
            return Paren(tok.start, close.end, inner)
        if tok.text == "!":
            return self._not()  # R reads a * !b as a * (!b)
        if tok.text in BARS:
            self._fail(
                tok.start,
                f"nothing on the left of `{tok.text}`: a random-effects term needs a "
                "model on the left, e.g. (1 | g)",
            )
        self._fail(tok.start, f"unexpected `{tok.text}` where a term was expected")

    def _call(self, func: Token) -> Node:
        open_tok = self._next()
        self._enter(open_tok.start)
        args: list[Node] = []
        kwargs: list[tuple[str, Node]] = []
        if not self._at_op(")"):
            while True:
                tok = self._peek()
                nxt = self._peek(1)
                if tok is not None and tok.kind == "name" and nxt is not None and nxt.is_op("="):
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
        return Call(func.start, close.end, func.text, tuple(args), tuple(kwargs))

    def _expect_close(self, open_tok: Token) -> Token:
        tok = self._peek()
        if tok is None:
            self._fail(open_tok.start, "unbalanced parentheses: `(` is never closed")
        if not tok.is_op(")"):
            if tok.kind != "op" or tok.text == "(":
                self._fail(tok.start, f"missing operator before `{_show(tok)}`")
            self._fail(tok.start, f"unexpected `{tok.text}`: expected `)`")
        return self._next()


def _show(tok: Token) -> str:
    """A token as written, for messages."""
    if tok.kind == "quoted":
        return f"`{tok.text}`"
    if tok.kind == "string":
        return f'"{tok.text}"'
    return tok.text
