"""An lme4 formula split into its response, fixed part and random-effects terms.

An lme4 formula such as ``Reaction ~ Days + (Days | Subject)`` mixes ordinary
model-formula terms with *bar terms* ``(lhs | group)``.  :func:`parse_formula`
splits the two, expands lme4's shorthands (``||`` for uncorrelated terms,
``a/b`` for nested grouping factors) and translates every part for formulaic
(:mod:`.translate`), which builds the model matrices.  Nothing is evaluated
while parsing, and every piece of text handed to formulaic passes the
allow-list check of :mod:`.safety`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import FormulaError
from .parsed import GroupExpression, ModelPart, Offset, ParsedFormula, RandomTermSpec, Term
from .parser import BinOp, Call, Name, Node, Paren, is_bar, parse_side, signed_terms, unwrap
from .safety import check_python, check_translated
from .tokens import Token, check_parentheses, formula_error, tokenize
from .translate import (
    Translator,
    canonical_python,
    interaction_label,
    ordered_union,
    split_intercept,
)

__all__ = [
    "WrittenBar",
    "WrittenFormula",
    "contrasts_code",
    "parse_formula",
    "split_terms",
    "translate_expression",
]


def parse_formula(
    formula: str,
    codings: Mapping[str, str] | None = None,
    fixed_codings: Mapping[str, str] | None = None,
) -> ParsedFormula:
    """Parse an lme4 model formula.

    Parameters
    ----------
    formula : str
        An lme4 formula such as ``"Reaction ~ Days + (Days | Subject)"``.
    codings : mapping of str to str, optional
        Columns to code as factors wherever they are a term by name, each
        with the Python template of its coding (see
        :class:`~.translate.Translator`); the design stage gives them for
        logical columns and ordered factors.
    fixed_codings : mapping of str to str, optional
        The same for the fixed part only, over ``codings`` (lme4's
        ``contrasts=`` argument).

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
    >>> [(t.lhs, t.group) for t in parse_formula("Reaction ~ Days + (Days | Subject)").random]
    [('1 + Days', ('Subject',))]
    """
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, got {type(formula).__name__}")
    try:
        if not codings and not fixed_codings:
            # The usual call: the memo's key without building and sorting two tuples.
            return _parse_formula(formula, (), ())
        return _parse_formula(
            formula,
            tuple(sorted((codings or {}).items())),
            tuple(sorted((fixed_codings or {}).items())),
        )
    except RecursionError:
        raise FormulaError("formula is too long or too deeply nested") from None


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
        allow-list (see :data:`~mixedmodels.formula.FUNCTIONS`).
    """
    if not isinstance(expr, str):
        raise FormulaError(f"a formula must be a string, got {type(expr).__name__}")
    try:
        tokens = tokenize(expr)
        if not tokens:
            raise formula_error(expr, 0, "empty expression")
        check_parentheses(expr, tokens)
        for tok in tokens:
            if tok.is_op("~"):
                raise formula_error(expr, tok.start, "`~` is not allowed in one side of a formula")
        text = Translator(expr).formula(parse_side(expr, tokens, len(expr)))
        check_translated(text)
    except RecursionError:
        raise FormulaError("formula is too long or too deeply nested") from None
    return text


