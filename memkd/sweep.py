"""Run a notebook over a grid of parameters with papermill: resumable, on a local pool or on Dask.

Public API (everything else here is private)::

    run_sweep(notebook, grid, sweep_dir, workers=2, scheduler=None, dask_local=None,
              timeout=1800, retry_failed=False, progress=True) -> SweepResult
        Validate the grid, execute every point not yet done, aggregate the finished runs into
        `results.parquet` / `results.csv`, write `manifest.json`. Never raises for a failing run:
        `SweepResult.failed` counts them (the `memkd sweep` command then exits non-zero).
    execute_point(notebook, parameters, run_dir, timeout=1800, kernel_name="python3",
                  failed_dir=None, raise_on_error=False, cwd=None) -> dict
        Execute ONE notebook with papermill into `run_dir` (written under a temporary name and
        renamed when complete) and return its record (status, error, failing cell, elapsed_s).
        It launches a kernel from the calling process: call it from a process running no other
        kernel (`execute_isolated` does that for you, in a fresh child process).
    execute_isolated(notebook, parameters, run_dir, env=None, **execute_point_kwargs) -> dict
        The same in a fresh child process that dies with its caller (its kernel too), with extra
        environment variables `env`; this is what sweeps and the book builder call.
    notebook_parameters(notebook)     -> {name: Param(name, type, default, help)} of the `parameters` cell
    expand_grid(params, grid)         -> list of points (dicts), typed and validated
    parse_cli_grid(["alpha=0.2,0.6"]) -> {"alpha": ["0.2", "0.6"]}  (strings are typed by expand_grid)
    load_grid(path)                   -> the grid of a YAML file
    run_id(notebook, point)           -> the stable folder name of a run
    aggregate(sweep_dir, runs=None)   -> one DataFrame of every finished run's `table.csv`

A grid is a mapping ``{name: value or list of values}``; lists expand as a product (a list-typed
parameter therefore takes ``[[1, 2]]`` for the single value ``[1, 2]``). An optional ``points:``
entry lists explicit points (mappings), each crossed with the product of the other entries::

    alpha: [0.2, 0.6]        # 2 x 3 = 6 runs ...
    seed: [0, 1, 2]
    points:                  # ... times 2 explicit points = 12 runs
      - {temperature: 1.0, lr: 0.01}
      - {temperature: 10.0, lr: 0.003}

Layout of a sweep directory::

    manifest.json            status of every run of the last invocation: done / failed / pending
    results.parquet/.csv     all finished runs of the grid: their parameters as columns + table.csv
    runs/<id>/               a finished run: run.json, the executed notebook, results/ (table.csv ...)
    runs/.tmp-<id>-<rand>/   a run in flight (removed at the next start if its process was killed)
    failed/<id>/             the last failed attempt of a run, with its partly executed notebook

`<id>` hashes the notebook's code cells and the point's full parameter set (defaults filled in),
so an unchanged point is found again and skipped; editing a code cell starts fresh runs.
The notebook's `results_dir` parameter, when it has one, is set to `<run folder>/results`; it cannot
be swept. An empty `profile` is replaced by `$MEMKD_PROFILE` here, so remote workers agree.

Left out: scheduling priorities, retries of failing runs within one invocation (a failure is
recorded, the others go on; `retry_failed=True` reruns them), and cleaning of old runs.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_TIMEOUT = 1800  # seconds per cell; papermill can hang forever without one
KERNEL = "python3"
RESULTS_PARAM = "results_dir"
TABLE = "table.csv"
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict, "tuple": tuple}
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


# --------------------------------------------------------------------------- parameters and grids
@dataclass(frozen=True)
class Param:
    """One assignment of a notebook's `parameters` cell."""

    name: str
    type: type | None  # None: no annotation and a None default, any literal goes
    default: Any
    help: str = ""

    def describe(self) -> str:
        kind = self.type.__name__ if self.type else "any"
        text = f"{self.name}: {kind} = {self.default!r}"
        return f"{text}  # {self.help}" if self.help else text


def _read_notebook(notebook: str | os.PathLike):
    import nbformat

    return nbformat.read(str(notebook), as_version=4)


