"""Run a notebook over a grid of parameters with papermill: resumable, on local processes or Dask.

The modules, from the grid to the results:

    grid        the notebook's parameters (papermill's parser), -p parsing, grids, run ids
    validate    each point checked against the experiment's knobs before any kernel starts
    run         one papermill execution (`execute_point`), its record, per-profile cell timeouts
    executors   where runs execute: local processes or Dask (shared with the book build), each
                run in a fresh `python -m memkd.sweep` child (__main__)
    aggregate   every finished run's typed table -> results.parquet and a results.csv export; its other
                tables (hard-label students, claims) -> results.<name>.parquet / .csv
    driver      the sweep folder (lock, status, manifest.json) and `run_sweep`

Public API::

    run_sweep(notebook, grid, sweep_dir, workers=2, scheduler=None, scheduler_file=None,
              dask_local=None, timeout=None, retries=1, retry_failed=False, progress=True) -> SweepResult
    plan_sweep(notebook, grid, sweep_dir, this_machine=True) -> [(run id, point, record on disk or None)]
    execute_point(notebook, parameters, run_dir, timeout=None, ...) -> record (dict); run it in a
        process with no other kernel: in_child(execute_point, ..., env={...})
    in_child(fn, *args, env=None, **kwargs) -> fn's result, computed in a fresh child process
    notebook_parameters(notebook)      -> {name: Param(name, type, default, help)}
    expand_grid(params, grid)          -> list of points (dicts), typed and validated
    parse_cli_grid(["alpha=0.2,0.6"])  -> {"alpha": [CliValue(0.2, "0.2"), CliValue(0.6, "0.6")]}
    load_grid(path)                    -> the grid of a YAML file
    run_id(notebook, point)            -> the stable folder name of a run
    aggregate(sweep_dir, runs=None)    -> one DataFrame of every finished run's table.parquet
    summarize_sweep(sweep_dir, by=None, values=None) -> mean +- SEM over teachers per swept setting
    make_executor(workers, scheduler, scheduler_file, dask_local, retries) -> Executor

A grid is a mapping ``{name: value or list of values}``; lists expand as a product. An optional
``points:`` entry lists explicit points (mappings), each crossed with the product of the others::

    alpha: [0.2, 0.6]        # 2 x 3 = 6 runs ...
    seed: [0, 1, 2]
    points:                  # ... times 2 explicit points = 12 runs
      - {temperature: 1.0, lr: 0.01}
      - {temperature: 10.0, lr: 0.003}

On the command line, ``-p alpha=0.2,0.6`` gives two values; each value is read as YAML, so
``-p 'ids=[1, 2]'`` is one list and ``-p "title='a,b'"`` one string with a comma.

Layout of a sweep directory::

    manifest.json            the notebook, and the status and provenance of every run in the folder
                             (`grid`: the run ids of the last invocation's grid)
    columns.csv              what each column of each results file means (memkd/columns.yml)
    results.parquet/.csv     every finished run in the folder (a later invocation with other points
                             adds to them): their parameters as columns + their table
    runs/<id>/               a finished run: run.json, the executed notebook, results/ (table.parquet ...)
    runs/.tmp-<id>-<rand>/   a run in flight (removed at the next start if its process was killed)
    failed/<id>/             the last failed attempt of a run, with its partly executed notebook

`<id>` hashes the notebook's code cells and the point's full parameter set (defaults filled in),
so an unchanged point is found again and skipped; editing a code cell starts fresh runs (the old
ones stay in runs/, out of the results and the manifest's counts: its `stale` list). A folder
holds the runs of one notebook: sweeping another notebook into it is refused, naming both. The
notebook's `results_dir` parameter, when it has one, is set to `<run folder>/results`; it cannot
be swept. An empty `profile` is replaced by `$MEMKD_PROFILE` here, so remote workers agree.

Left out: scheduling priorities, retries of failing notebooks within one invocation (a failure
is recorded, the others go on; `retry_failed=True` reruns them), and cleaning of old runs.
"""

from memkd.sweep.aggregate import (
    aggregate,
    collect_tables,
    column_meanings,
    summarize_sweep,
    swept_parameters,
    write_columns,
    write_results,
)
from memkd.sweep.driver import SweepResult, lock_sweep_dir, plan_sweep, run_sweep, status_on_disk
from memkd.sweep.executors import ChildDied, Executor, in_child, make_executor, thread_share
from memkd.sweep.grid import (
    CliValue,
    Param,
    expand_grid,
    load_grid,
    notebook_parameters,
    parse_cli_grid,
    resolve_point,
    run_id,
)
from memkd.sweep.run import CELL_TIMEOUT, execute_point, timeout_for
from memkd.sweep.validate import check_points

__all__ = [
    "run_sweep",
    "plan_sweep",
    "SweepResult",
    "lock_sweep_dir",
    "status_on_disk",
    "execute_point",
    "CELL_TIMEOUT",
    "timeout_for",
    "make_executor",
    "Executor",
    "in_child",
    "ChildDied",
    "thread_share",
    "notebook_parameters",
    "Param",
    "expand_grid",
    "parse_cli_grid",
    "CliValue",
    "load_grid",
    "resolve_point",
    "run_id",
    "check_points",
    "aggregate",
    "collect_tables",
    "write_results",
    "column_meanings",
    "write_columns",
    "summarize_sweep",
    "swept_parameters",
]
