"""One execution of a notebook with papermill: the unit that sweeps and the book build repeat.

Owns: `execute_point` (papermill into a folder written under a temporary name and renamed when
complete, a per-cell timeout, the failing cell found again in the notebook), the kernel that dies
with the process that started it, the per-profile cell timeouts (`CELL_TIMEOUT`), the run's record
(`run.json`: status, error, cell, host, times, provenance), and `run_point`, the job a sweep
hands to its executor (it never raises: a crash becomes a failed record).

`execute_point` launches a kernel from the calling process: call it from a process running no
other kernel, e.g. `in_child(execute_point, ...)`; the executors of `memkd.sweep.executors` give
every task such a fresh process (`in_child`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from memkd.sweep.executors import ChildDied, libc_prctl, die_with_parent
from memkd.sweep.grid import RESULTS_PARAM, notebook_parameters, read_notebook

# Per-cell execution timeout of each profile, in seconds: it catches a hung kernel, so it leaves
# about 5x the longest cell measured on 2 busy CPU cores (smoke 102 s, quick 395 s).
CELL_TIMEOUT = {"smoke": 600, "quick": 1800, "paper": 6 * 3600}
KERNEL = "python3"  # the kernel every venv has; custom names fail with NoSuchKernel


def timeout_for(profile: str | None) -> int:
    """Seconds per cell for `profile` ("" or None: $MEMKD_PROFILE, else quick)."""
    profile = profile or os.environ.get("MEMKD_PROFILE") or "quick"
    return CELL_TIMEOUT.get(profile, CELL_TIMEOUT["quick"])


def _tied_kernel_manager(log=None):
    """A kernel manager whose kernels die with the process that started them (Linux), their own
    output and log lines going to the open file `log` (None: this process's)."""
    from jupyter_client.manager import AsyncKernelManager

    class TiedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            prctl = libc_prctl()
            if prctl is not None:
                kw.setdefault("preexec_fn", lambda: die_with_parent(prctl))
            if log is not None:
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return TiedKernelManager


def _failing_cell(nb_path: Path) -> tuple[int | None, str]:
    """Index and source of the cell that raised or hung, read back from the executed notebook."""
    if not nb_path.is_file():
        return None, ""
    for index, cell in enumerate(read_notebook(nb_path).cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        errored = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        if meta.get("exception") or meta.get("status") == "running" or errored:
            return index, cell.source
    return None, ""


def _source_index(notebook: Path, source: str) -> int | None:
    """Index of the cell with this source in the notebook itself (papermill adds cells to its copy)."""
    if not source:
        return None
    return next((i for i, cell in enumerate(read_notebook(notebook).cells) if cell.source == source), None)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically (a temporary file renamed)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=repr))
    tmp.replace(path)


