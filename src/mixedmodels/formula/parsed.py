"""What parsing an lme4 formula gives: the response, the model parts and their names.

Each model part (the fixed part, each random-effects term's left-hand side)
carries both its formulaic text, which builds its model matrix, and its R
text, for messages.  The formula also keeps the R label of every factor its
terms use, by formulaic's name of that factor: formulaic's column names
(``C(g)[T.b]``, ``x:h[u]``) are made of those names, so lme4's names
(``factor(g)b``, ``x:hu``) come from this table, not from re-spelling text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from .tokens import r_name

__all__ = [
    "GroupExpression",
    "ModelPart",
    "Offset",
    "ParsedFormula",
    "RandomTermSpec",
    "Term",
    "random_term_to_lme4",
]

#: formulaic's name for the intercept column, and lme4's.
_INTERCEPT = ("Intercept", "(Intercept)")
# The lists of column names :meth:`ParsedFormula.column_names` keeps per formula
# (a model's fixed part and each term: a few; more as the data's levels vary).
_NAMED_MAX = 64


@dataclass(frozen=True)
class Term:
    """One term of a model part as written between ``+`` and ``-``.

    Attributes
    ----------
    sign : int
        1, or -1 for a term removed with ``-``.
    text : str
        formulaic text, e.g. ``"C(g)"``, ``"x * z"``, ``"`Sepal.Length`"``.
    label : str
        R text, e.g. ``"factor(g)"``, ``"x * z"``.
    column : str or None
        The data column when the term is one column by name (``x``,
        ```my col```, ``Q("my col")``), else None.
    """

    sign: int
    text: str
    label: str
    column: str | None


@dataclass(frozen=True)
class ModelPart:
    """The right-hand side of one model matrix, its intercept explicit.

    Attributes
    ----------
    text : str
        formulaic text: ``"1"``, ``"1 + Days"``, ``"0 + C(f)"``, ``"1 + x - z"``.
    label : str
        The same in R's spelling, e.g. ``"0 + factor(f)"``.
    intercept : bool
        Whether the part has an intercept.
    terms : tuple of Term
        The other terms, in formula order.
    columns : tuple of str
        The data columns the part reads, in order of first appearance.
    """

    text: str
    label: str
    intercept: bool
    terms: tuple[Term, ...]
    columns: tuple[str, ...]

    @cached_property
    def plain_columns(self) -> tuple[str, ...] | None:
        """The columns, when the part is only an intercept and columns joined by ``+``.

        Each column once, in formula order (formulaic drops repeated terms);
        None for a part with anything else (a factor call, an interaction, a
        removed term).
        """
        if not all(term.sign > 0 and term.column is not None for term in self.terms):
            return None
        return tuple(dict.fromkeys(term.column for term in self.terms))  # type: ignore[misc]


@dataclass(frozen=True)
class Offset:
    """One ``offset(expr)`` term of the fixed part.

    Attributes
    ----------
    code : str
        The expression as Python code formulaic evaluates (``log(expected)``).
    label : str
        The term as R deparses it (``offset(log(expected))``), for messages.
    columns : tuple of str
        The data columns it reads.
    """

    code: str
    label: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class GroupExpression:
    """A grouping factor written as an expression: ``(1 | factor(Subject))``.

    Attributes
    ----------
    label : str
        lme4's name of the grouping factor (R's deparse: ``factor(Subject)``),
        which stands for it in :attr:`RandomTermSpec.group`.
    code : str
        The expression as Python code giving the factor.
    columns : tuple of str
        The data columns it reads.
    """

    label: str
    code: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term ``(lhs | group)`` after expansion of ``||`` and ``/``.

    Attributes
    ----------
    part : ModelPart
        The left-hand side, the model of the per-row random effects.
    group : tuple of str
        Column names whose interaction forms the grouping factor, e.g.
        ``("Subject",)`` or ``("cask", "batch")`` for ``cask:batch``; a
        factor written as an expression stands here by its label (see
        :attr:`ParsedFormula.group_expressions`).
    group_label : str or None
        lme4's name of a nested grouping factor (``"c:(b:a)"``) when it is not
        the columns joined by ``:``.
    computed : tuple of str
        The entries of ``group`` that are expressions, not columns.
    """

    part: ModelPart
    group: tuple[str, ...]
    group_label: str | None = None
    computed: tuple[str, ...] = ()

    @property
    def lhs(self) -> str:
        """formulaic text of the left-hand side: ``"1"``, ``"1 + Days"``, ``"0 + Days"``."""
        return self.part.text

    @property
    def name(self) -> str:
        """lme4's name of the grouping factor, e.g. ``"cask:batch"``, ``"c:(b:a)"``."""
        return self.group_label if self.group_label is not None else ":".join(self.group)

    @cached_property
    def lme4_text(self) -> str:
        """The term in lme4 syntax (:func:`random_term_to_lme4`), spelled once: each fit
        names its terms in its checks' messages."""
        group = ":".join(name if name in self.computed else r_name(name) for name in self.group)
        return f"({self.part.label} | {group})"


