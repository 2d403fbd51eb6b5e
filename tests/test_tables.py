"""memkd.tables and the experiments' declarations: teacher ids, mean +- SEM over teachers
(`memkd.summarize`), CSV without float32 noise, and `help()` on every experiment."""

from __future__ import annotations

import io
import pydoc
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

import memkd
from memkd import experiments as ex
from memkd.config import PROFILES
from memkd.declare import COLUMNS, EXPERIMENTS, table_columns
from memkd.tables import csv_ready, teacher_ids

NOT_EXPERIMENTS: set[str] = set()  # exported helpers, not experiments (departures: memkd.book.departures)


def students(seeds=(0, 1), teachers=2, per_teacher=3) -> pd.DataFrame:
    """A table like a two-seed sweep's: `dataset` restarts at 0 in every run."""
    rng = np.random.default_rng(0)
    rows = [
        {"seed": s, "dataset": k, "student": j, "alpha": a, "test_acc": float(rng.random())}
        for s in seeds
        for k in range(teachers)
        for j in range(per_teacher)
        for a in (0.2, 0.6)
    ]
    table = pd.DataFrame(rows)
    table.insert(0, "teacher_id", [f"{s}:{k}" for s, k in zip(table.seed, table.dataset)])
    return table


def test_memkd_has_one_summarize():
    """One implementation of mean +- SEM over teachers: `memkd.tables.summarize` (`memkd.summarize`)."""
    import ast
    from pathlib import Path

    package = Path(memkd.__file__).parent
    defined = [
        f"{path.relative_to(package)}:{node.lineno}"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == "summarize"
    ]
    assert defined == ["tables.py:" + str(memkd.tables.summarize.__code__.co_firstlineno)], defined


def test_errorbar_lines_draws_the_mean_and_sem_over_teachers_of_a_two_seed_table():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from memkd.book.plots import errorbar_lines

    table = students()
    fig, ax = plt.subplots()
    errorbar_lines(ax, table, "alpha", "test_acc")
    drawn = ax.containers[0]  # the ErrorbarContainer: (line, caps, bars)
    s = memkd.summarize(table, "test_acc", by=["alpha"])  # n = 4 teachers per alpha: seeds kept apart
    assert drawn.lines[0].get_ydata().tolist() == pytest.approx(s.test_acc.tolist())
    low = [seg[0][1] for seg in drawn.lines[2][0].get_segments()]
    assert low == pytest.approx((s.test_acc - s.test_acc_sem).tolist())
    plt.close(fig)


def test_summarize_counts_teachers_not_students_nor_run_local_indices():
    table = students()
    s = memkd.summarize(table, "test_acc", by=["alpha"])
    assert s.alpha.tolist() == [0.2, 0.6] and s.n.tolist() == [4, 4] and s.students.tolist() == [3, 3]
    for alpha, row in s.set_index("alpha").iterrows():
        means = table[table.alpha == alpha].groupby("teacher_id").test_acc.mean()
        assert row.test_acc == pytest.approx(means.mean())
        assert row.test_acc_sem == pytest.approx(means.std(ddof=1) / np.sqrt(4))
    by_index = memkd.summarize(table, "test_acc", by=["alpha"], unit="dataset")
    assert by_index.n.tolist() == [2, 2]  # what a per-`dataset` summary of a sweep would wrongly count
    pooled = memkd.summarize(table, ["test_acc"], unit=None)
    assert pooled.n.tolist() == [len(table)]


def test_summarize_names_a_missing_column():
    with pytest.raises(ValueError, match=r"must have the column\(s\) \['teacher_id'\] \(.*unit='dataset'\)"):
        memkd.summarize(students().drop(columns="teacher_id"), "test_acc")
    with pytest.raises(
        ValueError, match=r"'table' parameter of summarize must have the column\(s\) \['nope'\]\. Got columns"
    ):
        memkd.summarize(students(), "nope")


