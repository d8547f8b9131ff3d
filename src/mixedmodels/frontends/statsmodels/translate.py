"""A ``mixedlm(formula, data, groups=..., re_formula=..., vc_formula=...)`` call as lme4 text.

The formula front door accepts statsmodels' arguments and, beyond them, lme4
bar terms and the article's dictionary forms.  This module writes what a call
means as one lme4 formula (kept as ``MixedLM.lme4_formula``); the model is
then built from that formula's terms (:mod:`.formula_model`).

The translation, each rule next to its lme4 meaning (``docs/statsmodels.md``
shows them all with examples):

* ``groups="g"`` (or an array) adds ``(re | g)`` where ``re`` is ``re_formula``
  (default the intercept, unless the formula already has terms grouped by
  ``g`` or, as statsmodels has it, ``vc_formula`` gives variance components):
  ``groups="Pig", re_formula="~Time"`` is ``(Time | Pig)``.  An
  array is added to a copy of the data under a fresh column name, unless it
  is a column of the data already.
* bar terms written in ``formula`` are kept as they are and combine with
  everything else: ``"y ~ x + (1|a)", groups=s`` is ``y ~ x + (1|a) + (1|s)``.
* ``re_formula`` may be a dict keyed by grouping variable, as in the article:
  ``{"classroom": "~1"}`` is ``(1 | classroom)``.
* ``vc_formula`` entries are either statsmodels' variance components, nested
  in ``groups`` (``{"cask": "0 + C(cask)"}`` with ``groups="batch"`` is
  ``(1 | batch:cask)``, one variance per name; a component of several numeric
  columns sharing one variance has no lme4 spelling) or, as in the article, the
  covariance structure of a grouping variable's random effects: ``"diag"`` is
  lme4's ``||`` and ``"unstructured"`` its ``|``.
* a term that two of these give identically is used once; two different
  specifications for one grouping variable are an error that names both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from ...design import as_data_frame
from ...errors import DataError, FormulaError, MixedModelsError
from ...formula import RandomTermSpec, parse_formula, r_name, rename_calls, split_terms

__all__ = ["DIAGONAL", "UNSTRUCTURED", "Translation", "is_structure", "translate"]

#: ``vc_formula`` values that set a covariance structure (the article's usage).
DIAGONAL = frozenset({"diag", "diagonal", "independent"})
UNSTRUCTURED = frozenset({"unstructured", "full"})

# Functions statsmodels users call through numpy in patsy formulas; the
# formula language here has them under their bare names.
_NUMPY_FUNCTIONS = ("log", "log1p", "log2", "log10", "exp", "expm1", "sqrt", "abs")
_NUMPY_CALLS = {f"{module}.{name}": name for module in ("np", "numpy") for name in _NUMPY_FUNCTIONS}


# ---------------------------------------------------------------------------
# Terms as text
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bar:
    """One random-effects term of the lme4 formula being assembled.

    ``lhs`` and ``group`` are R formula text, ``op`` is ``"|"`` or ``"||"``;
    ``source`` says where the term came from (for messages) and ``label`` is a
    statsmodels variance-component name when it came from ``vc_formula``.
    """

    lhs: str
    op: str
    group: str
    source: str
    label: str | None = None

    @property
    def text(self) -> str:
        return f"({self.lhs} {self.op} {self.group})"

    def specs(self) -> tuple[RandomTermSpec, ...]:
        """The term as the engine's parser expands it (``||`` split, ``/`` nested)."""
        try:
            return parse_formula(f"y ~ 0 + {self.text}").random
        except FormulaError as err:
            raise FormulaError(f"{self.source} gives the term {self.text}: {err}") from None

    def grouping(self) -> frozenset[str] | None:
        """The grouping factor's columns if the term has one grouping factor (no ``/``)."""
        groups = {frozenset(spec.group) for spec in self.specs()}
        return next(iter(groups)) if len(groups) == 1 else None


