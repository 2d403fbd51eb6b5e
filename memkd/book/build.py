"""Build the book in two stages: execute the notebooks, then render the executed copies.

Sphinx reads documents in sorted order (book/ before nbs/), so a plain `jupyter-book build` would run
the reproduction report before the chapters whose results it gathers. `build_book` therefore:

1. executes every chapter that `_toc.yml` lists under nbs/ with papermill, one fresh process per
   notebook (`memkd.sweep.execute_point` on an executor of `memkd.sweep.make_executor`: the
   machinery of `memkd sweep`, local processes or Dask), with `profile` and `results_dir=<output>/results/<profile>/<chapter>` injected; a failing
   chapter stops the build with the chapter, the cell and the error;
2. executes the other notebooks of the toc (book/report.ipynb), which read the chapters' claims;
3. pins the Colab install cell of every executed copy to the ref this build was made from
   (`build_ref`: the tag at HEAD, else HEAD's commit), so that the notebook a page offers installs
   the code that executed it; the committed notebooks install `main` (`COMMITTED_REF`);
4. renders a staged copy of the book (<output>/stage: _config.yml with execution turned off,
   _toc.yml, book/, the executed nbs/) with Jupyter Book's Sphinx, warnings as errors, into
   <output>/html.

Usage (a whole build, about 100 s at the smoke profile, so not a doctest; `memkd book` calls it):

    index = build_book(profile="smoke", output="/tmp/memkd-book")   # -> /tmp/memkd-book/html/index.html

The report page's helpers live in `memkd.book.report` (gathered) and `memkd.book.report_tables` (shown). Left out: incremental builds (every
build executes everything: the library changes outside the notebooks) and non-HTML builders.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from memkd.book.chapter import book_root, resolve_profile
from memkd.config import PROFILES, invalid
from memkd.sweep.run import CELL_TIMEOUT  # per-profile cell timeouts, shared with `memkd sweep`

CHAPTER_DIR = "nbs"
# The Colab install cell: `%pip install ... "memkd @ git+https://github.com/memkd/memkd@<ref>"`.
INSTALL_REF = re.compile(r"(git\+https://github\.com/memkd/memkd)@([^\"'\s]+)")
COMMITTED_REF = "main"  # what the committed notebooks install: a ref that always exists


class BookBuildError(RuntimeError):
    """A chapter failed to execute, or the site failed to render."""


# ---------------------------------------------------------------------------- the table of contents


def toc_docnames(root: Path) -> list[str]:
    """Every document of `<root>/_toc.yml` in reading order, e.g. ["book/intro", "nbs/01_toy_2d", ...]."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    names: list[str] = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk([{k: v for k, v in toc.items() if k in ("parts", "chapters", "sections")}])
    return [str(Path(n).with_suffix("")) if n.endswith((".md", ".ipynb")) else n for n in names]


def toc_chapters(root: Path) -> list[str]:
    """The docnames of the toc under nbs/, e.g. ["nbs/01_toy_2d", "nbs/02_logit_distillation"]."""
    return [n for n in toc_docnames(root) if n.split("/")[0] == CHAPTER_DIR]


def toc_pages(root: Path) -> list[str]:
    """The notebooks of the toc outside nbs/ (the report): executed after the chapters."""
    return [n for n in toc_docnames(root) if n.split("/")[0] != CHAPTER_DIR and (Path(root) / f"{n}.ipynb").is_file()]


# ---------------------------------------------------------------------------- executing one notebook


@dataclass
class Job:
    """One notebook to execute: where it is, where the executed copy goes, what it gets."""

    name: str  # docname, e.g. "nbs/02_logit_distillation"
    source: Path
    target: Path  # the executed copy (in the staged book)
    parameters: dict
    cwd: Path  # the notebook's own folder, as for jupyter-book
    timeout: int  # seconds per cell
    env: dict  # environment variables the execution sees
    run_dir: Path  # the run's folder: run.json and the executed notebook (memkd.sweep layout)


