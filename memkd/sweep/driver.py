"""The sweep folder and `run_sweep`: plan the points against what is done, run the rest, gather.

Owns: the sweep directory's lock (`filelock`: released by the OS when a sweep is killed), the
status of each run on disk, the folder's one notebook (`check_owner`: a folder holds the runs of
one notebook), the plan (`plan_sweep`: run id and status per point, also what
`memkd sweep --dry-run` prints), driving an executor over the pending runs, `manifest.json`, and
`SweepResult`.

A sweep folder grows: a later invocation with other points (`-p seed=2` after `-p seed=0,1`)
adds its runs, and the results and the manifest gather every finished run in the folder, not
only the points of the last grid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from memkd.config import invalid
from memkd.sweep.aggregate import aggregate, collect_tables, write_columns, write_results
from memkd.sweep.executors import make_executor
from memkd.sweep.grid import expand_grid, notebook_parameters, read_notebook, resolve_point, run_id
from memkd.sweep.run import (
    failure_record,
    interrupted_record,
    is_interruption,
    run_point,
    timeout_for,
    write_json,
)
from memkd.sweep.validate import check_points


@dataclass
class SweepResult:
    """What `run_sweep` did: counts, per-run records, and the aggregated table."""

    sweep_dir: Path
    done: int  # runs executed successfully by this invocation
    skipped: int  # runs already finished before it
    failed: int  # runs that failed now or earlier (not retried)
    records: list[dict] = field(default_factory=list)
    table: Any = None  # pandas DataFrame of all finished runs (results.parquet)
    elapsed_s: float = 0.0
    not_run: int = 0  # runs interrupted (their worker got Ctrl-C or SIGTERM): pending, not failed
    tables: dict = field(default_factory=dict)  # the runs' other tables by name (results.<name>.parquet)
    stale: int = 0  # finished runs of an earlier version of the notebook, left out of the results

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.not_run == 0

    def summary(self) -> str:
        rate = f", {self.done / self.elapsed_s:.2f} runs/s" if self.done and self.elapsed_s else ""
        interrupted = f", {self.not_run} interrupted" if self.not_run else ""
        if self.stale:
            interrupted += (
                f"; {self.stale} finished run(s) of an earlier version of the notebook left out of "
                "the results (still in runs/)"
            )
        line = (
            f"sweep: {self.done} done, {self.skipped} skipped, {self.failed} failed{interrupted} "
            f"in {self.elapsed_s:.1f} s{rate} -> {self.sweep_dir}"
        )
        if self.failed:
            line += " (see manifest.json; --retry-failed reruns the failed runs)"
        return line

    def __repr__(self) -> str:
        return self.summary()


@contextlib.contextmanager
def lock_sweep_dir(sweep_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of a sweep directory; RuntimeError when another sweep holds it.

    `filelock.FileLock`: an OS lock (flock on Unix, msvcrt on Windows) that a killed sweep
    releases; where neither exists, a lock file (a killed sweep then leaves `.lock` behind).
    """
    import filelock

    lock = filelock.FileLock(str(Path(sweep_dir) / ".lock"), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise RuntimeError(f"another sweep is running in {sweep_dir}: wait for it, or choose another folder.") from None
    try:
        yield
    finally:
        lock.release()


def status_on_disk(sweep_dir: Path, rid: str) -> dict | None:
    """The record of run `rid` in `sweep_dir` (runs/ first, then failed/), or None."""
    for sub in ("runs", "failed"):
        path = Path(sweep_dir) / sub / rid / "run.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def records_on_disk(sweep_dir: str | os.PathLike) -> dict[str, dict]:
    """{run id: record} of every run in the folder: finished (runs/) and last failed (failed/),
    a finished record winning over an older failure of the same run."""
    found: dict[str, dict] = {}
    for sub in ("failed", "runs"):
        for path in sorted((Path(sweep_dir) / sub).glob("*/run.json")):
            try:
                found[path.parent.name] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):  # a record being replaced: the next invocation reads it
                continue
    return found


def folder_notebook(sweep_dir: str | os.PathLike) -> str | None:
    """The file name of the notebook whose runs the folder holds (from manifest.json, else a run's
    record); None for a new or empty folder."""
    manifest = Path(sweep_dir) / "manifest.json"
    if manifest.is_file():
        try:
            return Path(json.loads(manifest.read_text())["notebook"]).name
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    for record in records_on_disk(sweep_dir).values():
        if record.get("notebook"):
            return Path(record["notebook"]).name
    return None


