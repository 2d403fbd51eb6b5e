"""Where runs execute: one executor abstraction for the sweep and the book build.

Owns: `make_executor` (local processes, a Dask LocalCluster, or a remote Dask scheduler given
by address or scheduler file), the rule that every task runs in a fresh process that dies with the
process that asked for it (one kernel per process, no orphan when a sweep is killed with -9), the
environment each task sees (`thread_share`: kernels side by side split the cores), and
`in_child`, which runs one function in a fresh child process.

    with make_executor(workers=2) as executor:           # or scheduler="tcp://head:8786",
        futures = [executor.submit(fn, arg) for arg in args]   # scheduler_file=..., dask_local=4
        for future in executor.as_completed(futures): ...

Local tasks run `in_child` from the threads of a `concurrent.futures.ThreadPoolExecutor`; Dask
tasks run `in_child` on their worker, and Dask's own `retries` reruns a task whose child process
died (Dask itself moves the tasks of a lost worker). Not a `ProcessPoolExecutor(max_tasks_per_child=1)`: its "spawn" children import the caller's
main module again (a script calling run_sweep without an `if __name__ == "__main__":` guard would
start sweeps recursively; code from stdin fails), "fork" is unsafe in a process with threads, and
one killed worker breaks the pool, which then kills every other run in flight. `in_child` starts
`python -m memkd.sweep`, which imports nothing of the caller. Left out: priorities and
resources per task.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import subprocess
import sys
import uuid
from typing import Any, Callable, Iterable, Mapping

from memkd.config import invalid

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
PARENT_VARIABLE = "MEMKD_TASK_PARENT"


def thread_share(concurrent_runs: int) -> dict[str, str]:
    """Environment variables that give each of `concurrent_runs` kernels its share of this
    machine's cores (at least one), so that runs side by side do not oversubscribe them.

    torch starts as many threads as there are cores in every kernel; on 2 cores the smoke book
    with 2 workers took 54 s with this split and 8 min 54 s with OMP_NUM_THREADS=2. Empty when
    the user set OMP_NUM_THREADS already, or for a single run (nothing to share).
    """
    if "OMP_NUM_THREADS" in os.environ or concurrent_runs <= 1:
        return {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = str(max(1, cores // max(1, concurrent_runs)))
    return {name: share for name in THREAD_VARIABLES}


# --------------------------------------------------------------------------- processes tied to their parent
def libc_prctl():
    """libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(prctl=None) -> None:
    """Linux: have the OS SIGKILL this process when its parent dies (a kill -9 leaves no orphan).
    Elsewhere a no-op: a run whose sweep was killed finishes on its own (it is then run again)."""
    prctl = prctl or libc_prctl()
    if prctl is not None:
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _tie_to(parent: int) -> None:
    """Tie this fresh process to `parent`; exit at once if the parent is already gone."""
    die_with_parent()
    if os.getppid() != parent:
        os._exit(3)


class ChildDied(RuntimeError):
    """The child process of `in_child` ended without a result (`.returncode` < 0: a signal)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def in_child(fn: Callable, *args: Any, env: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a fresh Python process that dies with this one; its result, or the
    exception it raised. `env` adds environment variables for the child (and what it starts).
    fn and its arguments must pickle (a module-level function). Raises ChildDied when the child
    ends without a result (killed, or a crash of the interpreter)."""
    child_env = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}, PARENT_VARIABLE: str(os.getpid())}
    proc = subprocess.run(
        [sys.executable, "-m", "memkd.sweep"],
        input=pickle.dumps((fn, args, kwargs)),
        capture_output=True,
        env=child_env,
    )
    if proc.returncode == 0 and proc.stdout:
        ok, value = pickle.loads(proc.stdout)
        if ok:
            return value
        raise value
    error = proc.stderr.decode(errors="replace").strip()[-2000:]
    raise ChildDied(
        f"in_child: the process running {getattr(fn, '__name__', fn)} exited with code {proc.returncode}: {error}",
        proc.returncode,
    )


class _Raised:
    """What a Dask task returns instead of raising fn's own exception: Dask's `retries` then
    reruns only a task whose child died (ChildDied), not one whose notebook failed."""

    def __init__(self, error: Exception):
        self.error = error


def _in_child_task(fn: Callable, args: tuple, kwargs: dict, env: Mapping[str, str]) -> Any:
    """A Dask task: `in_child` with its arguments packed (Client.submit keeps some keywords)."""
    try:
        return in_child(fn, *args, env=env, **kwargs)
    except ChildDied:
        raise
    except Exception as err:  # noqa: BLE001 - fn's own error: handed back, not retried
        return _Raised(err)