# Parsing is pure and its result immutable, and a model is often refitted with
# the same formula (bootstraps, the CLI, benchmarks): parsing costs more than
# building a small design.  Errors are not cached, so they are raised each time.
@functools.lru_cache(maxsize=256)
def _parse_formula(
    source: str, codings: tuple[tuple[str, str], ...], fixed_codings: tuple[tuple[str, str], ...]
) -> ParsedFormula:
    everywhere = dict(codings)
    fixed_only = {**everywhere, **dict(fixed_codings)}
    lhs, rhs = _sides(source)
    response = Translator(source, codings=everywhere)
    response_text = response.response(lhs)
    core = unwrap(lhs)
    if isinstance(core, Name):
        response_label, response_column = core.name, core.name
    elif isinstance(core, Call) and core.func == "Q":
        response_label = response_column = response.q_value(core)
    else:
        response_label = Translator(source, r_spelling=True).response(lhs)
        response_column = None

    fixed_terms: list[tuple[int, Node]] = []
    offsets: list[Offset] = []
    groups: dict[str, GroupExpression] = {}
    random: list[tuple[_Part, tuple[str, ...], str | None]] = []
    for sign, term in signed_terms(rhs):
        bar = unwrap(term)
        if isinstance(bar, Call) and bar.func == "offset":
            offset = _offset(source, sign, bar, everywhere)
            # R counts a repeated offset term once, as any repeated term.
            if all(offset.label != other.label for other in offsets):
                offsets.append(offset)
            continue
        if not isinstance(bar, BinOp) or not is_bar(bar):
            fixed_terms.append((sign, term))
            continue
        if term is bar:
            Translator(source).stray_bar(bar)
        if sign < 0:
            raise formula_error(
                source, term.start, "a random-effects term cannot be removed with `-`"
            )
        random += _bar_terms(source, term, bar, everywhere, groups)
    fixed = _Part(source, *split_intercept(fixed_terms), codings=fixed_only)

    # The fixed part's factors first: R orders an interaction's factors by
    # their first appearance in the fixed-effects formula.
    columns = dict.fromkeys(response.columns)
    factors: dict[str, str] = {}
    factor_columns = dict.fromkeys(response.factor_columns)
    default_coded: set[str] = set()
    for offset in offsets:
        columns.update(dict.fromkeys(offset.columns))
    for part in (fixed, *(part for part, _, _ in random)):
        columns.update(dict.fromkeys(part.part.columns))
        factors.update({k: v for k, v in part.factor_labels.items() if k not in factors})
        factor_columns.update(part.factor_columns)
        default_coded |= part.default_coded
    for _, group, _ in random:
        for name in group:
            expression = groups.get(name)
            columns.update(dict.fromkeys(expression.columns if expression else (name,)))
    for text in (response_text, fixed.part.text, *(part.part.text for part, _, _ in random)):
        check_translated(text)
    for code in (*(o.code for o in offsets), *(g.code for g in groups.values())):
        check_python(code)
    return ParsedFormula(
        source=source,
        response=response_text,
        response_label=response_label,
        response_column=response_column,
        response_columns=tuple(response.columns),
        fixed_part=fixed.part,
        random=tuple(
            RandomTermSpec(
                part.part, group, name, tuple(label for label in group if label in groups)
            )
            for part, group, name in random
        ),
        columns=tuple(columns),
        factor_columns=tuple(factor_columns),
        factor_labels=tuple(factors.items()),
        default_coded=frozenset(default_coded),
        offsets=tuple(offsets),
        group_expressions=tuple(groups.values()),
    )


def _sides(source: str) -> tuple[Node, Node]:
    """The parsed left- and right-hand sides of ``response ~ terms``."""
    tokens = tokenize(source)
    if not tokens:
        raise formula_error(source, 0, "empty formula; expected `response ~ terms`")
    check_parentheses(source, tokens)
    tilde = _find_tilde(source, tokens)
    split = tokens.index(tilde)
    lhs_tokens, rhs_tokens = tokens[:split], tokens[split + 1 :]
    if not lhs_tokens:
        raise formula_error(source, tilde.start, "missing response on the left of `~`")
    if not rhs_tokens:
        raise formula_error(
            source, tilde.end, "nothing on the right of `~`; use `y ~ 1` for no terms"
        )
    return (
        parse_side(source, lhs_tokens, tilde.start),
        parse_side(source, rhs_tokens, len(source)),
    )


def _find_tilde(source: str, tokens: list[Token]) -> Token:
    tildes = [tok for tok in tokens if tok.is_op("~")]
    if not tildes:
        raise formula_error(source, 0, "missing `~`: a formula has the form `response ~ terms`")
    if len(tildes) > 1:
        raise formula_error(source, tildes[1].start, "more than one `~` in formula")
    depth = 0
    for tok in tokens:
        if tok is tildes[0]:
            break
        if tok.is_op("(", ")"):
            depth += 1 if tok.text == "(" else -1
    if depth:
        raise formula_error(source, tildes[0].start, "`~` must not be inside parentheses")
    return tildes[0]


# ---------------------------------------------------------------------------
# Model parts
# ---------------------------------------------------------------------------


class _Part:
    """A model part translated, with the factor labels and factor columns it records."""

    def __init__(
        self,
        source: str,
        intercept: bool,
        terms: list[tuple[int, Node]],
        codings: Mapping[str, str] | None = None,
    ) -> None:
        translator = Translator(source, codings=codings)
        in_r = Translator(source, r_spelling=True, codings=codings)
        # The terms the part expands to are counted (and bounded) before
        # formulaic builds any of them.
        order: dict[str, Node] = {}
        expanded: dict[frozenset[str], None] = {}
        for _, node in terms:
            expanded.update(dict.fromkeys(translator.expand(node, order)))
            translator.check_terms(node, len(expanded))
        rendered = [
            Term(sign, translator.formula(node), in_r.formula(node), _column(translator, node))
            for sign, node in terms
        ]
        #: The part itself.
        self.part = ModelPart(
            text=_join(intercept, [(t.sign, t.text) for t in rendered]),
            label=_join(intercept, [(t.sign, t.label) for t in rendered]),
            intercept=intercept,
            terms=tuple(rendered),
            columns=tuple(translator.columns),
        )
        #: Columns used as factors through factor() or C().
        self.factor_columns = translator.factor_columns
        #: formulaic's name of each factor of the terms → its R label.
        self.factor_labels = {
            name: _factor_label(in_r, node) for name, node in translator.factors.items()
        }
        #: The factors that are columns by name coded by formulaic itself.
        self.default_coded = set(translator.default_coded)

    @classmethod
    def interaction(
        cls, source: str, nodes: list[Node], codings: Mapping[str, str] | None = None
    ) -> _Part:
        """The part ``0 + a:b`` of the interaction of the factor ``nodes``."""
        term: Node = nodes[0]
        for node in nodes[1:]:
            term = BinOp(term.start, node.end, ":", node.start, term, node)
        return cls(source, False, [(1, term)], codings=codings)


