"""The Jinja2 templates of every page riskstrat writes, and their one environment.

The evaluation and monitoring reports (``evaluation.html``, ``monitoring.html``, ``_table.html``), the
model card draft (``card.md``) and the practice list page (``list.html.j2`` with its inline
``list.css`` and ``list.js``) live in this folder. HTML templates (``.html``, ``.html.j2``) are
autoescaped, the Markdown card is not; an undefined name is an error. Block tags swallow the newline
after them (``trim_blocks``, ``lstrip_blocks``); a tag ending in ``+%}`` keeps it.

Both the reports (:mod:`riskstrat.report`) and the month's lists (:mod:`riskstrat.scoring.lists`)
render through :func:`render`, so this sits at the base of the layers.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["environment", "render"]

AUTOESCAPED = ("html", "html.j2")


@lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment over this folder (built once)."""
    import jinja2  # optional at start-up: only pages need it

    return jinja2.Environment(loader=jinja2.PackageLoader("riskstrat.templates", ""),
                              undefined=jinja2.StrictUndefined,
                              autoescape=jinja2.select_autoescape(enabled_extensions=AUTOESCAPED, default=False),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(template: str, /, **context) -> str:
    """The template ``template`` (a file name in this folder) filled with ``context``."""
    return environment().get_template(template).render(**context)