def execute_notebook(job: Job) -> float:
    """Execute one notebook in a fresh child process with `job.env`; copy it to `job.target`;
    return the wall seconds. Raises BookBuildError naming the notebook, the cell and the error."""
    from memkd.sweep import ChildDied, in_child

    try:
        return in_child(_execute_here, job, env=job.env)
    except ChildDied as err:  # the process died without a record (killed, crashed)
        raise BookBuildError(f"build_book: {job.name} did not finish: {err}") from err


def _execute_here(job: Job) -> float:
    """`execute_notebook` in this process, which must run no other kernel and already have
    `job.env` (an executor's fresh process): `memkd.sweep.execute_point`, the machinery of
    `memkd sweep` (papermill, a kernel that dies with this process)."""
    from memkd.sweep import execute_point

    start = time.perf_counter()
    record = execute_point(job.source, job.parameters, job.run_dir, timeout=job.timeout, cwd=str(job.cwd))
    seconds = time.perf_counter() - start
    if record["status"] != "done":
        source = (record.get("cell_source") or "").strip()
        first = source.splitlines()[0][:80] if source else ""
        raise BookBuildError(
            f"build_book: {job.name} failed in cell {record.get('cell_index')} (counting from 0 in "
            f"{job.source.name}: {first!r}) after "
            f"{seconds:.0f} s: {record.get('error')}\n"
            f"The executed notebook, with the traceback: {record.get('executed_notebook')}"
        )
    job.target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(job.run_dir / job.source.name, job.target)
    return seconds


def notebook_job(root: Path, name: str, profile: str, output: Path, timeout: int | None = None) -> Job:
    """The Job that executes toc document `name` of the book at `root` for a build into `output`.

    A chapter (nbs/...) gets `profile` and `results_dir=<output>/results/<profile>/<chapter>`; a
    page (the report) gets `profile` and `results_root=<output>/results/<profile>`. The executed
    copy goes to `<output>/stage/<name>.ipynb`, the run's record to `<output>/runs/`.
    """
    root, output = Path(root), Path(output)
    results = output / "results" / profile
    if name.split("/")[0] == CHAPTER_DIR:
        parameters = {"profile": profile, "results_dir": str(results / Path(name).name)}
    else:
        parameters = {"profile": profile, "results_root": str(results)}
    return Job(
        name,
        root / f"{name}.ipynb",
        output / "stage" / f"{name}.ipynb",
        parameters,
        cwd=(root / name).parent,
        timeout=int(timeout or CELL_TIMEOUT[profile]),
        env={"MEMKD_PROFILE": profile, "MEMKD_RESULTS": str(results)},
        run_dir=output / "runs" / name.replace("/", "__"),
    )


def run_jobs(
    jobs: list[Job],
    workers: int = 1,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    dask_local: int | None = None,
    retries: int = 1,
) -> dict[str, float]:
    """Execute the jobs, each in a fresh process, on the executor of `memkd.sweep.make_executor`
    (`workers` local processes, in toc order when 1; or Dask: its workers must see the same file
    system); return {name: seconds} in the jobs' order. The first failure stops the build."""
    from memkd.sweep import make_executor

    times: dict[str, float] = {}
    with make_executor(workers, scheduler, scheduler_file, dask_local, retries) as executor:
        futures = {executor.submit(_execute_here, job, env=job.env): job for job in jobs}
        for i, future in enumerate(executor.as_completed(futures), 1):
            name = futures[future].name
            try:
                times[name] = future.result()
            except Exception as err:
                print(f"  [{i}/{len(jobs)}] {name}: failed", flush=True)
                for other in futures:
                    other.cancel()  # start nothing new; the executor waits for those running
                if isinstance(err, BookBuildError):
                    raise
                raise BookBuildError(f"build_book: {name} did not finish: {type(err).__name__}: {err}") from err
            print(f"  [{i}/{len(jobs)}] {name}: {times[name]:.1f} s", flush=True)
    return {job.name: times[job.name] for job in jobs}


# ---------------------------------------------------------------------------- staging and rendering


