"""Every Python code block of every docs page runs.

Blocks of a page run in order in one namespace (later blocks use what earlier
ones defined), in a scratch directory.  A block preceded by a
``<!-- skip -->`` line (blank lines in between allowed) is not run: that marks
code that needs something a test cannot have (a cluster, a long fit).
The docs site build (mkdocs) is not needed.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
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
