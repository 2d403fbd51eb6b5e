"""memkd.book.grid_analysis: choosing settings on some teachers and testing them on others (Figs 5-7)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from memkd.book.chapter import Chapter
from memkd import experiments as ex
from memkd.book import grid_analysis as an
from memkd.config import make_config
from memkd.experiments.random_data import QUICK_PROFILE
from memkd.metrics import binomial_test, interval_test, per_unit_means


def grid_table(
    best_d, teachers=5, students=2, dims=(25, 50, 100, 200), per_class=(5, 10, 20), classes=(10,), noise=0.01, seed=0
) -> pd.DataFrame:
    """A composition table whose ratio peaks at best_d(per_class) (a log-parabola in d)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, c, pc, d, s in itertools.product(range(teachers), classes, per_class, dims, range(students)):
        peak = best_d(pc)
        ratio = 3.0 - (math.log(d) - math.log(peak)) ** 2 + rng.normal(0, noise)
        rows.append(
            {
                "dataset": k,
                "classes": c,
                "per_class": pc,
                "input_dim": d,
                "student": s,
                "ratio": ratio,
                "test_acc": ratio / c,
                "teacher_memorized": True,
            }
        )
    return pd.DataFrame(rows)


def test_cell_means_average_students_within_teachers_first():
    t = pd.DataFrame({"dataset": [0, 0, 0, 1], "temperature": [1.0, 1.0, 1.0, 1.0], "test_acc": [0.1, 0.2, 0.3, 0.6]})
    # per teacher 0.2 and 0.6 -> 0.4 (a mean over rows would give 0.3)
    assert an.cell_means(t, ["temperature"]).iloc[0] == pytest.approx(0.4)
    per = an.unit_cell_means(t, ["temperature"])
    assert per["students"].tolist() == [3, 1]


def test_best_cell_uses_only_the_choosing_teachers():
    rows = []
    for k, t, lr in itertools.product(range(4), (1.0, 10.0), (1e-3, 1e-2)):
        good = (t, lr) == (10.0, 1e-2) if k < 2 else (t, lr) == (1.0, 1e-3)
        rows.append({"dataset": k, "temperature": t, "lr": lr, "test_acc": 0.5 if good else 0.1})
    t = pd.DataFrame(rows)
    assert an.best_cell(t, ["temperature", "lr"], units=[0, 1]) == (10.0, 1e-2)
    assert an.best_cell(t, ["temperature", "lr"], units=[2, 3]) == (1.0, 1e-3)
    assert an.best_cell(t[t.temperature == 1.0], ["lr"], units=[0, 1]) in [(1e-3,), (1e-2,)]
    picked = an.select(t, {"temperature": 10.0, "lr": 1e-2}, units=[2, 3])
    assert sorted(picked.dataset.unique()) == [2, 3] and (picked.test_acc == 0.1).all()
    with pytest.raises(ValueError, match="no teacher"):
        an.cell_means(t, ["lr"], units=[7])


def test_log_slope():
    assert an.log_slope([5, 10, 20], [25, 50, 100]) == pytest.approx(1.0)
    assert an.log_slope([5, 10, 20], [100, 100, 100]) == pytest.approx(0.0)
    assert math.isnan(an.log_slope([5, 5], [25, 50]))


def test_best_dimension_grows_when_the_optimum_moves_with_per_class():
    t = grid_table(lambda pc: 5 * pc)  # optimum at 25, 50, 100
    best = an.best_dimension_per_unit(t)
    assert best.groupby("per_class").best_d.first().tolist() == [25, 50, 100]
    slopes = an.dimension_slopes(best)
    assert len(slopes) == 5 and slopes.slope.to_numpy() == pytest.approx(1.0)
    # every teacher's slope is exactly 1: no spread for a t interval, the exact sign test decides
    assert interval_test(slopes.slope, "above")["test"] == "exact sign test"
    assert interval_test(slopes.slope, "above")["p_value"] == pytest.approx(0.5**5)
    r = binomial_test(
        **{k: v for k, v in an.sign_counts(slopes.slope).items() if k != "teachers"}, p0=0.5, expect="above", level=0.05
    )
    assert r["p_value"] == pytest.approx(0.5**5) and r["verdict"] == "holds"


def test_largest_d_everywhere_does_not_pass_as_growth():
    """The old monotone check passed when the largest d won in every row; the slope test fails."""
    t = grid_table(lambda pc: 10_000)
    best = an.best_dimension_per_unit(t)
    assert (best.best_d == 200).all()
    slopes = an.dimension_slopes(best)
    counts = an.sign_counts(slopes.slope)
    assert counts["successes"] == 0 and binomial_test(0, counts["trials"], 0.5, "above")["p_value"] == 1.0
    assert binomial_test(0, 10, 0.5, "above")["verdict"] == "does not hold"  # ten teachers all at 0
    row = an.interior_row(t, units=[0, 1])
    adv = an.interior_advantage(t, row, units=[2, 3, 4])
    assert (adv.advantage < 0).all()
    assert interval_test(adv.advantage, "above")["verdict"] == "does not hold"