def notebook_parameters(notebook) -> dict[str, Param]:
    """The assignments of the cell tagged `parameters` (a path or an nbformat notebook).

    Each line ``name: type = literal  # help``; the type comes from the annotation, else from the
    default's type. Raises ValueError when no cell is tagged or a value is not a literal.
    """
    nb = notebook if hasattr(notebook, "cells") else _read_notebook(notebook)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(f"notebook_parameters: {_name(notebook)} has no cell tagged 'parameters'.")
    source = cells[0].source
    lines = source.splitlines()
    params: dict[str, Param] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            name, annotation, value = node.target.id, node.annotation, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except ValueError as err:
            raise ValueError(
                f"notebook_parameters: the default of {name!r} in {_name(notebook)} must be a literal. "
                f"Got {ast.unparse(value)!r} instead."
            ) from err
        kind = _TYPES.get(ast.unparse(annotation).split("[")[0].strip()) if annotation else None
        if kind is None and default is not None:
            kind = type(default)
        line = lines[node.end_lineno - 1]
        help_text = line.split("#", 1)[1].strip() if "#" in line[node.end_col_offset:] else ""
        params[name] = Param(name, kind, default, help_text)
    return params


def _name(notebook) -> str:
    return str(notebook) if not hasattr(notebook, "cells") else "the notebook"


def _params_listing(params: Mapping[str, Param]) -> str:
    return "The notebook's parameters are:\n" + "\n".join(f"  {p.describe()}" for p in params.values())


def _split_values(raw: str) -> list[str]:
    """Split "a,b,[1,2]" at top-level commas (brackets and quotes protect theirs)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    parts.append(raw[start:])
    return [p.strip() for p in parts]


def parse_cli_grid(assignments: Iterable[str]) -> dict[str, list[str]]:
    """Turn repeated ``-p name=v1,v2`` options into ``{name: ["v1", "v2"]}``.

    The values stay strings, marked so that `expand_grid` converts them to each parameter's type
    ("3" -> 3 for an int, "true" -> True for a bool, "[1, 2]" -> [1, 2] for a list).
    """
    grid: dict[str, list[str]] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"parse_cli_grid: expected name=value[,value...]. Got {item!r} instead.")
        if name in grid:
            raise ValueError(f"parse_cli_grid: parameter {name!r} is given twice; list its values once.")
        grid[name] = [_CliString(v) for v in _split_values(raw)]
    return grid


def load_grid(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML grid file: a mapping of names to values or lists, plus an optional `points:` list."""
    import yaml

    grid = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(grid, dict):
        raise ValueError(f"load_grid: {path} must hold a mapping of parameter names. Got {type(grid).__name__}.")
    return grid


class _CliString(str):
    """A value typed on the command line: converted to the parameter's type, not just checked."""


def _coerce(param: Param, value: Any) -> Any:
    kind = param.type
    if isinstance(value, _CliString):
        text = str(value)
        if kind is str:
            if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
                return text[1:-1]
            return text
        if kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise TypeError
        if kind in (int, float):
            return kind(text)
        value = ast.literal_eval(text)
    if kind is None:
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
        return value
    raise TypeError


