"""memkd.sweep and `memkd sweep` on a tiny fixture notebook (plain Python kernels, about 2-5 s a run
on 2 busy cores): grids and their validation, local pool vs Dask, kill -9 then resume, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from memkd import cli
from memkd.sweep import (
    aggregate,
    expand_grid,
    notebook_parameters,
    parse_cli_grid,
    run_id,
    run_sweep,
    thread_share,
)

FIXTURE = Path(__file__).parent / "fixtures" / "sweep_fixture.ipynb"
TIMEOUT = 60  # seconds per cell: a stuck kernel fails the run instead of hanging the test


@pytest.fixture(scope="module")
def params():
    return notebook_parameters(FIXTURE)


def sweep_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "memkd", "sweep", str(FIXTURE), "-o", str(out),
            "--timeout", str(TIMEOUT), "--no-progress", *args]


def read_log(path: Path) -> list[tuple[str, str, str]]:
    """(event, key, token) lines the fixture appends: one start and one end per execution."""
    if not path.is_file():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]


def key(point: dict) -> str:
    """The fixture's name for a point: f"{seed}-{alpha}-{label}-{double}" with defaults filled in."""
    full = {"seed": 0, "alpha": 0.5, "label": "a", "double": False, **point}
    return f"{full['seed']}-{full['alpha']}-{full['label']}-{full['double']}"


def finished(out: Path) -> dict[str, dict]:
    """run id -> parameters of every committed run."""
    return {p.parent.name: json.loads(p.read_text())["parameters"] for p in (out / "runs").glob("*/run.json")}


# --------------------------------------------------------------------------- grids and validation
def test_parameters_cell_is_read_with_types_defaults_and_help(params):
    assert list(params)[:3] == ["profile", "seed", "alpha"]
    assert (params["seed"].type, params["seed"].default) == (int, 0)
    assert (params["alpha"].type, params["double"].type, params["label"].type) == (float, bool, str)
    assert params["alpha"].help == "a float knob"


def test_lists_expand_as_a_product_times_explicit_points(params):
    grid = {"alpha": [0.1, 1], "seed": [0, 1], "points": [{"label": "x"}, {"double": True}]}
    points = expand_grid(params, grid)
    assert len(points) == 2 * 2 * 2
    assert points[0] == {"label": "x", "alpha": 0.1, "seed": 0}
    assert points[-1] == {"double": True, "alpha": 1.0, "seed": 1}
    assert isinstance(points[-1]["alpha"], float)  # an int given for a float parameter becomes a float
    assert expand_grid(params, {"seed": [1, 1, 2]}) == [{"seed": 1}, {"seed": 2}]  # duplicates once


def test_command_line_values_take_each_parameter_type(params):
    grid = parse_cli_grid(["alpha=0.1,1", "double=true,no", 'label="x,y",z', "seed=3"])
    points = expand_grid(params, grid)
    assert points[0] == {"alpha": 0.1, "double": True, "label": "x,y", "seed": 3}
    assert {p["double"] for p in points} == {True, False} and {p["label"] for p in points} == {"x,y", "z"}
    with pytest.raises(ValueError, match="name=value"):
        parse_cli_grid(["seed"])


def test_unknown_parameter_is_refused_with_the_notebooks_parameters(params):
    with pytest.raises(ValueError, match="unknown parameter 'alhpa'") as info:
        expand_grid(params, {"alhpa": [0.1]})
    assert "seed: int = 0  # base random seed" in str(info.value)
    assert "alpha: float = 0.5" in str(info.value)


@pytest.mark.parametrize("grid", [
    parse_cli_grid(["seed=x"]), parse_cli_grid(["seed=1.5"]), parse_cli_grid(["double=maybe"]),
    {"seed": [1.5]}, {"seed": [True]}, {"alpha": ["0.1"]}, {"label": [3]},
])
def test_value_of_the_wrong_type_is_refused(params, grid):
    name = next(iter(grid))
    with pytest.raises(ValueError, match=f"the '{name}' parameter must be") as info:
        expand_grid(params, grid)
    assert "The notebook's parameters are" in str(info.value)


@pytest.mark.parametrize("grid", [{}, {"seed": []}, {"points": []}])
def test_empty_grid_is_refused(params, grid):
    with pytest.raises(ValueError, match="the grid is empty") as info:
        expand_grid(params, grid)
    assert "profile: str = ''" in str(info.value)


def test_results_dir_belongs_to_the_sweep(params):
    with pytest.raises(ValueError, match="set by the sweep"):
        expand_grid(params, {"results_dir": ["/tmp/x"]})


def test_run_id_is_stable_and_fills_in_defaults(params):
    assert run_id(FIXTURE, {"seed": 0}) == run_id(FIXTURE, {"seed": 0, "alpha": 0.5}, params)
    assert run_id(FIXTURE, {"seed": 0}) != run_id(FIXTURE, {"seed": 1})
    assert len(run_id(FIXTURE, {"seed": 0})) == 16