def test_interior_optimum_is_found_and_holds():
    t = grid_table(lambda pc: 50 if pc == 10 else 10_000)
    row = an.interior_row(t, units=[0, 1])
    assert (row["per_class"], row["input_dim"], row["ends"]) == (10, 50, (25, 200))
    adv = an.interior_advantage(t, row, units=[2, 3, 4])
    assert list(adv.dataset) == [2, 3, 4] and (adv.advantage > 0).all()
    assert interval_test(adv.advantage, "above")["verdict"] == "holds"
    with pytest.raises(ValueError, match="at least 3 input dimensions"):
        an.interior_row(grid_table(lambda pc: 50, dims=(25, 100)))


def test_failed_teachers_are_left_out_and_listed():
    t = grid_table(lambda pc: 5 * pc, teachers=3)
    bad = (t.dataset == 1) & (t.per_class == 20) & (t.input_dim == 25)
    t.loc[bad, ["ratio", "test_acc"]] = math.nan
    t.loc[bad, "teacher_memorized"] = False
    failed = an.failed_cells(t)
    assert failed[["classes", "per_class", "input_dim", "dataset"]].values.tolist() == [[10, 20, 25, 1]]
    best = an.best_dimension_per_unit(t)
    assert best.set_index(["dataset", "per_class"]).loc[(1, 20), "cells"] == 3
    assert an.failed_cells(grid_table(lambda pc: 50, teachers=2)).empty


def test_student_rows_keep_the_per_teacher_values():
    per = pd.DataFrame({"dataset": [0, 1, 2], "slope": [0.5, 1.0, -0.2], "students": [2, 3, 2]})
    rows = an.student_rows(per, "slope")
    assert len(rows) == 7
    means = per_unit_means(rows, "slope")
    assert means["value"].tolist() == pytest.approx([0.5, 1.0, -0.2])
    assert means["students"].tolist() == [2, 3, 2]


def test_claim_on_student_rows_counts_teachers(tmp_path):
    ch = Chapter("06_test", profile="smoke", results_dir=str(tmp_path), device="cpu")
    per = pd.DataFrame({"dataset": range(5), "slope": [0.9, 1.1, 1.0, 0.8, 1.2], "students": 2})
    text = ch.claim("grows", "The best d grows.", an.student_rows(per, "slope"), value="slope", expect="above")
    assert "5 teachers × 2 students" in text and "**holds**" in text


def test_knobs_text():  # grid_departure, which compares grids with it: tests/test_departures.py
    cfg = {"temperatures": [1.0, 20.0], "lrs": [0.003, 0.01], "epochs": 100}
    assert an.knobs_text(cfg, ["temperatures", "epochs"]) == "`temperatures` = (1, 20), `epochs` = 100"


def test_temperature_lr_setting_fixed_in_advance_is_in_the_grid():
    cfg = make_config(ex.temperature_lr.config, "temperature_lr", "quick", {})
    assert cfg.tested_temperature in cfg.temperatures and cfg.tested_lr in cfg.lrs
    assert (cfg.tested_temperature, cfg.tested_lr) == (QUICK_PROFILE["temperatures"][0], QUICK_PROFILE["lrs"][0])
    for profile in ("smoke", "paper"):
        c = make_config(ex.temperature_lr.config, "temperature_lr", profile, {})
        assert c.tested_temperature in c.temperatures and c.tested_lr in c.lrs and 1.0 in c.temperatures
    with pytest.raises(ValueError, match=r"'tested_temperature'.*one of \(1\.0, 20\.0\).*Got 7\.0"):
        make_config(ex.temperature_lr.config, "temperature_lr", "smoke", {"tested_temperature": 7.0})
    with pytest.raises(ValueError, match=r"'tested_lr'.*Got 0\.5"):
        make_config(ex.temperature_lr.config, "temperature_lr", "smoke", {"tested_lr": 0.5})


def test_composition_smoke_grid_has_an_interior():
    cfg = make_config(ex.dataset_composition.config, "dataset_composition", "smoke", {})
    assert len(cfg.input_dims) >= 3 and cfg.teachers >= 3


def test_cell_sems_are_the_spread_over_teachers_of_per_teacher_means():
    t = pd.DataFrame({"dataset": [0, 0, 1, 2], "per_class": [5] * 4, "test_acc": [0.1, 0.3, 0.4, 0.6]})
    sem = an.cell_sems(t, ["per_class"])
    assert sem.loc[5] == pytest.approx(pd.Series([0.2, 0.4, 0.6]).sem())  # teacher 0's students averaged first
    assert an.cell_means(t, ["per_class"]).loc[5] == pytest.approx(0.4)