def _quote(name: str) -> str:
    """A column name as R formula text: bare if R reads it bare, else backticked."""
    if "`" in name:
        raise DataError(f"column name {name!r} contains a backtick and cannot be used")
    return r_name(name)


def _rhs_text(text: str, what: str) -> str:
    """A one-sided statsmodels formula (``"~Time"``, ``"1 + x"``) as R right-hand side."""
    if not isinstance(text, str):
        raise MixedModelsError(f"{what} must be a string such as '~1' or '~x', got {text!r}")
    body = rename_calls(text.strip(), _NUMPY_CALLS)
    body = body[1:].strip() if body.startswith("~") else body
    if not body:
        raise FormulaError(f"{what} {text!r} is empty; use '~1' for an intercept")
    if "~" in body or "|" in body:
        raise FormulaError(f"{what} {text!r} must be one-sided, without `~` or bars")
    return body


def _split_formula(formula: str) -> tuple[str, list[str], list[_Bar]]:
    """Split an lme4 formula into response text, fixed-term texts and its bar terms.

    The texts are the user's own (so the lme4 formula we hand on reads like
    theirs); the formula is parsed in full first so that errors are reported
    against what the user wrote.
    """
    written = split_terms(formula)
    bars = [_Bar(bar.lhs, bar.op, bar.group, "the formula") for bar in written.bars]
    return written.response, list(written.fixed), bars


def _join_fixed(terms: list[str]) -> str:
    if not terms:
        return "1"
    out = terms[0] if not terms[0].startswith("-") else f"1 - {terms[0][1:]}"
    for term in terms[1:]:
        out += f" - {term[1:]}" if term.startswith("-") else f" + {term}"
    return out


# ---------------------------------------------------------------------------
# The translation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Translation:
    """The outcome of translating a ``mixedlm`` call.

    Attributes
    ----------
    formula : str or None
        The lme4 formula the call means, variance components included; None
        when a variance component has no lme4 spelling (several numeric
        columns sharing one variance).
    design_formula : str
        The lme4 formula of the fixed effects and of the random-effects terms
        of groupings other than the groups.
    group_terms : tuple of RandomTermSpec
        The terms grouped by the groups (``||`` split), whose columns are
        statsmodels' ``exog_re``.
    main_grouping : tuple of str
        The columns defining the groups: ``groups``' column, or without
        ``groups`` the formula's first grouping.
    data : pandas.DataFrame
        The data it is fitted to (the caller's frame, or a shallow copy with the
        ``groups`` array added as a column).
    group_column : str or None
        Column of the ``groups`` argument (None without ``groups``).
    group_label : str
        statsmodels' name for the groups' random intercept: the column name
        when ``groups`` was given as one, else ``"Group"``.
    vc_formulas : dict
        statsmodels' variance components: name → one-sided formula text
        (sorted by name).
    """

    formula: str | None
    design_formula: str
    data: pd.DataFrame
    group_column: str | None
    group_label: str
    vc_formulas: dict[str, str]
    group_terms: tuple[RandomTermSpec, ...]
    main_grouping: tuple[str, ...]


def is_structure(value: Any) -> bool:
    """Whether a ``vc_formula`` value sets a covariance structure (the article's forms)."""
    kind = value.strip().lower() if isinstance(value, str) else None
    return kind in DIAGONAL or kind in UNSTRUCTURED


