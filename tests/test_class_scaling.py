"""The class-scaling experiment of chapter 16 (the published Fig 4b, App. Fig 13): knobs, rows, thresholds, smoke run."""

import math

import numpy as np
import pandas as pd
import pytest

from memkd.book.chapters import ch16_class_scaling
from memkd.book.chapters.ch16_class_scaling import scaling_claims
from memkd.declare import table_columns
from memkd.experiments import class_scaling, temperature_window
from memkd.experiments.class_scaling import (
    FIG13_TEMPERATURES,
    ClassScalingConfig,
    collapse,
    per_class_of,
    students_of,
    thresholds,
)
from tests.conftest import ROOT, execute_chapter_at_smoke

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def smoke():
    return class_scaling("smoke", device="cpu")


def test_one_tidy_row_per_student_with_the_designs_sizes(smoke):
    cfg = smoke.attrs["config"]
    assert set(smoke.columns) <= set(table_columns(ClassScalingConfig))
    assert {
        "teacher_id",
        "classes",
        "scaling",
        "a",
        "n_per_class",
        "n_over_d",
        "a_log_c",
        "a_sqrt_c",
        "temperature",
        "teacher_perfect",
        "train_acc",
        "test_acc",
        "chance",
        "solver",
        "shuffled",
    } <= set(smoke.columns)
    f = {"log_c": math.log, "sqrt_c": math.sqrt, "c": float}
    sizes = {
        (c, per_class_of(a, cfg["input_dim"], c, f[name]))
        for c in cfg["class_counts"]
        for name, factors in (("log_c", cfg["a_log_c"]), ("c", cfg["a_c"]))
        for a in factors
    }
    teachers = len(sizes) * cfg["teachers"]
    assert len(smoke) == teachers * 2 * 2  # solvers x (plain, shuffled)
    assert smoke.teacher_id.nunique() == teachers
    assert smoke.groupby(["teacher_id", "solver", "shuffled"]).size().eq(1).all()
    for row in smoke.drop_duplicates("teacher_id").itertuples():
        first = row.scaling.split("+")[0]
        assert row.n_per_class == per_class_of(row.a, row.input_dim, row.classes, f[first])
        assert row.n_per_class == int(row.a * row.input_dim / f[first](row.classes))  # the released sizes
        assert row.n_over_d == pytest.approx(row.classes * row.n_per_class / row.input_dim)
        assert row.a_log_c == pytest.approx(row.n_per_class * math.log(row.classes) / row.input_dim)
        assert row.teacher_id == f"0:C{row.classes}/{row.dataset}/{row.n_over_d:g}"
    assert (smoke.chance == 1 / smoke.classes).all() and set(smoke.temperature) == {10.0}


def test_a_size_two_designs_ask_for_is_one_set_of_teachers_named_by_both(smoke):
    """At C = 6 and d = 20, a = 0.4 of a d / ln C and a = 1.2 of a d / C both give n = 4: one set of teachers
    (as the released figure pools the designs on one axis), its rows naming both designs."""
    shared = smoke[(smoke.classes == 6) & (smoke.n_per_class == 4)]
    assert set(shared.scaling) == {"log_c+c"} and set(shared.a) == {0.4}
    assert shared.teacher_id.nunique() == smoke.attrs["config"]["teachers"]


@pytest.mark.parametrize(
    "overrides, name, words",
    [
        (
            {"a_log_c": (-1.0,)},
            "a_log_c",
            "a list (empty: the design is not run), each item a float in the open interval",
        ),
        ({"a_c": (0.1,)}, "a_c", "contains 0.1, which with input_dim=20 and C = 2 gives n = 1 per class"),
        ({"class_counts": (2, 2)}, "class_counts", "must not repeat a class count"),
        ({"a_log_c": (), "a_c": ()}, "a_c", "must be non-empty when a_log_c and a_sqrt_c are empty"),
        ({"a_log_c": (0.4, 0.41)}, "a_log_c", "must give distinct sizes n per class at every C"),
        ({"class_counts": (1, 2)}, "class_counts", "each item an int >= 2"),
        ({"rhos": (1.5,)}, "rhos", "a float in the open interval (0, 1)"),
        ({"n_over_d": (1.0,)}, "n_over_d", "does not exist"),
        ({"solvers": ("sgd",)}, "solvers", "one of ('adam', 'exact')"),
    ],
)
def test_bad_input_is_refused_in_the_users_words_before_any_work(overrides, name, words):
    with pytest.raises(ValueError, match=f"^The '{name}' parameter of class_scaling ") as err:
        class_scaling("smoke", device="cpu", **overrides)
    assert words in str(err.value)