def expand_grid(params: Mapping[str, Param], grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All points of `grid` (product of the lists, times the explicit `points`), typed and checked.

    Raises ValueError, listing the notebook's parameters, for an unknown name, a value of the wrong
    type, a swept `results_dir`, or a grid with no point at all.
    """
    grid = dict(grid)
    explicit = grid.pop("points", None)
    if explicit is not None and (not isinstance(explicit, list) or not all(isinstance(p, dict) for p in explicit)):
        raise ValueError("expand_grid: 'points' must be a list of mappings {name: value}.")
    axes = {name: values if isinstance(values, list) else [values] for name, values in grid.items()}
    for point in explicit or []:
        clash = sorted(set(point) & set(axes))
        if clash:
            raise ValueError(f"expand_grid: {clash} appear both in 'points' and as grid entries.")

    def typed(name: str, value: Any) -> Any:
        if name not in params:
            raise ValueError(f"expand_grid: unknown parameter {name!r}. {_params_listing(params)}")
        if name == RESULTS_PARAM:
            raise ValueError(f"expand_grid: {RESULTS_PARAM!r} is set by the sweep (one folder per run); do not sweep it.")
        try:
            return _coerce(params[name], value)
        except (TypeError, ValueError, SyntaxError):
            kind = params[name].type.__name__ if params[name].type else "literal"
            article = "an" if kind[0] in "aeiou" else "a"
            shown = repr(str(value)) if isinstance(value, _CliString) else f"{value!r} ({type(value).__name__})"
            raise ValueError(
                f"expand_grid: the {name!r} parameter must be {article} {kind}. Got {shown} instead. "
                f"{_params_listing(params)}"
            ) from None

    typed_axes = {name: [typed(name, v) for v in values] for name, values in axes.items()}
    typed_points = [{n: typed(n, v) for n, v in p.items()} for p in explicit] if explicit is not None else [{}]
    points, seen = [], set()
    for base in typed_points:
        for combo in itertools.product(*typed_axes.values()):
            point = {**base, **dict(zip(typed_axes, combo))}
            key = json.dumps(point, sort_keys=True, default=str)
            if point and key not in seen:
                seen.add(key)
                points.append(point)
    if not points:
        empty = [name for name, values in axes.items() if not values]
        why = f"{empty} have no values" if empty else "no parameter values given"
        raise ValueError(f"expand_grid: the grid is empty ({why}). {_params_listing(params)}")
    return points


# --------------------------------------------------------------------------- run identity
def _code_digest(nb) -> str:
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()


def _resolve_point(params: Mapping[str, Param], point: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters to inject: the point, plus an empty `profile` taken from $MEMKD_PROFILE."""
    point = dict(point)
    profile = point.get("profile", params["profile"].default if "profile" in params else None)
    if profile == "" and os.environ.get("MEMKD_PROFILE"):
        point["profile"] = os.environ["MEMKD_PROFILE"]
    return point


def run_id(notebook, point: Mapping[str, Any], params: Mapping[str, Param] | None = None) -> str:
    """16 hex digits hashing the notebook's code cells and the full parameter set (defaults filled in)."""
    nb = notebook if hasattr(notebook, "cells") else _read_notebook(notebook)
    params = params if params is not None else notebook_parameters(nb)
    full = {name: p.default for name, p in params.items() if name != RESULTS_PARAM}
    full.update({k: v for k, v in point.items() if k != RESULTS_PARAM})
    blob = json.dumps({"code": _code_digest(nb), "parameters": full}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- one execution
class RunFailed(RuntimeError):
    """Raised by execute_point(raise_on_error=True); `.record` holds the run's record."""

    def __init__(self, record: dict):
        super().__init__(f"{record['notebook']} failed in cell {record.get('cell_index')}: {record['error']}")
        self.record = record


def _prctl():
    """libc's prctl on Linux (looked up before any fork), else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(prctl=None) -> None:
    """Linux: have the OS SIGKILL this process when its parent dies (a kill -9 leaves no orphan)."""
    prctl = prctl or _prctl()
    if prctl is not None:
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _tied_kernel_manager():
    """A kernel manager whose kernels die with the process that started them."""
    from jupyter_client.manager import AsyncKernelManager

    class TiedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            prctl = _prctl()
            if prctl is not None:
                kw.setdefault("preexec_fn", lambda: _die_with_parent(prctl))
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return TiedKernelManager


def _failing_cell(nb_path: Path) -> tuple[int | None, str]:
    """Index and source of the cell that raised or hung, read back from the executed notebook."""
    if not nb_path.is_file():
        return None, ""
    nb = _read_notebook(nb_path)
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        errored = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        if meta.get("exception") or meta.get("status") == "running" or errored:
            return index, cell.source
    return None, ""


def _source_index(notebook: Path, source: str) -> int | None:
    """Index of the cell with this source in the notebook itself (papermill adds cells to its copy)."""
    if not source:
        return None
    cells = _read_notebook(notebook).cells
    return next((i for i, cell in enumerate(cells) if cell.source == source), None)


def _excerpt(source: str, lines: int = 6, chars: int = 400) -> str:
    text = "\n".join(source.splitlines()[:lines])
    return text[:chars]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=repr))
    tmp.replace(path)


def execute_point(
    notebook: str | os.PathLike,
    parameters: Mapping[str, Any],
    run_dir: str | os.PathLike,
    timeout: float = DEFAULT_TIMEOUT,
    kernel_name: str = KERNEL,
    failed_dir: str | os.PathLike | None = None,
    raise_on_error: bool = False,
    cwd: str | os.PathLike | None = None,
) -> dict:
    """Execute `notebook` with `parameters` into the folder `run_dir`; return the run's record.

    The folder receives `run.json` (the record), the executed notebook (same file name) and, when
    the notebook has a `results_dir` parameter not given in `parameters`, its results in
    `run_dir/results`. Everything is written under a temporary name beside `run_dir` and renamed
    when complete; an existing `run_dir` is replaced. A failed run goes to `failed_dir` (default:
    `run_dir` itself) with status "failed", the error, the failing cell's source and its index in
    `notebook` (`cell_index`) and in the executed copy (`executed_cell_index`, which counts the
    cells papermill adds). `timeout` is per cell.
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
    output = tmp / notebook.name
    record: dict[str, Any] = {
        "run": run_dir.name, "notebook": str(notebook), "parameters": dict(parameters),
        "status": "failed", "error": "", "cell_index": None, "executed_cell_index": None, "cell_source": "",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": os.uname().nodename, "pid": os.getpid(),
    }
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=params, kernel_name=kernel_name,
            progress_bar=False, log_output=False, cwd=str(cwd or notebook.parent),
            execution_timeout=timeout, kernel_manager_class=_tied_kernel_manager(),
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
        record["cell_source"] = _excerpt(source)
    record["elapsed_s"] = round(time.perf_counter() - started, 3)
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    target = run_dir if record["status"] == "done" else Path(failed_dir or run_dir).resolve()
    _relocate_paths(output, str(tmp), str(target))
    record["executed_notebook"] = str(target / notebook.name)
    _write_json(tmp / "run.json", record)
    _commit(tmp, target)
    if record["status"] == "done" and failed_dir is not None:
        shutil.rmtree(failed_dir, ignore_errors=True)
    if record["status"] != "done" and raise_on_error:
        raise RunFailed(record)
    return record


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


def execute_isolated(notebook, parameters, run_dir, env: Mapping[str, str] | None = None, **kwargs) -> dict:
    """`execute_point` in a fresh child process (one kernel per process; it dies with its parent).

    `env` adds environment variables for the child and its kernel (thread-safe, unlike changing
    os.environ); the other keyword arguments are execute_point's. Raises WorkerDied when the child
    ends without a record (killed, or a crash outside the notebook).
    """
    raise_on_error = kwargs.pop("raise_on_error", False)  # raised here, not in the child
    job = {"notebook": str(notebook), "parameters": dict(parameters), "run_dir": str(run_dir), **kwargs}
    job = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in job.items()}
    env = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}, "MEMKD_SWEEP_PARENT": str(os.getpid())}
    proc = subprocess.run(
        [sys.executable, "-m", "memkd.sweep"], input=json.dumps(job, default=repr),
        capture_output=True, text=True, env=env,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        record = json.loads(lines[-1])
        if raise_on_error and record["status"] != "done":
            raise RunFailed(record)
        return record
    raise WorkerDied(
        f"execute_isolated: the worker process for {notebook} exited with code {proc.returncode}: "
        f"{proc.stderr.strip()[-2000:]}", proc.returncode,
    )


class WorkerDied(RuntimeError):
    """The child process of `execute_isolated` ended without a record (`.returncode` < 0: a signal)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def _worker_main() -> None:
    """Entry of `python -m memkd.sweep`: one job (JSON on stdin), its record (JSON) on stdout."""
    parent = os.environ.get("MEMKD_SWEEP_PARENT")
    _die_with_parent()
    if parent and os.getppid() != int(parent):
        sys.exit(3)  # the parent died before we could tie ourselves to it
    job = json.loads(sys.stdin.read())
    record = execute_point(**job)
    print(json.dumps(record, default=repr))


# --------------------------------------------------------------------------- the sweep
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

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.not_run == 0

    def summary(self) -> str:
        rate = f", {self.done / self.elapsed_s:.2f} runs/s" if self.done and self.elapsed_s else ""
        interrupted = f", {self.not_run} interrupted" if self.not_run else ""
        line = (f"sweep: {self.done} done, {self.skipped} skipped, {self.failed} failed{interrupted} "
                f"in {self.elapsed_s:.1f} s{rate} -> {self.sweep_dir}")
        if self.failed:
            line += " (see manifest.json; --retry-failed reruns the failed runs)"
        return line

    def __repr__(self) -> str:
        return self.summary()


@contextlib.contextmanager
def _locked(sweep_dir: Path):
    """Hold an exclusive lock on the sweep directory (released by the OS if we are killed)."""
    import fcntl

    with open(sweep_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"run_sweep: another sweep is running in {sweep_dir}.") from None
        yield


def _status_on_disk(sweep_dir: Path, rid: str) -> dict | None:
    for sub in ("runs", "failed"):
        path = sweep_dir / sub / rid / "run.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_share(concurrent_runs: int) -> dict[str, str]:
    """Environment variables that give each of `concurrent_runs` kernels its share of this
    machine's cores (at least one), so that runs side by side do not oversubscribe them.

    torch starts as many threads as there are cores in every kernel; on 2 cores the smoke book
    with 2 workers took 54 s with this split and 8 min 54 s with OMP_NUM_THREADS=2. Empty when
    the user set OMP_NUM_THREADS already.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = str(max(1, cores // max(1, concurrent_runs)))
    return {name: share for name in THREAD_VARIABLES}


def _executor(workers: int, scheduler: str | None, dask_local: int | None):
    """(submit, wait_any, close): a thread pool launching child processes, or a Dask client."""
    if scheduler or dask_local:
        from dask.distributed import Client, LocalCluster, wait

        if scheduler:
            client, cluster = Client(scheduler), None
        else:
            cluster = LocalCluster(n_workers=dask_local, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)

        def submit(job):
            return client.submit(_run_job, job, pure=False, key=f"memkd-run-{job['run_id']}-{uuid.uuid4().hex[:6]}")

        def wait_any(futures):
            return wait(futures, return_when="FIRST_COMPLETED").done

        def close():
            client.close()
            if cluster is not None:
                cluster.close()

        return submit, wait_any, close
    pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="memkd-sweep")
    return (lambda job: pool.submit(_run_job, job),
            lambda futures: cf.wait(futures, return_when=cf.FIRST_COMPLETED).done,
            lambda: pool.shutdown(wait=True, cancel_futures=True))


def _run_job(job: dict) -> dict:
    """One grid point, executed in its own process; never raises (a crash becomes a failed record)."""
    rid, sweep_dir = job["run_id"], Path(job["sweep_dir"])
    try:
        return execute_isolated(job["notebook"], job["parameters"], sweep_dir / "runs" / rid,
                                env=job.get("env"), timeout=job["timeout"],
                                failed_dir=str(sweep_dir / "failed" / rid))
    except Exception as err:  # noqa: BLE001
        if getattr(err, "returncode", None) in (-signal.SIGINT, -signal.SIGTERM):
            return {"run": rid, "parameters": job["parameters"], "status": "pending", "error": "interrupted"}
        return _failure(job, err)


def _failure(job: dict, err: BaseException) -> dict:
    """Record a run that failed outside its notebook (worker crash, lost Dask worker) in failed/."""
    record = {"run": job["run_id"], "notebook": job["notebook"], "parameters": job["parameters"],
              "status": "failed", "error": f"{type(err).__name__}: {err}", "cell_index": None,
              "executed_cell_index": None, "cell_source": ""}
    failed = Path(job["sweep_dir"]) / "failed" / job["run_id"]
    failed.mkdir(parents=True, exist_ok=True)
    _write_json(failed / "run.json", record)
    return record


def run_sweep(
    notebook: str | os.PathLike,
    grid: Mapping[str, Any],
    sweep_dir: str | os.PathLike,
    workers: int = 2,
    scheduler: str | None = None,
    dask_local: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retry_failed: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Execute `notebook` at every point of `grid` not yet done in `sweep_dir`; aggregate the results.

    workers     local child processes running at once (the default executor)
    scheduler   address of a Dask scheduler ("tcp://host:8786"); the sweep folder must be on a
                file system its workers share
    dask_local  start a Dask LocalCluster of this many single-threaded workers instead
    timeout     seconds per cell (papermill's execution timeout)
    retry_failed  rerun the points whose last attempt failed (otherwise they stay failed)
    Local workers and a LocalCluster share this machine's cores between their kernels
    (`thread_share`) unless OMP_NUM_THREADS is set; on a remote scheduler each worker
    machine's environment decides.
    """
    from tqdm.auto import tqdm

    for name, value in (("workers", workers), ("dask_local", dask_local or 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"The {name!r} parameter of run_sweep must be an int >= 1. Got {value!r} instead.")
    if not timeout or timeout <= 0:
        raise ValueError(f"The 'timeout' parameter of run_sweep must be a number of seconds > 0. Got {timeout!r} instead.")
    started = time.perf_counter()
    notebook = Path(notebook).resolve()
    nb = _read_notebook(notebook)
    params = notebook_parameters(nb)
    points = [_resolve_point(params, p) for p in expand_grid(params, grid)]
    sweep_dir = Path(sweep_dir).resolve()
    (sweep_dir / "runs").mkdir(parents=True, exist_ok=True)
    with _locked(sweep_dir):
        for stale in (sweep_dir / "runs").glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # runs in flight when a sweep was killed
        records: dict[str, dict] = {}
        todo, skipped, old_failures = [], 0, 0
        env = {} if scheduler else thread_share(dask_local or workers)
        for point in points:
            rid = run_id(nb, point, params)
            previous = _status_on_disk(sweep_dir, rid)
            if previous and previous["status"] == "done":
                records[rid], skipped = previous, skipped + 1
            elif previous and not retry_failed:
                records[rid], old_failures = previous, old_failures + 1
            else:
                records[rid] = {"run": rid, "parameters": point, "status": "pending"}
                todo.append({"run_id": rid, "notebook": str(notebook), "parameters": point,
                             "sweep_dir": str(sweep_dir), "timeout": timeout, "env": env})
        manifest = sweep_dir / "manifest.json"
        _write_manifest(manifest, notebook, records)
        done = failed = 0
        bar = tqdm(total=len(points), initial=skipped + old_failures, unit="run",
                   desc=notebook.stem, disable=not progress)
        if todo:
            submit, wait_any, close = _executor(workers, scheduler, dask_local)
            try:
                jobs = {submit(job): job for job in todo}
                pending = set(jobs)
                while pending:
                    finished = wait_any(pending)
                    pending -= set(finished)
                    for future in finished:
                        try:
                            record = future.result()
                        except Exception as err:  # noqa: BLE001 - e.g. Dask gave up on a lost worker
                            record = _failure(jobs[future], err)
                        records[record["run"]] = record
                        done, failed = done + (record["status"] == "done"), failed + (record["status"] == "failed")
                        bar.update(1)
                        bar.set_postfix(failed=failed + old_failures, refresh=False)
                    _write_manifest(manifest, notebook, records)
            finally:  # also on Ctrl-C: the workers got it too; their runs stay pending
                close()
                _write_manifest(manifest, notebook, records)
        bar.close()
        table = aggregate(sweep_dir, [r for r, rec in records.items() if rec["status"] == "done"],
                          columns=_grid_columns(points))
        _write_table(table, sweep_dir)
    not_run = sum(r["status"] == "pending" for r in records.values())
    return SweepResult(sweep_dir, done, skipped, failed + old_failures, list(records.values()), table,
                       round(time.perf_counter() - started, 3), not_run)


def _write_manifest(path: Path, notebook: Path, records: Mapping[str, dict]) -> None:
    counts = {s: sum(r["status"] == s for r in records.values()) for s in ("done", "failed", "pending")}
    _write_json(path, {"notebook": str(notebook), "counts": counts, "runs": list(records.values())})


def _grid_columns(points: list[dict]) -> list[str]:
    return list(dict.fromkeys(name for point in points for name in point))


def aggregate(sweep_dir: str | os.PathLike, runs: Iterable[str] | None = None, columns: list[str] | None = None):
    """One DataFrame of the finished runs (all of `sweep_dir/runs` when `runs` is None).

    Each run's `results/table.csv` (or `table.csv`) gets the run id and its parameters as leading
    columns (`columns`, default: every parameter the runs set; defaults fill the gaps). A
    parameter whose name the table already uses becomes `param_<name>`. A run without a table
    contributes one row of parameters.
    """
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    ids = list(runs) if runs is not None else sorted(p.name for p in (sweep_dir / "runs").iterdir()
                                                       if (p / "run.json").is_file())
    frames, defaults, lead_names = [], {}, set()
    for rid in ids:
        folder = sweep_dir / "runs" / rid
        record = json.loads((folder / "run.json").read_text())
        values = _full_parameters(record, defaults)
        names = columns if columns is not None else list(record["parameters"])
        table_path = next((p for p in (folder / "results" / TABLE, folder / TABLE) if p.is_file()), None)
        table = _read_text_table(table_path) if table_path else pd.DataFrame(index=[0])
        lead = {"run": rid}
        for name in names:
            lead[f"param_{name}" if name in table.columns or name == "run" else name] = values.get(name)
        lead_names.update(lead)
        for i, (name, value) in enumerate(lead.items()):
            table.insert(i, name, [value] * len(table))
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["run", *(columns or [])])
    table = pd.concat(frames, ignore_index=True)
    for name in table.columns:  # the parameters keep their types; the tables' text is parsed
        if name not in lead_names:
            table[name] = infer_column(table[name])
    return table


def _read_text_table(path: Path):
    """A run's CSV with every cell kept as text ("" where empty): types are inferred later, per
    column over all runs, because one run's few rows can make text look like a number."""
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False)


_MISSING = {"", "nan", "NaN", "NA", "<NA>", "None", "null"}
_NON_FINITE = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def infer_column(column):
    """One aggregated column as numbers, booleans or text: numbers only when every present cell
    is written as one.

    A cell that pandas would read as infinite without being spelled `inf` (a hex token such as
    "97e398195100" reads as 9.7e399) keeps the column as text. Cells that are not strings (the
    parameters) make the column keep the values it has; a run without the column counts as empty.
    """
    import numpy as np
    import pandas as pd

    is_text = column.map(lambda v: isinstance(v, str))
    if not (is_text | column.isna()).all():
        return column
    column = column.where(is_text, "")  # a run without this column: missing, like an empty cell
    missing = column.isin(_MISSING)
    present = column[~missing]
    if present.empty:
        return pd.Series(np.nan, index=column.index)
    if present.isin(["True", "False"]).all():
        return column.map({"True": True, "False": False}).where(~missing, None)
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return column.where(~missing, np.nan)
    spelled = present.str.lower().isin(_NON_FINITE)
    if (~np.isfinite(numbers.astype(float)) & ~spelled).any():
        return column.where(~missing, np.nan)
    return pd.to_numeric(column.where(~missing, np.nan))


def _full_parameters(record: dict, cache: dict) -> dict:
    """A run's parameters with the notebook's defaults filled in (when the notebook is still there)."""
    path = record.get("notebook", "")
    if path not in cache:
        try:
            cache[path] = {n: p.default for n, p in notebook_parameters(path).items()}
        except Exception:  # noqa: BLE001 - a moved notebook: its runs keep the values they set
            cache[path] = {}
    return {**cache[path], **record.get("parameters", {})}


def _write_table(table, sweep_dir: Path) -> None:
    """results.csv and results.parquet, each written atomically."""
    tmp = sweep_dir / ".results.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(sweep_dir / "results.csv")
    tmp = sweep_dir / ".results.parquet.tmp"
    try:
        table.to_parquet(tmp, index=False)
    except Exception:  # noqa: BLE001 - mixed-type object columns: store them as text
        table.astype({c: str for c in table.columns if table[c].dtype == object}).to_parquet(tmp, index=False)
    tmp.replace(sweep_dir / "results.parquet")


if __name__ == "__main__":
    _worker_main()