def _offset(source: str, sign: int, call: Call, codings: Mapping[str, str]) -> Offset:
    """An ``offset(expr)`` term: its Python code, R label and columns."""
    translator = Translator(source, codings=codings)
    if sign < 0:
        translator.fail(call.start, "an offset cannot be removed with `-`")
    if len(call.args) != 1 or call.kwargs:
        translator.fail(call.start, f"offset() takes one expression, got `{translator.text(call)}`")
    code = translator.expression(call.args[0])
    if code.kind not in ("number", "any"):
        translator.fail(
            call.args[0].start,
            f"the offset `{translator.text(call.args[0])}` must be numeric, one value per row",
        )
    label = Translator(source, r_spelling=True).deparse(call)
    return Offset(canonical_python(code.code), label, tuple(translator.columns))


def _join(intercept: bool, terms: list[tuple[int, str]]) -> str:
    return " ".join(["1" if intercept else "0", *(f"{'+-'[s < 0]} {t}" for s, t in terms)])


def _column(translator: Translator, node: Node) -> str | None:
    """The data column ``node`` names, if it is one column by name."""
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Call) and node.func == "Q":
        return translator.q_value(node)
    return None


def _factor_label(in_r: Translator, node: Node) -> str:
    """R's label of a model-term factor: a column's name, a call in R's spelling."""
    column = _column(in_r, node)
    return column if column is not None else in_r.formula(node)


# ---------------------------------------------------------------------------
# Random-effects terms
# ---------------------------------------------------------------------------


def _bar_terms(
    source: str,
    term: Node,
    bar: BinOp,
    codings: Mapping[str, str],
    groups: dict[str, GroupExpression],
) -> list[tuple[_Part, tuple[str, ...], str | None]]:
    """Expand one ``(lhs | group)`` or ``(lhs || group)`` term.

    Returns each term's part, grouping columns and lme4's name of the
    grouping factor when it is not the columns joined by ``:`` (nesting).
    """
    translator = Translator(source, codings=codings)
    for node in signed_terms(bar.left):
        core = unwrap(node[1])
        if isinstance(core, Call) and core.func == "offset":
            translator.fail(
                core.start, "an offset belongs in the fixed part, not in a random-effects term"
            )
    bar_groups = _groups(translator, bar.right, groups)
    intercept, terms = split_intercept(signed_terms(bar.left))
    parts: list[_Part] = []
    if bar.op == "|":
        if intercept or any(sign > 0 for sign, _ in terms):
            parts.append(_Part(source, intercept, terms, codings=codings))
    else:
        # lme4's expandDoubleVerts: (1|g) if there is an intercept, then one
        # (0 + t|g) for each of R's term labels t of the left-hand side.
        order: dict[str, Node] = {}
        labels: list[frozenset[str]] = []
        for sign, node in terms:
            expanded = translator.expand(node, order)
            if sign > 0:
                labels = ordered_union(labels, expanded)
            else:
                labels = [label for label in labels if label not in set(expanded)]
        labels.sort(key=len)  # R lists main effects before interactions
        if intercept:
            parts.append(_Part(source, True, [], codings=codings))
        for label in labels:
            nodes = [order[key] for key in interaction_label(label, order)]
            parts.append(_Part.interaction(source, nodes, codings))
    if not parts:
        raise formula_error(
            source, term.start, f"random-effects term `{translator.text(term)}` has no columns"
        )
    return [
        (part, group, name if ":" in name else None) for part in parts for group, name in bar_groups
    ]


