"""A Sphinx extension for the book: let one page drop sphinx-book-theme's launch buttons.

sphinx-book-theme adds its launch menu (Colab, Binder, ...) to every page built from a notebook,
with no per-page switch. A page that sets ``launch_buttons: false`` in its metadata (a notebook's
top-level metadata, or a Markdown page's front matter) gets no launch menu; the report uses it,
since its notebook only reads the results of a local build and would find none in Colab.

Enabled in _config.yml with ``sphinx: extra_extensions: [memkd.book.sphinx_ext]``.
"""

from __future__ import annotations

from typing import Any

LAUNCH_GROUP_LABEL = "launch-buttons"  # the label sphinx-book-theme gives its launch menu
FALSE = {"false", "no", "off", "0"}


def wants_no_launch_buttons(metadata: dict[str, Any]) -> bool:
    """True when a page's metadata sets launch_buttons to false (bool or its string form)."""
    value = metadata.get("launch_buttons", True)
    return str(value).strip().lower() in FALSE


def drop_launch_buttons(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """html-page-context handler: remove the launch menu from pages that opt out."""
    metadata = app.env.metadata.get(pagename, {}) if getattr(app, "env", None) else {}
    if not wants_no_launch_buttons(metadata):
        return
    buttons = context.get("header_buttons")
    if isinstance(buttons, list):
        buttons[:] = [b for b in buttons
                      if not (isinstance(b, dict) and b.get("label") == LAUNCH_GROUP_LABEL)]


def setup(app) -> dict[str, Any]:
    # sphinx-book-theme adds the launch menu at priority 501; a larger number runs later.
    app.connect("html-page-context", drop_launch_buttons, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
