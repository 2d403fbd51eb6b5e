"""The book: its configuration, the two-stage build at the smoke profile, and a real browser.

Fast tests check _config.yml, _toc.yml, the references and the build's helpers. The slow ones build
the whole book once per session (`build_book(profile="smoke")`, chapters executed once) and check,
for every chapter of _toc.yml: papermill executed it and it wrote its results; its page has a figure,
no error output and a Colab link to its own notebook. Then the report's claims table, and headless
Chromium opening the pages over file:// with every image loaded.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from memkd.book.build import (
    BookBuildError,
    build_book,
    execute_notebook,
    hide_injected_parameters,
    notebook_job,
    stage_tree,
    toc_chapters,
    toc_docnames,
)
from memkd.book.report import split_claims
from memkd.book.report_tables import report_table
from memkd.book.report import load_claims

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = toc_chapters(ROOT)  # e.g. ["nbs/01_toy_2d", ...]
COLAB = "colab.research.google.com/github/memkd/memkd/blob/main/{}.ipynb"
REFERENCES = [
    "behrens2025",
    "hinton2015",
    "zhang2017",
    "maennel2020",
    "nanda2023",
    "krizhevsky2009",
    "nagarajan2024",
    "passalis2019",
    "huh2024",
    "qin2025",
    "kingma2014",
    "li2024",
]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ERROR_OUTPUT = re.compile(
    r'class="[^"]*\boutput (stderr|traceback)\b|output\.error|Traceback \(most recent call last\)'
)


def read_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


# ---------------------------------------------------------------------------- configuration (fast)


def test_config_fails_loudly_and_links_to_colab():
    config = read_yaml("_config.yml")
    execute = config["execute"]
    assert config["only_build_toc_files"] is True
    assert execute["execute_notebooks"] == "force"  # a cache would not see changes in memkd/
    assert execute["raise_on_error"] is True and not execute.get("allow_errors", False)
    assert execute["timeout"] >= 60  # jupyter-book's default of 30 s is too short
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"] == {"url": "https://github.com/memkd/memkd", "branch": "main", "path_to_book": ""}
    assert config["sphinx"]["recursive_update"] is True
    for pattern in (".venv", "_build", "results"):
        assert pattern in config["exclude_patterns"]


def test_static_files_live_in_a_dedicated_folder():
    """Jupyter Book adds every .js/.css of a root _static/ to every page; ours are named explicitly."""
    assert not list((ROOT / "_static").glob("**/*.js")) + list((ROOT / "_static").glob("**/*.css"))
    sphinx = read_yaml("_config.yml")["sphinx"]["config"]
    assert "_static" not in sphinx["html_static_path"]
    for static in sphinx["html_static_path"]:
        for script in sphinx["nb_ipywidgets_js"]:
            assert "://" not in script, f"widget script {script} would load from a CDN"
            assert (ROOT / static / script).is_file(), f"{script} is not in {static}"


def test_one_search_box_and_tables_that_fit_their_column():
    sphinx = read_yaml("_config.yml")["sphinx"]["config"]
    assert sphinx["html_theme_options"]["navbar_persistent"] == []  # no second field in the top bar
    for css in sphinx["html_css_files"]:
        text = (ROOT / sphinx["html_static_path"][0] / css).read_text()
        assert "div.cell_output table" in text and "overflow-x: auto" in text


def test_toc_lists_the_chapters_then_the_book_pages():
    names = toc_docnames(ROOT)
    assert names[0] == "book/intro"
    assert CHAPTERS and all(re.fullmatch(r"nbs/\d\d_[a-z0-9_]+", c) for c in CHAPTERS)
    # Parts may come in any order (the published version's chapters 11+ sit before "Beyond the paper"),
    # but the chapters of each part are numbered in reading order, and no number is used twice.
    for part in yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]:
        files = [c["file"] for c in part["chapters"] if c["file"].startswith("nbs/")]
        assert files == sorted(files), f"the chapters of part {part.get('caption')!r} are numbered in reading order"
    assert len({Path(c).name[:2] for c in CHAPTERS}) == len(CHAPTERS), "every chapter has its own number"
    for page in ("book/report", "book/running_at_scale", "book/bibliography"):
        assert page in names


def test_every_toc_entry_exists():
    """jupyter-book -W fails on a toc entry without its file: name the missing ones early."""
    missing = [n for n in toc_docnames(ROOT) if not any((ROOT / f"{n}{ext}").is_file() for ext in (".ipynb", ".md"))]
    assert not missing, f"_toc.yml lists documents that do not exist yet: {missing}"


def test_references_hold_every_cited_key():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,\s]+),", bib))
    assert set(REFERENCES) <= keys
    cited = set()
    for path in [*ROOT.glob("nbs/*.ipynb"), *ROOT.glob("book/*.md"), *ROOT.glob("book/*.ipynb")]:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text()):
            cited.update(k.strip() for k in group.split(","))
    assert cited <= keys, f"cited but not in book/references.bib: {sorted(cited - keys)}"


def test_stage_turns_execution_off_and_keeps_the_rest(tmp_path):
    stage = tmp_path / "stage"
    stage_tree(ROOT, stage)
    staged, original = yaml.safe_load((stage / "_config.yml").read_text()), read_yaml("_config.yml")
    assert staged["execute"]["execute_notebooks"] == "off"
    assert {k: v for k, v in staged.items() if k != "execute"} == {k: v for k, v in original.items() if k != "execute"}
    assert (stage / "_toc.yml").read_text() == (ROOT / "_toc.yml").read_text()
    assert (stage / "book" / "intro.md").is_file() and (stage / "book" / "references.bib").is_file()
    assert not list((stage / "nbs").glob("*.ipynb")), "chapters are staged by executing them"


def test_injected_parameters_are_removed_from_the_page(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("profile = ''"), nbformat.v4.new_code_cell("profile = 'smoke'")]
    )
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells[1].metadata["tags"] = ["injected-parameters"]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    hide_injected_parameters(path)
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].metadata["tags"] == ["parameters"]
    assert cells[1].metadata["tags"] == ["injected-parameters", "remove-cell"]


def test_report_table_formats_claims():
    claims = pd.DataFrame(
        [
            {
                "chapter": "02_logit_distillation",
                "claim": "a",
                "paper": "Soft labels <beat> chance",
                "measured": 0.4321,
                "sem": 0.0123,
                "n": 5,
                "students": 4,
                "p_value": 3.2e-9,
                "verdict": "holds",
                "detail": "",
            },
            {
                "chapter": "03_similarity_scores",
                "claim": "b",
                "paper": "Similarity helps",
                "measured": 0.1,
                "sem": 0.05,
                "n": 5,
                "p_value": 0.21,
                "holds": False,
                "detail": "",
            },  # old format
        ]
    )
    table = report_table(claims)
    assert list(table.columns) == [
        "Chapter",
        "Claim of the paper",
        "This build",
        "n",
        "Test",
        "p-value",
        "p (Holm)",
        "Verdict",
    ]
    assert table["This build"].tolist() == ["0.432 ± 0.012", "0.1 ± 0.05"]
    assert table["n"].tolist() == ["5 teachers × 4 students", "n = 5"]
    assert table["p-value"].tolist() == ["&lt; 1e-6", "0.210"] and table["p (Holm)"].tolist() == ["&lt; 1e-6", "0.210"]
    assert table["Verdict"].tolist() == ["holds", "does not hold"]
    assert "&lt;beat&gt;" in table["Claim of the paper"][0]  # chapters' text is escaped
    assert 'href="../nbs/02_logit_distillation.html"' in table["Chapter"][0]
    again = report_table(pd.concat([claims.iloc[:1], claims.iloc[:1].assign(sem=float("nan"))], ignore_index=True))
    assert again["Chapter"][1] == "", "a chapter's name shows on its first row only"
    assert again["This build"][1] == "0.432"


# ---------------------------------------------------------------------------- a failing chapter


@pytest.mark.slow
def test_failing_chapter_stops_the_build_naming_chapter_and_cell(tmp_path):
    (tmp_path / "nbs").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: nbs/01_broken\n")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("profile = ''\nresults_dir = ''"),
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_code_cell("1 / 0"),
        ]
    )
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "nbs" / "01_broken.ipynb")
    with pytest.raises(BookBuildError) as err:
        build_book(profile="smoke", output=str(tmp_path / "_build"), timeout=60, root=tmp_path)
    message = str(err.value)
    assert "nbs/01_broken" in message and "ZeroDivisionError" in message
    assert "cell 2 " in message and "1 / 0" in message  # counted in the source notebook
    assert not (tmp_path / "_build" / "html" / "index.html").exists()


# ---------------------------------------------------------------------------- the smoke build (slow)


@dataclass
class Build:
    out: Path
    index: Path | None
    error: str | None
    seconds: float

    @property
    def html(self) -> Path:
        if self.error:
            pytest.fail(f"the book did not build at the smoke profile:\n{self.error}")
        return self.index.parent


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> Build:
    """The whole book built once at the smoke profile (every chapter executed once)."""
    import time

    out = tmp_path_factory.mktemp("book")
    start = time.perf_counter()
    try:
        index = build_book(profile="smoke", output=str(out), root=ROOT)
        return Build(out, index, None, time.perf_counter() - start)
    except (BookBuildError, OSError) as err:
        return Build(out, None, str(err), time.perf_counter() - start)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_executes_at_smoke(book, chapter):
    """Papermill executed the chapter at the smoke profile and it wrote its results and claims.

    Reuses the session build; a chapter the build did not reach (an earlier one failed) is
    executed on its own here, so each chapter gets its own verdict."""
    assert (ROOT / f"{chapter}.ipynb").is_file(), f"{chapter}.ipynb does not exist yet"
    name = Path(chapter).name
    record = book.out / "runs" / chapter.replace("/", "__") / "run.json"
    if record.is_file():
        run = json.loads(record.read_text())
        assert run["status"] == "done", (
            f"{chapter} failed in cell {run.get('cell_index')}: {run.get('error')}\n{run.get('cell_source')}"
        )
        out = book.out
    else:
        out = book.out / "alone"
        try:
            execute_notebook(notebook_job(ROOT, chapter, "smoke", out))
        except BookBuildError as err:
            pytest.fail(str(err))
    results = out / "results" / "smoke" / name
    assert any((results / f).is_file() for f in ("table.csv", "table.parquet")), (
        f"{chapter} wrote no results table in {results}"
    )
    claims = results / "claims.csv"
    assert claims.is_file(), f"{chapter} wrote no claims.csv (call ch.finish())"
    assert list(pd.read_csv(claims).columns)[:3] == ["chapter", "claim", "paper"]
    executed = nbformat.read(out / "stage" / f"{chapter}.ipynb", as_version=4)
    errors = [i for i, c in enumerate(executed.cells) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{chapter} has error outputs in cells {errors}"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_has_figure_no_error_and_colab_link(book, chapter):
    page = book.html / f"{chapter}.html"
    assert page.is_file(), f"no page {page}"
    text = page.read_text()
    figures = [
        src
        for src in re.findall(r'<img[^>]*\bsrc="([^"]+)"', text)
        if "_images/" in src and src.lower().endswith(".png")
    ]
    assert figures, f"{chapter}: no figure from the notebook's outputs on its page"
    for src in figures:
        assert (page.parent / src).resolve().is_file(), f"{chapter}: {src} is missing"
    bad = ERROR_OUTPUT.search(text)
    assert not bad, f"{chapter}: error or stderr output on the page: ...{text[bad.start() : bad.start() + 200]}"
    assert COLAB.format(chapter) in text, f"{chapter}: no Colab link to {chapter}.ipynb"
    assert text.count('class="btn search-button-field') == 1, f"{chapter}: not exactly one search box"
    assert re.search(
        r'<span class="caption-number">Figure \d+(\.\d+)*\.? </span><span class="caption-text">\w', text
    ), f"{chapter}: no numbered figure caption"
    assert str(book.out) not in text, f"{chapter}: the page shows the build folder's absolute path"


@pytest.mark.slow
def test_built_pages_install_a_ref_that_exists(book):
    """Every executed chapter installs memkd at the ref the build was made from, and that ref
    exists in this repository (the tag or commit pip will fetch from GitHub)."""
    import subprocess

    from memkd.book.build import INSTALL_REF, build_ref

    ref = build_ref(ROOT)
    if ref is None:
        pytest.skip("not a git checkout: the pages keep the committed ref")
    assert (
        subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True
        ).returncode
        == 0
    )
    book.html  # noqa: B018 - fails with the build's error if it did not build
    for chapter in CHAPTERS:
        cells = nbformat.read(book.out / "stage" / f"{chapter}.ipynb", as_version=4).cells
        refs = {m.group(2) for c in cells for m in INSTALL_REF.finditer(c.source)}
        assert refs == {ref}, f"{chapter}: the built page installs {refs}, not {ref}"


@pytest.mark.slow
def test_report_gathers_the_chapters_claims(book):
    page = book.html / "book" / "report.html"
    text = page.read_text()
    assert 'class="dataframe memkd-claims"' in text, "the report has no claims table"
    assert "Verdict" in text and "New results beyond the paper" in text
    claims = load_claims(book.out / "results" / "smoke")
    assert len(claims), "no chapter wrote a claim"
    paper, _, beyond = split_claims(claims)  # stand-ins and chapters beyond the paper: not counted
    table = text.split('class="dataframe memkd-claims"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") - 1 == len(paper), "one row per claim of the paper"
    if len(beyond):  # chapter 09 is in the build: its own table, not in the count
        assert 'class="dataframe memkd-new-results"' in text
    from memkd.book.report import claim_blocks

    workshop = claim_blocks(claims)["workshop"]
    counted = workshop[workshop["counted"]]  # the headline counts after Holm, without the duplicates
    held = int((counted["verdict_adjusted"] == "holds").sum())
    assert f"{held} of {len(counted)} claims of the paper hold" in text
    assert not ERROR_OUTPUT.search(text)


@pytest.mark.slow
def test_intro_and_bibliography_pages(book):
    intro = (book.html / "book" / "intro.html").read_text()
    assert "How to rerun it" in intro and "_build/html" in intro
    for chapter in CHAPTERS:
        assert f"../{chapter}.html" in intro, f"the intro's contents omit {chapter}"
    bibliography = (book.html / "book" / "bibliography.html").read_text()
    assert "Behrens" in bibliography and "Hinton" in bibliography
    assert (book.html / "index.html").is_file()


# ---------------------------------------------------------------------------- a real browser (slow)


def _browser_or_skip():
    """playwright's sync API, or skip (fail when MEMKD_REQUIRE_BROWSER=1, as in CI)."""
    reason = None
    if not Path(CHROMIUM).is_file():
        reason = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("MEMKD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; MEMKD_REQUIRE_BROWSER=1 forbids skipping the browser test")
        pytest.skip(reason)
    return sync_playwright