def test_bad_grid_stops_before_anything_runs(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown parameter"):
        run_sweep(FIXTURE, {"nope": [1]}, tmp_path / "sweep")
    with pytest.raises(ValueError, match="The 'workers' parameter of run_sweep must be an int >= 1. Got 0"):
        run_sweep(FIXTURE, {"seed": [1]}, tmp_path / "sweep", workers=0)
    assert not (tmp_path / "sweep").exists()
    assert cli.main(["sweep", str(FIXTURE), "-p", "seed=x", "-o", str(tmp_path / "s2")]) == 2
    err = capsys.readouterr().err
    assert "the 'seed' parameter must be an int. Got 'x' instead" in err and "label: str = 'a'" in err


# --------------------------------------------------------------------------- real sweeps
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_aggregate_infers_each_column_over_all_runs_and_keeps_text_that_looks_numeric(tmp_path):
    # a run whose hex token reads as 9.7e399 in its own 3-row CSV must not turn into `inf`
    tables = {"r1": "student,token,score,ok,note\n0,97e398195100,0.5,True,\n1,97e398195100,inf,False,x\n",
              "r2": "student,token,score,ok,note\n0,3fa9c2e1b0d4,1.5,True,\n"}
    for rid, text in tables.items():
        folder = tmp_path / "runs" / rid
        (folder / "results").mkdir(parents=True)
        (folder / "results" / "table.csv").write_text(text)
        (folder / "run.json").write_text(json.dumps({"parameters": {"seed": int(rid[1]), "label": "1"},
                                                     "notebook": "gone.ipynb"}))
    table = aggregate(tmp_path)
    assert table.token.tolist() == ["97e398195100", "97e398195100", "3fa9c2e1b0d4"]
    assert table.score.dtype == float and table.score.tolist() == [0.5, float("inf"), 1.5]
    assert table.student.dtype.kind == "i" and table.ok.tolist() == [True, False, True]
    assert table.label.tolist() == ["1"] * 3 and table.seed.tolist() == [1, 1, 2]  # parameters keep their types
    assert table.note.isna().tolist() == [True, False, True]


def test_thread_share_splits_the_cores_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert thread_share(4) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
    assert thread_share(32) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # never zero
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_share(4) == {}


def test_local_pool_and_dask_give_the_same_table(tmp_path):
    grid = {"seed": [0, 1], "alpha": [0.2]}  # one round of 2 workers: 2 runs
    started = time.perf_counter()
    local = run_sweep(FIXTURE, grid, tmp_path / "local", workers=2, timeout=TIMEOUT, progress=False)
    local_s = time.perf_counter() - started
    started = time.perf_counter()
    dask = run_sweep(FIXTURE, grid, tmp_path / "dask", dask_local=2, timeout=TIMEOUT, progress=False)
    dask_s = time.perf_counter() - started
    print(f"2 runs: local pool {local_s:.1f} s, Dask LocalCluster {dask_s:.1f} s (incl. cluster start)")
    assert (local.done, local.skipped, local.failed) == (2, 0, 0) == (dask.done, dask.skipped, dask.failed)

    def comparable(table):  # `token` names the execution, so it differs by design
        return table.drop(columns="token").sort_values(["run", "student"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(comparable(local.table), comparable(dask.table))
    table = pd.read_parquet(tmp_path / "local" / "results.parquet")
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "local" / "results.csv"), check_dtype=False)
    assert list(table.columns[:3]) == ["run", "param_seed", "alpha"]  # the table's own `seed` stays
    assert len(table) == 2 * 3 and set(zip(table.param_seed, table.alpha)) == {(0, .2), (1, .2)}
    share = thread_share(2).get("OMP_NUM_THREADS")  # 2 runs side by side split the cores
    assert table.omp_threads.astype(str).eq(share or os.environ.get("OMP_NUM_THREADS", "")).all()
    row = table[(table.param_seed == 1) & (table.alpha == 0.2) & (table.student == 2)].iloc[0]
    assert row.score == pytest.approx(1.4) and row.seed == 12
    for rid in table.run.unique():
        folder = tmp_path / "local" / "runs" / rid
        assert (folder / "sweep_fixture.ipynb").is_file() and (folder / "results" / "table.csv").is_file()
    manifest = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 2, "failed": 0, "pending": 0}

    again = run_sweep(FIXTURE, grid, tmp_path / "local", workers=2, timeout=TIMEOUT, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 2, 0)
    pd.testing.assert_frame_equal(again.table, local.table)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_kill_9_mid_sweep_then_resume_runs_everything_exactly_once(tmp_path):
    out, log = tmp_path / "sweep", tmp_path / "executions.log"
    seeds = list(range(4))  # 2 workers: the kill lands in the second round
    cmd = sweep_cmd(out, "-p", f"seed={','.join(map(str, seeds))}", "-p", "sleep=1.0",
                    "-p", f"log_file={log}", "--workers", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while len(finished(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = finished(out)
    assert 2 <= len(committed) < len(seeds), "the kill should land mid-sweep"
    lines_at_kill = read_log(log)
    time.sleep(2.5)  # longer than a run's sleep: an orphaned kernel would log its end by now
    assert finished(out) == committed, "a worker outlived the killed sweep and committed a run"
    assert read_log(log) == lines_at_kill, "a kernel outlived the killed sweep"

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = rerun.stdout.strip().splitlines()[-1]
    assert f"{len(seeds) - len(committed)} done, {len(committed)} skipped, 0 failed" in summary
    runs = finished(out)
    assert sorted(p["seed"] for p in runs.values()) == seeds  # nothing lost
    assert not list((out / "runs").glob(".tmp-*"))
    # every point was committed exactly once: the rerun executed exactly the points not yet done,
    new_lines = read_log(log)[len(lines_at_kill):]
    done_before = {key(p) for p in committed.values()}
    rerun_starts = [k for event, k, _ in new_lines if event == "start"]
    assert sorted(rerun_starts) == sorted({key({"seed": s}) for s in seeds} - done_before)
    # and the table holds, per point, the execution that ended last for that point
    table = pd.read_csv(out / "results.csv", dtype={"token": str})
    assert len(table) == len(seeds) * 3 and table.groupby("run").token.nunique().eq(1).all()
    ends = {k: token for event, k, token in read_log(log) if event == "end"}
    for rid, point in runs.items():
        assert table[table.run == rid].token.iloc[0] == ends[key(point)]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_failing_point_is_recorded_the_others_finish_and_retry_reruns_only_it(tmp_path):
    out, log, flag = tmp_path / "sweep", tmp_path / "executions.log", tmp_path / "fail-now"
    flag.touch()
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        f"log_file: {log}\n"
        f"points:\n  - {{seed: 0}}\n  - {{seed: 1, fail_while: {flag}}}\n  - {{seed: 2}}\n")
    cmd = sweep_cmd(out, "--grid", str(grid_file), "--workers", "3")

    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1
    assert "2 done, 0 skipped, 1 failed" in first.stdout
    assert "asked to fail" in first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 2, "failed": 1, "pending": 0}
    bad = next(r for r in manifest["runs"] if r["status"] == "failed")
    assert bad["parameters"]["seed"] == 1 and "RuntimeError: asked to fail" in bad["error"]
    executed = json.loads((out / "failed" / bad["run"] / "sweep_fixture.ipynb").read_text())
    assert bad["cell_index"] == 4 and "time.sleep(sleep)" in bad["cell_source"]  # as in the fixture
    assert "fail_while" in "".join(executed["cells"][bad["executed_cell_index"]]["source"])
    assert len(pd.read_csv(out / "results.csv")) == 2 * 3  # the finished runs are aggregated

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # no retry: stays failed
    assert second.returncode == 1 and "0 done, 2 skipped, 1 failed" in second.stdout
    lines = len(read_log(log))

    flag.unlink()
    third = subprocess.run([*cmd, "--retry-failed"], capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert "1 done, 2 skipped, 0 failed" in third.stdout
    assert [k for event, k, _ in read_log(log)[lines:] if event == "start"] == [key({"seed": 1})]
    assert not (out / "failed" / bad["run"]).exists()
    assert len(pd.read_csv(out / "results.csv")) == 3 * 3


# --------------------------------------------------------------------------- the command line
def test_list_params_and_dry_run_run_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEMKD_PROFILE", raising=False)  # it would fill in the empty profile
    assert cli.main(["sweep", str(FIXTURE), "--list-params"]) == 0
    assert "alpha: float = 0.5  # a float knob" in capsys.readouterr().out
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(FIXTURE), "-p", "seed=0,1", "-o", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["pending", "pending"]
    assert lines[0].split()[0] == run_id(FIXTURE, {"seed": 0}) and not out.exists()


def test_book_command_passes_its_options_to_build_book(monkeypatch):
    import memkd.book

    calls = []

    def build_book(profile="quick", workers=1, scheduler=None, output="_build", timeout=None, *, root=None):
        calls.append(dict(profile=profile, workers=workers, scheduler=scheduler, output=output, timeout=timeout))

    monkeypatch.setattr(memkd.book, "build_book", build_book)
    assert cli.main(["book", "--profile", "smoke", "--workers", "2", "--output", "/tmp/b", "--timeout", "9"]) == 0
    assert cli.main(["book", "--profile", "paper", "--scheduler", "tcp://head:8786"]) == 0
    assert calls == [dict(profile="smoke", workers=2, scheduler=None, output="/tmp/b", timeout=9),
                     dict(profile="paper", workers=1, scheduler="tcp://head:8786", output="_build", timeout=None)]
