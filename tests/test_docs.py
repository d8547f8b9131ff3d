"""Every Python code block of every docs page runs.

Blocks of a page run in order in one namespace (later blocks use what earlier
ones defined), in a scratch directory.  A block preceded by a
``<!-- skip -->`` line (blank lines in between allowed) is not run: that marks
code that needs something a test cannot have (a cluster, a long fit).
The site itself is built with ``mkdocs build --strict`` (the ``docs`` extra,
part of ``test``): no warning, an API page naming every public object, no
Sphinx role left unrendered.  The Dask page's cluster example is run as the
script a user would save.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP_MARK = "<!-- skip -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)$")


@dataclass
class Block:
    """A fenced code block: its language, first line number and code."""

    language: str
    line: int
    code: str
    skipped: bool


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their skip marks."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        language = opening["info"].strip().split(" ")[0].lower()
        previous = i - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        skipped = previous >= 0 and lines[previous].strip() == SKIP_MARK
        indent = len(opening["indent"])
        first_line = i + 2  # 1-based number of the first line of code
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^[ \t]*```[ \t]*$", lines[i]):
            body.append(lines[i][indent:])
            i += 1
        blocks.append(Block(language, first_line, "\n".join(body) + "\n", skipped))
        i += 1
    return blocks


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _runnable(page: Path) -> list[Block]:
    return [
        b
        for b in code_blocks(page.read_text(encoding="utf-8"))
        if b.language in ("python", "py") and not b.skipped
    ]


PAGES = [p for p in _pages() if _runnable(p)]


def test_docs_have_runnable_examples():
    names = {p.name for p in PAGES}
    assert {"getting-started.md", "source-documents.md", "plots.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_code_runs(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in _runnable(page):
        try:
            exec(compile(block.code, f"{page.name}:{block.line}", "exec"), namespace)
        except Exception:
            pytest.fail(
                f"{page.relative_to(DOCS)}, block at line {block.line}:\n"
                f"{block.code}\n{traceback.format_exc(limit=-3)}"
            )


def test_images_the_docs_show_exist():
    missing = []
    for page in _pages():
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).is_file():
                missing.append(f"{page.name}: {target}")
    assert not missing


def test_block_extraction_honours_the_skip_mark():
    text = (
        "Intro\n\n```python\na = 1\n```\n\n<!-- skip -->\n```python\nraise SystemExit\n```\n"
        "\n<!-- skip -->\n\n```bash\nls\n```\n\n- item\n\n    ```python\n    b = 2\n    ```\n"
    )
    blocks = code_blocks(text)
    assert [(b.language, b.code, b.skipped) for b in blocks] == [
        ("python", "a = 1\n", False),
        ("python", "raise SystemExit\n", True),
        ("bash", "ls\n", True),
        ("python", "b = 2\n", False),
    ]
    assert [b.line for b in blocks] == [4, 9, 15, 21]


# -- the site ---------------------------------------------------------------------------


def _env() -> dict:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_site_builds_strict_without_literal_roles(site):
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", page)
    assert not re.findall(r":(?:class|meth|func|attr|mod|data|exc):", text)


def test_api_reference_covers_every_public_name(site):
    import mixedmodels as mm

    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(mixedmodels[^"]*)"', page))
    short = {a.rsplit(".", 1)[-1] for a in anchors}
    public = [n for n in mm.__all__ if not n.startswith("_")]
    public.remove("DaskLinearMixedModel")  # an alias of dask_model, documented as such
    methods = [n for n in dir(mm.LinearMixedModel) if not n.startswith("_")]
    missing = [n for n in [*public, *methods, "dask_model", "fit_dask"] if n not in short]
    assert not missing
    # The command line's internals are not part of the API.
    assert not [
        a for a in anchors if a.startswith("mixedmodels.frontends.cli.") and not a.endswith(".main")
    ]


_DEFAULT = re.compile(r"^\s*(\w+)\s*:[^\n]*\bdefault[: ]\s*([^\s,)]+)", re.MULTILINE)


def _public_callables():
    import mixedmodels as mm
    from mixedmodels import plots, progress
    from mixedmodels.results import summary, tidy

    found = {}
    for owner in (mm, plots, progress, summary, tidy):
        for name in getattr(owner, "__all__", dir(owner)):
            obj = getattr(owner, name, None)
            if not name.startswith("_") and inspect.isfunction(obj):
                found[f"{owner.__name__}.{name}"] = obj
    for cls in (mm.LinearMixedModel, mm.MixedLM):
        for name, obj in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_"):
                found[f"{cls.__name__}.{name}"] = obj
    return found


def test_documented_defaults_are_the_real_ones():
    wrong, checked = [], 0
    for where, func in _public_callables().items():
        doc = inspect.getdoc(func) or ""
        try:
            parameters = inspect.signature(func).parameters
        except (TypeError, ValueError):
            continue
        for name, documented in _DEFAULT.findall(doc):
            param = parameters.get(name)
            if param is None or param.default is inspect.Parameter.empty:
                continue
            actual = param.default
            checked += 1
            text = documented.strip("`'\".")
            if repr(actual).strip("'\"") != text and str(actual) != text:
                wrong.append(f"{where}({name}): documented {documented}, actual {actual!r}")
    assert checked > 20  # the docstrings were read
    assert not wrong, "\n".join(wrong)


def test_dask_cluster_example_runs_as_a_script(tmp_path):
    """The LocalCluster example, saved as a file and run, as a user would."""
    pytest.importorskip("distributed")
    blocks = _runnable(DOCS / "dask.md")
    data = blocks[0].code
    (cluster,) = [b.code for b in blocks if "LocalCluster(" in b.code]
    assert 'if __name__ == "__main__":' in cluster
    script = tmp_path / "fit_on_cluster.py"
    script.write_text(data + "\n" + cluster, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Linear mixed model fit by REML" in done.stdout