def check_owner(sweep_dir: str | os.PathLike, notebook: str | os.PathLike) -> None:
    """Refuse a folder that holds another notebook's runs (its results would be overwritten by,
    and mixed with, this notebook's). Notebooks are compared by file name, so a moved checkout
    still resumes its sweeps."""
    owner, name = folder_notebook(sweep_dir), Path(notebook).name
    if owner is not None and owner != name:
        raise invalid(
            "out",
            "memkd sweep",
            f"a folder that holds the runs of one notebook: {Path(sweep_dir)} holds the "
            f"runs of {owner}, so {name} cannot be swept into it; choose another folder "
            f"for {name}",
            str(sweep_dir),
        )


def plan_sweep(
    notebook: str | os.PathLike, grid: Mapping[str, Any], sweep_dir: str | os.PathLike, this_machine: bool = True
) -> list[tuple[str, dict, dict | None]]:
    """(run id, point, record on disk or None) for every point of `grid`, checked against the
    notebook's parameters (`expand_grid`) and its experiments' knobs (`check_points`; with
    `this_machine`, also the device and its memory: the runs execute here); a folder holding
    another notebook's runs is refused (`check_owner`)."""
    nb = read_notebook(notebook)
    params = notebook_parameters(nb)
    label = Path(notebook).name
    points = [resolve_point(params, p) for p in expand_grid(params, grid, owner=label)]
    check_points(nb, params, points, owner=label, this_machine=this_machine)
    check_owner(sweep_dir, notebook)
    sweep_dir = Path(sweep_dir).resolve()
    return [(rid, point, status_on_disk(sweep_dir, rid)) for point in points for rid in [run_id(nb, point, params)]]


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise invalid(name, "run_sweep", f"an int >= {low}", value)