@pytest.mark.slow
def test_browser_sees_every_image_loaded(book):
    sync_playwright = _browser_or_skip()
    html = book.html
    pages = ["book/intro", *CHAPTERS, "book/report"]
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile_dir:
        # A persistent context gets its own new user-data dir; playwright never downloads a browser here.
        context = p.chromium.launch_persistent_context(
            profile_dir, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            browser_page = context.new_page()
            for name in pages:
                path = html / f"{name}.html"
                assert path.is_file(), f"no page {path}"
                browser_page.goto(path.as_uri(), wait_until="load")
                browser_page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
                browser_page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=20_000)
                images = browser_page.evaluate(
                    "Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
                )
                broken = [src for src, width in images if width == 0]
                assert not broken, f"{name}: images that did not load: {broken}"
                if name in CHAPTERS:
                    assert any("_images/" in src for src, _ in images), f"{name}: no figure in the browser"
                if name == "nbs/02_logit_distillation":
                    # The maths is typeset by the book's own MathJax, offline (no raw TeX left).
                    browser_page.wait_for_selector("mjx-container", timeout=20_000)
                if "application/vnd.jupyter.widget-state+json" in path.read_text():
                    # Saved explorers render from the book's own widget scripts, offline.
                    browser_page.wait_for_selector(".jupyter-widgets", timeout=20_000)
        finally:
            context.close()


