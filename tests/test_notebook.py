"""Plots and summaries in a fresh Jupyter kernel, as a notebook user meets them.

A notebook is executed with nbclient in a new kernel (no ``%matplotlib
inline``, no pyplot import): a plot function as a cell's last line must show
an image and still return its figure; a fitted model must show the HTML
summary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

SRC = Path(__file__).resolve().parent.parent / "src"

CELLS = [
    # The kernel imports this tree's package (what pytest tests), not another install.
    f"import sys; sys.path.insert(0, {str(SRC)!r})",
    "import mixedmodels as mm\n"
    "from mixedmodels import plots\n"
    'm = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))',
    "plots.caterpillar(m)",
    "fig = plots.forest(m)\ntype(fig).__mro__[1].__name__",
    "m",
]


@pytest.fixture(scope="module")
def executed():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in CELLS]
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3")
    client.execute()
    return notebook


def _outputs(notebook, k: int) -> list[dict]:
    return notebook.cells[k].outputs


def test_a_plot_displays_as_an_image_in_a_fresh_kernel(executed):
    (result,) = [o for o in _outputs(executed, 2) if o["output_type"] == "execute_result"]
    assert "image/png" in result["data"]
    assert len(result["data"]["image/png"]) > 1000  # base64 of a real picture


def test_a_plot_still_returns_its_figure(executed):
    (result,) = [o for o in _outputs(executed, 3) if o["output_type"] == "execute_result"]
    assert result["data"]["text/plain"] == "'Figure'"


def test_a_model_displays_its_html_summary(executed):
    (result,) = [o for o in _outputs(executed, 4) if o["output_type"] == "execute_result"]
    page = result["data"]["text/html"]
    assert page.startswith('<div class="mm-summary">')
    assert "Pr(&gt;|t|)" in page and "251.405" in page
