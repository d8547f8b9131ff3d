"""Expression trees rendered as formulaic text, as Python code, or back in R's spelling.

formulaic reads model formulas with its own operators (``**`` for crossing,
``C()`` for factors) and evaluates the code inside calls as Python.  A
:class:`Translator` renders a parsed R expression in that dialect, checking
every construct on the way (operators, functions and their arguments against
:data:`~.functions.FUNCTIONS`, column names).  With ``r_spelling=True`` it
renders the same tree as R deparses it instead (``I(days/100)``,
``scale(x, scale = FALSE)``, ``relevel(f, ref = "b")``), which is where
coefficient names and messages come from: nothing is re-spelled afterwards.

The Python written for formulaic is R's meaning in floating point:

* constant arithmetic is done here, in floating point, refusing results that
  are not finite numbers (``9^9^9`` overflows at once instead of making a
  Python integer of 370 million digits);
* comparisons and logical operators are calls of R's three-valued versions
  (:mod:`.transforms`), and a logical used in arithmetic counts 0/1;
* strings only appear as values to compare with and as arguments, never in
  arithmetic;
* crossings ``(a + b + c)^k`` are expanded here, at most
  :data:`~.limits.MAX_TERMS` terms (formulaic's own expansion takes time
  exponential in ``k``);
* the code is normalised as formulaic normalises it (``ast.unparse``), so
  that the name formulaic gives a column is the text recorded here.

While rendering, a translator records what the caller needs to know about
the expression: the data columns it reads, the columns used as factors, and
each model term's factors.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Iterable, Mapping
from typing import NoReturn

from .expressions import ExpressionTranslator
from .functions import (
    FUNCTIONS,
)
from .limits import MAX_TERMS
from .parser import (
    BARS,
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
from .rtext import r_number_literal, r_string
from .safety import is_dunder
from .tokens import formula_error, r_name

__all__ = [
    "Translator",
    "canonical_python",
    "interaction_label",
    "ordered_union",
    "split_intercept",
]

# formulaic's operator precedences (see formulaic.parser.DefaultOperatorResolver);
# R's differ (e.g. %in% binds tighter than * in R), so we add parentheses where
# formulaic would otherwise group differently.
_FORMULA_PREC = {"+": 100, "-": 100, "*": 200, "/": 200, "%in%": 200, ":": 300, "^": 500}
# Binary operators R's deparse writes without spaces around them.
_TIGHT = frozenset({"/", "^", ":", "%%", "%/%"})


def _needs_parens(child: Node, parent_op: str, side: str, prec: dict[str, int]) -> bool:
    """Whether ``child`` must be parenthesised as the ``side`` operand of ``parent_op``."""
    if not isinstance(child, BinOp) or child.op not in prec:
        return False
    child_prec, parent_prec = prec[child.op], prec[parent_op]
    if child_prec != parent_prec:
        return child_prec < parent_prec
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


_BACKTICKED = re.compile(r"`[^`]*`")


def canonical_python(code: str) -> str:
    """``code`` as formulaic names it: normalised by ``ast.unparse``, backticks kept."""
    names: list[str] = []

    def hold(match: re.Match[str]) -> str:
        names.append(match.group())
        return f"_mm_name_{len(names) - 1}_"

    plain = _BACKTICKED.sub(hold, code)
    text = ast.unparse(ast.parse(plain, mode="eval"))
    return re.sub(r"_mm_name_(\d+)_", lambda m: names[int(m.group(1))], text)


class Translator(ExpressionTranslator):
    """Render parsed R expressions as formulaic formula text or Python code.

    Parameters
    ----------
    source : str
        The formula text the trees were parsed from (for messages).
    r_spelling : bool
        Render R text instead, as R deparses it: functions under the names
        written in the formula (``factor``, ``as.numeric``), ``^`` for powers
        and crossing, R's spacing and numbers (``I(x * 1e+05)``).
    codings : mapping of str to str, optional
        Columns to be coded as factors when they appear as a term by name:
        column → Python template of the coding, ``{}`` standing for the
        column (``"C({}, Sum())"``, ``"C(as_logical({}))"``).  How the design
        stage gives logical columns, ordered factors and lme4's ``contrasts=``
        their R coding.

    Attributes
    ----------
    columns : dict of str to None
        Data columns read by what was rendered, in order of first appearance.
    factor_columns : dict of str to None
        Columns used as factors through ``factor()``, ``C()``, ``relevel()``,
        ``interaction()``.
    factors : dict of str to Node
        Each model term factor rendered at formula level (a column or a call),
        by formulaic's name of it (a column's name without backticks, a call's
        text), in order of first appearance.
    default_coded : dict of str to None
        The factors that are columns by name left to formulaic's own coding
        (whose column names carry formulaic's ``T.`` before a level).
    """

    def __init__(
        self, source: str, *, r_spelling: bool = False, codings: Mapping[str, str] | None = None
    ) -> None:
        self.source = source
        self.r_spelling = r_spelling
        self.codings = dict(codings or {})
        # Logical columns (coded by logical()): a logical inside a call counts 0/1
        # in arithmetic and stays FALSE/TRUE as a factor, as in R.
        self.logical = frozenset(
            name for name, template in self.codings.items() if template.startswith("logical(")
        )
        self.columns: dict[str, None] = {}
        self.factor_columns: dict[str, None] = {}
        self.factors: dict[str, Node] = {}
        self.default_coded: dict[str, None] = {}

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
        """Render ``node`` as formula text (``+ - * / : %in% ^``)."""
        if isinstance(node, Name):
            return self.formula_name(node)
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
            return self.formula_call(node)
        if isinstance(node, Paren):
            return f"({self.formula(node.inner)})"
        if isinstance(node, Unary):
            if node.op == "!":
                self.fail(
                    node.start, f"put logical expressions inside I(...), e.g. I({self.text(node)})"
                )
            if node.op == "+":
                return self.formula(node.operand)
            operand = self.formula(node.operand)
            return f"-({operand})" if isinstance(node.operand, BinOp) else f"-{operand}"
        assert isinstance(node, BinOp)
        return self.formula_binop(node)

    def formula_name(self, node: Name) -> str:
        """A column as a term: by name, or coded as the design stage asked."""
        text = self.name(node, node.name)
        coding = self.codings.get(node.name)
        if self.r_spelling or coding is None:
            self.factors.setdefault(node.name, node)
            if coding is None:
                self.default_coded.setdefault(node.name, None)
            return r_name(node.name) if self.r_spelling else text
        code = canonical_python(coding.format(text))
        self.factors.setdefault(code, node)
        self.factor_columns.setdefault(node.name, None)
        return code

    def formula_call(self, node: Call) -> str:
        """A call as a term: its Python code (R's text with ``r_spelling``)."""
        if node.func == "Q":
            column = self.q_value(node)
            text = self.name(node, column)
            self.factors.setdefault(column, node)
            self.default_coded.setdefault(column, None)
            return r_name(column) if self.r_spelling else text
        if node.func == "offset":
            self.fail(
                node.start,
                "offset() may only be a term of the fixed part, added with + "
                "(e.g. y ~ x + offset(log(n)) + (1 | g))",
            )
        result = self.call(node)
        if self.r_spelling:
            text = self.deparse(node)
        else:
            code = result.code
            if result.kind == "logical" and FUNCTIONS[node.func].name != "I":
                code = f"I({code})"  # R makes a logical term a factor; I() does that
            text = canonical_python(code)
        self.factors.setdefault(text, node)
        return text

    def formula_binop(self, node: BinOp) -> str:
        if node.op in BARS:
            self.stray_bar(node)
        if node.op not in _FORMULA_PREC:
            self.fail(
                node.op_pos,
                f"`{node.op}` is not a formula operator; put arithmetic and comparisons "
                f"inside I(...), e.g. I({self.text(node)})",
            )
        if node.op in ("%in%", "^") and not self.r_spelling:
            # formulaic's %in% adds main effects of the right side that R's does
            # not, and its ^ takes time exponential in the power: spell out R's
            # terms instead.
            order: dict[str, Node] = {}
            terms = self.expand(node, order)
            labels = (":".join(interaction_label(term, order)) for term in terms)
            return f"({' + '.join(labels)})"
        left = self.formula_operand(node.left, node.op, "left")
        if node.op == "^":
            return f"{left}^{self.crossing_degree(node)}"
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
        already_wrapped = isinstance(child, BinOp) and child.op in ("%in%", "^")
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
        # Crossing more times than there are variables changes nothing (in R).
        variables = set().union(*self.expand(node.left, {}))
        return min(degree, max(1, len(variables)))

    # -- term algebra ----------------------------------------------------------

    def expand(self, node: Node, order: dict[str, Node]) -> list[frozenset[str]]:
        """Expand formula operators into R's terms, each a set of factor texts.

        ``order`` records each factor (text → node) at its first appearance,
        which is how R orders the variables inside an interaction label.  An
        expansion to more than :data:`~.limits.MAX_TERMS` terms is refused
        before it is built.
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
                self.check_terms(node, len(result) * len(left) + len(result))
                result = ordered_union(result, left, [a | b for a in result for b in left])
            return result
        right = self.expand(node.right, order)
        if node.op == "+":
            return ordered_union(left, right)
        if node.op == "-":
            return [term for term in left if term not in set(right)]
        if node.op in (":", "*"):
            self.check_terms(node, len(left) * len(right) + len(left) + len(right))
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

    def check_terms(self, node: Node, count: int) -> None:
        """Refuse an expansion to more than :data:`~.limits.MAX_TERMS` terms."""
        if count > MAX_TERMS:
            self.fail(
                node.start,
                f"`{self.text(node)}` expands to more than {MAX_TERMS} terms, more than a "
                "model can use; cross fewer variables or lower the power",
            )

    # -- R's text ------------------------------------------------------------------------

    def deparse(self, node: Node) -> str:
        """``node`` as R's ``deparse`` writes it."""
        if isinstance(node, Name):
            return r_name(node.name)
        if isinstance(node, Num):
            return r_number_literal(node.text)
        if isinstance(node, Str):
            return r_string(node.value)
        if isinstance(node, Paren):
            return f"({self.deparse(node.inner)})"
        if isinstance(node, Unary):
            return f"{node.op}{self.deparse(node.operand)}"
        if isinstance(node, Call):
            arguments = [self.deparse(arg) for arg in node.args]
            arguments += [f"{key} = {self.deparse(value)}" for key, value in node.kwargs]
            return f"{node.func}({', '.join(arguments)})"
        assert isinstance(node, BinOp)
        left, right = self.deparse(node.left), self.deparse(node.right)
        if node.op in _TIGHT:
            return f"{left}{node.op}{right}"
        return f"{left} {node.op} {right}"

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
        return code if self.r_spelling else canonical_python(f"I({code})")

    def join_terms(self, intercept: bool, terms: Iterable[tuple[int, Node]]) -> str:
        """A side written with its intercept explicit: ``1 + x - z``, ``0 + x``."""
        parts = ["1" if intercept else "0"]
        for sign, term in terms:
            text = self.formula(term)
            if isinstance(term, BinOp) and term.op in ("+", "-"):
                text = f"({text})"
            parts.append(f"{'+' if sign > 0 else '-'} {text}")
        return " ".join(parts)
