"""R's ``update(formula, new)``: ``.`` stands for the old sides, then the terms are simplified.

``update("y ~ x * z + (1 | g)", ". ~ . - z")`` is ``"y ~ x + (1 | g) + x:z"``,
as R writes it: the right-hand side expanded into its terms (crossings,
nesting, removals), ordered by degree with random-effects terms counting as
single variables, offsets last and a removed intercept as ``- 1``.
"""

from __future__ import annotations

from ..errors import FormulaError
from .parser import (
    BinOp,
    Call,
    Node,
    Num,
    Paren,
    is_bar,
    number_value,
    parse_side,
    signed_terms,
    unwrap,
)
from .tokens import Token, check_parentheses, formula_error, tokenize
from .translate import Translator, interaction_label

__all__ = ["update_formula"]


def _split(source: str) -> tuple[list[Token], list[Token] | None, Token | None]:
    """The tokens of each side of ``source`` (no left side: None) and the ``~``."""
    tokens = tokenize(source)
    check_parentheses(source, tokens)
    tildes = [tok for tok in tokens if tok.is_op("~")]
    if len(tildes) > 1:
        raise formula_error(source, tildes[1].start, "more than one `~` in formula")
    if not tildes:
        return tokens, None, None
    at = tokens.index(tildes[0])
    return tokens[at + 1 :], tokens[:at], tildes[0]


def _substitute(source: str, tokens: list[Token], replacement: str) -> str:
    """The text of ``tokens`` with each ``.`` replaced by ``replacement``."""
    if not tokens:
        return ""
    start = tokens[0].start
    pieces: list[str] = []
    pos = start
    for tok in tokens:
        if tok.kind == "name" and tok.text == ".":
            pieces += [source[pos : tok.start], replacement]
            pos = tok.end
    pieces.append(source[pos : tokens[-1].end])
    return "".join(pieces)


def update_formula(old: str, new: str) -> str:
    """``new`` with ``.`` replaced by the sides of ``old``, simplified as R's ``update``.

    Parameters
    ----------
    old : str
        An lme4 formula, e.g. ``"y ~ x + z + (1 | g)"``.
    new : str
        The update, e.g. ``". ~ . - z"``, ``"log(.) ~ ."`` or ``"~ . + w"``
        (no left side: the old response stays).

    Returns
    -------
    str
        The updated formula as R writes it, e.g. ``"y ~ x + (1 | g)"``.

    Raises
    ------
    FormulaError
        For formulas that do not parse.
    """
    for name, text in (("formula", old), ("update", new)):
        if not isinstance(text, str):
            raise FormulaError(f"the {name} must be a string, got {type(text).__name__}")
    old_rhs, old_lhs, _ = _split(old)
    if old_lhs is None or not old_lhs:
        raise formula_error(old, 0, "the formula to update needs a response and `~`")
    lhs_text = old[old_lhs[0].start : old_lhs[-1].end]
    rhs_text = old[old_rhs[0].start : old_rhs[-1].end] if old_rhs else "1"
    new_rhs, new_lhs, tilde = _split(new)
    if tilde is None:
        raise formula_error(new, 0, "the update needs `~`, e.g. `. ~ . - x`")
    response = _substitute(new, new_lhs, f"({lhs_text})") if new_lhs else lhs_text
    if not new_rhs:
        raise formula_error(new, tilde.end, "nothing on the right of `~` in the update")
    terms = _substitute(new, new_rhs, f"({rhs_text})")
    combined = f"{response} ~ {terms}"
    tokens = tokenize(combined)
    at = next(i for i, tok in enumerate(tokens) if tok.is_op("~"))
    lhs = parse_side(combined, tokens[:at], tokens[at].start)
    rhs = parse_side(combined, tokens[at + 1 :], len(combined))
    spelled = Translator(combined, r_spelling=True)
    return f"{_deparse_response(spelled, lhs)} ~ {_simplify(spelled, rhs)}"


def _deparse_response(spelled: Translator, node: Node) -> str:
    # A substituted response keeps its parentheses only where they matter.
    core = unwrap(node)
    if isinstance(core, Call):
        return spelled.deparse(
            Call(core.start, core.end, core.func, tuple(map(unwrap_atom, core.args)), core.kwargs)
        )
    return spelled.deparse(core)


def unwrap_atom(node: Node) -> Node:
    """``(y)`` → ``y`` for a name or call; any other expression keeps its parentheses."""
    core = unwrap(node)
    return core if not isinstance(core, BinOp) else node


def _simplify(spelled: Translator, rhs: Node) -> str:
    """R's terms of ``rhs``: by degree, random-effects terms as variables, offsets last."""
    intercept = True
    order: dict[str, Node] = {}
    terms: dict[frozenset[str], None] = {}
    offsets: dict[str, None] = {}
    for sign, node in signed_terms(rhs):
        core = unwrap(node)
        if isinstance(core, Num) and number_value(core.text) in (0.0, 1.0):
            intercept = (number_value(core.text) == 1.0) == (sign > 0)
            continue
        if isinstance(core, BinOp) and is_bar(core):
            label = spelled.deparse(Paren(core.start, core.end, core))
            order.setdefault(label, core)
            found = [frozenset({label})]
        elif isinstance(core, Call) and core.func == "offset":
            label = spelled.deparse(core)
            if sign > 0:
                offsets.setdefault(label, None)
            else:
                offsets.pop(label, None)
            continue
        else:
            found = spelled.expand(node, order)
        if sign > 0:
            terms.update(dict.fromkeys(found))
        else:
            for term in found:
                terms.pop(term, None)
    ranked = sorted(terms, key=len)  # stable: by degree, then first appearance
    labels = [":".join(interaction_label(term, order)) for term in ranked]
    labels += list(offsets)
    if not labels:
        return "1" if intercept else "-1"
    text = " + ".join(labels)
    return text if intercept else f"{text} - 1"