def _relocate_paths(nb_path: Path, old: str, new: str) -> None:
    """Point the injected parameters cell at the final folder instead of the temporary one."""
    if not nb_path.is_file():
        return
    import nbformat

    nb = nbformat.read(str(nb_path), as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = cell.source.replace(old, new)
    nbformat.write(nb, str(nb_path))


def _commit(tmp: Path, target: Path) -> None:
    """Rename the finished temporary folder to `target`, replacing an older one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def _provenance(parameters: Mapping[str, Any]) -> dict | None:
    """memkd.provenance.collect() for the run's device; None when it cannot be had (no torch)."""
    try:
        from memkd.provenance import collect

        return collect(device=parameters.get("device"))
    except Exception as err:  # noqa: BLE001 - provenance must never fail a finished run
        return {"error": f"{type(err).__name__}: {err}"}


def execute_point(
    notebook: str | os.PathLike,
    parameters: Mapping[str, Any],
    run_dir: str | os.PathLike,
    timeout: float | None = None,
    kernel_name: str = KERNEL,
    failed_dir: str | os.PathLike | None = None,
    cwd: str | os.PathLike | None = None,
    provenance: bool = True,
) -> dict:
    """Execute `notebook` with `parameters` into the folder `run_dir`; return the run's record.

    The folder receives `run.json` (the record), the executed notebook (same file name), the
    kernel process's own log lines (`kernel.log`, not the cells' outputs) and, when
    the notebook has a `results_dir` parameter not given in `parameters`, its results in
    `run_dir/results`. Everything is written under a temporary name beside `run_dir` and renamed
    when complete; an existing `run_dir` is replaced. A failed run goes to `failed_dir` (default:
    `run_dir` itself) with status "failed", the error, the failing cell's source and its index in
    `notebook` (`cell_index`) and in the executed copy (`executed_cell_index`, which counts the
    cells papermill adds). `timeout` is per cell (None: by the `profile` parameter, `timeout_for`).
    The record's `provenance` is `memkd.provenance.collect()` in this process.
    """
    import papermill

    notebook, run_dir = Path(notebook).resolve(), Path(run_dir).resolve()
    params = dict(parameters)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.parent / f".tmp-{run_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        declared = notebook_parameters(notebook)
    except ValueError:  # no `parameters` cell: papermill injects the values at the top
        declared = {}
    if RESULTS_PARAM not in params and RESULTS_PARAM in declared:
        params[RESULTS_PARAM] = str(tmp / "results")
    profile = params.get("profile", declared["profile"].default if "profile" in declared else None)
    timeout = timeout or timeout_for(profile)
    output = tmp / notebook.name
    record: dict[str, Any] = {
        "run": run_dir.name,
        "notebook": str(notebook),
        "parameters": dict(parameters),
        "status": "failed",
        "error": "",
        "cell_index": None,
        "executed_cell_index": None,
        "cell_source": "",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cell_timeout_s": timeout,
    }
    started = time.perf_counter()
    kernel_log = open(tmp / "kernel.log", "wb")  # noqa: SIM115 - the kernel writes it until it ends
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=params,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
            cwd=str(cwd or notebook.parent),
            execution_timeout=timeout,
            kernel_manager_class=_tied_kernel_manager(kernel_log),
        )
        record["status"] = "done"
    except Exception as err:  # noqa: BLE001 - any failure is recorded, never lost
        if type(err).__name__ == "PapermillExecutionError":
            record["error"] = f"{err.ename}: {err.evalue}"
        else:
            record["error"] = f"{type(err).__name__}: {err}".strip()
        record["executed_cell_index"], source = _failing_cell(output)
        source = getattr(err, "source", "") or source
        record["cell_index"] = _source_index(notebook, source)
        record["cell_source"] = "\n".join(source.splitlines()[:6])[:400]
    finally:
        kernel_log.close()
    record["elapsed_s"] = round(time.perf_counter() - started, 3)
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if provenance:
        record["provenance"] = _provenance(params)
    target = run_dir if record["status"] == "done" else Path(failed_dir or run_dir).resolve()
    _relocate_paths(output, str(tmp), str(target))
    record["executed_notebook"] = str(target / notebook.name)
    write_json(tmp / "run.json", record)
    _commit(tmp, target)
    if record["status"] == "done" and failed_dir is not None:
        shutil.rmtree(failed_dir, ignore_errors=True)
    return record


def failure_record(job: Mapping[str, Any], err: BaseException) -> dict:
    """Record a run that failed outside its notebook (worker crash, lost Dask worker) in failed/."""
    record = {
        "run": job["run_id"],
        "notebook": job["notebook"],
        "parameters": job["parameters"],
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "cell_index": None,
        "executed_cell_index": None,
        "cell_source": "",
    }
    failed = Path(job["sweep_dir"]) / "failed" / job["run_id"]
    failed.mkdir(parents=True, exist_ok=True)
    write_json(failed / "run.json", record)
    return record


def interrupted_record(job: Mapping[str, Any]) -> dict:
    """A run whose process got Ctrl-C or SIGTERM: pending, so the next invocation runs it."""
    return {"run": job["run_id"], "parameters": job["parameters"], "status": "pending", "error": "interrupted"}


def is_interruption(err: BaseException) -> bool:
    """Whether `err` says the run's process was stopped by Ctrl-C or SIGTERM (not a crash)."""
    return isinstance(err, ChildDied) and err.returncode in (-signal.SIGINT, -signal.SIGTERM)


def run_point(job: Mapping[str, Any]) -> dict:
    """One grid point of a sweep, in the current (fresh) process: its record. Never raises for a
    failing notebook or a crash outside it (a failed record in failed/ instead).

    job: {"run_id", "notebook", "parameters", "sweep_dir", "timeout"}.
    """
    rid, sweep_dir = job["run_id"], Path(job["sweep_dir"])
    try:
        return execute_point(
            job["notebook"],
            job["parameters"],
            sweep_dir / "runs" / rid,
            timeout=job["timeout"],
            failed_dir=str(sweep_dir / "failed" / rid),
        )
    except Exception as err:  # noqa: BLE001
        return failure_record(job, err)