def test_teacher_ids_name_seed_and_index():
    assert teacher_ids(7, [0, 2]).tolist() == ["7:0", "7:2"]


def test_csv_prints_float32_values_short_and_exact():
    value = float(np.float32(0.2375))
    assert repr(value) == "0.23749999701976776"
    table = pd.DataFrame({"acc": [value, float(np.float32(1 / 3)), np.nan], "alpha": [0.1, 1 / 3, 0.6], "n": [1, 2, 3]})
    text = csv_ready(table).to_csv(index=False)
    assert text.splitlines()[1] == "0.2375,0.1,1" and "0.3333333333333333" in text  # float64 kept whole
    back = pd.read_csv(io.StringIO(text))
    assert np.array_equal(back.acc.to_numpy(np.float32).astype(float), table.acc.to_numpy(), equal_nan=True)
    assert back.alpha.tolist() == table.alpha.tolist()


def test_every_experiment_is_declared():
    names = [n for n in ex.__all__ if n not in NOT_EXPERIMENTS]
    assert sorted(names) == sorted(n for n in EXPERIMENTS if n in names), [n for n in names if n not in EXPERIMENTS]
    for name in names:
        assert getattr(ex, name) is EXPERIMENTS[name], f"{name} is not declared with @experiment"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_help_lists_knobs_with_profile_defaults_and_columns(name):
    fn = EXPERIMENTS[name]
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    config = fn.config
    knobs = [f for f in fields(config) if "constraint" in f.metadata]
    assert knobs
    for f in knobs:
        line = next((ln for ln in text.splitlines() if ln.strip().startswith(f"{f.name} : ")), None)
        assert line is not None, f"help({name}) does not list the knob {f.name}"
        assert f.metadata["help"] in line
        for profile in PROFILES:
            value = config.PROFILE_VALUES.get(profile, {}).get(f.name, f.default)
            value = list(value) if isinstance(value, tuple) else value
            assert repr(value) in line, f"help({name}): {f.name} lacks its {profile} default {value!r}"
    if fn.returns_table:
        notes = getattr(config, "COLUMN_NOTES", {})  # what a column holds in this experiment's rows
        for column in table_columns(config):
            meaning = notes.get(column, COLUMNS[column])
            assert f"{column} : {meaning}" in text, f"help({name}) does not explain {column}"


def test_an_experiments_table_has_its_declared_columns_and_teacher_ids():
    table = ex.logit_distillation("smoke", seed=3, teachers=2, students=2, epochs=10, device="cpu")
    assert table.columns[0] == "teacher_id" and list(table.columns) == list(table_columns(ex.logit_distillation.config))
    assert (table.teacher_id == "3:" + table.dataset.astype(str)).all() and table.teacher_id.nunique() == 2
    assert "teacher_first_perfect" in table.columns and "teacher_epochs" not in table.columns  # the knob's name
    assert "targets" not in table.columns and set(table.kind) == {"soft"}


def test_explorer_labels_are_shown_whole():
    pytest.importorskip("ipywidgets")
    from memkd.book.widgets import toy_2d_sliders

    sliders = toy_2d_sliders(temperature=5.0)
    assert [s.description for s in sliders] == ["temperature", "alpha", "width", "dataset seed"]
    assert all(s.style.description_width == "initial" for s in sliders) and sliders[0].value == 5.0


def test_pages_show_the_results_folder_without_the_build_machines_path(tmp_path):
    from memkd.book.chapter import Chapter

    ch = Chapter(
        "02_x", profile="smoke", results_dir=str(tmp_path / "out" / "results" / "smoke" / "02_x"), device="cpu"
    )
    assert ch.results_shown == "results/smoke/02_x" and str(tmp_path) not in ch.results_shown
    assert (
        Chapter("02_x", profile="smoke", results_dir=str(tmp_path / "elsewhere"), device="cpu").results_shown
        == "elsewhere"
    )