def test_the_renamed_students_knob_names_its_successor():
    with pytest.raises(ValueError, match="^The 'students' parameter of class_scaling was renamed: .*'solvers'"):
        class_scaling("smoke", students=("soft_labels",))


def test_above_the_line_students_recover_below_they_do_not_and_the_shuffled_control_is_at_chance(smoke):
    """The science at smoke: the count rho N >= d decides recovery for every C (exact solve and Adam), and
    soft labels deranged within each class leave the student at chance."""
    ok = smoke[smoke.teacher_perfect]
    above = ok[(ok.n_student >= ok.input_dim) & ~ok.shuffled]
    below = ok[(ok.n_student < ok.input_dim) & ~ok.shuffled]
    assert len(above) >= 4 and len(below) >= 8 and above.classes.nunique() == 2
    assert (above[above.solver == "exact"].test_acc == 1.0).all()
    assert above[above.solver == "adam"].test_acc.mean() > 0.95
    assert (below.test_acc < 1.0).mean() > 0.7 and below.test_acc.mean() < 0.9
    shuffled = ok[ok.shuffled]
    assert abs((shuffled.test_acc - shuffled.chance).mean()) < 0.1
    assert (above.test_acc.mean() - shuffled[shuffled.n_student >= shuffled.input_dim].test_acc.mean()) > 0.3


def _synthetic(recovery_n_over_d=2.0, capacity_a_log_c=1.0, d=100):
    """A table whose students recover from N/d = `recovery_n_over_d` for every C and whose teachers memorize
    up to n ln C / d = `capacity_a_log_c`."""
    rows = []
    for c in (2, 10, 50):
        for n in range(2, 160):
            perfect = n * math.log(c) / d <= capacity_a_log_c
            rows.append(
                {
                    "teacher_id": f"C{c}/{n}",
                    "classes": c,
                    "input_dim": d,
                    "n_per_class": n,
                    "solver": "adam",
                    "shuffled": False,
                    "temperature": 10.0,
                    "teacher_perfect": perfect,
                    "test_acc": 1.0 if c * n / d >= recovery_n_over_d else 0.7,
                }
            )
    return pd.DataFrame(rows)


def test_thresholds_collapse_in_the_unit_the_counts_predict():
    thr = thresholds(_synthetic())
    assert thr.recovery_n_over_d.tolist() == pytest.approx([2.0, 2.0, 2.0], abs=0.02)
    moves = collapse(thr).set_index(["quantity", "column"])
    assert moves.loc[("recovery", "n_over_d"), "ratio"] == pytest.approx(1.0, abs=0.02)
    assert moves.loc[("recovery", "a_log_c"), "ratio"] > 3
    assert moves.loc[("capacity", "a_log_c"), "ratio"] < 1.1 < moves.loc[("capacity", "n_over_d"), "ratio"]
    # a student that fails above the threshold moves it up
    table = _synthetic()
    table.loc[(table.classes == 10) & (table.n_per_class == 30), "test_acc"] = 0.9
    assert thresholds(table).set_index("classes").loc[10, "recovery_n"] == 31