def _resolve_groups(groups: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame, str | None, str]:
    if groups is None:
        return frame, None, "Group"
    if isinstance(groups, str):
        if groups not in frame.columns:
            raise DataError(f"groups column {groups!r} is not in the data")
        return frame, groups, groups
    values = groups.to_numpy() if isinstance(groups, (pd.Series, pd.Index)) else groups
    try:
        values = np.asarray(values)
    except Exception as err:
        raise DataError(f"groups must be a column name or an array-like: {err}") from err
    if values.ndim != 1 or len(values) != len(frame):
        raise DataError(
            f"groups must have one value per row of the data ({len(frame)}), "
            f"got shape {values.shape}"
        )
    name = getattr(groups, "name", None)
    if isinstance(name, str) and name in frame.columns:
        column = frame[name].to_numpy()
        same = len(column) == len(values) and bool(
            pd.Series(column, dtype=object).equals(pd.Series(values, dtype=object))
        )
        if same:
            # data["Pig"] passed as groups: the column itself is the grouping.
            return frame, name, "Group"
    base = name if isinstance(name, str) and name and name not in frame.columns else "groups"
    fresh, k = base, 1
    while fresh in frame.columns:
        k += 1
        fresh = f"{base}_{k}"
    frame = frame.copy(deep=False)
    frame[fresh] = values
    return frame, fresh, "Group"


def _grouping_of_key(key: Any, frame: pd.DataFrame, what: str) -> tuple[str, frozenset[str]]:
    """A dict key naming a grouping variable (``"classroom"``, ``"school:classroom"``)."""
    if not isinstance(key, str):
        raise MixedModelsError(f"{what} keys must be column names, got {key!r}")
    parts = [key] if key in frame.columns else [p.strip() for p in key.split(":")]
    missing = [p for p in parts if p not in frame.columns]
    if missing:
        raise DataError(f"{what} names the grouping variable {key!r}, which is not in the data")
    return ":".join(_quote(p) for p in parts), frozenset(parts)


def _vc_term(name: str, value: str, group_column: str, frame: pd.DataFrame) -> _Bar:
    """statsmodels' variance component ``{name: "0 + C(f)"}`` nested in ``groups``."""
    what = f"vc_formula[{name!r}] = {value!r}"
    body = _rhs_text(value, what)
    try:
        parsed = parse_formula(f"y ~ {body}")
        terms = list(formulaic.Formula(parsed.fixed))
    except Exception as err:
        raise FormulaError(f"cannot read {what}: {err}") from None
    has_intercept = any(not term.factors for term in terms)
    terms = [term for term in terms if term.factors]
    if has_intercept or len(terms) != 1:
        raise MixedModelsError(
            f"{what}: a variance component must be one term without intercept, such as "
            "'0 + C(cask)' (random intercepts per cask within each group) or '0 + x' (a "
            "random slope); several columns sharing one variance have no lme4 equivalent: "
            "give each its own entry"
        )
    factors, numeric = [], []
    for factor in terms[0].factors:
        expr = factor.expr
        match = re.fullmatch(r"C\((.+)\)", expr)
        if match:
            factors.append(match.group(1).strip().strip("`"))
            continue
        column = expr.strip("`")
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            factors.append(column)
        elif column in frame.columns and pd.api.types.is_bool_dtype(frame[column]):
            factors.append(column)
        else:
            numeric.append(expr)
    for column in factors:
        if column not in frame.columns:
            raise DataError(f"{what}: column {column!r} is not in the data")
    lhs = "1" if not numeric else "0 + " + ":".join(numeric)
    group = ":".join(_quote(c) for c in (group_column, *factors))
    return _Bar(lhs, "|", group, f"vc_formula[{name!r}]", label=name)


