"""MkDocs hook: Sphinx cross-reference roles in docstrings shown as code.

The docstrings are numpydoc and name other objects with Sphinx roles
(:class:`~mixedmodels.LinearMixedModel`); mkdocstrings renders Markdown, where
a role would print literally (``:class:`` followed by code).  This hook turns
each role into plain inline code, the object's short name when the target
starts with ``~`` as in Sphinx.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|ref):<code>(~?)([^<]+)</code>")


def _code(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **_kwargs: object) -> str:
    return _ROLE.sub(_code, html)
