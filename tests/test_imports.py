"""``import mixedmodels`` stays light: the optional front ends and heavy libraries
are imported when they are first used, not with the package (issue 18)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules a plain ``import mixedmodels`` must not import: the Dask and
# statsmodels front ends' libraries, plotting, the scipy parts only the
# inference, the GLMM, splines or BOBYQA need, and formulaic.
NOT_AT_IMPORT = (
    "dask",
    "matplotlib",
    "statsmodels",
    "scipy.stats",
    "scipy.special",
    "scipy.interpolate",
    "scipy.optimize",
    "nlopt",
    "numba",
    "polars",
    "tqdm",
    # The formula language and the design stage come with the first fit.
    "formulaic",
    "mixedmodels.formula",
    "mixedmodels.design",
)


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_leaves_optional_modules_unloaded():
    loaded = _modules_after("import mixedmodels")
    assert not {name for name in NOT_AT_IMPORT if name in loaded}


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("glmer", "mixedmodels.models.glmm"),
        ("families", "mixedmodels.families"),
        ("mixedlm", "mixedmodels.frontends.statsmodels"),
        ("DaskLinearMixedModel", "mixedmodels.frontends.dask.model"),
        ("BootstrapResult", "mixedmodels.inference.bootstrap"),
        ("parse_formula", "mixedmodels.formula"),
    ],
)
def test_lazy_names_resolve(name, module):
    import mixedmodels

    assert name in dir(mixedmodels)
    value = getattr(mixedmodels, name)
    assert module in sys.modules
    assert value is getattr(mixedmodels, name)


def test_unknown_name_is_an_attribute_error():
    import mixedmodels

    with pytest.raises(AttributeError, match="no_such_name"):
        mixedmodels.no_such_name  # noqa: B018


def test_a_fit_imports_what_it_needs():
    loaded = _modules_after(
        "import mixedmodels as mm\n"
        "mm.lmer('Reaction ~ Days + (Days | Subject)', mm.datasets.load('sleepstudy'))"
    )
    assert "mixedmodels.design" in loaded
    assert not {"dask", "matplotlib", "statsmodels"} & loaded