class _DaskFuture:
    """A Dask future whose `.result()` raises fn's own exception again (see `_Raised`)."""

    def __init__(self, future):
        self.future = future

    def result(self) -> Any:
        value = self.future.result()
        if isinstance(value, _Raised):
            raise value.error
        return value

    def cancel(self) -> None:
        self.future.cancel()


def child_main() -> None:
    """Entry of `python -m memkd.sweep`: (fn, args, kwargs) pickled on stdin; (ok, result
    or exception) pickled on stdout. What the job prints goes to stderr."""
    _tie_to(int(os.environ.get(PARENT_VARIABLE, os.getppid())))
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the job's own prints must not corrupt the pickle
    sys.stdout = sys.stderr
    fn, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    try:
        outcome = (True, fn(*args, **kwargs))
    except Exception as err:  # noqa: BLE001 - handed back to the caller
        outcome = (False, err)
    try:
        payload = pickle.dumps(outcome)
    except Exception as err:  # noqa: BLE001 - an exception that does not pickle
        payload = pickle.dumps((False, RuntimeError(f"{type(err).__name__}: {err}")))
    result_out.write(payload)
    result_out.flush()


# --------------------------------------------------------------------------- executors
class Executor:
    """Runs tasks, each in a fresh process; `env` is added to every task's environment."""

    env: dict[str, str]

    def submit(self, fn: Callable, *args: Any, env: Mapping[str, str] | None = None, **kwargs: Any):
        """Start fn(*args, **kwargs); return a future (`.result()` raises what fn raised)."""
        raise NotImplementedError

    def as_completed(self, futures: Iterable) -> Iterable:
        """The futures, as they finish."""
        raise NotImplementedError

    def close(self) -> None:
        """Start nothing new, wait for the tasks running, release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """`workers` local processes at once, each task in a fresh one (`in_child`)."""

    def __init__(self, workers: int):
        self.env = thread_share(workers)
        self.pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memkd-run")

    def submit(self, fn, *args, env=None, **kwargs):
        return self.pool.submit(in_child, fn, *args, env={**self.env, **(env or {})}, **kwargs)

    def as_completed(self, futures):
        return cf.as_completed(list(futures))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Tasks on a Dask cluster, each in a fresh child process of its worker (`in_child`); Dask
    reruns a task whose child process died up to `retries` times (a failing notebook is not
    rerun). The sweep and book folders must be on a file system the workers share."""

    def __init__(
        self,
        scheduler: str | None = None,
        scheduler_file: str | None = None,
        dask_local: int | None = None,
        retries: int = 1,
    ):
        from dask.distributed import Client, LocalCluster

        self.cluster = None
        if dask_local:
            self.cluster = LocalCluster(
                n_workers=dask_local, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self.cluster)
        elif scheduler_file:
            self.client = Client(scheduler_file=str(scheduler_file))
        else:
            self.client = Client(scheduler)
        self.env = thread_share(dask_local) if dask_local else {}  # remote: each worker's own settings
        self.retries = retries

    def submit(self, fn, *args, env=None, **kwargs):
        key = f"memkd-{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex[:8]}"
        return _DaskFuture(
            self.client.submit(
                _in_child_task, fn, args, kwargs, {**self.env, **(env or {})}, pure=False, key=key, retries=self.retries
            )
        )

    def as_completed(self, futures):
        from dask.distributed import as_completed

        wrapped = {f.future: f for f in futures}
        return (wrapped[done] for done in as_completed(list(wrapped)))

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(
    workers: int = 1,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike | None = None,
    dask_local: int | None = None,
    retries: int = 1,
) -> Executor:
    """The executor a command line asks for: a Dask scheduler (by address or by the JSON file
    `dask scheduler --scheduler-file` writes), a Dask LocalCluster of `dask_local` single-threaded
    workers, else `workers` local processes. `retries`: Dask's reruns of a task whose child process died."""
    checks = [("workers", workers, 1), ("retries", retries, 0)] + (
        [("dask_local", dask_local, 1)] if dask_local is not None else []
    )
    for name, value, low in checks:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise invalid(name, "make_executor", f"an int >= {low}", value)
    given = [
        name
        for name, x in (("scheduler", scheduler), ("scheduler_file", scheduler_file), ("dask_local", dask_local))
        if x is not None and x != ""
    ]
    if len(given) > 1:
        raise invalid(
            given[-1],
            "make_executor",
            must=f"not be combined with {given[:-1]}: give at most one of scheduler, scheduler_file and dask_local",
            shown=f"all of {given}",
        )
    if scheduler_file and not os.path.isfile(scheduler_file):
        raise invalid(
            "scheduler_file",
            "make_executor",
            must="name an existing file (written by `dask scheduler --scheduler-file`)",
            got=str(scheduler_file),
        )
    if scheduler or scheduler_file or dask_local is not None:
        return DaskExecutor(scheduler, scheduler_file, dask_local, retries)
    return LocalExecutor(workers)