def _with_structure(bars: list[_Bar], grouping: frozenset[str], structure: str, key: str):
    """Apply the article's ``vc_formula={key: "diag" | "unstructured"}`` to ``bars``."""
    targets = [i for i, bar in enumerate(bars) if bar.grouping() == grouping]
    if not targets:
        raise MixedModelsError(
            f"vc_formula[{key!r}] = {structure!r} sets the covariance of the random effects "
            f"grouped by {key!r}, but the model has none: add a term such as (1 | {key}) or "
            f"re_formula={{{key!r}: '~1'}}"
        )
    op = "||" if structure in DIAGONAL else "|"
    out = list(bars)
    for i in targets:
        changed = replace(bars[i], op=op)
        # A single random effect has no correlation to drop: (1 | g) stays as written.
        if op == "|" or len(changed.specs()) > 1:
            out[i] = changed
    if op == "|" and len(targets) > 1:
        # Full covariance between effects written as separate terms: one term.
        specs = [spec for i in targets for spec in out[i].specs()]
        intercept = any(spec.lhs == "1" or spec.lhs.startswith("1 ") for spec in specs)
        pieces = []
        for spec in specs:
            rest = spec.lhs.split(" + ", 1)[1] if " + " in spec.lhs else ""
            if spec.lhs not in ("1",) and not re.fullmatch(r"[01] \+ [^+-]+", spec.lhs):
                raise MixedModelsError(
                    f"vc_formula[{key!r}] = {structure!r}: cannot combine the terms "
                    f"{', '.join(out[i].text for i in targets)} into one; write the "
                    "correlated term in the formula"
                )
            if rest and rest not in pieces:
                pieces.append(rest)
        lhs = " + ".join((["1"] if intercept else ["0"]) + pieces)
        merged = replace(out[targets[0]], lhs=lhs)
        out = [bar for i, bar in enumerate(out) if i not in targets[1:]]
        out[targets[0]] = merged
    return out


def _vc_merged(bars: list[_Bar], vc_bars: list[_Bar]) -> list[_Bar]:
    """``bars`` plus the variance components' terms, each term once."""
    out = list(bars)
    for bar in vc_bars:
        out = _add(out, bar, exclusive=False)
    return out


def _canonical(bars: list[_Bar]) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((spec.lhs, tuple(sorted(spec.group))) for bar in bars for spec in bar.specs())


def _add(bars: list[_Bar], new: _Bar, *, exclusive: bool = True) -> list[_Bar]:
    """Add ``new`` unless the same term is there.

    With ``exclusive`` (``groups``, ``re_formula``) ``new`` is *the* design of
    its grouping variable's random effects, so a different one already there is
    a conflict; a variance component (not exclusive) is one more term.
    """
    grouping = new.grouping()
    same_group = [bar for bar in bars if grouping is not None and bar.grouping() == grouping]
    if not exclusive:
        mine = _canonical([new])
        if any(_canonical([bar]) == mine for bar in same_group):
            return bars
        return [*bars, new]
    if not same_group:
        return [*bars, new]
    if _canonical([new]) == _canonical(same_group):
        return bars
    raise MixedModelsError(
        f"conflicting random effects for {new.group}: {new.source} gives {new.text} but "
        f"{same_group[0].source} already has "
        f"{' + '.join(bar.text for bar in same_group)}; give each grouping variable's random "
        "effects once"
    )