def stage_tree(root: Path, stage: Path) -> None:
    """Copy what the site needs into `stage`; the staged _config.yml does not execute notebooks."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"  # executed by stage 1
    (stage / "_config.yml").write_text(
        "# Staged by memkd.book: a copy of the root _config.yml with execution turned off.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    shutil.copy2(root / "_toc.yml", stage / "_toc.yml")
    skip = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "results", "_build", "*.ipynb")
    for folder in ("book", CHAPTER_DIR):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, stage / folder, ignore=skip)


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell `remove-cell`, so the page shows only the
    notebook's own `parameters` cell."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, path)


def _git(root: Path, *args: str) -> str | None:
    """`git -C root <args>`'s output, stripped; None when git fails or is missing."""
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def build_ref(root: Path) -> str | None:
    """The git ref the book at `root` is built from: the release tag at HEAD (`v*`, the newest
    when several), else HEAD's full commit hash; None outside a git repository.

    A tree with uncommitted changes still gets HEAD's commit (with a warning from `build_book`):
    the nearest code that exists in the repository.
    """
    tags = _git(root, "tag", "--points-at", "HEAD", "--list", "v*", "--sort=-version:refname")
    if tags:
        return tags.splitlines()[0]
    return _git(root, "rev-parse", "--verify", "HEAD^{commit}")


def pin_install_ref(path: Path, ref: str) -> int:
    """Make the Colab install cell of notebook `path` install memkd at `ref`; return the cells changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and INSTALL_REF.search(cell.source):
            cell.source = INSTALL_REF.sub(lambda m: f"{m.group(1)}@{ref}", cell.source)
            changed += 1
    if changed:
        nbformat.write(nb, path)
    return changed


def render(stage: Path, html: Path, log: Path) -> None:
    """Render the staged book with Jupyter Book's Sphinx (-W --keep-going) in a subprocess."""
    code = "import sys; from memkd.book.build import _render_main; sys.exit(_render_main(sys.argv[1], sys.argv[2]))"
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(stage), str(html)], stdout=out, stderr=subprocess.STDOUT, cwd=stage
        )
    if proc.returncode != 0:
        text = log.read_text(errors="replace").splitlines()
        problems = [ln for ln in text if "WARNING" in ln or "ERROR" in ln] or text[-25:]
        raise BookBuildError(
            "build_book: the site did not render (warnings are errors).\n"
            + "\n".join(problems[:40])
            + f"\nFull log: {log}"
        )


def _render_main(stage: str, html: str) -> int:
    """What `jupyter-book build <stage> -W --keep-going` does, with the html folder chosen."""
    from jupyter_book.sphinx import build_sphinx

    stage_path = Path(stage).resolve()
    result = build_sphinx(
        stage_path,
        Path(html).resolve(),
        noconfig=True,
        path_config=stage_path / "_config.yml",
        confoverrides={"external_toc_path": (stage_path / "_toc.yml").as_posix(), "latex_individualpages": False},
        doctreedir=Path(html).resolve().parent / ".doctrees",
        warningiserror=True,
        keep_going=True,
        freshenv=True,
        builder="html",
    )
    if isinstance(result, Exception):
        print(f"build_book: Sphinx raised {result!r}", file=sys.stderr)
        return 2
    return int(result)


# ---------------------------------------------------------------------------- the whole build


