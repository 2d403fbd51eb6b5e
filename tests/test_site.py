"""The site's own settings, checked without a build: figure numbers per chapter (memkd.book.sphinx_ext),
maths in cell outputs (MathJax reads $...$ there), long code lines that wrap, the report's claims tables
sized to show every column, and what the "running at scale" page says the Colab button installs.
The smoke build and its screenshots (tests/test_book.py, slow) show them rendered."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from memkd.book.sphinx_ext import chapter_number, renumber

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
CSS = (ROOT / "book" / "_static" / "memkd.css").read_text()


def test_figures_are_numbered_per_chapter_after_the_chapters_number():
    numbers = {
        "nbs/11_linear_recovery": {"figure": {"fig-b": (14,), "fig-a": (13,)}},
        "nbs/13_one_hidden_layer": {"figure": {"f": (20,)}, "table": {"t": (3,)}},
        "book/report": {"figure": {"r1": (22,), "r2": (21,)}},
    }
    assert renumber(numbers) == ["book/report", "nbs/11_linear_recovery", "nbs/13_one_hidden_layer"]
    assert numbers["nbs/11_linear_recovery"]["figure"] == {"fig-a": (11, 1), "fig-b": (11, 2)}  # page order kept
    assert numbers["nbs/13_one_hidden_layer"] == {"figure": {"f": (13, 1)}, "table": {"t": (13, 1)}}
    assert numbers["book/report"]["figure"] == {"r2": (1,), "r1": (2,)}
    assert renumber(numbers) == []  # numbered already
    assert chapter_number("nbs/02_logit_distillation") == (2,) and chapter_number("book/intro") == ()


def test_maths_in_cell_outputs_is_read_with_dollars():
    inline = CONFIG["mathjax3_config"]["tex"]["inlineMath"]
    assert ["$", "$"] in inline and ["\\(", "\\)"] in inline and CONFIG["mathjax3_config"]["tex"]["processEscapes"]
    classes = CONFIG["myst_mathjax_classes"].split("|")
    # myst-parser's own classes kept (it warns, an error under -W, when they are replaced), plus the outputs'
    assert classes[:4] == ["tex2jax_process", "mathjax_process", "math", "output_area"] and "cell_output" in classes
    assert "myst_update_mathjax" not in CONFIG


def test_long_code_lines_wrap():
    rule = re.search(r"div\.cell_input div\.highlight pre,[^{]*\{([^}]*)\}", CSS)
    assert rule and "white-space: pre-wrap" in rule.group(1) and "overflow-wrap: anywhere" in rule.group(1)
    assert "div.cell_output pre" in CSS


def test_the_reports_claims_tables_are_sized_to_show_every_column():
    report = json.loads((ROOT / "book" / "report.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in report["cells"] if c["cell_type"] == "code")
    classes = set(re.findall(r'show\(mt\.report_table\([^)]*\)(?:,[^,]*)?, "(memkd-[a-z-]+)"', code))
    assert classes == {"memkd-claims", "memkd-published", "memkd-stand-in", "memkd-new-results"}
    for css_class in classes:
        assert f"div.cell_output table.{css_class}" in CSS and f"table.{css_class} th:nth-child(8)" in CSS
    widths = [int(w) for w in re.findall(r"th:nth-child\(\d\) \{ width: (\d+)%; \}", CSS)]
    shares = {
        n: int(w)
        for n, w in re.findall(r"table\.memkd-claims th:nth-child\((\d)\)[^{]*\{ width: (\d+)%", CSS.replace("\n", " "))
    }
    assert widths and sum(shares.get(str(i), 7) for i in range(1, 9)) == 100, shares
    assert shares["2"] == max(shares.values())  # the claim's text gets the widest column


def test_running_at_scale_says_what_the_colab_button_installs():
    page = (ROOT / "book" / "running_at_scale.md").read_text()
    assert "installs the `memkd` release the book was built from" not in page
    assert "The rocket button" in page and "`main`" in page and "The download button" in page
    assert "pinned to the release tag (or commit) of this build" in page
    assert (
        CONFIG.get("numfig") is True
        and yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["branch"] == "main"
    )