def run_sweep(
    notebook: str | os.PathLike,
    grid: Mapping[str, Any],
    sweep_dir: str | os.PathLike,
    workers: int = 2,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike | None = None,
    dask_local: int | None = None,
    timeout: float | None = None,
    retries: int = 1,
    retry_failed: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Execute `notebook` at every point of `grid` not yet done in `sweep_dir`; aggregate the results.

    workers     local processes running at once (the default executor)
    scheduler   address of a Dask scheduler ("tcp://host:8786"), or
    scheduler_file  the JSON file of `dask scheduler --scheduler-file` (usual on HPC clusters);
                the sweep folder must be on a file system the Dask workers share
    dask_local  start a Dask LocalCluster of this many single-threaded workers instead
    timeout     seconds per cell (papermill's execution timeout); None: by each point's profile,
                as for the book (`memkd.sweep.run.CELL_TIMEOUT`)
    retries     times Dask reruns a run whose process died (a failing notebook is not rerun)
    retry_failed  rerun the points whose last attempt failed (otherwise they stay failed)
    Never raises for a failing run: `SweepResult.failed` counts them. Raises ValueError for a bad
    grid or a point the experiment refuses, before any kernel starts.
    """
    from tqdm.auto import tqdm

    _check_int("workers", workers, 1)
    if dask_local is not None:
        _check_int("dask_local", dask_local, 1)
    _check_int("retries", retries, 0)
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise invalid("timeout", "run_sweep", "a number of seconds > 0 or None", timeout)
    started = time.perf_counter()
    notebook = Path(notebook).resolve()
    plan = plan_sweep(notebook, grid, sweep_dir, this_machine=scheduler is None and scheduler_file is None)
    sweep_dir = Path(sweep_dir).resolve()
    (sweep_dir / "runs").mkdir(parents=True, exist_ok=True)
    with lock_sweep_dir(sweep_dir):
        for in_flight in (sweep_dir / "runs").glob(".tmp-*"):
            shutil.rmtree(in_flight, ignore_errors=True)  # runs in flight when a sweep was killed
        earlier = records_on_disk(sweep_dir)  # every run in the folder before this invocation
        stale = stale_runs(notebook, earlier)
        records: dict[str, dict] = {}
        todo, skipped, old_failures = [], 0, 0
        for rid, point, previous in plan:
            if previous and previous["status"] == "done":
                records[rid], skipped = previous, skipped + 1
            elif previous and not retry_failed:
                records[rid], old_failures = previous, old_failures + 1
            else:
                records[rid] = {"run": rid, "parameters": point, "status": "pending"}
                todo.append(
                    {
                        "run_id": rid,
                        "notebook": str(notebook),
                        "parameters": point,
                        "sweep_dir": str(sweep_dir),
                        "timeout": timeout or timeout_for(point.get("profile")),
                    }
                )
        manifest = sweep_dir / "manifest.json"
        _write_manifest(manifest, notebook, records, earlier, stale)
        done = failed = 0
        bar = tqdm(
            total=len(plan), initial=skipped + old_failures, unit="run", desc=notebook.stem, disable=not progress
        )
        if todo:
            executor = make_executor(workers, scheduler, scheduler_file, dask_local, retries)
            try:
                jobs = {executor.submit(run_point, job): job for job in todo}
                for future in executor.as_completed(jobs):
                    try:
                        record = future.result()
                    except Exception as err:  # noqa: BLE001 - a dead worker, a lost Dask worker
                        job = jobs[future]
                        record = interrupted_record(job) if is_interruption(err) else failure_record(job, err)
                    records[record["run"]] = record
                    done, failed = done + (record["status"] == "done"), failed + (record["status"] == "failed")
                    bar.update(1)
                    bar.set_postfix(failed=failed + old_failures, refresh=False)
                    _write_manifest(manifest, notebook, records, earlier, stale)
            finally:  # also on Ctrl-C: the workers got it too; their runs stay pending
                executor.close()
                _write_manifest(manifest, notebook, records, earlier, stale)
        bar.close()
        folder = {**earlier, **records}  # earlier invocations' runs, then this grid's
        grid_ids = [rid for rid, _, _ in plan]
        finished = [r for r in sorted(set(folder) - set(grid_ids) - stale) + grid_ids if folder[r]["status"] == "done"]
        points = [point for _, point, _ in plan] + [folder[r].get("parameters", {}) for r in finished]
        names = list(dict.fromkeys(name for point in points for name in point))
        table = aggregate(sweep_dir, finished, columns=names)
        write_results(table, sweep_dir)
        tables = collect_tables(sweep_dir, finished, columns=names)
        helps = {n: p.help for n, p in notebook_parameters(notebook).items()}
        write_columns(
            sweep_dir, {"results.parquet": table, **{f"results.{n}.parquet": t for n, t in tables.items()}}, helps
        )
    not_run = sum(r["status"] == "pending" for r in records.values())
    return SweepResult(
        sweep_dir,
        done,
        skipped,
        failed + old_failures,
        list(records.values()),
        table,
        round(time.perf_counter() - started, 3),
        not_run,
        tables,
        sum(earlier[r]["status"] == "done" for r in stale),
    )


def _write_manifest(
    path: Path, notebook: Path, records: Mapping[str, dict], earlier: Mapping[str, dict], stale: set[str]
) -> None:
    """manifest.json: the notebook, counts per status, and the record (with provenance) of every
    run in the folder: this invocation's grid (`records`) and the runs earlier invocations left
    (`earlier`: finished in runs/, failed in failed/); `grid` lists the run ids of this invocation's
    grid; `stale` the runs of an earlier version of the notebook (`stale_runs`), which the counts
    and the results leave out."""
    folder = {**earlier, **records}
    current = [r for rid, r in folder.items() if rid not in stale]
    counts = {s: sum(r["status"] == s for r in current) for s in ("done", "failed", "pending")}
    write_json(
        path,
        {"notebook": str(notebook), "counts": counts, "grid": list(records), "stale": sorted(stale), "runs": current},
    )


def stale_runs(notebook: str | os.PathLike, records: Mapping[str, dict]) -> set[str]:
    """The ids of `records` that the notebook as it is now would not give their parameters: runs of
    an earlier version of its code cells or of its parameters' defaults (`run_id` hashes both)."""
    nb = read_notebook(notebook)
    params = notebook_parameters(nb)
    return {rid for rid, record in records.items() if run_id(nb, record.get("parameters", {}), params) != rid}
