"""The committed notebooks and the files a user meets first: no outputs, a Colab install of a ref that exists,
a Colab GPU runtime, the `progress` parameter, no launch button on the report; LICENSE,
CITATION.cff and the pre-commit hook agree with the package."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import memkd
from memkd.book.build import COMMITTED_REF, build_ref, pin_install_ref
from memkd.book.sphinx_ext import drop_launch_buttons, wants_no_launch_buttons

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "nbs").glob("*.ipynb"))
NOTEBOOKS = CHAPTERS + sorted((ROOT / "book").glob("*.ipynb"))
INSTALL = re.compile(r"%pip install[^\n]*git\+https://github\.com/memkd/memkd(@[^\"'\s]*)?")
# An experiment call: a memkd.experiments function (imported as ex or oq) given the chapter's profile.
EXPERIMENT_CALL = re.compile(r"\b(?:ex|oq)\.(\w+)\(ch\.profile\b")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_notebooks_to_check():
    assert len(CHAPTERS) >= 9 and (ROOT / "book" / "report.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=rel)
def test_notebook_is_committed_without_outputs(path):
    cells = code_cells(load(path))
    with_outputs = [i for i, c in enumerate(cells) if c.get("outputs")]
    counted = [i for i, c in enumerate(cells) if c.get("execution_count") is not None]
    assert not with_outputs and not counted, (
        f"{rel(path)}: code cells {with_outputs} have outputs, {counted} execution counts; "
        "strip them (`nbstripout --keep-id <notebook>`, or `pre-commit install` once per clone)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=rel)
def test_no_control_character_hides_in_a_cell(path):
    """A LaTeX command written with one backslash in the notebook's JSON ("$\\rho$" typed as "$\rho$") is a JSON
    escape: a carriage return, tab, backspace or form feed, and the page shows "$ho$". Only newlines belong."""
    bad = {"\r": "carriage return", "\t": "tab", "\b": "backspace", "\f": "form feed", "\v": "vertical tab"}
    found = [
        (i, name, "".join(c["source"])[max(0, "".join(c["source"]).find(ch) - 30) :][:60])
        for i, c in enumerate(load(path)["cells"])
        for ch, name in bad.items()
        if ch in "".join(c["source"])
    ]
    assert not found, f"{rel(path)}: cells with control characters (a LaTeX backslash lost in JSON?): {found}"


@pytest.mark.parametrize("path", CHAPTERS, ids=rel)
def test_install_cell_installs_a_ref_that_exists(path):
    """The committed cell installs `main` (a built page pins its own commit: build.pin_install_ref)."""
    cells = [c for c in code_cells(load(path)) if INSTALL.search(source(c))]
    assert len(cells) == 1, f"{rel(path)}: expected one Colab install cell, found {len(cells)}"
    ref = INSTALL.search(source(cells[0])).group(1)
    assert ref == f"@{COMMITTED_REF}", (
        f"{rel(path)}: the committed install cell must install @{COMMITTED_REF}, a ref that exists "
        f"before any release is tagged; it installs {ref or 'no ref'}"
    )
    assert "hide-input" in cells[0].get("metadata", {}).get("tags", []), f"{rel(path)}: install cell not hidden"
    pip = INSTALL.search(source(cells[0])).group(0)
    assert "torch" not in pip and "--force" not in pip and "--upgrade" not in pip, (
        f"{rel(path)}: the install cell must leave Colab's torch alone"
    )
    first = source([c for c in code_cells(load(CHAPTERS[0])) if INSTALL.search(source(c))][0])
    assert source(cells[0]) == first, f"{rel(path)}: the install cell differs from {rel(CHAPTERS[0])}'s"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_built_page_installs_the_ref_it_was_built_from(tmp_path):
    """build_ref names HEAD's commit, or its release tag; pin_install_ref writes it into the
    executed copy; the ref resolves in the repository (as pip's `@ref` will on GitHub)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copy2(CHAPTERS[0], repo / "nb.ipynb")
    _git(repo, "add", "nb.ipynb")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    head = _git(repo, "rev-parse", "HEAD")
    assert build_ref(repo) == head
    copy = tmp_path / "executed.ipynb"
    shutil.copy2(repo / "nb.ipynb", copy)
    assert pin_install_ref(copy, build_ref(repo)) == 1
    ref = INSTALL.search(source([c for c in code_cells(load(copy)) if INSTALL.search(source(c))][0])).group(1)
    assert ref == f"@{head}" and _git(repo, "rev-parse", "--verify", f"{ref[1:]}^{{commit}}") == head
    _git(repo, "tag", "v9.9.9")
    assert build_ref(repo) == "v9.9.9"  # a release build pins its tag
    assert build_ref(tmp_path / "not-a-repo") is None
    assert load(repo / "nb.ipynb") == load(CHAPTERS[0]), "the committed notebook is left alone"
    if (ROOT / ".git").exists():  # this checkout: its build ref exists in it
        ours = build_ref(ROOT)
        assert _git(ROOT, "rev-parse", "--verify", f"{ours}^{{commit}}")


@pytest.mark.parametrize("path", CHAPTERS, ids=rel)
def test_every_saved_figure_has_a_numbered_caption(path):
    """A cell that saves a figure carries its caption (mystnb.figure.caption; _config.yml numbers
    figures), without a name, which would repeat when a cell shows several images."""
    cells = [c for c in code_cells(load(path)) if "ch.save_figure(" in source(c)]
    assert cells, f"{rel(path)}: no figure"
    for cell in cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        assert len(figure.get("caption", "")) > 20 and "name" not in figure, (
            f"{rel(path)}: cell {cell.get('id')} saves a figure without a caption (or with a name)"
        )
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert config["numfig"] is True and "%s" in config["numfig_format"]["figure"]


@pytest.mark.parametrize("path", CHAPTERS, ids=rel)
def test_colab_opens_a_gpu_runtime(path):
    meta = load(path)["metadata"]
    assert meta.get("accelerator") == "GPU", f"{rel(path)}: metadata.accelerator must be 'GPU'"
    assert meta.get("colab", {}).get("gpuType") == "T4", f"{rel(path)}: metadata.colab.gpuType must be 'T4'"


@pytest.mark.parametrize("path", CHAPTERS, ids=rel)
def test_progress_parameter_reaches_the_experiments(path):
    cells = code_cells(load(path))
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{rel(path)}: expected one cell tagged 'parameters'"
    assert re.search(r"^progress: bool = False\b", source(params[0]), re.M), (
        f"{rel(path)}: the parameters cell has no `progress: bool = False`"
    )
    body = "\n".join(source(c) for c in cells if c is not params[0])
    calls = list(EXPERIMENT_CALL.finditer(body))
    assert calls, f"{rel(path)}: no experiment call found"
    for m in calls:
        line = body[m.start() : body.find("\n", m.start())]
        passes = "progress=progress" in line or re.search(r"\*\*run\b|\brun\.items\(\)", line)
        assert passes, f"{rel(path)}: `{line.strip()}` does not pass progress"
    if re.search(r"\*\*run\b", body):
        assert re.search(r"^run = dict\(.*\bprogress=progress\b", body, re.M), f"{rel(path)}: `run` lacks progress"


# ---------------------------------------------------------------------- the report's launch button


def test_report_opts_out_of_launch_buttons():
    assert load(ROOT / "book" / "report.ipynb")["metadata"].get("launch_buttons") is False
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "memkd.book.sphinx_ext" in config["sphinx"]["extra_extensions"]


def test_drop_launch_buttons_only_where_asked():
    def page(meta):
        app = SimpleNamespace(env=SimpleNamespace(metadata={"p": meta}))
        context = {"header_buttons": [{"label": "launch-buttons"}, {"label": "download-buttons"}]}
        drop_launch_buttons(app, "p", "page.html", context, None)
        return [b["label"] for b in context["header_buttons"]]

    assert page({"launch_buttons": "False"}) == ["download-buttons"]  # as myst-nb stores False
    assert page({"launch_buttons": False}) == ["download-buttons"]
    assert page({}) == ["launch-buttons", "download-buttons"]
    assert page({"launch_buttons": "true"}) == ["launch-buttons", "download-buttons"]
    assert wants_no_launch_buttons({"launch_buttons": "no"})


@pytest.mark.slow
def test_built_page_without_launch_menu(tmp_path):
    """A two-page Jupyter Book: the notebook that opts out has no Colab link, the other has one."""
    (tmp_path / "_config.yml").write_text(
        yaml.safe_dump(
            {
                "title": "t",
                "execute": {"execute_notebooks": "off"},
                "launch_buttons": {"colab_url": "https://colab.research.google.com"},
                "repository": {"url": "https://github.com/memkd/memkd", "branch": "main"},
                "sphinx": {"recursive_update": True, "extra_extensions": ["memkd.book.sphinx_ext"]},
            }
        )
    )
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: a\n- file: b\n")
    (tmp_path / "intro.md").write_text("# Intro\n")
    for name, extra in (("a", {}), ("b", {"launch_buttons": False})):
        nb = {
            "cells": [
                {"cell_type": "markdown", "id": "m", "metadata": {}, "source": [f"# {name}"]},
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": "c",
                    "metadata": {},
                    "outputs": [],
                    "source": ["x = 1"],
                },
            ],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}, **extra},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (tmp_path / f"{name}.ipynb").write_text(json.dumps(nb))
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.exists():
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    proc = subprocess.run(
        [str(jb), "build", str(tmp_path), "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert "colab.research.google.com" in (html / "a.html").read_text()
    assert "colab.research.google.com" not in (html / "b.html").read_text()


# ---------------------------------------------------------------------- licence, citation, hooks


def test_license_is_the_mit_text_pyproject_declares():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "The memkd authors" in text
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()


def test_citation_cites_this_version_and_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == memkd.__version__
    assert cff["license"] == "MIT"
    (paper,) = [r for r in cff["references"] if r["authors"][0].get("family-names") == "Behrens"]
    bib = (ROOT / "book" / "references.bib").read_text()
    title = re.search(r"@inproceedings\{behrens2025,.*?title\s*=\s*\{(.+?)\},", bib, re.S).group(1)
    assert paper["title"] == title and paper["year"] == 2025


def test_intro_says_how_to_cite():
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "## How to cite" in intro and "CITATION.cff" in intro and "{cite}`behrens2025`" in intro
    bib = (ROOT / "book" / "references.bib").read_text()
    entry = re.search(r"@inproceedings\{behrens2025,.*?\n\}", bib, re.S).group(0)
    assert entry in intro, "the intro's BibTeX for the paper differs from book/references.bib"
    assert "@software{memkd," in intro


def test_pre_commit_strips_notebooks_keeping_ids():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [h for r in config["repos"] for h in r["hooks"] if h["id"] == "nbstripout"]
    assert hooks and "--keep-id" in hooks[0].get("args", [])
    assert re.search(hooks[0]["files"], "nbs/01_toy_2d.ipynb") and re.search(hooks[0]["files"], "book/report.ipynb")


@pytest.mark.skipif(shutil.which("nbstripout") is None, reason="nbstripout is not installed")
def test_nbstripout_leaves_committed_notebooks_unchanged(tmp_path):
    for path in NOTEBOOKS:
        copy = tmp_path / path.name
        shutil.copy2(path, copy)
        subprocess.run(["nbstripout", "--keep-id", str(copy)], check=True)
        assert json.loads(copy.read_text()) == load(path), f"nbstripout would change {rel(path)}"


def test_vendored_widget_files_each_have_a_licence():
    folder = ROOT / "book" / "_static" / "widgets"
    readme = (folder / "README.md").read_text()
    scripts = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["nb_ipywidgets_js"]
    names = [Path(s).name for s in scripts]
    words = dict(enumerate(["no", "one", "two", "three", "four", "five", "six", "seven", "eight"]))
    assert f"the {words[len(names)]} scripts" in readme and all(f"`{n}`" in readme for n in names)
    fonts = sorted(p.name for p in folder.iterdir() if p.suffix in (".woff", ".woff2"))
    ofl = (folder / "LICENSE.font-awesome.txt").read_text()
    assert "SIL OPEN FONT LICENSE" in ofl and "Version 1.1" in ofl
    assert all(name in ofl for name in fonts), "a font is missing from LICENSE.font-awesome.txt's map"
    assert f"({words[len(fonts)]} files)" in readme
    bsd = (folder / "LICENSE.html-manager.txt").read_text()
    assert "Redistribution and use in source and binary forms" in bsd and "Neither the name" in bsd
    for licence in ("LICENSE.requirejs.txt", "LICENSE.html-manager.txt", "LICENSE.font-awesome.txt"):
        assert f"`{licence}`" in readme


def test_pages_workflow_builds_the_quick_book_and_deploys_it():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    on = flow.get("on", flow.get(True))  # PyYAML reads the key `on` as True
    assert on["push"]["tags"] == ["v*"] and "workflow_dispatch" in on  # releases: v + the version
    assert flow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build, deploy = flow["jobs"]["build"]["steps"], flow["jobs"]["deploy"]["steps"]
    runs = " ".join(s.get("run", "") for s in build)
    assert "make book" in runs and "PROFILE=quick" in runs
    upload = [s for s in build if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["html"]["baseurl"] == "https://memkd.github.io/memkd/"
    assert "https://memkd.github.io/memkd/" in (ROOT / "README.md").read_text()


def test_version_agrees_everywhere():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.+)"$', pyproject, re.M).group(1) == memkd.__version__
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == memkd.__version__
