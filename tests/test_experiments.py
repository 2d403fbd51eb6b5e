"""Experiments: validation before training, determinism, and the science at the smoke profile."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from memkd import experiments as ex
from memkd.distillation import TeacherDidNotMemorize
from memkd.metrics import interval_test


@pytest.fixture(scope="module")
def soft():
    return ex.logit_distillation("smoke")


@pytest.fixture(scope="module")
def hard():
    return ex.logit_distillation("smoke", targets="hard")


def per_dataset(table, column="test_acc"):
    return table.groupby("dataset")[column].mean().to_numpy()


@pytest.mark.parametrize(
    "knob, value, size", [("student_widths", [10**9], "17.3 EiB"), ("teacher_width", 10**7, "PiB")]
)
def test_a_run_that_cannot_fit_is_refused_before_any_training(knob, value, size):
    """The memory of the whole run is checked before the first teacher epoch: in well under a
    second, naming the knob, with a size people read (not "18626456260.7 GiB")."""
    import time

    start = time.perf_counter()
    with pytest.raises(MemoryError) as err:
        ex.logit_distillation("smoke", device="cpu", **{knob: value})
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert f"the '{knob}' parameter of logit_distillation" in message and size in message, message
    assert re.search(r"but only [\d.]+ [KMGTPE]iB can be used on cpu", message), message


@pytest.mark.parametrize("experiment", ["toy_2d", "cifar_shuffles"])
def test_image_and_toy_runs_that_cannot_fit_are_refused_before_training(experiment):
    import time

    start = time.perf_counter()
    with pytest.raises(MemoryError, match=f"the 'student_widths' parameter of {experiment}"):
        getattr(ex, experiment)("smoke", device="cpu", student_widths=[10**9])
    assert time.perf_counter() - start < 5.0  # the digits load, no teacher trains


def test_teachers_memorize_and_students_fit(soft):
    assert soft["teacher_memorized"].all()
    assert soft["train_acc"].mean() > 0.95


def test_soft_label_students_beat_chance_on_held_out_memorized_data(soft):
    chance = soft["chance"].iloc[0]
    result = interval_test(per_dataset(soft) - chance, "above", level=0.01)  # one value per teacher
    assert result["n"] == 4  # teachers, the unit of replication
    assert result["verdict"] == "holds" and result["p_value"] < 0.01, result
    assert result["mean"] > 0.5 * chance
    # and well above the teacher's trivial accuracy on fresh data D'
    assert soft["test_acc"].mean() > soft["teacher_independent_acc"].mean() + 0.05


def test_hard_label_students_stay_at_chance(hard):
    chance = hard["chance"].iloc[0]
    # "at chance" is a null claim: equivalent to chance within half of it (the book's margin), not
    # merely "not significantly above"
    result = interval_test(per_dataset(hard) - chance, "equivalent", margin=chance / 2, level=0.05)
    assert result["verdict"] == "holds", result


def test_similarity_students_beat_chance():
    table = ex.similarity_distillation("smoke")
    sim = table[table.kind == "similarity"]
    assert set(table.kind) == {"similarity", "soft"}
    assert (sim["train_acc"] == 1.0).all()  # each sample is its own nearest neighbour
    result = interval_test(per_dataset(sim) - sim["chance"].iloc[0], "above", level=0.01)
    assert result["verdict"] == "holds", result


def test_same_seed_same_numbers():
    a = ex.logit_distillation("smoke", teachers=1, students=2)
    b = ex.logit_distillation("smoke", teachers=1, students=2)
    c = ex.logit_distillation("smoke", teachers=1, students=2, seed=1)
    assert a.equals(b)
    assert not np.allclose(a["test_acc"], c["test_acc"]) or not np.allclose(a["independent_acc"], c["independent_acc"])


def test_tidy_columns(soft):
    for col in [
        "dataset",
        "alpha",
        "width",
        "temperature",
        "lr",
        "student",
        "train_acc",
        "test_acc",
        "memorized_acc",
        "test_acc_class",
        "independent_acc",
        "teacher_independent_acc",
        "chance",
    ]:
        assert col in soft.columns
    assert len(soft) == 4 * 3  # datasets (teachers) x students


@pytest.mark.parametrize(
    "fn,kwargs,pattern",
    [
        (
            ex.logit_distillation,
            {"alphas": [1.5]},
            r"'alphas' parameter of logit_distillation must be a non-empty list, each item a float in the open interval \(0, 1\)\. Got \[1\.5\]",
        ),
        (ex.logit_distillation, {"alphas": [0.0]}, r"'alphas'.*open interval"),
        (ex.logit_distillation, {"per_class": 1}, r"'per_class' parameter .* must be an int >= 2\. Got 1"),
        (ex.logit_distillation, {"temperatures": [-1.0]}, r"'temperatures'.*\(0, inf\).*Got \[-1\.0\]"),
        (ex.logit_distillation, {"student_widths": [0]}, r"'student_widths'.*int >= 1.*Got \[0\]"),
        (ex.logit_distillation, {"student_widths": [12.5]}, r"'student_widths'"),
        (ex.logit_distillation, {"teacher_width": "wide"}, r"'teacher_width'"),
        (ex.logit_distillation, {"alphas": [0.01]}, r"'alphas' .*0\.01.*a class would be empty"),
        (ex.logit_distillation, {"widht": 3}, r"unknown parameter\(s\) \['widht'\]. Allowed parameters: \["),
        (ex.logit_distillation, {"targets": "fuzzy"}, r"'targets'.*one of \('soft', 'hard'\)"),
        (ex.logit_distillation, {"device": "tpu"}, r"'device'"),
        (ex.temperature_lr, {"lrs": []}, r"'lrs'.*non-empty list"),
        (ex.dataset_composition, {"per_class_values": [5], "alphas": [0.1]}, r"per_class=5 .* a class would be empty"),
        (ex.logit_surgery, {"surgery_class": 99}, r"'surgery_class'.*\[0, 9\]"),
        (ex.toy_2d, {"epochs": -5}, r"'epochs' parameter of toy_2d must be an int >= 1"),
    ],
)
def test_bad_input_fails_before_training(fn, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        fn("smoke", **kwargs)


@pytest.mark.parametrize("name", [n for n in ex.__all__ if n != "toy_2d_regions"])
def test_the_old_knob_datasets_is_refused_naming_teachers(name):
    """One name for the number of teachers: every experiment counts them with `teachers`, and the old
    name `datasets` is refused before any work, naming the new one and the column that numbers them."""
    import time

    fn = getattr(ex, name)
    assert "teachers" in fn.config.knobs() and "datasets" not in fn.config.knobs()
    start = time.perf_counter()
    with pytest.raises(
        ValueError,
        match=rf"^The 'datasets' parameter of {name} was renamed: use 'teachers' "
        r"\(independent teachers, .*the column 'dataset'\)\. Got datasets=3 instead\.$",
    ):
        fn("smoke", device="cpu", datasets=3)
    assert time.perf_counter() - start < 1.0  # refused before any data or teacher


@pytest.mark.parametrize(
    "fn, old, new",
    [
        (ex.one_hidden_layer, "variant_datasets", "variant_teachers"),
        (ex.defence_frontier, "linear_datasets", "linear_teachers"),
    ],
)
def test_the_other_teacher_counts_are_renamed_too(fn, old, new):
    assert new in fn.config.knobs() and old not in fn.config.knobs()
    with pytest.raises(
        ValueError, match=rf"^The '{old}' parameter of \w+ was renamed: use '{new}' .*Got {old}=2 instead"
    ):
        fn("smoke", device="cpu", **{old: 2})


def test_one_factory_counts_teachers():
    import memkd.config as config

    assert not hasattr(config, "datasets_knob")
    assert config.teachers_knob(5).metadata["formerly"] == ("datasets",)


def test_unknown_profile():
    with pytest.raises(
        ValueError, match=r"'profile' parameter of logit_distillation must be one of \('smoke', 'quick', 'paper'\)"
    ):
        ex.logit_distillation("huge")


def test_other_figures_at_smoke_have_their_columns():
    t5 = ex.temperature_lr("smoke")
    assert set(t5.temperature) == {1.0, 20.0} and set(t5.lr) == {3e-3, 1e-2}
    t6 = ex.dataset_composition("smoke")
    assert {"classes", "per_class", "input_dim", "ratio", "teacher_memorized"} <= set(t6.columns)
    t7 = ex.logit_surgery("smoke")
    assert set(t7.variant) == {"plain", "zero_class", "cut_tail", "drop_class"}
    assert set(t7[t7.variant == "cut_tail"].tail_fraction) == {0.1, 0.5}


def test_toy_2d_leaves_out_a_teacher_that_did_not_memorize_and_says_so():
    with pytest.warns(UserWarning, match=r"toy_2d: the teachers of datasets \[3\] ended below 100%"):
        table = ex.toy_2d("smoke", teacher_epochs=400)  # at seed 0, dataset 3's teacher ends at 96.7%
    assert list(table.attrs["teachers_left_out"]) == [3] and 3 not in set(table.dataset)
    assert table.teacher_memorized.all()
    with pytest.raises(TeacherDidNotMemorize, match="8 of 8 teacher"):  # none memorized: nothing to distil
        ex.toy_2d("smoke", teacher_epochs=30)


def test_toy_2d_and_regions():
    t1 = ex.toy_2d("smoke")
    assert set(t1.targets) == {"hard", "soft"} and t1.teacher_memorized.all()
    assert t1.dataset.nunique() == 8
    reg = ex.toy_2d_regions("smoke", grid_size=20)
    assert reg["regions"]["teacher"].shape == (20, 20)
    assert set(reg["regions"]) == {"teacher", "hard", "soft T=20"}
    assert len(reg["test_correct"]["hard"]) == len(reg["test_idx"]) == 12


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_of_every_figure_validates(profile):
    """The paper profile never runs in CI: at least its knobs must pass validation."""
    from memkd.config import make_config
    from memkd.experiments import cifar, modular_addition, toy

    configs = [
        (ex.logit_distillation.config, "logit_distillation"),
        (ex.similarity_distillation.config, "similarity_distillation"),
        (ex.temperature_lr.config, "temperature_lr"),
        (ex.dataset_composition.config, "dataset_composition"),
        (ex.logit_surgery.config, "logit_surgery"),
        (toy.ToyConfig, "toy_2d"),
    ]
    configs += [
        (cls, name)
        for module in (cifar, modular_addition)
        for name, cls in vars(module).items()
        if isinstance(cls, type) and name.endswith("Config") and cls.__module__ == module.__name__
    ]
    for cls, name in configs:
        cfg = make_config(cls, name, profile, {})
        assert cfg.profile == profile


# --- teachers as the unit: the stacked ensemble equals the loop over datasets -----------------------


def test_stacked_datasets_give_the_numbers_of_a_loop_over_datasets():
    """All teachers as one ensemble and all students of all datasets as another give, student by
    student, what training each dataset on its own gives (same seeds), to float rounding."""
    from memkd.config import make_config
    from memkd.memorization import memorization_task, split
    from memkd.students import distill, member_grid
    from memkd.experiments.fig2_logits import LogitDistillationConfig

    overrides = dict(teachers=3, students=2, temperatures=(5.0, 20.0), epochs=40)
    stacked = ex.logit_distillation("smoke", **overrides)
    cfg = make_config(LogitDistillationConfig, "logit_distillation", "smoke", overrides)
    members = member_grid(temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
    alpha, width = cfg.alphas[0], cfg.student_widths[0]
    looped = []
    for k in range(cfg.teachers):
        task = memorization_task(cfg, k)
        looped += distill(
            task, split(task, alpha, cfg), cfg=cfg, kind="soft", width=width, members=members, setting=(alpha,)
        )
    looped = pd.DataFrame(looped)
    key = ["dataset", "temperature", "student"]
    a, b = stacked.set_index(key).sort_index(), looped.set_index(key).sort_index()
    assert len(a) == len(b) == 3 * 2 * 2
    for column in ("train_acc", "test_acc", "independent_acc", "teacher_independent_acc"):
        np.testing.assert_allclose(a[column], b[column], atol=1.5 / 50)  # at most a sample flips
    assert (a["test_acc"] - b["test_acc"]).abs().mean() < 0.01


def test_teacher_stop_is_a_knob_with_the_budget_as_default():
    table = ex.logit_distillation("smoke", teachers=3, students=2, epochs=20)
    assert set(table["teacher_stop"]) == {"budget"}
    early = ex.logit_distillation("smoke", teachers=3, students=2, epochs=20, teacher_stop="first_perfect")
    assert set(early["teacher_stop"]) == {"first_perfect"}
    assert not np.allclose(table["test_acc"], early["test_acc"])  # a different teacher, other students
    with pytest.raises(ValueError, match="teacher_stop"):
        ex.logit_distillation("smoke", teacher_stop="never")
    with pytest.raises(TeacherDidNotMemorize, match="teacher_stop='budget'"):
        ex.logit_distillation("smoke", teachers=3, teacher_epochs=3)


def test_every_table_carries_its_validated_configuration():
    table = ex.logit_distillation("smoke", teachers=3, students=2, epochs=5)
    config = table.attrs["config"]
    assert config["teachers"] == 3 and config["teacher_stop"] == "budget" and config["epochs"] == 5
    json.dumps(config)  # plain values only