def random_term_to_lme4(spec: RandomTermSpec) -> str:
    """A random-effects term in lme4 syntax, e.g. ``"(1 + Days | Subject)"``.

    Parameters
    ----------
    spec : RandomTermSpec
        The term.

    Returns
    -------
    str
        The term as lme4 would print it in a formula, for messages and summaries.
    """
    return spec.lme4_text


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into response, fixed part and random-effects terms.

    Attributes
    ----------
    source : str
        The formula exactly as given.
    response : str
        The left-hand side translated for formulaic, e.g. ``"log(y)"``.
    response_label : str
        The left-hand side in R's spelling, for messages, e.g. ``"y1 + y2"``.
    response_column : str or None
        The data column when the response is one column by name.
    response_columns : tuple of str
        The data columns the response reads.
    fixed_part : ModelPart
        The fixed-effects part.
    random : tuple of RandomTermSpec
        The random-effects terms in formula order, ``||`` and ``/`` expanded.
    columns : tuple of str
        Every data column the formula uses (response, fixed part, random
        terms, grouping factors), in order of first appearance.
    factor_columns : tuple of str
        The columns used as factors through ``factor()``, ``as.factor()`` or ``C()``.
    factor_labels : tuple of (str, str)
        formulaic's name of each factor of the model terms → its R label
        (``"C(g)"`` → ``"factor(g)"``), in order of first appearance, the
        fixed part's first.
    default_coded : frozenset of str
        The factors that are columns by name coded by formulaic itself
        (its column names put ``T.`` before a level).
    offsets : tuple of Offset
        The ``offset(expr)`` terms of the fixed part, in formula order.
    group_expressions : tuple of GroupExpression
        The grouping factors written as expressions, each once.
    """

    source: str
    response: str
    response_label: str
    response_column: str | None
    response_columns: tuple[str, ...]
    fixed_part: ModelPart
    random: tuple[RandomTermSpec, ...]
    columns: tuple[str, ...]
    factor_columns: tuple[str, ...]
    factor_labels: tuple[tuple[str, str], ...]
    default_coded: frozenset[str] = frozenset()
    offsets: tuple[Offset, ...] = ()
    group_expressions: tuple[GroupExpression, ...] = ()

    def __hash__(self) -> int:
        # From a few of the fields (equal formulas have them equal): the generated
        # hash of every field recursed through the parts and terms, a chain of
        # calls each time a fit looks its formula up in a memo (plain.plain_plan).
        return hash((self.source, self.response, self.columns))

    @property
    def fixed(self) -> str:
        """formulaic text of the fixed part, intercept explicit (``"1 + x"``, ``"0 + x"``)."""
        return self.fixed_part.text

    @cached_property
    def _labels(self) -> dict[str, str]:
        return dict(self.factor_labels)

    @cached_property
    def _order(self) -> dict[str, int]:
        return {name: i for i, (name, _) in enumerate(self.factor_labels)}

    def column_name(self, column: str) -> str:
        """lme4's name of a column of a model matrix that formulaic built from this formula.

        ``Intercept`` is ``(Intercept)``; every factor name in ``column`` is
        replaced by its R label and the level that follows it in brackets is
        appended as lme4 does: ``C(g)[b]`` is ``factor(g)b``, ``h[T.u]`` is
        ``hu``, ``I(x ** 2)`` is ``I(x^2)``, ``x:h[T.u]`` is ``x:hu``.  A name
        that is not made of the formula's factors is returned unchanged.
        """
        if column == _INTERCEPT[0]:
            return _INTERCEPT[1]
        labels = self._labels
        if column in labels:
            return labels[column]
        pieces = _split_column(column, labels)
        if pieces is None:
            return column
        default = self.default_coded
        return ":".join(
            labels[factor]
            + ("" if level is None else level.removeprefix("T.") if factor in default else level)
            for factor, level in pieces
        )

    @cached_property
    def _named(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        return {}

    def column_names(self, columns: Iterable[str]) -> list[str]:
        """:meth:`column_name` of each of ``columns``.

        A refit with the same formula names the same columns again (parsing is
        memoised, so this formula is the same object): the names are kept, by
        the columns' names only, up to :data:`_NAMED_MAX` lists per formula.
        """
        columns = tuple(map(str, columns))
        named = self._named
        names = named.get(columns)
        if names is None:
            names = tuple(map(self.column_name, columns))
            if len(named) < _NAMED_MAX:
                named[columns] = names
        return list(names)

    def term_label(self, factors: Iterable[str]) -> str:
        """R's label of the term made of formulaic's ``factors``, e.g. ``grp:I(Days^2)``.

        R writes the factors of an interaction in the order they first appear
        in the formula (formulaic keeps the order written in the term).
        """
        names = list(factors)
        order = self._order
        if all(name in order for name in names):
            names.sort(key=order.__getitem__)
        return ":".join(self._labels.get(name, name) for name in names)


def _split_column(column: str, labels: Mapping[str, str]) -> list[tuple[str, str | None]] | None:
    """``column`` as (factor, level) pieces, e.g. ``x:h[u]`` → ``[("x", None), ("h", "u")]``.

    formulaic names a column by its factors joined by ``:``, each followed by
    its level in brackets when it is categorical.  A level may itself contain
    ``]`` or ``:``, so a bracket closes the level only where the rest of the
    name goes on with another factor (or ends).  None if ``column`` is not
    made of the known factors.
    """

    def factor_at(pos: int) -> str | None:
        found = [name for name in labels if column.startswith(name, pos)]
        return max(found, key=len) if found else None

    def rest_fits(pos: int) -> bool:
        return pos == len(column) or (column[pos] == ":" and factor_at(pos + 1) is not None)

    pieces: list[tuple[str, str | None]] = []
    pos = 0
    while True:
        factor = factor_at(pos)
        if factor is None:
            return None
        pos += len(factor)
        level = None
        if column.startswith("[", pos):
            end = column.find("]", pos)
            while end >= 0 and not rest_fits(end + 1):
                end = column.find("]", end + 1)
            if end < 0:
                return None
            level, pos = column[pos + 1 : end], end + 1
        pieces.append((factor, level))
        if pos == len(column):
            return pieces
        if column[pos] != ":":
            return None
        pos += 1