# What a reader sees at 1280 px (the site's settings: tests/test_site.py): maths that code cells display
# is typeset, code lines wrap instead of being cut, figures are numbered per chapter, and the report's
# claims tables keep their verdict column on screen.
RAW_TEX_IN_OUTPUTS = r"""() => {
  const raw = [];
  for (const out of document.querySelectorAll('div.cell_output')) {
    const walker = document.createTreeWalker(out, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (el.closest('mjx-container, pre, code, script, style')) continue;
      if (/\$[^$\s][^$]*\$|\\\(|\\mathcal|\\rho|\\ge\b/.test(n.textContent)) raw.push(n.textContent.slice(0, 80));
    }
  }
  return raw;
}"""


@pytest.mark.slow
def test_browser_sees_typeset_maths_wrapped_code_chapter_figure_numbers_and_the_verdict_column(book):
    sync_playwright = _browser_or_skip()
    html = book.html
    pages = [
        "book/intro",
        "nbs/02_logit_distillation",
        "nbs/11_linear_recovery",
        "nbs/13_one_hidden_layer",
        "book/report",
        "book/running_at_scale",
    ]
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile_dir:
        context = p.chromium.launch_persistent_context(
            profile_dir,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            for name in pages:
                path = html / f"{name}.html"
                if not path.is_file():
                    continue  # a page this book does not have
                page.goto(path.as_uri(), wait_until="load")
                page.wait_for_function("!window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=20_000)
                page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
                assert page.evaluate(RAW_TEX_IN_OUTPUTS) == [], f"{name}: TeX left raw in a cell's output"
                cut = page.evaluate(
                    "[...document.querySelectorAll('div.highlight pre, div.cell_output pre')]"
                    ".filter(p => p.scrollWidth > p.clientWidth + 1).length"
                )
                assert cut == 0, f"{name}: {cut} code blocks cut off instead of wrapped"
                numbers = page.evaluate(
                    "[...document.querySelectorAll('.caption-number')].map(e => e.textContent.trim())"
                )
                prefix = re.match(r"nbs/(\d+)_", name)
                if prefix:
                    assert all(n.startswith(f"Figure {int(prefix.group(1))}.") for n in numbers), (name, numbers)
                if name == "book/report":
                    tables = page.evaluate("""[...document.querySelectorAll('table.memkd-claims, table.memkd-published')]
                        .map(t => ({verdict: t.querySelector('th:last-child').getBoundingClientRect().right,
                                    claim: t.querySelector('th:nth-child(2)').getBoundingClientRect().width,
                                    scroll: t.scrollWidth, client: t.clientWidth}))""")
                    for table in tables:
                        assert table["verdict"] <= 1280 and table["scroll"] <= table["client"] + 1, (name, table)
                        assert table["claim"] >= 150, (name, table)  # the claim's text has room
        finally:
            context.close()
