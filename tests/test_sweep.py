"""memkd.sweep and `memkd sweep` on a tiny fixture notebook (plain Python kernels, about 2-5 s a run
on 2 busy cores): grids and their validation (types, -p as YAML, the experiments' knobs), typed
aggregation, the lock without fcntl, local pool vs Dask, kill -9 then resume, failures, the CLI."""

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

import memkd
from memkd import cli
from memkd.sweep import (
    CELL_TIMEOUT,
    ChildDied,
    aggregate,
    check_points,
    expand_grid,
    in_child,
    make_executor,
    notebook_parameters,
    parse_cli_grid,
    run_id,
    run_sweep,
    thread_share,
    timeout_for,
)
from memkd.sweep.grid import read_notebook

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "sweep_fixture.ipynb"
TEACHERS = Path(__file__).parent / "fixtures" / "sweep_teachers.ipynb"  # a real experiment, smoke-sized
CHAPTERS = sorted((ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"))
TIMEOUT = 60  # seconds per cell: a stuck kernel fails the run instead of hanging the test


@pytest.fixture(scope="module")
def params():
    return notebook_parameters(FIXTURE)


def sweep_cmd(out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "memkd",
        "sweep",
        str(FIXTURE),
        "-o",
        str(out),
        "--timeout",
        str(TIMEOUT),
        "--no-progress",
        *args,
    ]


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


def test_command_line_values_are_yaml_so_lists_and_commas_fit(params):
    assert [v.value for v in parse_cli_grid(["ids=[1, 2]"])["ids"]] == [[1, 2]]  # one list value
    assert [v.value for v in parse_cli_grid(["ids=[1, 2],[3]"])["ids"]] == [[1, 2], [3]]
    points = expand_grid(params, parse_cli_grid(["label='a,b'", "alpha=1e-3,2"]))
    assert points == [{"label": "a,b", "alpha": 0.001}, {"label": "a,b", "alpha": 2.0}]  # YAML 1.1 reads 1e-3 as text
    assert expand_grid(params, parse_cli_grid(["label=no,007"])) == [
        {"label": "no"},
        {"label": "007"},
    ]  # text stays text
    assert expand_grid(params, parse_cli_grid(["label="])) == [{"label": ""}]
    with pytest.raises(ValueError, match="'label' parameter of memkd sweep must be YAML flow items"):
        parse_cli_grid(["label=[1, 2"])
    with pytest.raises(ValueError, match="The 'label' parameter of the notebook must be a str. Got \\[1, 2\\]"):
        expand_grid(params, parse_cli_grid(["label=[1, 2]"]))


def test_unknown_parameter_is_refused_with_the_notebooks_parameters(params):
    with pytest.raises(ValueError, match="unknown parameter 'alhpa'") as info:
        expand_grid(params, {"alhpa": [0.1]})
    assert "seed: int = 0  # base random seed" in str(info.value)
    assert "alpha: float = 0.5" in str(info.value)


@pytest.mark.parametrize(
    "grid",
    [
        parse_cli_grid(["seed=x"]),
        parse_cli_grid(["seed=1.5"]),
        parse_cli_grid(["double=maybe"]),
        {"seed": [1.5]},
        {"seed": [True]},
        {"alpha": ["0.1"]},
        {"label": [3]},
    ],
)
def test_value_of_the_wrong_type_is_refused(params, grid):
    name = next(iter(grid))
    with pytest.raises(ValueError, match=f"The '{name}' parameter of the notebook must be") as info:
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
    assert (
        "The 'seed' parameter of sweep_fixture.ipynb must be an int. Got 'x' instead" in err
        and "label: str = 'a'" in err
    )


@pytest.mark.parametrize("option", ["--workers", "--dask-local"])
@pytest.mark.parametrize("command", ["sweep", "book"])
def test_zero_workers_are_refused_on_the_command_line(tmp_path, capsys, option, command):
    out = tmp_path / "out"
    args = [command, *([str(FIXTURE)] if command == "sweep" else []), option, "0", "-o", str(out)]
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2 and not out.exists()
    assert f"{option}: must be an int >= 1; got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="'dask_local' parameter of run_sweep must be an int >= 1. Got 0"):
        run_sweep(FIXTURE, {"seed": [1]}, tmp_path / "s", dask_local=0)
    with pytest.raises(ValueError, match="'dask_local' parameter of make_executor must be an int >= 1. Got 0"):
        make_executor(dask_local=0)
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- real sweeps
def write_run(root: Path, rid: str, table: pd.DataFrame | None, parameters: dict, csv: bool = False) -> None:
    folder = root / "runs" / rid
    (folder / "results").mkdir(parents=True)
    if table is not None:
        table.to_csv(folder / "results" / "table.csv", index=False) if csv else table.to_parquet(
            folder / "results" / "table.parquet", index=False
        )
    (folder / "run.json").write_text(json.dumps({"parameters": parameters, "notebook": "gone.ipynb"}))


def test_aggregate_keeps_each_runs_types_and_text_that_looks_numeric(tmp_path):
    # a hex token that reads as 9.7e399 once written as CSV stays text: nothing is parsed
    write_run(
        tmp_path,
        "r1",
        pd.DataFrame(
            {
                "student": [0, 1],
                "token": ["97e398195100"] * 2,
                "score": [0.5, float("inf")],
                "ok": [True, False],
                "note": [None, "x"],
            }
        ),
        {"seed": 1, "label": "1"},
    )
    write_run(
        tmp_path,
        "r2",
        pd.DataFrame({"student": [0], "token": ["3fa9c2e1b0d4"], "score": [1.5], "ok": [True], "note": [None]}),
        {"seed": 2, "label": "1"},
    )
    table = aggregate(tmp_path)
    assert table.token.tolist() == ["97e398195100", "97e398195100", "3fa9c2e1b0d4"]
    assert table.score.dtype == float and table.score.tolist() == [0.5, float("inf"), 1.5]
    assert table.student.dtype.kind == "i" and table.ok.dtype == bool and table.ok.tolist() == [True, False, True]
    assert table.label.tolist() == ["1"] * 3 and table.seed.tolist() == [1, 1, 2]  # parameters keep their types
    assert table.note.isna().tolist() == [True, False, True]
    from memkd.sweep import write_results

    write_results(table, tmp_path)
    again = pd.read_parquet(tmp_path / "results.parquet")
    pd.testing.assert_frame_equal(again.drop(columns="note"), table.drop(columns="note"))
    assert again.note.isna().tolist() == [True, False, True]  # pandas' own null for text
    assert (tmp_path / "results.csv").read_text().splitlines()[1].split(",")[4] == "97e398195100"


def test_aggregate_reads_no_csv_and_says_so(tmp_path):
    write_run(tmp_path, "r1", pd.DataFrame({"score": [1.0]}), {"seed": 1}, csv=True)
    with pytest.warns(UserWarning, match="wrote table.csv but no table.parquet"):
        table = aggregate(tmp_path)
    assert list(table.columns) == ["run", "seed"] and len(table) == 1


def test_thread_share_splits_the_cores_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert thread_share(4) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
    assert thread_share(32) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # never zero
    assert thread_share(1) == {}  # a single run keeps torch's own choice
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_share(4) == {}


def test_local_pool_and_dask_give_the_same_table(tmp_path):
    from dask.distributed import Client, LocalCluster

    grid = {"seed": [0, 1], "alpha": [0.2]}  # one round of 2 workers: 2 runs
    started = time.perf_counter()
    local = run_sweep(FIXTURE, grid, tmp_path / "local", workers=2, timeout=TIMEOUT, progress=False)
    local_s = time.perf_counter() - started
    started = time.perf_counter()
    # a scheduler reached through its scheduler file, as on an HPC cluster
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        client.write_scheduler_file(str(tmp_path / "scheduler.json"))
        dask = run_sweep(
            FIXTURE,
            grid,
            tmp_path / "dask",
            scheduler_file=tmp_path / "scheduler.json",
            timeout=TIMEOUT,
            progress=False,
        )
    dask_s = time.perf_counter() - started
    print(f"2 runs: local pool {local_s:.1f} s, Dask LocalCluster {dask_s:.1f} s (incl. cluster start)")
    assert (local.done, local.skipped, local.failed) == (2, 0, 0) == (dask.done, dask.skipped, dask.failed)

    def comparable(table):  # `token` names the execution; threads follow the workers' own settings
        return table.drop(columns=["token", "omp_threads"]).sort_values(["run", "student"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(comparable(local.table), comparable(dask.table))
    table = pd.read_parquet(tmp_path / "local" / "results.parquet")
    exported = pd.read_csv(
        tmp_path / "local" / "results.csv", dtype={"token": str, "omp_threads": str}, keep_default_na=False
    )
    pd.testing.assert_frame_equal(table, exported)
    assert list(table.columns[:3]) == ["run", "param_seed", "alpha"]  # the table's own `seed` stays
    assert len(table) == 2 * 3 and set(zip(table.param_seed, table.alpha)) == {(0, 0.2), (1, 0.2)}
    assert table.score.dtype == float and table.student.dtype.kind == "i"  # the notebook's own types
    share = thread_share(2).get("OMP_NUM_THREADS")  # 2 runs side by side split the cores
    assert table.omp_threads.eq(share or os.environ.get("OMP_NUM_THREADS", "")).all()
    row = table[(table.param_seed == 1) & (table.alpha == 0.2) & (table.student == 2)].iloc[0]
    assert row.score == pytest.approx(1.4) and row.seed == 12
    for rid in table.run.unique():
        folder = tmp_path / "local" / "runs" / rid
        assert (folder / "sweep_fixture.ipynb").is_file() and (folder / "results" / "table.parquet").is_file()
        assert (folder / "kernel.log").is_file()  # the kernel's own log lines, off the terminal
    manifest = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 2, "failed": 0, "pending": 0}
    for record in manifest["runs"]:  # each run's provenance, collected where it ran
        facts = record["provenance"]
        assert facts["memkd_version"] == memkd.__version__ and facts["python"] and facts["torch"]
        assert facts["hostname"] == record["host"] and record["cell_timeout_s"] == TIMEOUT

    again = run_sweep(FIXTURE, grid, tmp_path / "local", workers=2, timeout=TIMEOUT, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 2, 0)
    pd.testing.assert_frame_equal(again.table, local.table)


def test_a_two_seed_sweep_counts_every_teacher_and_gathers_every_table(tmp_path):
    """A real experiment (Fig 2 at a reduced smoke size) over seeds 0 and 1, 2 teachers each: the
    teacher ids are unique across the runs, so the SEM over teachers has n = 4 (with `dataset`, the
    index within a run, it would be 2); the hard-label tables and each run's claims are gathered
    too; the CSV export prints the float32 metrics without noise."""
    out = tmp_path / "sweep"
    result = run_sweep(TEACHERS, {"seed": [0, 1]}, out, workers=2, timeout=120, progress=False)
    assert result.ok and result.done == 2, result.records
    table = result.table
    assert table.teacher_id.nunique() == 4 and set(table.teacher_id) == {"0:0", "0:1", "1:0", "1:1"}
    assert table.dataset.nunique() == 2  # the index within one run, as before
    stats = memkd.summarize(table, "test_acc", by=["alpha"])
    assert stats["n"].tolist() == [4] and stats["students"].tolist() == [2]
    per_teacher = table.groupby("teacher_id").test_acc.mean()
    assert stats.test_acc_sem.iloc[0] == pytest.approx(per_teacher.std(ddof=1) / 2)
    hard = pd.read_parquet(out / "results.table_hard.parquet")
    assert set(hard.kind) == {"hard"} and hard.teacher_id.nunique() == 4 and set(hard.seed) == {0, 1}
    assert set(hard.teacher_id) == set(table.teacher_id)  # the same teachers, paired across tables
    claims = pd.read_csv(out / "results.claims.csv")
    assert sorted(claims.seed) == [0, 1] and set(claims.claim) == {"soft_runs"} and (claims.n == 2).all()
    assert set(result.tables) >= {"claims", "table_hard"}
    csv = pd.read_csv(out / "results.csv", dtype=str)
    assert csv.test_acc.str.len().max() <= 12, csv.test_acc.tolist()  # 0.2375, not 0.23749999701976776
    typed = pd.read_parquet(out / "results.parquet")
    assert (csv.test_acc.astype("float32").astype(float).to_numpy() == typed.test_acc.to_numpy()).all()


def test_a_growing_sweep_gathers_every_finished_run_in_its_folder(tmp_path, capsys):
    """Seeds 0 and 1, then seed 2 into the same folder: the results and the manifest hold all three
    runs (the second invocation's grid alone has one); the folder belongs to its notebook."""
    out = tmp_path / "S"
    first = run_sweep(FIXTURE, {"seed": [0, 1]}, out, workers=2, timeout=TIMEOUT, progress=False)
    second = run_sweep(
        FIXTURE, {"seed": [2], "alpha": [0.25], "label": ["b"]}, out, workers=1, timeout=TIMEOUT, progress=False
    )
    assert first.ok and second.ok and (second.done, second.skipped) == (1, 0)
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 3 * 3 and table.run.nunique() == 3
    assert sorted(set(zip(table.param_seed, table.alpha, table.label))) == [
        (0, 0.5, "a"),
        (1, 0.5, "a"),
        (2, 0.25, "b"),
    ]
    assert len(pd.read_csv(out / "results.csv")) == 9 and len(second.table) == 9
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 3, "failed": 0, "pending": 0} and len(manifest["runs"]) == 3
    assert manifest["grid"] == [r["run"] for r in second.records] and len(manifest["grid"]) == 1
    columns = pd.read_csv(out / "columns.csv", keep_default_na=False)
    assert columns[columns.file == "results.parquet"].column.tolist() == list(table.columns)
    meaning = dict(zip(columns.column, columns.meaning))
    assert meaning["label"] == "the notebook's parameter: a string knob" and "its folder under runs/" in meaning["run"]
    assert meaning["alpha"] == memkd.declare.COLUMNS["alpha"] and meaning["score"] == ""  # columns.yml first
    assert meaning["param_seed"].startswith("the notebook's parameter 'seed' (the table has its own 'seed')")

    with pytest.raises(
        ValueError, match="holds the runs of sweep_fixture.ipynb, so sweep_teachers.ipynb cannot be swept into it"
    ) as info:
        run_sweep(TEACHERS, {"seed": [0]}, out, progress=False)
    assert str(info.value).startswith("The 'out' parameter of memkd sweep must be a folder that holds the runs of one")
    assert cli.main(["sweep", str(TEACHERS), "-p", "seed=0", "-o", str(out), "--dry-run"]) == 2
    assert "sweep_fixture.ipynb" in capsys.readouterr().err
    assert len(pd.read_parquet(out / "results.parquet")) == 9  # nothing overwritten


def test_runs_of_an_earlier_version_of_the_notebook_stay_out_of_the_results(tmp_path):
    """Editing a code cell gives new run ids; the runs of the old code stay in runs/ but neither in
    the results nor in the manifest's counts (the manifest names them as stale)."""
    import nbformat

    notebook = tmp_path / "nb" / FIXTURE.name
    notebook.parent.mkdir()
    notebook.write_text(FIXTURE.read_text())
    out = tmp_path / "S"
    old = run_sweep(notebook, {"seed": [0, 1]}, out, workers=2, timeout=TIMEOUT, progress=False)
    nb = nbformat.read(str(notebook), as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code" and "time.sleep(sleep)" in c.source)
    code.source += "\n# edited"
    nbformat.write(nb, str(notebook))
    new = run_sweep(notebook, {"seed": [2]}, out, workers=1, timeout=TIMEOUT, progress=False)
    assert old.ok and new.ok and new.stale == 2 and "2 finished run(s) of an earlier version" in new.summary()
    table = pd.read_parquet(out / "results.parquet")
    assert table.param_seed.unique().tolist() == [2] and len(list((out / "runs").glob("*/run.json"))) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["done"] == 1 and sorted(manifest["stale"]) == sorted(r["run"] for r in old.records)


def test_summarize_gives_mean_and_sem_over_teachers_by_the_knobs_swept(tmp_path, capsys):
    """Four runs (seeds 0, 1 x alpha 0.2, 0.6), two teachers each, two students per teacher: the
    summary by alpha averages the students within each teacher, then gives mean +- SEM over the
    four teachers of each alpha; seed is not a setting."""
    from memkd.sweep import summarize_sweep, swept_parameters, write_results

    scores = {}
    for seed in (0, 1):
        for alpha in (0.2, 0.6):
            acc = [alpha + 0.01 * (2 * seed + k) + d for k in (0, 1) for d in (0.0, 0.1)]
            scores[(seed, alpha)] = acc
            write_run(
                tmp_path,
                f"r{seed}{alpha}",
                pd.DataFrame({"dataset": [0, 0, 1, 1], "student": [0, 1, 0, 1], "test_acc": acc}),
                {"seed": seed, "alpha": alpha},
            )
    write_results(aggregate(tmp_path), tmp_path)
    assert swept_parameters(tmp_path) == ["alpha"]
    summary = summarize_sweep(tmp_path)
    teachers = {a: [sum(scores[(s, a)][2 * k : 2 * k + 2]) / 2 for s in (0, 1) for k in (0, 1)] for a in (0.2, 0.6)}
    assert summary.alpha.tolist() == [0.2, 0.6] and summary.n.tolist() == [4, 4] and summary.students.tolist() == [2, 2]
    for row in summary.itertuples():
        per_teacher = pd.Series(teachers[row.alpha])
        assert row.test_acc == pytest.approx(per_teacher.mean())
        assert row.test_acc_sem == pytest.approx(per_teacher.std(ddof=1) / 2)
    assert summarize_sweep(tmp_path, by=[]).n.tolist() == [4]  # the same seed, the same teachers
    assert cli.main(["sweep", "summarize", str(tmp_path), "--by", "alpha", "--csv", str(tmp_path / "s.csv")]) == 0
    printed = capsys.readouterr().out
    assert (
        "mean +- SEM over teachers" in printed
        and f"{summary.test_acc[0]:.4f} +- {summary.test_acc_sem[0]:.4f}" in printed
    )
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s.csv"), summary, check_dtype=False)
    assert cli.main(["summarize", str(tmp_path), "--value", "tset_acc"]) == 2
    assert "The 'value' parameter of memkd summarize must be columns of results.parquet" in capsys.readouterr().err
    assert cli.main(["summarize", str(tmp_path / "nope")]) == 2
    assert "The 'out' parameter of memkd summarize must be a sweep folder" in capsys.readouterr().err


def test_aggregate_names_teachers_of_tables_that_lack_an_id(tmp_path):
    for rid, seed in (("r1", 0), ("r2", 1)):
        write_run(tmp_path, rid, pd.DataFrame({"dataset": [0, 1], "score": [0.5, 0.25]}), {"seed": seed})
    assert aggregate(tmp_path).teacher_id.tolist() == ["0:0", "0:1", "1:0", "1:1"]


def test_timeout_follows_the_profile_as_for_the_book(monkeypatch, tmp_path):
    import memkd.book.build

    assert memkd.book.build.CELL_TIMEOUT is CELL_TIMEOUT
    monkeypatch.delenv("MEMKD_PROFILE", raising=False)
    assert [timeout_for(p) for p in ("smoke", "quick", "paper", "")] == [600, 1800, 6 * 3600, 1800]
    monkeypatch.setenv("MEMKD_PROFILE", "paper")
    assert timeout_for("") == CELL_TIMEOUT["paper"] and timeout_for("smoke") == CELL_TIMEOUT["smoke"]
    with pytest.raises(ValueError, match="The 'timeout' parameter of run_sweep"):
        run_sweep(FIXTURE, {"seed": [1]}, tmp_path / "s", timeout=-1)


def test_in_child_returns_the_result_or_the_exception_of_a_fresh_process():
    assert in_child(os.getenv, "MEMKD_TEST_VALUE", env={"MEMKD_TEST_VALUE": "7"}) == "7"
    assert in_child(os.getpid) != os.getpid()
    with pytest.raises(ZeroDivisionError):
        in_child(divmod, 1, 0)
    with pytest.raises(ChildDied, match="exited with code 5"):
        in_child(os._exit, 5)


def test_executor_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="'scheduler_file' parameter of make_executor must name an existing file"):
        make_executor(scheduler_file=tmp_path / "nope.json")
    with pytest.raises(ValueError, match="'retries' parameter of make_executor must be an int >= 0"):
        make_executor(retries=-1)
    with pytest.raises(ValueError, match="at most one of"):
        make_executor(scheduler="tcp://x:1", dask_local=2)


def test_the_lock_works_without_fcntl(tmp_path):
    """filelock's portable path (as where fcntl does not exist): a second sweep is refused."""
    code = (
        "import sys, warnings; sys.modules['fcntl'] = None; warnings.simplefilter('ignore')\n"
        "import filelock\n"
        "from memkd.sweep import lock_sweep_dir\n"
        "assert not filelock.has_fcntl, filelock.FileLock\n"
        "with lock_sweep_dir(sys.argv[1]):\n"
        "    try:\n"
        "        with lock_sweep_dir(sys.argv[1]): print('not refused')\n"
        "    except RuntimeError as err: print('refused:', err)\n"
        "with lock_sweep_dir(sys.argv[1]): print('free again')\n"
        "print('fcntl' in sys.modules and sys.modules['fcntl'] is not None)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("refused: another sweep is running in") and lines[1:] == ["free again", "False"]


def test_the_lock_refuses_a_second_sweep(tmp_path):
    from memkd.sweep import lock_sweep_dir

    with lock_sweep_dir(tmp_path):
        with pytest.raises(RuntimeError, match="another sweep is running"):
            run_sweep(FIXTURE, {"seed": [1]}, tmp_path, progress=False)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_kill_9_mid_sweep_then_resume_runs_everything_exactly_once(tmp_path):
    out, log = tmp_path / "sweep", tmp_path / "executions.log"
    seeds = list(range(4))  # 2 workers: the kill lands in the second round
    cmd = sweep_cmd(
        out, "-p", f"seed={','.join(map(str, seeds))}", "-p", "sleep=1.0", "-p", f"log_file={log}", "--workers", "2"
    )
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
    new_lines = read_log(log)[len(lines_at_kill) :]
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
        f"log_file: {log}\npoints:\n  - {{seed: 0}}\n  - {{seed: 1, fail_while: {flag}}}\n  - {{seed: 2}}\n"
    )
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


def test_book_command_passes_its_options_to_build_book(monkeypatch, tmp_path):
    import memkd.book.build

    calls = []
    monkeypatch.setattr(memkd.book.build, "build_book", lambda **options: calls.append(options))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["book", "--profile", "smoke", "--workers", "2", "-o", "b", "--timeout", "9"]) == 0
    assert cli.main(["book", "--profile", "paper", "--scheduler-file", "s.json", "--retries", "3"]) == 0
    assert cli.main(["book", "--output", "/tmp/b", "--dask-local", "2"]) == 0
    assert calls == [
        dict(profile="smoke", retries=1, workers=2, timeout=9.0, output=str(tmp_path / "b")),
        dict(profile="paper", retries=3, scheduler_file="s.json"),
        dict(profile="quick", retries=1, dask_local=2, output="/tmp/b"),
    ]


def test_out_means_the_output_folder_in_every_subcommand():
    parser_help = {}
    for command in ("sweep", "book"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
    for command in ("sweep", "book"):
        parser_help[command] = subprocess.run(
            [sys.executable, "-m", "memkd", command, "--help"], capture_output=True, text=True
        ).stdout
        assert "-o DIR, --out DIR, --output DIR" in parser_help[command]
        assert "output folder" in parser_help[command] and "--scheduler-file FILE" in parser_help[command]


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"memkd {memkd.__version__}"


# --------------------------------------------------------------------------- the experiments' knobs
def test_a_point_the_experiment_refuses_stops_before_any_kernel(tmp_path, capsys):
    notebook = ROOT / "nbs" / "02_logit_distillation.ipynb"
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(notebook), "-p", "alpha=0.5,1.5", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        "The 'alpha' parameter of 02_logit_distillation.ipynb must be a float in the open interval (0, 1). "
        "Got 1.5 instead. The refused point: {'alpha': 1.5}."
    ) in err
    assert not out.exists()
    assert cli.main(["sweep", str(notebook), "-p", "profile=huge", "-o", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "The 'profile' parameter of 02_logit_distillation.ipynb must be one of ('smoke', 'quick', 'paper')" in err


INTERNAL_NAMES = (
    "expand_grid",
    "parse_cli_grid",
    "resolve_device",
    "run_sweep",
    "check_points",
    "notebook_parameters",
    "experiment_configs",
    "make_executor",
    "make_config",
)


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["-p", "alpha=1.5"],
            "The 'alpha' parameter of 02_logit_distillation.ipynb must be a float in the open interval",
        ),
        (["-p", "alpha=0.01"], "The 'alpha' parameter of 02_logit_distillation.ipynb contains 0.01"),
        (["-p", "seed=x"], "The 'seed' parameter of 02_logit_distillation.ipynb must be an int. Got 'x' instead."),
        (
            ["-p", "alhpa=0.2"],
            "The 'alhpa' parameter of 02_logit_distillation.ipynb must be a parameter of the notebook",
        ),
        (["-p", "seed"], "The '-p' parameter of memkd sweep must be name=value"),
        (["-p", "seed=1", "-p", "seed=2"], "The 'seed' parameter of memkd sweep must be given once"),
        (
            ["-p", "device=cuda:7"],
            "The 'device' parameter of 02_logit_distillation.ipynb must name a device this machine has",
        ),
        (
            ["-p", "width=1000000000"],
            "The 'width' parameter of 02_logit_distillation.ipynb must be small enough for this machine's memory",
        ),
        (
            ["--scheduler-file", "nope.json"],
            "The '--scheduler-file' parameter of memkd sweep must name an existing file",
        ),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_errors_speak_of_what_the_user_typed(tmp_path, capsys, monkeypatch, args, words, dry_run):
    """Every refusal of `memkd sweep` names the option or the notebook parameter the user typed
    (`alpha`, not the experiment's `alphas`), never an internal function; the machine's own limits
    (a device it lacks, a width beyond its memory) are refused before any kernel starts."""
    monkeypatch.chdir(tmp_path)
    notebook = ROOT / "nbs" / "02_logit_distillation.ipynb"
    out = tmp_path / "sweep"
    code = cli.main(
        ["sweep", str(notebook), "-p", "profile=smoke", *args, "-o", str(out), *(["--dry-run"] if dry_run else [])]
    )
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert not any(name in err for name in INTERNAL_NAMES), err
    assert not out.exists()


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_negative_timeout_is_refused_also_in_a_dry_run(tmp_path, capsys, dry_run):
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exit_:
        cli.main(
            [
                "sweep",
                str(FIXTURE),
                "-p",
                "seed=0",
                "--timeout",
                "-5",
                "-o",
                str(out),
                *(["--dry-run"] if dry_run else []),
            ]
        )
    assert exit_.value.code == 2 and not out.exists()
    assert "--timeout: must be a number of seconds > 0; got -5" in capsys.readouterr().err


def test_the_machine_check_is_left_to_a_dask_clusters_workers(tmp_path):
    """A point asking for a GPU is refused when the runs execute here, but not when they go to a
    Dask scheduler, whose workers may have one."""
    notebook = ROOT / "nbs" / "02_logit_distillation.ipynb"
    nb = read_notebook(notebook)
    point = [{"profile": "smoke", "device": "cuda:7"}]
    with pytest.raises(ValueError, match="'device' parameter of the notebook must name a device"):
        check_points(nb, notebook_parameters(nb), point)
    assert check_points(nb, notebook_parameters(nb), point, this_machine=False) == 1


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_names_its_experiments_and_its_defaults_pass(chapter):
    nb = read_notebook(chapter)
    assert nb.metadata.get("memkd", {}).get("experiments"), f"{chapter.name}: no memkd.experiments metadata"
    assert check_points(nb, notebook_parameters(nb), [{"profile": "smoke"}]) == len(nb.metadata["memkd"]["experiments"])


def test_chapter_tables_are_saved_typed_for_the_sweep(tmp_path):
    from memkd.book.chapter import Chapter

    ch = Chapter("00_test", profile="smoke", results_dir=str(tmp_path), device="cpu", seed=0)
    table = pd.DataFrame({"token": ["97e398195100", "3fa9c2e1b0d4"], "score": [0.5, float("inf")], "n": [1, 2]})
    table.attrs["config"] = {"alphas": (0.6,)}
    ch.save_table(table)
    typed = pd.read_parquet(tmp_path / "table.parquet")
    assert typed.token.tolist() == table.token.tolist() and typed.score.tolist() == [0.5, float("inf")]
    assert typed.n.dtype.kind == "i" and (tmp_path / "table.csv").is_file()
    mixed = pd.concat([pd.DataFrame({"a": ["x"]}), pd.DataFrame({"a": [3.5]})], ignore_index=True)
    ch.save_table(mixed, "mixed")  # one column, two types (tables concatenated): stored as text
    assert pd.read_parquet(tmp_path / "mixed.parquet").a.tolist() == ["x", "3.5"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dask_returns_a_tasks_own_error_without_retrying_it(tmp_path):
    log = tmp_path / "calls.log"
    with make_executor(dask_local=1, retries=2) as executor:
        future = executor.submit(subprocess.check_call, ["sh", "-c", f"echo call >> {log}; exit 3"])
        assert list(executor.as_completed([future])) == [future]
        with pytest.raises(subprocess.CalledProcessError):
            future.result()
    assert log.read_text().splitlines() == ["call"]  # the job's own error is not retried