def test_scaling_claims_are_exact_tests_on_teachers(smoke, tmp_path):
    from memkd.book.chapter import Chapter

    ch = Chapter("16_class_scaling", profile="smoke", results_dir=str(tmp_path), device="cpu", published_version=True)
    out = scaling_claims(
        ch, smoke, p_recover=0.8, p_fail=0.2, capacity_low=0.5, capacity_high=1.5, p_capacity=0.8, margin_chance=0.1
    )
    claims = {c.claim: c for c in ch.claims}
    assert {"recovery_above_line", "no_recovery_below_line", "shuffled_at_chance"} <= set(claims)
    assert claims["recovery_above_line"].test == "exact binomial" and claims["recovery_above_line"].published_version
    adam = students_of(smoke, "adam")
    eligible = adam[adam.teacher_perfect & (adam.n_student >= adam.input_dim)]
    assert claims["recovery_above_line"].n == eligible.teacher_id.nunique()
    assert all(c.planned_n == c.planned_n for c in ch.claims)  # every claim has its plan in plans.yml
    assert len(out) == len(claims)


def test_fig13_is_the_temperature_window_on_the_released_grid():
    assert len(FIG13_TEMPERATURES) == 20 and FIG13_TEMPERATURES[0] == pytest.approx(10**-0.5, rel=1e-3)
    assert FIG13_TEMPERATURES[-1] == pytest.approx(10**1.5, rel=1e-3)
    assert np.all(np.diff(np.log10(FIG13_TEMPERATURES)) == pytest.approx(2 / 19, abs=1e-3))
    fine = temperature_window(
        "smoke", device="cpu", class_counts=(10,), temperatures=FIG13_TEMPERATURES[:3], dtypes=("float32",), teachers=1
    )
    assert set(fine.classes) == {10} and fine.temperature.nunique() == 3


def test_departures_name_what_the_run_changed(smoke):
    from memkd.book import departures as dp

    fine = temperature_window(
        "smoke",
        device="cpu",
        class_counts=(10,),
        temperatures=FIG13_TEMPERATURES[:2],
        dtypes=("float32",),
        teachers=1,
        solvers=("exact",),
    )
    rows = dp.for_chapter("16_class_scaling", smoke, fig13=fine)
    topics = [r["topic"] for r in rows]
    assert topics == [
        "teacher budget",
        "student budget",
        "profile sizes",
        "a d / C design",
        "pooled designs",
        "inputs",
        "shuffle kind",
        "exact solver",
        "App. Fig 13 grid",
    ]
    assert "C in {2, 6}" in rows[2]["book"] and "a = 0.4, 1.6 (a d / ln C), none (a d / sqrt C)" in rows[2]["book"]
    assert "2 temperatures" in rows[-1]["book"]
    paper = dict(
        smoke.attrs["config"], **ClassScalingConfig.PROFILE_VALUES["paper"], class_counts=[2, 10, 20, 30, 40, 50]
    )
    released = smoke.copy()
    released.attrs = {"config": paper}
    released = ch16_class_scaling.departures(released)
    assert [r["topic"] for r in released] == ["pooled designs", "inputs", "shuffle kind", "exact solver"]


def test_chapter_executes_at_smoke(tmp_path):
    results = execute_chapter_at_smoke(ROOT / "nbs" / "16_class_scaling.ipynb", tmp_path)
    claims = pd.read_csv(results / "claims.csv")
    assert len(claims) >= 3 and set(claims.verdict) <= {"holds", "does not hold", "inconclusive"}
    assert (results / "departures.csv").is_file() and (results / "fig13.csv").is_file()
    assert (results / "class_scaling.png").is_file() and (results / "fig13_window.png").is_file()


def test_sizes_train_in_runs_within_a_factor_four_so_little_is_padded():
    from memkd.experiments.class_scaling import size_groups

    assert size_groups([2, 3, 4, 5, 7, 9, 11, 14, 22]) == [[2, 3, 4, 5], [7, 9, 11, 14, 22]]
    assert size_groups([17, 30, 108]) == [[17], [30, 108]]
    assert size_groups([5]) == [[5]] and sum(size_groups(list(range(2, 60))), []) == list(range(2, 60))
    assert all(max(g) <= 4 * min(g) for g in size_groups(list(range(2, 200))))
