"""Expression trees rendered as formulaic text, as Python code, or back in R's spelling.

formulaic reads model formulas with its own operators (``**`` for crossing,
``C()`` for factors) and evaluates the code inside calls as Python.  A
:class:`Translator` renders a parsed R expression in that dialect, checking
every construct on the way (operators, functions and their arguments against
:data:`~.functions.FUNCTIONS`, column names).  With ``r_spelling=True`` it
renders the same tree as R text instead (the functions as the user wrote
them, ``^`` for powers), which is where coefficient names and messages come
from: nothing is re-spelled afterwards.

While rendering, a translator records what the caller needs to know about
the expression: the data columns it reads, the columns used as factors
through ``factor()``/``C()``, and each model term's factors.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable
from typing import NoReturn

from .functions import CONTRAST_FUNCTIONS, CONTRASTS, FUNCTIONS, allowed_names
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
    unwrap,
)
from .safety import is_dunder
from .tokens import formula_error

__all__ = ["Translator", "interaction_label", "ordered_union", "split_intercept"]

# formulaic's operator precedences (see formulaic.parser.DefaultOperatorResolver);
# R's differ (e.g. %in% binds tighter than * in R), so we add parentheses where
# formulaic would otherwise group differently.
_FORMULA_PREC = {"+": 100, "-": 100, "*": 200, "/": 200, "%in%": 200, ":": 300, "^": 500}
# Python's precedences, with R's %% and %/% mapped to % and //.
_PY_PREC = {op: 10 for op in COMPARISONS} | {
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


def _needs_parens(child: Node, parent_op: str, side: str, prec: dict[str, int]) -> bool:
    """Whether ``child`` must be parenthesised as the ``side`` operand of ``parent_op``."""
    if not isinstance(child, BinOp) or child.op not in prec:
        return False
    child_prec, parent_prec = prec[child.op], prec[parent_op]
    if child_prec != parent_prec:
        return child_prec < parent_prec
    if parent_op in COMPARISONS:
        return True  # Python would chain a < b < c
    # Equal precedence: only the side the operator associates towards is safe.
    return side == ("left" if parent_op == "^" else "right")


def split_intercept(terms: list[tuple[int, Node]]) -> tuple[bool, list[tuple[int, Node]]]:
    """Separate the intercept markers ``0``/``1`` from the other signed terms.

    As in R, the intercept is present unless removed by ``0`` or ``-1``; a later
    ``1`` (or ``-0``) puts it back.
    """
    intercept = True
    rest: list[tuple[int, Node]] = []
    for sign, term in terms:
        core = unwrap(term)
        if isinstance(core, Num) and number_value(core.text) in (0.0, 1.0):
            intercept = (number_value(core.text) == 1.0) == (sign > 0)
        else:
            rest.append((sign, term))
    return intercept, rest


def interaction_label(term: frozenset[str], order: dict[str, Node]) -> list[str]:
    """The factors of an interaction term in R's order: that of first appearance."""
    position = {key: i for i, key in enumerate(order)}
    return sorted(term, key=position.__getitem__)


