"""The one-hidden-layer phase map (the published version's Figs 5, 6 and 16): knobs, phases, smoke run."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from memkd.experiments import one_hidden_layer
from memkd.experiments.one_hidden_layer import released_split, shuffled_within_class
from memkd.experiments.phases import (
    FIT_MIN,
    RECOVERY_FRESH_MIN,
    RECOVERY_HELD_OUT_MIN,
    choose_cells,
    classify_phase,
    counting_bound,
    held_out_counts,
    parameter_count,
    phase_map,
    recovery_boundary,
)
from memkd.models.mlp import EnsembleMLP

from conftest import ROOT, execute_chapter_at_smoke

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "knobs, name",
    [
        (dict(per_class_values=[1]), "per_class_values"),
        (dict(per_class_values=[]), "per_class_values"),
        (dict(rhos=[1.5]), "rhos"),
        (dict(per_class_values=[3], rhos=[0.2]), "rhos"),  # int(0.2 * 3) = 0 student points per class
        (dict(per_class_values=[2], rhos=[0.5], variant_rho=0.4), "variant_rho"),  # int(0.4 * 2) = 0
        (dict(width=0), "width"),
        (dict(classes=1), "classes"),
        (dict(teachers=1), "teachers"),
        (dict(variant_widths=[0]), "variant_widths"),
        (dict(equal_widths=[0]), "equal_widths"),
        (dict(variant_teachers=5), "variant_teachers"),  # smoke has 4 teachers per size
        (dict(variant_teachers=-1), "variant_teachers"),
        (dict(variant_classes=[1]), "variant_classes"),
        (dict(tail_fractions=[1.0]), "tail_fractions"),
        (dict(surgery_class=30), "surgery_class"),  # smoke has 30 classes
        (dict(temperatures=[0.0]), "temperatures"),
        (dict(lr=0.0), "lr"),
    ],
)
def test_bad_knobs_raise_naming_the_knob(knobs, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter of one_hidden_layer"):
        one_hidden_layer("smoke", **knobs)


def test_unknown_knob_and_profile_are_refused():
    with pytest.raises(ValueError, match="unknown parameter"):
        one_hidden_layer("smoke", alphas=[0.5])
    with pytest.raises(ValueError, match="'profile' parameter"):
        one_hidden_layer("huge")


def test_parameter_count_is_the_networks():
    model = EnsembleMLP(1, 20, 50, 100, hidden_layers=1)
    assert parameter_count(20, 50, 100) == sum(p.numel() for p in model.parameters()) == 6150
    assert counting_bound(20, 50, 100) == pytest.approx(6150 / 99)


def test_released_split_takes_the_first_points_of_each_class():
    y = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0])  # 4 per class
    tr, te = released_split(y, 0.6, 2)  # int(0.6 * 4) = 2 per class
    assert tr.tolist() == [0, 1, 2, 3] and te.tolist() == [4, 5, 6, 7]
    for seed in range(5):
        shuffled = shuffled_within_class(tr, y, seed=seed)
        assert sorted(shuffled.tolist()) == tr.tolist() and torch.equal(y[shuffled], y[tr])
        assert (shuffled != tr).all()  # every input gets another point's soft label


def test_classify_phase_by_hand():
    assert classify_phase(0.98, 1.0, 1.0, 1.0) == "teacher fails"
    assert classify_phase(1.0, math.nan, math.nan, math.nan) == "teacher fails"
    assert classify_phase(1.0, 1.0, RECOVERY_HELD_OUT_MIN, RECOVERY_FRESH_MIN) == "recovery"
    assert classify_phase(1.0, 0.97, 1.0, 0.95) == "recovery"  # recovery wins over an inexact fit
    assert classify_phase(1.0, 1.0, 1.0, RECOVERY_FRESH_MIN - 0.01) == "partial leak"  # held out is not enough
    assert classify_phase(1.0, FIT_MIN - 0.01, 0.6, 0.5) == "approximate fit"
    assert classify_phase(1.0, 1.0, 0.4, 0.3) == "partial leak"


def _row(dataset, n, rho, teacher, train, test, fresh, shuffled=False):
    return dict(
        input_dim=20,
        classes=100,
        width=50,
        per_class=n,
        n_memorized=100 * n,
        rho=rho,
        n_student=100 * int(rho * n),
        temperature=20.0,
        dataset=dataset,
        student=0,
        shuffled=shuffled,
        teacher_train_acc=teacher,
        train_acc=train,
        test_acc=test,
        agreement_fresh=fresh,
    )


def test_phase_map_boundary_and_choice_on_hand_made_rows():
    nan = math.nan
    rows = []
    for k in range(4):
        rows += [
            _row(k, 3, 0.67, 1.0, 1.0, 0.45 + 0.01 * k, 0.3),  # partial leak
            _row(k, 10, 0.34, 1.0, 0.95, 0.8, 0.6),  # approximate fit
            _row(k, 10, 0.67, 1.0, 1.0, 1.0, 0.97),  # recovery (600 student points)
            _row(k, 10, 0.67, 1.0, 1.0, 0.01, 0.01, shuffled=True),
        ]  # ignored by the map
    rows += [
        _row(0, 16, 0.67, 0.99, nan, nan, nan),
        _row(1, 16, 0.67, 0.97, nan, nan, nan),
        _row(2, 16, 0.67, 1.0, 1.0, 0.7, 0.6),
        _row(3, 16, 0.67, 0.98, nan, nan, nan),
    ]  # 1 of 4 memorized
    cells = phase_map(pd.DataFrame(rows)).set_index(["per_class", "rho"])
    assert cells.loc[(3, 0.67), "phase"] == "partial leak"
    assert cells.loc[(10, 0.34), "phase"] == "approximate fit"
    assert cells.loc[(10, 0.67), "phase"] == "recovery"
    assert cells.loc[(16, 0.67), "phase"] == "teacher fails"
    assert cells.loc[(16, 0.67), "memorized"] == 1 and cells.loc[(10, 0.67), "teachers"] == 4
    assert cells.loc[(3, 0.67), "test_acc"] == pytest.approx(0.465)
    boundary = recovery_boundary(cells.reset_index()).iloc[0]
    assert boundary["boundary"] == 600 and boundary["factor"] == pytest.approx(600 / (6150 / 99))
    assert boundary["largest_below"] == 200
    chosen = choose_cells(cells.reset_index())
    assert (chosen["recovery"]["per_class"], chosen["recovery"]["rho"]) == (10, 0.67)
    assert (chosen["partial leak"]["per_class"], chosen["partial leak"]["rho"]) == (3, 0.67)
    # without a recovery cell, the one closest to it: (10, 0.67) scores min(0.98 / 0.99, 0.85 / 0.9)
    near = cells.reset_index()
    near.loc[near.phase == "recovery", ["test_acc", "agreement_fresh", "phase"]] = [0.98, 0.85, "partial leak"]
    assert (choose_cells(near)["recovery"]["per_class"], choose_cells(near)["recovery"]["rho"]) == (10, 0.67)
    # only the teachers asked for: teachers 0 and 1 alone
    assert phase_map(pd.DataFrame(rows), datasets=[0, 1])["teachers"].max() == 2
    table = pd.DataFrame([_row(0, 10, 0.67, 1.0, 1.0, 0.5, 0.5)])  # 400 held-out points, half right
    assert held_out_counts(table) == (200, 400)


@pytest.fixture(scope="module")
def smoke():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    table = one_hidden_layer("smoke", device="cpu", seed=0)
    torch.set_num_threads(before)
    return table


def test_smoke_rows_have_the_issue_columns(smoke):
    for column in (
        "dataset",
        "n_memorized",
        "n_student",
        "rho",
        "width",
        "shuffled",
        "teacher_train_acc",
        "train_acc",
        "test_acc",
        "agreement_fresh",
        "phase",
        "part",
        "variant",
        "half",
    ):
        assert column in smoke.columns, column
    assert set(smoke["part"]) == {"map", "width", "equal", "surgery"}
    assert smoke.attrs["config"]["experiment"] == "one_hidden_layer"


def test_smoke_leak_beats_chance_and_the_shuffle_control_does_not(smoke):
    """At smoke the teachers memorize; students with 4 soft labels per class beat chance on the held-out
    memorized points by far, and the same students with inputs shuffled within class stay near chance."""
    cell = smoke[(smoke.part == "map") & (smoke.per_class == 6)]
    assert (cell["teacher_train_acc"] == 1.0).all()
    chance = 1.0 / smoke["classes"].iloc[0]
    plain = cell[~cell.shuffled.astype(bool)].groupby("dataset").test_acc.mean()
    shuffled = cell[cell.shuffled.astype(bool)].groupby("dataset").test_acc.mean()
    assert len(plain) == len(shuffled) == 4
    assert plain.min() > 5 * chance, plain
    assert shuffled.mean() < 2.5 * chance, shuffled  # 4 x 60 held-out points: chance gives 8 of 240


def test_smoke_surgery_runs_on_the_test_half_only(smoke):
    surgery = smoke[smoke.part == "surgery"]
    assert set(surgery["half"]) == {"test"}
    assert {"zero_class", "cut_tail", "drop_class"} == set(surgery["variant"])
    dropped = surgery[surgery.variant == "drop_class"]
    assert (dropped["n_trained"] < dropped["n_student"]).all()


def test_chapter_executes_at_smoke(tmp_path):
    results = execute_chapter_at_smoke(ROOT / "nbs" / "13_one_hidden_layer.ipynb", tmp_path)
    claims = pd.read_csv(results / "claims.csv")
    assert {"recovery_cell_exists", "shuffled_at_chance"} <= set(claims["claim"])
    assert (results / "phase_map.png").exists()


def test_smoke_width_variants_use_their_own_teachers(smoke):
    """The wider student distils the map's teachers (the first variant_teachers of them); the equal-width
    variant trains teachers of its own width, which get their own teacher ids."""
    cfg = smoke.attrs["config"]
    width, equal = smoke[smoke.part == "width"], smoke[smoke.part == "equal"]
    assert set(width["width"]) == set(cfg["variant_widths"]) and (width["teacher_width"] == cfg["width"]).all()
    assert set(equal["width"]) == set(equal["teacher_width"]) == set(cfg["equal_widths"])
    assert set(width["dataset"]) == set(equal["dataset"]) == set(range(cfg["variant_teachers"]))
    assert set(width["teacher_id"]) <= set(smoke[smoke.part == "map"]["teacher_id"])
    assert not set(equal["teacher_id"]) & set(smoke[smoke.part == "map"]["teacher_id"])
    # the wider students of the same teachers and points differ from the map's (another network)
    same = smoke[(smoke.part == "map") & ~smoke.shuffled.astype(bool) & smoke.dataset.isin(width.dataset)]
    assert not np.allclose(
        same.sort_values(["per_class", "dataset"]).agreement_fresh.to_numpy(),
        width.sort_values(["per_class", "dataset"]).agreement_fresh.to_numpy(),
    )


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_profiles_validate(profile):
    from memkd.config import make_config
    from memkd.experiments.one_hidden_layer import OneHiddenLayerConfig

    cfg = make_config(OneHiddenLayerConfig, "one_hidden_layer", profile, {})
    assert cfg.classes >= 50 and cfg.teachers >= 6 and len(cfg.per_class_values) >= 3  # every phase's sizes
    # width variants wider than the teacher, and teachers and students of one width
    assert cfg.variant_widths and min(cfg.variant_widths) > cfg.width and cfg.equal_widths


def test_quick_keeps_the_released_network_and_reaches_below_the_bound():
    """quick runs the released d, C and P; with C = 100 no map cell can lie below n* (each has at least C
    student points), so a variant must; the tested half holds enough teachers for a sign test without
    spread to clear Holm's level over the published block (0.5 ** 10 < 0.05 / 35)."""
    from memkd.config import make_config
    from memkd.experiments.one_hidden_layer import OneHiddenLayerConfig

    cfg = make_config(OneHiddenLayerConfig, "one_hidden_layer", "quick", {})
    assert (cfg.input_dim, cfg.classes, cfg.width) == (50, 100, 50)
    fewest = cfg.classes * min(int(rho * n) for rho in cfg.rhos for n in cfg.per_class_values)
    assert fewest > counting_bound(cfg.input_dim, cfg.width, cfg.classes)
    assert any(fewest < counting_bound(cfg.input_dim, w, cfg.classes) for w in cfg.variant_widths + cfg.equal_widths)
    assert 0.5 ** (cfg.teachers - cfg.teachers // 2) < 0.05 / 35


def test_flop_count_from_the_config_matches_the_recorded_calls():
    """benchmarks/flop_estimates counts this chapter from its config (its paper data would not fit in
    memory here): the count must be the calls the experiment really makes (stand-in training)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import flop_estimates
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    recorded = []
    with flop_estimates.recording(recorded):
        one_hidden_layer("smoke", surgery=False, variant_classes=[20], device="cpu")
    counted = flop_estimates._one_hidden_layer("smoke", surgery=False, variant_classes=[20])
    key = lambda c: (c.what, c.members, c.samples, c.sizes, c.epochs)  # noqa: E731
    assert sorted(map(key, recorded)) == sorted(map(key, counted))
