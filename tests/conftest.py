"""What many test files share: the lme4 reference loader and fitted models.

References are JSON files under ``tests/data/<folder>/`` (``lmm``, ``extra``,
``mixedlm``, ``inference``, ``inference_extra``, ``anova``, ``plots``,
``validation``), made by the R scripts named in them or next to them; each
names the data set it was fitted to.  :func:`reference_data` loads that data
set as lme4 saw it, :func:`fitted_reference` fits the reference's model once
per session.

Fitted models are immutable (``m.state`` is a frozen record and evaluation
happens on workspaces of its own), so tests may share them: the session
fixtures below are fitted once for the whole run.  Test files import the
plain functions (``from tests.conftest import ...``) where they need them at
collection time, to parametrize.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

# Where a reference given by its bare name is looked for, in this order.
MODEL_FOLDERS = ("lmm", "extra", "mixedlm")

# InstEval's `service` is a 0/1 factor in R but reads as an integer column from
# the CSV: the same fixed effect, under the column's own name.
NUMERIC_IN_CSV = {"service1": "service"}

SLEEPSTUDY_SLOPE = "Reaction ~ Days + (Days | Subject)"


def reference_paths(*folders: str, pattern: str = "*.json") -> list[Path]:
    """The reference files of the given folders under tests/data, folder by folder, sorted."""
    return [path for folder in folders for path in sorted((DATA / folder).glob(pattern))]


def reference_path(name: str | Path, folders: Iterable[str] = MODEL_FOLDERS) -> Path:
    """The file of a reference: a path, ``"folder/name"``, or a bare name looked up in folders."""
    if isinstance(name, Path):
        return name
    if "/" in name:
        return DATA / f"{name}.json"
    for folder in folders:
        path = DATA / folder / f"{name}.json"
        if path.exists():
            return path
    raise FileNotFoundError(f"no reference {name!r} in tests/data/{{{','.join(folders)}}}")


def read_reference(name: str | Path, folders: Iterable[str] = MODEL_FOLDERS) -> dict:
    """A reference as a dict (see :func:`reference_path` for how it is found)."""
    return json.loads(reference_path(name, folders).read_text())


def load_dataset(source: str) -> pd.DataFrame:
    """A data set: a CSV file under tests/data (read with pandas' default dtypes, so
    integer-coded factors are numbers), else the package's data set of that name (its
    factors as categoricals)."""
    if source.endswith(".csv"):
        return pd.read_csv(DATA / source)
    return mm.datasets.load(source)


def reference_data(ref: dict) -> pd.DataFrame:
    """The data a reference's model was fitted to.

    ``dataset_path`` (a CSV under tests/data) or ``dataset`` (the package's),
    then what the anova references' R script does to it: ``derived`` adds a
    made-up factor (R's ``letters[value %% k + 1]``) and ``exclude`` leaves out
    the rows where every listed column has its value.
    """
    data = load_dataset(ref.get("dataset_path", ref["dataset"]))
    derived = ref.get("derived")
    if derived:
        codes = data[derived["from"]].astype(str).astype(int) % derived["modulo"]
        data = data.assign(**{derived["name"]: [chr(ord("a") + c) for c in codes]})
    exclude = ref.get("exclude")
    if exclude:
        drop = np.ones(len(data), dtype=bool)
        for column, value in exclude.items():
            drop &= data[column].astype(str).to_numpy() == str(value)
        data = data.loc[~drop].reset_index(drop=True)
    return data


@functools.cache
def fitted_reference(path: Path) -> tuple[dict, mm.LinearMixedModel]:
    """(reference, our fit of its model), fitted once per session.

    The fit is ``lmer``'s without the convergence check, warnings silenced:
    what the tests compare are the estimates (rank deficiency and singular
    fits have tests of their own).  ``formula_python`` replaces the formula
    where R's spelling does not carry over.
    """
    ref = read_reference(path)
    formula = ref.get("formula_python", ref["formula"])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model = mm.lmer(formula, reference_data(ref), reml=ref["REML"], check_convergence=False)
    return ref, model


@pytest.fixture(scope="session")
def reference_fit():
    """:func:`fitted_reference` as a fixture: ``reference_fit(path) -> (ref, model)``."""
    return fitted_reference


@pytest.fixture(scope="session")
def sleepstudy_slope_fit() -> mm.LinearMixedModel:
    """``Reaction ~ Days + (Days | Subject)`` on sleepstudy by REML: the model most
    files fit (lme4's first example)."""
    return mm.lmer(SLEEPSTUDY_SLOPE, mm.datasets.load("sleepstudy"))
