"""R's number, p-value, label and coefficient-table formatting, against R's own output.

tests/data/summaries/rformat.json holds what R 4.2 printed for random inputs
(dev/make_rformat_reference.R).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixedmodels.results import rformat

CASES = json.loads(
    (Path(__file__).parent.parent / "data" / "summaries" / "rformat.json").read_text()
)


def _scalar(v):
    return v[0] if isinstance(v, list) else v


def test_format_numbers_as_r():
    wrong = []
    for case in CASES["format"]:
        got = rformat.format_numbers(
            case["x"], int(_scalar(case["digits"])), int(_scalar(case["nsmall"]))
        )
        if got != case["out"]:
            wrong.append((case["x"], case["digits"], case["nsmall"], got, case["out"]))
    assert not wrong, wrong[:5]


def test_format_pvalues_as_r():
    wrong = []
    for case in CASES["pvalue"]:
        got = rformat.format_pvalues(case["p"], 3)
        if got != case["out"]:
            wrong.append((case["p"], got, case["out"]))
    assert not wrong, wrong[:5]


def test_abbreviate_as_r():
    for case in CASES["abbreviate"]:
        got = rformat.abbreviate(case["names"], int(_scalar(case["minlength"])))
        assert got == case["out"], (case["minlength"], got)


def test_coefficient_tables_as_r():
    wrong = []
    for case in CASES["coefmat"]:
        table = np.array(case["table"], dtype=float)
        has_p = bool(_scalar(case["has_pvalue"]))
        cells = rformat.coefficient_cells(table, 3 if has_p else 2, has_p)
        header = list(case["columns"]) + ([""] if len(cells[0]) > table.shape[1] else [])
        names = [f"x{i + 1}" for i in range(table.shape[0])]
        got = rformat.matrix_lines(cells, header, names)
        if got != case["lines"]:
            wrong.append(("\n".join(got), "\n".join(case["lines"])))
    assert not wrong, f"{len(wrong)} differ; first:\n{wrong[0][0]}\nR:\n{wrong[0][1]}"


@pytest.mark.parametrize(
    ("pieces", "lines"),
    [
        (
            ["Number of obs: 180, groups: ", "Subject, 18"],
            ["Number of obs: 180, groups:  Subject, 18"],
        ),
        (["a" * 50, "b" * 40], ["a" * 50, "b" * 40]),
    ],
)
def test_filled_line(pieces, lines):
    assert rformat.filled_line(pieces) == lines
