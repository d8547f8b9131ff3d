"""The text summary side by side with lmerTest's printed summary of the same model.

tests/data/summaries/<id>.json holds what R 4.2 (lme4 1.1-31, lmerTest 3.1-3)
printed for ``print(summary(fit))`` (dev/make_summary_reference.R).  Each
line must match: the same words in the same columns, and numbers with the same
layout (decimals or scientific notation) and within the optimizer's tolerance
of lme4's.  R-only lines (the object class, the nloptwrap code, R's way to ask
for the correlation matrix) are mapped to the package's.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

import mixedmodels as mm

DATA = Path(__file__).parent.parent / "data" / "summaries"
CASES = sorted(
    p for p in DATA.glob("*.json") if p.name != "rformat.json" and not p.name.startswith("anova")
)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)(e[-+]\d+)?$")


def _r_lines(lines: list[str]) -> list[str]:
    """R's text with its R-only parts mapped to the package's."""
    lines = [line.rstrip() for line in lines]
    start = next(i for i, line in enumerate(lines) if line.startswith("Formula:"))
    title = " ".join(line.strip() for line in lines[:start]).replace("[ ", "[")
    title = re.sub(r"\s*\[\w+\]$", "", title).replace("maximum likelihood .", "maximum likelihood.")
    out = [title]
    for line in lines[start:]:
        if line.startswith("optimizer (nloptwrap) convergence code"):
            continue
        if line.startswith(("Use print(", "    vcov(")):
            continue
        out.append(line.replace("see help('isSingular')", "see is_singular"))
    while out and not out[-1]:
        out.pop()
    return out


def _ours(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("Use m.summary(correlation=True)")]


def _close(ours: str, theirs: str) -> bool:
    """Same layout, value within lme4's optimizer tolerance (2%, or 1.5 units of the
    last digit shown)."""
    if ("e" in ours) != ("e" in theirs):
        return False

    def decimals(s: str) -> int:
        return len(s.split("e")[0].split(".")[1]) if "." in s else 0

    if decimals(ours) != decimals(theirs):
        return False
    a, b = float(ours), float(theirs)
    last_digit = 10.0 ** -decimals(ours) * (10.0 ** int(ours.split("e")[1]) if "e" in ours else 1)
    return abs(a - b) <= 0.02 * max(abs(a), abs(b)) + 1.5 * last_digit


def _compare(ours: list[str], theirs: list[str]) -> list[str]:
    problems = []
    if len(ours) != len(theirs):
        problems.append(f"{len(ours)} lines against lme4's {len(theirs)}")
    for k, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a == b:
            continue
        # Same columns: every token ends where lme4's does (R right-aligns numbers).
        tokens_a = [(m.end(), m.group()) for m in re.finditer(r"\S+", a)]
        tokens_b = [(m.end(), m.group()) for m in re.finditer(r"\S+", b)]
        same = len(tokens_a) == len(tokens_b)
        for (end_a, ta), (end_b, tb) in zip(tokens_a, tokens_b, strict=False):
            if ta == tb and end_a == end_b:
                continue
            numeric = _NUMBER.match(ta) and _NUMBER.match(tb)
            if not (numeric and _close(ta, tb) and (end_a == end_b or len(ta) != len(tb))):
                same = False
        if not same:
            problems.append(f"line {k + 1}:\n  ours: {a!r}\n  lme4: {b!r}")
    return problems


def _fit(case: dict) -> mm.LinearMixedModel:
    data = mm.datasets.load(case["dataset"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mm.lmer(case["formula"], data, reml=case["REML"])
    model.data_name = case["dataset"]
    return model


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_summary_reads_as_lmertest_prints_it(path):
    case = json.loads(path.read_text())
    model = _fit(case)
    problems = _compare(_ours(str(model.summary()).splitlines()), _r_lines(case["text"]))
    assert not problems, "\n".join(problems)
    if "text_kr" in case:
        kr = str(model.summary(ddf="kenward-roger")).splitlines()
        problems = _compare(_ours(kr), _r_lines(case["text_kr"]))
        assert not problems, "Kenward-Roger:\n" + "\n".join(problems)


def test_the_comparison_can_fail():
    theirs = ["(Intercept)  251.405      6.825  17.000  36.838  < 2e-16 ***"]
    assert not _compare(theirs, theirs)
    assert _compare(["(Intercept)  251.4        6.825  17.000  36.838  < 2e-16 ***"], theirs)
    assert _compare(["(Intercept)  261.405      6.825  17.000  36.838  < 2e-16 ***"], theirs)
    assert _compare(["(Intercept) 251.405       6.825  17.000  36.838  < 2e-16 ***"], theirs)