def translate(
    formula: str,
    data: Any,
    groups: Any = None,
    re_formula: str | Mapping[str, str] | None = None,
    vc_formula: Mapping[str, str] | None = None,
) -> Translation:
    """Translate a statsmodels-style ``mixedlm`` call into one lme4 formula.

    Parameters are those of :func:`mixedlm`.

    Returns
    -------
    Translation
        The lme4 formula, the data to fit it to and the names statsmodels gives
        the variance parameters.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> pigs = mm.datasets.load("dietox")
    >>> translate("Weight ~ Time", pigs, groups="Pig", re_formula="~Time").formula
    'Weight ~ Time + (Time | Pig)'
    """
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, got {type(formula).__name__}")
    formula = rename_calls(formula, _NUMPY_CALLS)
    frame = as_data_frame(data)
    frame, group_column, group_label = _resolve_groups(groups, frame)
    response, fixed, bars = _split_formula(formula)

    re_terms: dict[str, str] = {}
    group_design: str | None = None
    if isinstance(re_formula, Mapping):
        for key, value in re_formula.items():
            text, _ = _grouping_of_key(key, frame, "re_formula")
            re_terms[text] = _rhs_text(value, f"re_formula[{key!r}]")
    elif re_formula is not None:
        if group_column is None:
            raise MixedModelsError(
                "re_formula as a string is the design of the groups' random effects: "
                "give groups=..., or a dict such as re_formula={'g': '~1'}"
            )
        group_design = _rhs_text(re_formula, "re_formula")

    if group_column is not None:
        group_text = _quote(group_column)
        if group_text in re_terms:
            group_design = re_terms.pop(group_text)
        grouping = frozenset({group_column})
        if group_design is None and any(bar.grouping() == grouping for bar in bars):
            # groups names a grouping the formula already gives random effects:
            # without a re_formula of its own there is nothing to add.
            group_design = "0"
        has_components = isinstance(vc_formula, Mapping) and any(
            not is_structure(value) for value in vc_formula.values()
        )
        if group_design is None and has_components:
            # statsmodels: with variance components and no re_formula, the groups
            # have no random effects of their own (no random intercept).
            group_design = "0"
        if group_design is None:
            group_design = "1"
        if re.fullmatch(r"0|-\s*1|~\s*0", group_design) is None:
            bars = _add(bars, _Bar(group_design, "|", group_text, "groups"))
    for text, design in re_terms.items():
        bars = _add(bars, _Bar(design, "|", text, f"re_formula[{text!r}]"))

    structures: list[tuple[str, str]] = []
    components: dict[str, str] = {}
    if vc_formula is not None:
        if not isinstance(vc_formula, Mapping):
            raise MixedModelsError(
                "vc_formula must be a dict: {name: '0 + C(f)'} (statsmodels' variance "
                "components) or {grouping variable: 'diag' | 'unstructured'}"
            )
        for name in sorted(vc_formula, key=str):
            value = vc_formula[name]
            if is_structure(value):
                structures.append((name, value.strip().lower()))
                continue
            if group_column is None:
                raise MixedModelsError(
                    f"vc_formula[{name!r}] = {value!r} is a variance component nested in "
                    "the groups: give groups=... (or use 'diag' / 'unstructured' to set a "
                    "grouping variable's covariance structure)"
                )
            components[str(name)] = _rhs_text(value, f"vc_formula[{name!r}]")
    for key, kind in structures:
        _, grouping = _grouping_of_key(key, frame, "vc_formula")
        bars = _with_structure(bars, grouping, kind, key)

    if not bars and not components:
        raise MixedModelsError(
            "the model has no random effects: give groups=..., a re_formula dict or bar "
            "terms such as (1 | g) in the formula"
        )
    head = f"{response} ~ {_join_fixed(fixed)}"
    if group_column is not None:
        main: frozenset[str] | None = frozenset({group_column})
    else:
        main = next((bar.grouping() for bar in bars if bar.grouping() is not None), None)
        if main is None:
            raise MixedModelsError(
                f"the formula's random effects ({' + '.join(b.text for b in bars)}) have no "
                "single grouping to serve as statsmodels' groups: give groups=..."
            )
        group_label = next(b.group for b in bars if b.grouping() == main).replace("`", "")
    inside = [bar for bar in bars if bar.grouping() == main]
    others = [bar for bar in bars if bar.grouping() != main]
    group_terms = tuple(spec for bar in inside for spec in bar.specs())
    main_grouping = (group_column,) if group_column is not None else group_terms[0].group
    design_formula = " + ".join([head, *(bar.text for bar in others)])
    lme4: str | None = " + ".join([head, *(bar.text for bar in bars)])
    vc_bars = []
    for name, value in components.items():
        try:
            vc_bars.append(_vc_term(name, value, group_column, frame))
        except MixedModelsError:
            lme4 = None  # several columns sharing one variance: no lme4 spelling
            break
    if lme4 is not None:
        lme4 = " + ".join([head, *(bar.text for bar in _vc_merged(bars, vc_bars))])
    return Translation(
        lme4,
        design_formula,
        frame,
        group_column,
        group_label,
        components,
        group_terms,
        main_grouping,
    )