def _groups(
    translator: Translator, node: Node, expressions: dict[str, GroupExpression]
) -> list[tuple[tuple[str, ...], str]]:
    """Grouping factors of ``a``, ``a:b`` or ``a/b`` (-> ``a`` and ``b:a``), with lme4's names.

    A factor written as an expression is recorded in ``expressions`` by its label.
    """
    levels: list[tuple[str, ...]] = []
    while isinstance(node, BinOp) and node.op == "/":
        levels.insert(0, _interaction(translator, node.right, expressions))
        node = node.left
    levels.insert(0, _interaction(translator, node, expressions))
    # Level k of a/b/c is nested in all outer levels; lme4 names it inner-first,
    # bracketing an outer interaction: a, b:a, c:(b:a).
    groups: list[tuple[tuple[str, ...], str]] = []
    for k, level in enumerate(levels):
        group = tuple(name for outer in reversed(levels[: k + 1]) for name in outer)
        inner = ":".join(level)
        if k == 0:
            name = inner
        else:
            outer = groups[-1]
            name = f"{inner}:{outer[1] if len(outer[0]) == 1 else f'({outer[1]})'}"
        groups.append((group, name))
    return groups


def _interaction(
    translator: Translator, node: Node, expressions: dict[str, GroupExpression]
) -> tuple[str, ...]:
    if isinstance(node, BinOp) and node.op == ":":
        return _interaction(translator, node.left, expressions) + _interaction(
            translator, node.right, expressions
        )
    if isinstance(node, Paren) and isinstance(unwrap(node), Call):
        node = unwrap(node)
    if isinstance(node, Name):
        return (node.name,)
    if isinstance(node, Call) and node.func == "Q":
        return (translator.q_value(node),)
    if isinstance(node, Call) and node.func != "offset":
        # A factor computed from columns: (1 | factor(Subject)), (1 | interaction(a, b)).
        reader = Translator(translator.source, codings=translator.codings)
        code = reader.expression(node)
        if code.kind not in ("factor", "any", "number", "logical"):
            translator.fail(node.start, f"`{translator.text(node)}` cannot be a grouping factor")
        label = Translator(translator.source, r_spelling=True).deparse(node)
        expressions.setdefault(
            label, GroupExpression(label, canonical_python(code.code), tuple(reader.columns))
        )
        return (label,)
    translator.fail(
        node.start,
        f"invalid grouping factor `{translator.text(node)}`: the right of a bar must be a "
        "column name, an expression of columns such as factor(g), an interaction a:b or "
        "a nesting a/b",
    )


# ---------------------------------------------------------------------------
# The terms as written (for front ends that rewrite formulas)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WrittenBar:
    """A random-effects term as written: ``lhs``, the bar ``op`` and ``group``."""

    lhs: str
    op: str
    group: str


@dataclass(frozen=True)
class WrittenFormula:
    """An lme4 formula's pieces as the user wrote them (whitespace collapsed).

    Attributes
    ----------
    response : str
        The left-hand side.
    fixed : tuple of str
        The fixed terms in order, a removed term with a leading ``-`` (``"-1"``).
    bars : tuple of WrittenBar
        The random-effects terms in order.
    """

    response: str
    fixed: tuple[str, ...]
    bars: tuple[WrittenBar, ...]


def split_terms(formula: str) -> WrittenFormula:
    """Split an lme4 formula into its terms, each in the user's own text.

    The formula is parsed in full first, so that errors are reported against
    what the user wrote.  A front end can then rebuild a formula that reads
    like the user's (e.g. adding bar terms to it).

    Raises
    ------
    FormulaError
        As :func:`parse_formula`.

    Examples
    --------
    >>> split_terms("y ~ x - 1 + (x || g)")
    WrittenFormula(response='y', fixed=('x', '-1'), bars=(WrittenBar(lhs='x', op='||', group='g'),))
    """
    parse_formula(formula)
    lhs, rhs = _sides(formula)

    def written(node: Node) -> str:
        return " ".join(formula[node.start : node.end].split())

    fixed: list[str] = []
    bars: list[WrittenBar] = []
    for sign, node in signed_terms(rhs):
        core = unwrap(node)
        if isinstance(core, BinOp) and is_bar(core):
            bars.append(WrittenBar(written(core.left), core.op, written(core.right)))
        else:
            fixed.append(written(node) if sign > 0 else f"-{written(node)}")
    return WrittenFormula(written(lhs), tuple(fixed), tuple(bars))


def contrasts_code(text: str) -> str:
    """R's name of contrasts (``"contr.sum"``, ``"contr.treatment(base = 2)"``) as
    translated code (``"Sum()"``, ``"Treatment(reference=2)"``).

    Raises
    ------
    FormulaError
        For anything but R's (or patsy's) contrasts.
    """
    tokens = tokenize(text)
    if not tokens:
        raise formula_error(text, 0, "empty contrasts")
    check_parentheses(text, tokens)
    node = parse_side(text, tokens, len(text))
    return Translator(text).contrasts(node)