def build_book(
    profile: str = "quick",
    workers: int = 1,
    scheduler: str | None = None,
    output: str = "_build",
    timeout: int | None = None,
    *,
    scheduler_file: str | None = None,
    dask_local: int | None = None,
    retries: int = 1,
    root: str | Path | None = None,
) -> Path:
    """Execute every chapter at `profile`, then the report, then render the site; return index.html.

    profile : "smoke" | "quick" | "paper", passed to every notebook (and as $MEMKD_PROFILE)
    workers : chapters executed at once (each in its own process); 1 runs them in toc order
    scheduler, scheduler_file : a Dask scheduler (its address, or the file `dask scheduler
        --scheduler-file` writes) to execute the chapters on instead (shared file system)
    dask_local : start a Dask LocalCluster of this many workers to execute the chapters on
    retries : times Dask reruns a chapter whose worker died
    output : build folder, relative to the book root (or absolute): results/<profile>/<chapter>/ (tables, figures,
        claims), runs/ (each execution's record), stage/ (the executed copy of the book),
        logs/sphinx.log, html/ (the site)
    timeout : seconds per cell; default CELL_TIMEOUT[profile]
    root : the book root (holding _config.yml and _toc.yml); default: found from the working
        directory, else the folder above this package
    """
    if profile not in PROFILES:
        raise invalid("profile", "build_book", f"one of {PROFILES}", profile)
    profile = resolve_profile(profile)
    if not isinstance(workers, int) or workers < 1:
        raise invalid("workers", "build_book", "an int >= 1", workers)
    if dask_local is not None and (not isinstance(dask_local, int) or isinstance(dask_local, bool) or dask_local < 1):
        raise invalid("dask_local", "build_book", "an int >= 1", dask_local)
    book = Path(root) if root else (book_root() or Path(__file__).resolve().parents[1])
    book = book.resolve()
    if not (book / "_toc.yml").is_file():
        raise BookBuildError(f"build_book: no _toc.yml in the book root {book}.")
    out = (book / output).resolve()
    results = out / "results" / profile
    stage, logs, html = out / "stage", out / "logs", out / "html"
    cell_timeout = int(timeout or CELL_TIMEOUT[profile])

    chapters = toc_chapters(book)
    missing = [c for c in chapters if not (book / f"{c}.ipynb").is_file()]
    if missing:
        raise BookBuildError(
            f"build_book: _toc.yml lists {missing} but there is no such notebook "
            f"({', '.join(m + '.ipynb' for m in missing)}) in {book}."
        )
    for folder in (results, out / "runs", html):
        if folder.exists():
            shutil.rmtree(folder)  # no stale claims, runs or pages from an earlier build
    results.mkdir(parents=True)
    stage_tree(book, stage)
    started = time.perf_counter()

    # Every execution gets MEMKD_PROFILE and MEMKD_RESULTS through its Job's env.
    print(
        f"build_book: executing {len(chapters)} chapters at profile {profile!r} "
        f"(cell timeout {cell_timeout} s) into {results}",
        flush=True,
    )
    times = run_jobs(
        [notebook_job(book, c, profile, out, cell_timeout) for c in chapters],
        workers,
        scheduler,
        scheduler_file,
        dask_local,
        retries,
    )
    (results / "build_times.json").write_text(json.dumps(times, indent=2))
    pages = toc_pages(book)
    print(f"build_book: executing {len(pages)} page(s) that gather the results", flush=True)
    times.update(run_jobs([notebook_job(book, p, profile, out, cell_timeout) for p in pages]))
    ref = build_ref(book)
    if ref is None:
        print(f"build_book: {book} is not a git checkout; the pages' install cells keep @{COMMITTED_REF}", flush=True)
    elif _git(book, "status", "--porcelain", "--untracked-files=no"):
        print(
            f"build_book: the tree has uncommitted changes; the pages' install cells pin HEAD ({ref}), "
            "which lacks them",
            flush=True,
        )
    for name in [*chapters, *pages]:
        hide_injected_parameters(stage / f"{name}.ipynb")
        if ref is not None:
            pin_install_ref(stage / f"{name}.ipynb", ref)
    executed = time.perf_counter() - started

    print(f"build_book: rendering {stage} -> {html}", flush=True)
    logs.mkdir(parents=True, exist_ok=True)
    render(stage, html, logs / "sphinx.log")
    index = html / "index.html"
    total = time.perf_counter() - started
    print(
        "build_book: seconds per notebook (wall, kernel start included): "
        + ", ".join(f"{Path(n).name} {t:.0f}" for n, t in times.items()),
        flush=True,
    )
    print(f"build_book: executed in {executed:.0f} s, total {total:.0f} s. The book is at\n{index}", flush=True)
    return index
