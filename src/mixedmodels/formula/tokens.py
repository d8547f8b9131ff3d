"""Tokens of R formula text, and formula errors that point at a character.

The tokenizer knows R's lexical rules for the pieces a model formula uses:
names (dotted names such as ``Sepal.Length`` included), backticked names,
numbers (``2``, ``1e-3``, ``2L``), strings and operators (the logical ones
``&``, ``|`` and ``!`` included, for conditions inside calls).  Anything else
(``#``, ``$``, ``@``, ``[``, ``{``, ``<-``) is refused here with its position,
because no formula needs it.  So is formula text longer than
:data:`~.limits.MAX_FORMULA_LENGTH`, before any of it is read.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import FormulaError
from .limits import MAX_FORMULA_LENGTH

__all__ = [
    "Token",
    "check_parentheses",
    "formula_error",
    "is_bare_name",
    "r_name",
    "rename_calls",
    "tokenize",
]

_TOKEN_RE = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    | (?P<name>(?:[^\W\d]|\.(?!\d))[\w.]*)
    | (?P<quoted>`[^`]*`)
    | (?P<string>"[^"]*"|'[^']*')
    | (?P<op>%[^%\s]*%|\|\||&&|\*\*|==|!=|<=|>=|[-+*/^:~|&!<>=(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    """One token of formula text.

    Attributes
    ----------
    kind : str
        ``"number"``, ``"name"``, ``"quoted"`` (a backticked name), ``"string"``
        or ``"op"``.
    text : str
        The token's text; for ``"quoted"`` and ``"string"`` without the quotes,
        and ``**`` already read as R's ``^``.
    start, end : int
        Its position in the source (``end`` exclusive).
    """

    kind: str
    text: str
    start: int
    end: int

    def is_op(self, *ops: str) -> bool:
        """Whether the token is one of the operators ``ops``."""
        return self.kind == "op" and self.text in ops


def formula_error(source: str, pos: int, message: str) -> FormulaError:
    """A :class:`FormulaError` that shows ``source`` with a caret under character ``pos``."""
    # Every whitespace character is one column wide once replaced by a space, so
    # the caret lines up even for formulas written over several lines.
    line = "".join(" " if ch.isspace() else ch for ch in source)
    pos = max(0, min(pos, len(source)))
    return FormulaError(f"{message} (at character {pos}):\n  {line}\n  {' ' * pos}^")


def tokenize(source: str) -> list[Token]:
    """Split R formula text into tokens, refusing characters formulas never need.

    Raises
    ------
    FormulaError
        For an unclosed quote, an escape sequence or an unexpected character,
        with its position.
    """
    if len(source) > MAX_FORMULA_LENGTH:
        raise FormulaError(
            f"formula text is {len(source)} characters long; at most {MAX_FORMULA_LENGTH} are read"
        )
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN_RE.match(source, pos)
        if match is None:
            char = source[pos]
            if char in "\"'`":
                raise formula_error(source, pos, f"unclosed quote {char}")
            raise formula_error(source, pos, f"unexpected character {char!r} in formula")
        kind = match.lastgroup or ""
        text = match.group()
        if kind in ("quoted", "string"):
            text = text[1:-1]
            if "\\" in text:
                raise formula_error(
                    source, pos, "escape sequences (\\) are not supported in formulas"
                )
        if kind == "op" and text == "<" and source.startswith("-", match.end()):
            # R reads x<-1 as an assignment, which no formula needs.
            raise formula_error(source, pos, "assignment `<-` is not allowed in a formula")
        if kind == "op" and text == "**":
            text = "^"  # R reads ** as ^
        if kind != "space":
            tokens.append(Token(kind, text, match.start(), match.end()))
        pos = match.end()
    return tokens


def check_parentheses(source: str, tokens: list[Token]) -> None:
    """Report the first unmatched ``)`` or an unclosed ``(``."""
    stack: list[Token] = []
    for tok in tokens:
        if tok.is_op("("):
            stack.append(tok)
        elif tok.is_op(")"):
            if not stack:
                raise formula_error(source, tok.start, "unbalanced parentheses: `)` without `(`")
            stack.pop()
    if stack:
        raise formula_error(source, stack[-1].start, "unbalanced parentheses: `(` is never closed")


def is_bare_name(name: str) -> bool:
    """Whether R reads ``name`` as one name without backticks (``Sepal.Length``, not ``a b``)."""
    match = _TOKEN_RE.fullmatch(name)
    # R names cannot start with an underscore, although Python's can.
    return match is not None and match.lastgroup == "name" and not name.startswith("_")


def r_name(name: str) -> str:
    """A column name as R formula text: bare if R reads it bare, else in backticks."""
    return name if is_bare_name(name) else f"`{name}`"


def rename_calls(text: str, names: Mapping[str, str]) -> str:
    """``text`` with the functions called under the keys of ``names`` renamed.

    Only a name immediately followed by ``(`` is a call: ``np.log(x)`` becomes
    ``log(x)`` with ``names={"np.log": "log"}``, while a column named ``np.log``
    stays.  Text that does not tokenize is returned unchanged, for the parser
    to report the error against the whole formula.

    Parameters
    ----------
    text : str
        Formula text.
    names : mapping of str to str
        Function name as written → name to call instead.
    """
    try:
        tokens = tokenize(text)
    except FormulaError:
        return text
    pieces: list[str] = []
    pos = 0
    for tok, nxt in itertools.pairwise(tokens):
        if tok.kind == "name" and tok.text in names and nxt.is_op("("):
            pieces += [text[pos : tok.start], names[tok.text]]
            pos = tok.end
    return "".join([*pieces, text[pos:]])
