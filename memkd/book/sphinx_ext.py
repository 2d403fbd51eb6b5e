"""A Sphinx extension for the book: let one page drop sphinx-book-theme's launch buttons, and number
figures per chapter.

sphinx-book-theme adds its launch menu (Colab, Binder, ...) to every page built from a notebook,
with no per-page switch. A page that sets ``launch_buttons: false`` in its metadata (a notebook's
top-level metadata, or a Markdown page's front matter) gets no launch menu; the report uses it,
since its notebook only reads the results of a local build and would find none in Colab.

Figures: Sphinx numbers captioned figures across the whole book ("Figure 13" in chapter 11),
which clashes with the paper's own numbers. `number_figures_per_chapter` restarts the count on
every page and prefixes a chapter's number from its file name: the figures of
nbs/11_linear_recovery are Figure 11.1, 11.2, ...; a page without a number (the report) counts
1, 2, ...

Enabled in _config.yml with ``sphinx: extra_extensions: [memkd.book.sphinx_ext]``.
"""

from __future__ import annotations

import re
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
        buttons[:] = [b for b in buttons if not (isinstance(b, dict) and b.get("label") == LAUNCH_GROUP_LABEL)]


def chapter_number(docname: str) -> tuple[int, ...]:
    """(11,) for "nbs/11_linear_recovery"; () for a page whose name starts without a number."""
    found = re.match(r"(\d+)_", docname.rsplit("/", 1)[-1])
    return (int(found.group(1)),) if found else ()


def renumber(fignumbers: dict[str, dict[str, dict[str, tuple[int, ...]]]]) -> list[str]:
    """Number each page's figures (and tables, code blocks) from 1 in page order, after its chapter
    number: {docname: {figtype: {id: numbers}}} changed in place; returns the pages changed."""
    changed = []
    for docname, by_type in fignumbers.items():
        prefix = chapter_number(docname)
        for figtype, numbers in by_type.items():
            ordered = sorted(numbers, key=lambda figure_id: numbers[figure_id])
            new = {figure_id: (*prefix, i + 1) for i, figure_id in enumerate(ordered)}
            if new != numbers:
                numbers.clear()
                numbers.update(new)
                changed.append(docname)
    return sorted(set(changed))


def number_figures_per_chapter(app, env) -> list[str]:
    """env-get-updated handler, after Sphinx's own numbering (TocTreeCollector, priority 500)."""
    return renumber(getattr(env, "toc_fignumbers", {}))


def setup(app) -> dict[str, Any]:
    # sphinx-book-theme adds the launch menu at priority 501; a larger number runs later.
    app.connect("html-page-context", drop_launch_buttons, priority=900)
    app.connect("env-get-updated", number_figures_per_chapter, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
