"""Rendering pages from the Jinja2 templates in ``riskstrat/report/templates`` (autoescaped).

Templates include their stylesheet and script inline, so every page is one self-contained file
with no network references.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

__all__ = ["TEMPLATES", "render"]

TEMPLATES = Path(__file__).resolve().parent / "report" / "templates"


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=False, keep_trailing_newline=True)


def render(template: str, /, **context) -> str:
    """The template ``template`` (a file name in :data:`TEMPLATES`) filled with ``context``, escaped."""
    return _environment().get_template(template).render(**context)