def ordered_union(*groups: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    """The terms of ``groups`` in order, each once."""
    seen: dict[frozenset[str], None] = {}
    for group in groups:
        for term in group:
            seen.setdefault(term, None)
    return list(seen)


class Translator:
    """Render parsed R expressions as formulaic formula text or Python code.

    Parameters
    ----------
    source : str
        The formula text the trees were parsed from (for messages).
    r_spelling : bool
        Render R text instead: functions under the names written in the
        formula (``factor``, ``as.numeric``), ``^`` for powers and crossing,
        ``%%`` and ``%/%``.  Names, numbers, strings and arguments are written
        as in the formulaic text, so that labels built from it match formulaic's
        column names.

    Attributes
    ----------
    columns : dict of str to None
        Data columns read by what was rendered, in order of first appearance.
    factor_columns : dict of str to None
        Columns used as factors through ``factor()``, ``as.factor()`` or ``C()``.
    factors : dict of str to Node
        Each model term factor rendered at formula level (a column or a call),
        by formulaic's name of it (a column's name without backticks, a call's
        text), in order of first appearance.
    """

    def __init__(self, source: str, *, r_spelling: bool = False) -> None:
        self.source = source
        self.r_spelling = r_spelling
        self.columns: dict[str, None] = {}
        self.factor_columns: dict[str, None] = {}
        self.factors: dict[str, Node] = {}

    def fail(self, pos: int, message: str) -> NoReturn:
        raise formula_error(self.source, pos, message)

    def text(self, node: Node) -> str:
        """The source text of ``node``, whitespace-collapsed, for messages."""
        return " ".join(self.source[node.start : node.end].split())

    # -- names -----------------------------------------------------------------

    def name(self, node: Node, name: str) -> str:
        """A column name as formulaic text: bare if Python allows it, else backticked."""
        if name == ".":
            self.fail(node.start, "`.` (all other columns) is not supported; list the columns")
        if not name or not name.isprintable() or "`" in name:
            self.fail(node.start, f"invalid column name {name!r}")
        if is_dunder(name):
            self.fail(
                node.start,
                f"`{name}` is not allowed: double-underscore names are refused because "
                "formulas are data, not code",
            )
        self.columns.setdefault(name, None)
        if name.isidentifier() and not keyword.iskeyword(name):
            return name
        # Backticks make formulaic look the name up as a column, never evaluate it,
        # which is also how R's dotted names like Sepal.Length stay column names.
        return f"`{name}`"

    def stray_bar(self, node: BinOp) -> NoReturn:
        self.fail(
            node.op_pos,
            f"stray `{node.op}`: bars may only appear in a random-effects term "
            "( lhs | group ) added to the formula with +",
        )

    # -- formula level -----------------------------------------------------------

    def formula(self, node: Node) -> str:
        """Render ``node`` as formula text (``+ - * / : %in% **``)."""
        if isinstance(node, Name):
            text = self.name(node, node.name)
            self.factors.setdefault(node.name, node)
            return text
        if isinstance(node, Num):
            if number_value(node.text) in (0.0, 1.0):
                return str(int(number_value(node.text)))
            self.fail(node.start, f"the number `{node.text}` is not a model term")
        if isinstance(node, Str):
            self.fail(
                node.start,
                f"the string {self.text(node)} is not a model term; write column names "
                'bare, in backticks or as Q("name")',
            )
        if isinstance(node, Call):
            text = self.call(node)
            self.factors.setdefault(self.q_value(node) if node.func == "Q" else text, node)
            return text
        if isinstance(node, Paren):
            return f"({self.formula(node.inner)})"
        if isinstance(node, Unary):
            if node.op == "+":
                return self.formula(node.operand)
            operand = self.formula(node.operand)
            return f"-({operand})" if isinstance(node.operand, BinOp) else f"-{operand}"
        assert isinstance(node, BinOp)
        return self.formula_binop(node)

    def formula_binop(self, node: BinOp) -> str:
        if node.op in BARS:
            self.stray_bar(node)
        if node.op in COMPARISONS or node.op not in _FORMULA_PREC:
            self.fail(
                node.op_pos,
                f"`{node.op}` is not a formula operator; put arithmetic and comparisons "
                f"inside I(...), e.g. I({self.text(node)})",
            )
        if node.op == "%in%":
            # formulaic's %in% adds main effects of the right side that R's does not,
            # so spell out R's terms instead.
            order: dict[str, Node] = {}
            terms = self.expand(node, order)
            labels = (":".join(interaction_label(term, order)) for term in terms)
            return f"({' + '.join(labels)})"
        left = self.formula_operand(node.left, node.op, "left")
        if node.op == "^":
            power = "^" if self.r_spelling else " ** "
            return f"{left}{power}{self.crossing_degree(node)}"
        right = self.formula_operand(node.right, node.op, "right")
        if node.op == ":":
            return f"{left}:{right}"
        return f"{left} {node.op} {right}"

    def formula_operand(self, child: Node, parent_op: str, side: str) -> str:
        if isinstance(child, Unary) and child.op == "-" and parent_op not in ("+", "-"):
            self.fail(child.start, "`-` removes terms; use it between terms, e.g. y ~ x - 1")
        if isinstance(unwrap(child), Num) and parent_op not in ("+", "-"):
            self.fail(
                child.start,
                f"`{self.text(child)}` can only be added or removed as the intercept, "
                "e.g. y ~ 0 + x",
            )
        text = self.formula(child)
        already_wrapped = isinstance(child, BinOp) and child.op == "%in%"
        if not already_wrapped and _needs_parens(child, parent_op, side, _FORMULA_PREC):
            return f"({text})"
        return text

    def crossing_degree(self, node: BinOp) -> int:
        """The exponent of ``(a + b)^n``, clamped to the number of variables crossed."""
        exponent = unwrap(node.right)
        if not (isinstance(exponent, Num) and exponent.text.removesuffix("L").isdecimal()):
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

    def expand(self, node: Node, order: dict[str, Node]) -> list[frozenset[str]]:
        """Expand formula operators into R's terms, each a set of factor texts.

        ``order`` records each factor (text → node) at its first appearance,
        which is how R orders the variables inside an interaction label.
        """
        if isinstance(node, Paren):
            return self.expand(node.inner, order)
        if isinstance(node, (Name, Call)):
            key = self.formula(node)
            order.setdefault(key, node)
            return [frozenset({key})]
        if not isinstance(node, BinOp) or node.op not in _FORMULA_PREC:
            self.formula(node)  # raises the precise error for this construct
            self.fail(node.start, f"`{self.text(node)}` cannot be used in this term")
        left = self.expand(node.left, order)
        if node.op == "^":
            result = left
            for _ in range(self.crossing_degree(node) - 1):
                result = ordered_union(result, left, [a | b for a in result for b in left])
            return result
        right = self.expand(node.right, order)
        if node.op == "+":
            return ordered_union(left, right)
        if node.op == "-":
            return [term for term in left if term not in set(right)]
        if node.op == ":":
            return ordered_union([a | b for a in left for b in right])
        if node.op == "%in%":
            # R nests each left term in all right variables at once:
            # a %in% (b + c) is a:b:c, not a:b + a:c.
            inner = frozenset().union(*right)
            return ordered_union([a | inner for a in left])
        if node.op == "*":
            return ordered_union(left, right, [a | b for a in left for b in right])
        outer = frozenset().union(*left)  # a/b means a + a:b
        return ordered_union(left, [outer | b for b in right])

    # -- Python code inside calls ---------------------------------------------------

    def python(self, node: Node) -> str:
        """Render ``node`` as Python code, the language inside function calls."""
        if isinstance(node, Name):
            if node.name in ("TRUE", "FALSE"):
                return "True" if node.name == "TRUE" else "False"
            return self.name(node, node.name)
        if isinstance(node, Num):
            return node.text.rstrip("L")
        if isinstance(node, Str):
            return self.string(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Paren):
            return f"({self.python(node.inner)})"
        if isinstance(node, Unary):
            operand = self.python(node.operand)
            if isinstance(node.operand, BinOp) and _PY_PREC.get(node.operand.op, 0) < (
                _PY_UNARY_PREC
            ):
                operand = f"({operand})"
            return f"{node.op}{operand}"
        assert isinstance(node, BinOp)
        if node.op in BARS:
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
        if self.r_spelling:
            return f"{left}^{right}" if node.op == "^" else f"{left} {node.op} {right}"
        return f"{left} {_PY_OPS.get(node.op, node.op)} {right}"

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

    def call(self, node: Call) -> str:
        """Translate one function call, checking it against the function table."""
        if node.func == "Q":
            return self.name(node, self.q_value(node))
        if node.func == "c":
            self.fail(
                node.start,
                'c() is only allowed as factor levels, e.g. factor(g, levels = c("b", "a"))',
            )
        spec = FUNCTIONS.get(node.func)
        if spec is None:
            self.fail(
                node.start,
                f"function `{node.func}` is not allowed in a formula (formulas are data, "
                f"not code); allowed functions: {allowed_names()}",
            )
        if not node.args and spec.needs_argument:
            self.fail(node.start, f"`{node.func}()` needs an argument")
        if spec.max_args is not None and len(node.args) > spec.max_args:
            self.fail(node.args[spec.max_args].start, f"too many arguments for {node.func}()")
        func = node.func if self.r_spelling else spec.name
        if spec.name == "C":
            return f"{func}({self.factor_arguments(node)})"
        parts = [self.python(arg) for arg in node.args]
        parts += [self.keyword(node, key, value) for key, value in node.kwargs]
        return f"{func}({', '.join(parts)})"

    def keyword(self, node: Call, key: str, value: Node) -> str:
        allowed = FUNCTIONS[node.func].keywords
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            self.fail(
                value.start,
                f"keyword argument `{key}` is not allowed for {node.func}(); allowed: {accepted}",
            )
        # R users write T and F for TRUE and FALSE in arguments such as raw = T.
        if isinstance(value, Name) and value.name in ("T", "F"):
            return f"{allowed[key]}={value.name == 'T'}"
        return f"{allowed[key]}={self.python(value)}"

    def q_value(self, node: Call) -> str:
        """The column named by ``Q("my col")``."""
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], Str):
            self.fail(node.start, f"Q() takes one quoted column name, got `{self.text(node)}`")
        return node.args[0].value

    def factor_arguments(self, node: Call) -> str:
        """The arguments of ``factor(x)``, ``as.factor(x)`` or ``C(x, contr)`` for ``C()``."""
        first = node.args[0]
        if isinstance(first, Name) or (isinstance(first, Call) and first.func == "Q"):
            column = first.name if isinstance(first, Name) else self.q_value(first)
            self.factor_columns.setdefault(column, None)
        parts = [self.python(first)]
        if len(node.args) == 2:
            parts.append(self.contrasts(node.args[1]))
        keywords = FUNCTIONS[node.func].keywords
        for key, value in node.kwargs:
            target = keywords.get(key)
            if target == "contrasts" and len(node.args) == 1:
                parts.append(f"contrasts={self.contrasts(value)}")
            elif target == "levels":
                parts.append(f"levels={self.levels(value)}")
            else:
                self.fail(
                    value.start,
                    f"keyword argument `{key}` is not allowed for {node.func}(); "
                    f"allowed: {', '.join(sorted(set(keywords) - {'contrasts'}))}",
                )
        return ", ".join(parts)

    def contrasts(self, node: Node) -> str:
        if isinstance(node, (Name, Str)):
            label = node.name if isinstance(node, Name) else node.value
            code = CONTRASTS.get(label.removeprefix("contr."))
            if code is not None:
                return code
        if isinstance(node, Call) and node.func in CONTRAST_FUNCTIONS:
            return self.call(node)
        self.fail(
            node.start,
            f"unsupported contrasts `{self.text(node)}`; use contr.treatment, contr.sum, "
            "contr.helmert or contr.poly",
        )

    def levels(self, node: Node) -> str:
        values = node.args if isinstance(node, Call) and node.func == "c" else (node,)
        if (isinstance(node, Call) and node.kwargs) or not all(
            isinstance(value, (Str, Num)) for value in values
        ):
            self.fail(
                node.start,
                f'levels must be strings or numbers, e.g. c("b", "a"); got `{self.text(node)}`',
            )
        return f"[{', '.join(self.python(value) for value in values)}]"

    # -- sides of a model formula ----------------------------------------------------

    def response(self, node: Node) -> str:
        """The left-hand side: a column, a call, or an expression formulaic computes in I()."""
        core = unwrap(node)
        if isinstance(core, (Name, Call)):
            return self.formula(core)
        if isinstance(core, (Num, Str)):
            self.fail(
                node.start,
                f"the response must be a column or an expression of columns, got "
                f"`{self.text(node)}`",
            )
        # In R the response is an ordinary expression (y1 + y2 is a sum, not two
        # terms), which formulaic computes as such only inside I().
        code = self.python(node)
        return code if self.r_spelling else f"I({code})"

    def join_terms(self, intercept: bool, terms: Iterable[tuple[int, Node]]) -> str:
        """A side written with its intercept explicit: ``1 + x - z``, ``0 + x``."""
        parts = ["1" if intercept else "0"]
        for sign, term in terms:
            text = self.formula(term)
            if isinstance(term, BinOp) and term.op in ("+", "-"):
                text = f"({text})"
            parts.append(f"{'+' if sign > 0 else '-'} {text}")
        return " ".join(parts)
