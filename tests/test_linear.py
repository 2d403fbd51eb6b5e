"""Bias-free linear teachers, their students and the two experiments of chapters 11 and 12."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from memkd.experiments import linear_recovery, temperature_window
from memkd.data.linear import make_linear_data, student_mask, within_class_permutation
from memkd.metrics import recovery_metrics, teacher_accuracy
from memkd.distillation import train_students
from memkd.experiments.linear_recovery import train_teachers
from memkd.models.linear import (
    LinearFamily,
    class_logits,
    least_squares,
    linear_forward,
    linear_logits,
    soft_labels,
    solve_soft_labels,
)
from tests.conftest import ROOT, execute_chapter_at_smoke

pytestmark = pytest.mark.usefixtures("one_thread")


def measure(w_student, w_teacher, data, mask, targets, scale=1.0):
    """`recovery_metrics` of students w_student (K, D, M, O) of teachers w_teacher (K, D, O) on `data`."""
    return recovery_metrics(
        linear_logits(w_student, data.x),
        linear_logits(w_student, data.fresh),
        linear_logits(w_teacher, data.fresh),
        data.y,
        data.valid,
        mask,
        targets,
        scale,
    )


def teachers_accuracy(w, data):
    return teacher_accuracy(linear_logits(w, data.x)[:, 0], data.y, data.valid)


def _teachers(per_class=(10, 40), classes=2, d=20, outputs=1, epochs=400):
    data = make_linear_data(list(per_class), classes, d, seeds=[1, 2], fresh=500)
    return data, train_teachers(data, outputs, [3, 4], epochs=epochs, lr=1e-2)


def test_data_is_standardized_balanced_and_the_student_gets_the_first_points_of_each_class():
    data = make_linear_data([5, 8], 3, 6, seeds=[0, 1])
    assert data.x.shape == (2, 24, 6) and bool((data.y[0, 15:] == -1).all()) and int(data.valid[1].sum()) == 24
    x = data.x[1]
    assert torch.allclose(x.mean(0), torch.zeros(6, dtype=x.dtype), atol=1e-12)
    assert torch.allclose(x.std(0), torch.ones(6, dtype=x.dtype))
    assert torch.equal(torch.bincount(data.y[0, :15]), torch.tensor([5, 5, 5]))
    mask = student_mask(data, [0.5, 0.99])  # floor(0.5 * 5) = 2 of each class; floor(0.99 * 8) = 7
    assert torch.equal(mask[0, 0, :5], torch.tensor([True, True, False, False, False]))
    assert int(mask[0, 0].sum()) == 6 and int(mask[1, 1].sum()) == 21 and int(mask[1, 0].sum()) == 12
    again = make_linear_data([8], 3, 6, seeds=[1])  # a dataset does not depend on its batch
    assert torch.equal(again.x[0], data.x[1])


def test_teacher_memorizes_below_capacity_and_not_far_above():
    data, w = _teachers(per_class=(8, 60))  # N/d = 0.8 and 6: a linear separator's capacity is about 2
    acc = teachers_accuracy(w, data)
    assert float(acc[0]) == 1.0
    assert float(acc[1]) < 0.95


def test_least_squares_recovers_exactly_above_the_line_and_not_well_below():
    data, w = _teachers(per_class=(15, 15), d=20)  # N = 30; rho * N >= d = 20 needs rho >= 0.67
    assert bool((teachers_accuracy(w, data) == 1).all())
    mask = student_mask(data, [0.2, 0.4, 0.8, 1.0 - 1 / 15])  # 6, 12 (below), 24, 28 points (above)
    z = linear_forward(w.double().unsqueeze(2), data.x).expand(-1, 4, -1, -1)
    m = measure(least_squares(data.x, z, mask), w, data, mask, None)
    assert bool((m["test_acc"][:, 2:] == 1).all()) and bool((m["agreement_fresh"][:, 2:] == 1).all())
    assert float(m["logit_error"][:, 2:].max()) < 1e-8
    assert float(m["agreement_fresh"][:, :2].max()) < 0.9 and float(m["logit_error"][:, :2].min()) > 0.3
    assert bool((m["train_acc"] == 1).all())  # every least-squares student fits its own points


def test_shuffled_control_sits_near_chance_and_permutes_only_within_classes():
    data = make_linear_data([150], 2, 20, seeds=[7], fresh=2000)
    w = train_teachers(data, 1, [8], epochs=300, lr=1e-2)
    mask = student_mask(data, [0.5])
    perm = within_class_permutation(data, mask, [9])
    assert torch.equal(data.y[0][perm[0, 0]], data.y[0]) and not torch.equal(perm[0, 0], torch.arange(300))
    assert torch.equal(perm[0, 0, ~mask[0, 0]], torch.arange(300)[~mask[0, 0]])  # held-out points stay put
    moved = perm[0, 0, mask[0, 0]] != torch.arange(300)[mask[0, 0]]
    assert bool(moved.all())  # a derangement: no student point keeps its own soft label
    z = linear_forward(w.double().unsqueeze(2), data.x)
    shuffled = z.gather(2, perm.unsqueeze(-1))
    m = measure(least_squares(data.x, shuffled, mask), w, data, mask, None)
    honest = measure(least_squares(data.x, z, mask), w, data, mask, None)
    assert abs(float(m["agreement_fresh"][0, 0]) - 0.5) < 0.1 and float(honest["agreement_fresh"][0, 0]) == 1.0


def test_batched_members_equal_separately_trained_single_models():
    data, _ = _teachers(per_class=(6, 9), d=8, outputs=3, classes=3, epochs=5)
    w_t = torch.randn(2, 8, 3, dtype=torch.float64)
    temps = torch.tensor([[1.0, 5.0, 20.0]] * 2, dtype=torch.float64)
    probs = soft_labels(w_t, data.x, temps, torch.float64)
    mask = student_mask(data, [0.5, 0.7, 0.9])
    seeds = [11, 12, 13, 14, 15, 16]
    x, n = data.x, data.x.shape[1]

    def students(k: int, m: int, probs, mask, temps, seeds, soften: bool):  # K teachers x M students each
        model, _ = train_students(
            x[:k],
            probs.reshape(k * m, n, 3),
            kind="soft",
            members=k * m,
            lrs=1e-2,
            epochs=30,
            family=LinearFamily(8, 3, k, torch.float64),
            temperatures=temps.flatten(),
            soften_student=soften,
            seed=seeds,
            mask=mask.reshape(k * m, n),
        )
        return model.weight.detach()  # (K, D, M, O)

    for soften in (False, True):
        batched = students(2, 3, probs, mask, temps, seeds, soften)
        for k in range(2):
            for j in range(3):
                one = (slice(k, k + 1), slice(j, j + 1))
                single = train_students(
                    x[k : k + 1],
                    probs[one].reshape(1, n, 3),
                    kind="soft",
                    members=1,
                    lrs=1e-2,
                    epochs=30,
                    family=LinearFamily(8, 3, 1, torch.float64),
                    temperatures=temps[one].flatten(),
                    soften_student=soften,
                    seed=[seeds[3 * k + j]],
                    mask=mask[one].reshape(1, n),
                )[0].weight.detach()
                assert torch.allclose(batched[k, :, j], single[0, :, 0], atol=1e-12)
        assert not torch.allclose(batched[0, :, 0], batched[0, :, 1])  # members differ: each its own T, rho, seed


def test_a_teacher_learns_only_its_own_points_of_a_padded_batch():
    """Datasets of different sizes share one padded N: a teacher trained beside a larger one equals the
    teacher trained alone on its own points, and its accuracy counts its own points only (the padding's
    -1 labels, never matched, would hold it at 12 / 27 or below)."""
    from memkd.distillation import train_teacher

    data = make_linear_data([4, 9], 3, 6, seeds=[1, 2])  # N = 12 and 27
    both = train_teachers(data, 3, [5, 6], epochs=25, lr=1e-2, dtype=torch.float64)
    alone = train_teachers(make_linear_data([4], 3, 6, seeds=[1]), 3, [5], epochs=25, lr=1e-2, dtype=torch.float64)
    assert torch.allclose(both[0], alone[0], atol=1e-12)
    teacher = train_teacher(
        data.x,
        data.y,
        LinearFamily(6, 3, 2, torch.float64),
        lr=1e-2,
        max_epochs=200,
        seed=[5, 6],
        require_memorization=False,
        mask=data.valid,
    )
    own = teacher_accuracy(linear_logits(teacher.model.weight.detach()[:, :, 0], data.x)[:, 0], data.y, data.valid)
    assert torch.allclose(teacher.train_acc.double(), own) and float(own[0]) > 12 / 27


def test_exact_solve_recovers_where_the_soft_labels_keep_the_information():
    data, w = _teachers(per_class=(15, 15), d=20, epochs=300)
    mask = student_mask(data, [0.9])
    t = torch.tensor([[10.0]] * 2, dtype=torch.float64)
    ok = measure(
        solve_soft_labels(data.x, soft_labels(w, data.x, t, torch.float64), mask, 1), w, data, mask, None, scale=1 / t
    )
    assert float(ok["logit_error"].max()) < 1e-10 and bool((ok["test_acc"] == 1).all())
    huge = torch.full_like(t, 1e9)  # bfloat16 rounds every soft label to 1/2: nothing is left to recover
    lost = measure(
        solve_soft_labels(data.x, soft_labels(w, data.x, huge, torch.bfloat16), mask, 1),
        w,
        data,
        mask,
        None,
        scale=1 / huge,
    )
    assert float(lost["logit_error"].min()) > 0.9
    assert torch.equal(class_logits(torch.ones(2, 1)), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


@pytest.mark.parametrize(
    "fn, kwargs, name",
    [
        (linear_recovery, {"rhos": (1.2,)}, "rhos"),
        (linear_recovery, {"binary": True, "classes": 3}, "binary"),
        (linear_recovery, {"dtype": "float16"}, "dtype"),
        (linear_recovery, {"student_kinds": ("ridge",)}, "student_kinds"),
        (linear_recovery, {"input_dim": 1}, "input_dim"),
        (linear_recovery, {"rhos": (0.01,)}, "rhos"),
        (temperature_window, {"n_over_d": (0.1,), "rhos": (0.3,)}, "rhos"),
        (temperature_window, {"temperatures": (0.0,)}, "temperatures"),
        (temperature_window, {"dtypes": ()}, "dtypes"),
        (temperature_window, {"class_counts": (1,)}, "class_counts"),
        (temperature_window, {"classes": (2, 10)}, "classes"),  # renamed: one C elsewhere, here a list of them
        (temperature_window, {"solvers": ("lbfgs",)}, "solvers"),
        (temperature_window, {"teachers": 0}, "teachers"),
    ],
)
def test_bad_knobs_raise_naming_the_knob(fn, kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        fn("smoke", **kwargs)


def test_experiments_give_one_row_per_student_with_the_issue_columns():
    need = {
        "dataset",
        "input_dim",
        "n_memorized",
        "n_student",
        "rho",
        "student",
        "shuffled",
        "temperature",
        "dtype",
        "teacher_train_acc",
        "train_acc",
        "test_acc",
        "agreement_fresh",
        "logit_error",
    }
    rec = linear_recovery("smoke", device="cpu")
    assert need <= set(rec.columns) and set(rec.student) == {"least_squares", "soft_labels"}
    assert len(rec) == 2 * 2 * 2 * 2 * 2  # kinds x shuffle x sizes x teachers x rhos
    win = temperature_window("smoke", device="cpu")
    assert (
        need <= set(win.columns) and set(win.dtype) == {"float64", "bfloat16"} and set(win.solver) == {"adam", "exact"}
    )
    assert win.attrs["config"]["experiment"] == "temperature_window"
    for fn, table in ((linear_recovery, rec), (temperature_window, win)):  # the docs describe these rows
        doc = {
            line.split(" : ")[0].strip(): line.split(" : ", 1)[1]
            for line in fn.__doc__.splitlines()
            if line.startswith("    ") and " : " in line
        }
        assert all(f'"{kind}"' in doc["student"] for kind in set(table.student)) and "student_seed" in doc["student"]
        assert '"{seed}:C{classes}/{k}/{N/d}"' in doc["teacher_id"]
        assert table.teacher_id.str.fullmatch(r"0:C\d+/\d+/[0-9.]+").all()
        assert (
            table.teacher_id
            == "0:C"
            + table.classes.astype(str)
            + "/"
            + table.dataset.astype(str)
            + "/"
            + table.n_over_d.map("{:g}".format)
        ).all()
        knobs = {line.split(" : ")[0] for line in fn.__doc__.splitlines() if " : " in line and line[0] != " "}
        assert "students" not in knobs and "seeds_per_setting" in knobs  # 'students' counts seeds elsewhere
    assert "student_kinds" in linear_recovery.__doc__


@pytest.mark.parametrize("fn, new", [(linear_recovery, "'student_kinds'"), (temperature_window, "'solvers'")])
def test_the_renamed_students_knob_names_its_successor(fn, new):
    with pytest.raises(ValueError, match=f"^The 'students' parameter of {fn.__name__} was renamed: .*{new}"):
        fn("smoke", students=("soft_labels",))


@pytest.mark.parametrize("name", ["11_linear_recovery", "12_temperature_window"])
def test_chapter_executes_at_smoke(tmp_path, name):
    results = execute_chapter_at_smoke(ROOT / "nbs" / f"{name}.ipynb", tmp_path)
    claims = pd.read_csv(results / "claims.csv")
    assert len(claims) >= 3 and set(claims.verdict) <= {"holds", "does not hold", "inconclusive"}
    assert Path(results / "departures.csv").is_file()


def test_a_small_temperature_saturates_float32_soft_labels_but_not_float64():
    data, w = _teachers(per_class=(15, 15), d=20, epochs=400)
    mask = student_mask(data, [0.9])
    z = class_logits(linear_forward(w.double().unsqueeze(2), data.x))[:, 0]
    gap = (z[..., 1] - z[..., 0]).abs()[data.valid]
    t_small = float(gap.max()) / 200  # the largest logit gap over T is 200: exp(-200) is 0 in float32, not in float64
    t = torch.full((2, 1), t_small, dtype=torch.float64)
    err = {
        dt: measure(
            solve_soft_labels(data.x, soft_labels(w, data.x, t, dt), mask, 1), w, data, mask, None, scale=1 / t
        )["logit_error"]
        for dt in (torch.float64, torch.float32)
    }
    assert float(err[torch.float64].max()) < 1e-8
    assert float(err[torch.float32].min()) > 1e-3


def test_window_claims_record_each_class_counts_claims_and_route_the_precision_ones(tmp_path):
    from memkd.book.chapter import Chapter
    from memkd.book.chapters.ch12_temperature_window import window_claims

    table = temperature_window("smoke", device="cpu")
    ch = Chapter("12_temperature_window", profile="smoke", results_dir=str(tmp_path), device="cpu")
    out = window_claims(ch, table, t_in=10.0, p_recover=0.6, p_fail=0.4, margin_width=1.0, margin_chance=0.05)
    claims = {c.claim: c for c in ch.claims}
    for c in sorted(table.classes.unique()):
        assert f"**C = {c}**" in out
        assert {f"c{c}_adam_fails_at_lowest_T", f"c{c}_exact_recovers_at_lowest_T"} <= set(claims)
        assert claims[f"c{c}_exact_window_float64_vs_bfloat16"].beyond_paper  # the book's own finding
        assert not claims[f"c{c}_adam_fails_at_lowest_T"].beyond_paper
    assert not ch.beyond_paper  # the chapter's own flag is restored
    assert len(out) == len(claims) + table.classes.nunique()


def test_recovery_claims_record_the_chapters_claims_from_per_teacher_rows(tmp_path):
    from memkd.book.chapter import Chapter
    from memkd.book.chapters.ch11_linear_recovery import recovery_claims
    from memkd.experiments.linear_recovery import per_teacher, perfect_teachers

    table = linear_recovery("smoke", device="cpu")
    ch = Chapter("11_linear_recovery", profile="smoke", results_dir=str(tmp_path), device="cpu")
    out = recovery_claims(
        ch,
        table,
        p_perfect=0.8,
        margin_chance=0.05,
        margin_same=0.02,
        capacity_low=1.4,
        capacity_high=2.4,
        p_capacity=0.5,
    )
    claims = {c.claim: c for c in ch.claims}
    assert {
        "least_squares_perfect_above_line",
        "least_squares_leak_grows_below",
        "soft_labels_shuffled_at_chance",
        "teacher_memorizes_below_capacity",
        "teacher_fails_above_capacity",
    } <= set(claims)
    s, n = perfect_teachers(per_teacher(table), "least_squares")
    assert claims["least_squares_perfect_above_line"].n == n and 0 <= s <= n
    assert claims["least_squares_perfect_above_line"].test == "exact binomial"
    assert len(out) >= len(claims)


def test_window_table_names_what_sets_each_edge():
    from memkd.book.chapters.ch12_temperature_window import window_table

    nan = float("nan")
    edges = pd.DataFrame(
        [
            dict(classes=2, dtype="float32", solver="adam", t_low=3.0, t_high=10.0, in_window=2, of=3),
            dict(classes=2, dtype="float32", solver="exact", t_low=1.0, t_high=10.0, in_window=3, of=3),
            dict(classes=2, dtype="bfloat16", solver="adam", t_low=nan, t_high=nan, in_window=0, of=3),
            dict(classes=2, dtype="bfloat16", solver="exact", t_low=1.0, t_high=3.0, in_window=2, of=3),
        ]
    )
    rows = window_table(edges, [2], ["float32", "bfloat16"], [1.0, 3.0, 10.0]).splitlines()
    assert rows[2] == (
        "| 2 | float32 | 3 .. 10 (2 of 3) | 1 .. 10 (3 of 3) | Adam 3: the optimizer at this budget "
        "(the exact solve reaches 1: the grid's end) | 10 for both: the grid's end |"
    )
    assert rows[3] == (
        "| 2 | bfloat16 | none | 1 .. 3 (2 of 3) | exact 1: the grid's end; Adam has no window | "
        "exact 3: the precision; Adam has no window |"
    )
    # a window with a hole: the temperature that fails inside it is named
    holed = edges.assign(gaps=[(), (3.0,), (), ()])
    holed.loc[1, "in_window"] = 2
    assert "1 .. 10 (2 of 3; fails inside at T = 3)" in window_table(holed, [2], ["float32"], [1.0, 3.0, 10.0])


def test_window_edges_name_the_temperatures_that_fail_inside_the_window():
    from memkd.experiments.temperature_window import window_edges

    rows = [
        dict(
            classes=2,
            dtype="float32",
            solver="adam",
            temperature=t,
            teacher=k,
            teacher_perfect=True,
            shuffled=False,
            n_student=120,
            input_dim=100,
            test_acc=0.9 if (t == 100.0 and k == 1) else 1.0,
        )
        for t in (10.0, 100.0, 316.0)
        for k in (0, 1)
    ]
    edges = window_edges(pd.DataFrame(rows)).iloc[0]
    assert (edges.t_low, edges.t_high, edges.in_window, edges.gaps) == (10.0, 316.0, 2, (100.0,))


def test_recovery_lines_report_each_student_and_missing_cells():
    from memkd.book.chapters.ch11_linear_recovery import recovery_lines

    summary = pd.DataFrame(
        [dict(student="least_squares", shuffled=False, above=True, perfect=1.0, cells=4, teachers=2)]
    )
    ls, soft = recovery_lines(summary, {"least_squares_perfect_above_line": "holds"})
    assert ls.startswith(
        "- **least-squares student**: above the line 100.0% of 4 cells (2 teachers) are perfect, "
        "below it no cell; perfect recovery above the line **holds**, the leak growing below it "
        "**not run**"
    )
    assert soft.startswith("- **soft-label student**: above the line no cell")
