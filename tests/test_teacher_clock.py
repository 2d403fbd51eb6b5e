"""memkd.experiments.teacher_clock: validation, snapshots against replays, warm-up, rows, the chapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from memkd.experiments.teacher_clock import (
    GENERALIZED,
    STATES,
    clock_curve,
    clock_state,
    teacher_clock,
)
from memkd.data.tokens import make_modular_addition
from memkd.distillation import train_teacher
from memkd.models.transformer import EnsembleTransformer, TransformerFamily
from memkd.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "knob, value, message",
    [
        ("modulus", 2, r"'modulus' parameter of teacher_clock must be an int >= 3"),
        ("heads", 5, r"'heads' parameter of teacher_clock must divide d_model=32"),
        ("memorized_fraction", 0.999, r"'memorized_fraction' parameter of teacher_clock gives 121 of the 121 pairs"),
        ("teacher_steps", (40, 40), r"'teacher_steps' parameter of teacher_clock must hold distinct steps"),
        ("teacher_steps", (0, 40), r"'teacher_steps' parameter of teacher_clock must be a non-empty list"),
        ("clock_every", 500, r"'clock_every' parameter of teacher_clock must be at most the last teacher stop \(120\)"),
        ("rhos", (0.001,), r"'rhos' parameter of teacher_clock contains 0.001"),
        ("temperatures", (0.0,), r"'temperatures' parameter of teacher_clock must be a non-empty list"),
        ("teacher_lr", -1.0, r"'teacher_lr' parameter of teacher_clock must be a float"),
        ("warmup", -1, r"'warmup' parameter of teacher_clock must be an int >= 0"),
    ],
)
def test_bad_knobs_raise_naming_the_knob(knob, value, message):
    with pytest.raises(ValueError, match=message):
        teacher_clock("smoke", **{knob: value})


def test_train_fraction_is_refused_naming_memorized_fraction():
    """One name per concept: the share of the data in D is `memorized_fraction` in every experiment."""
    with pytest.raises(
        ValueError,
        match=r"^The 'train_fraction' parameter of teacher_clock was renamed: "
        r"use 'memorized_fraction'",
    ):
        teacher_clock("smoke", train_fraction=0.5)


def test_unknown_knob_is_rejected():
    with pytest.raises(ValueError, match=r"teacher_clock got unknown parameter\(s\) \['alphas'\]"):
        teacher_clock("smoke", alphas=(0.5,))


def _teacher_data():
    data = make_modular_addition(11, 0.5, seed=3)
    return (
        data.tokens[data.memorized],
        data.labels[data.memorized],
        data.tokens[data.outside].unsqueeze(0),
        data.labels[data.outside].unsqueeze(0),
    )


def test_snapshots_equal_teachers_trained_to_that_step_alone():
    """One run copied at steps 30 and 70 gives the weights of runs stopped there (same seed,
    warm-up, optimizer), and the clock read at a stop is the snapshot's accuracy there."""
    x, y, xo, yo = _teacher_data()
    kw = dict(
        family=TransformerFamily(11, d_model=32, d_mlp=64),
        seed=[4],
        require_memorization=False,
        warmup=10,
        lr=3e-3,
        weight_decay=3.0,
    )
    run = train_teacher(x, y, max_epochs=70, snapshot_at=(30, 70), monitor=(xo, yo), monitor_every=20, **kw)
    assert sorted(run.snapshots) == [30, 70]
    for step in (30, 70):
        alone = train_teacher(x, y, max_epochs=step, **kw)
        snap = run.at(step)
        for name, param in alone.model.named_parameters():
            torch.testing.assert_close(getattr(snap, name), param, rtol=0, atol=1e-6)
        with torch.no_grad():
            unseen = float((snap(xo).argmax(-1) == yo).float().mean())
        read = run.monitor[run.monitor.epoch == step].monitor_acc.item()
        assert read == pytest.approx(unseen)
    assert sorted(set(run.monitor.epoch)) == [20, 30, 40, 60, 70]  # every 20 steps and at each stop
    # the last snapshot is the trained model itself; an earlier one is not
    assert torch.equal(run.at(70).w_in, run.model.w_in) and not torch.equal(run.at(30).w_in, run.model.w_in)
    with pytest.raises(
        ValueError,
        match=r"'epoch' parameter of Teacher.at must be an epoch with a snapshot .*"
        r"\[30, 70\]\. Got 50 instead",
    ):
        run.at(50)
    with pytest.raises(ValueError, match=r"'snapshot_at' parameter of train_teacher must hold epochs in \[1, max_ep"):
        train_teacher(x, y, max_epochs=10, snapshot_at=(20,), **kw)


def test_student_start_teacher_gives_each_student_its_teachers_initial_weights():
    """student_start="teacher": the student's seed is its teacher's, and a member is built from its seed alone,
    so the student's first weights are the teacher's first weights; "own" draws others."""
    from memkd.config import make_config
    from memkd.experiments.teacher_clock import TeacherClockConfig, student_seed
    from memkd.seeds import derive_seed

    shared = make_config(TeacherClockConfig, "teacher_clock", "smoke", {"student_start": "teacher"})
    own = make_config(TeacherClockConfig, "teacher_clock", "smoke", {})
    assert student_seed(shared, 2, 0.5, 0) == student_seed(shared, 2, 0.5, 1) == derive_seed(shared.seed, "teacher", 2)
    assert student_seed(own, 2, 0.5, 0) != student_seed(own, 2, 0.5, 1)
    family = TransformerFamily(11, d_model=32, d_mlp=64)
    teachers = family.build(3, [derive_seed(0, "teacher", k) for k in range(3)], torch.device("cpu"))
    student = family.build(1, [student_seed(shared, 2, 0.5, 0)], torch.device("cpu"))
    for name, param in student.named_parameters():
        torch.testing.assert_close(param[0], getattr(teachers, name)[2], rtol=0, atol=0)
    table = teacher_clock("smoke", epochs=5, student_start="teacher")
    assert set(table.student_start) == {"teacher"}


def test_warmup_starts_at_zero_and_reaches_the_full_rate():
    """Step 1 of a warm-up uses lr 0 (the released LambdaLR(min(s / 10, 1))): the weights do not move;
    without warm-up they do; after the warm-up the learning rate is the base one again."""
    x, y, _, _ = _teacher_data()
    from memkd.losses import hard_cross_entropy

    def one(warmup: int, epochs: int):
        model = EnsembleTransformer(1, 11, 32, 4, 64, seed=1)
        before = model.w_in.detach().clone()
        rates = []
        history, _ = fit(
            model,
            lambda idx: (hard_cross_entropy(model(x), y.unsqueeze(0)), None),
            n_samples=len(y),
            epochs=epochs,
            lr=1e-3,
            weight_decay=1.0,
            decoupled_weight_decay=True,
            warmup=warmup,
            after_epoch=lambda e: rates.append(e),
        )
        return before, model.w_in.detach(), rates

    before, after, rates = one(10, 1)
    assert torch.equal(before, after) and rates == [1]
    before, after, _ = one(0, 1)
    assert not torch.equal(before, after)
    with pytest.raises(ValueError, match=r"'warmup' parameter of fit must be an int >= 0"):
        fit(EnsembleTransformer(1, 11, 32, 4, 64), lambda idx: (None, None), n_samples=1, epochs=1, lr=1e-3, warmup=-2)


def test_clock_state_thresholds():
    assert clock_state(0.99, 1.0) == STATES[0]
    assert clock_state(1.0, GENERALIZED - 0.01) == "memorized, not generalized"
    assert clock_state(1.0, GENERALIZED) == "generalized"


def test_smoke_rows_have_the_columns_and_agree_with_the_clock():
    table = teacher_clock("smoke", epochs=20)
    cfg = table.attrs["config"]
    assert len(table) == cfg["teachers"] * len(cfg["teacher_steps"]) * len(cfg["rhos"]) * len(cfg["temperatures"])
    for column in (
        "dataset",
        "teacher_step",
        "teacher_train_acc",
        "teacher_unseen_acc",
        "teacher_state",
        "rho",
        "temperature",
        "student",
        "train_acc",
        "heldout_acc",
        "unseen_acc",
        "trivial_acc",
        "chance",
    ):
        assert column in table.columns, column
    for column in ("teacher_train_acc", "teacher_unseen_acc", "train_acc", "heldout_acc", "unseen_acc"):
        assert table[column].between(0, 1).all()
    assert (table.trivial_acc == table.unseen_acc).all()
    assert (table.n_student + table.n_heldout == table.n_memorized).all()
    assert (table.n_memorized + table.n_unseen == 11**2).all()
    np.testing.assert_allclose(table.heldout_correct / table.n_heldout, table.heldout_acc, atol=1e-6)
    assert sorted(set(table.teacher_step)) == [40, 120] and sorted(set(table.dataset)) == [0, 1, 2]
    assert (
        table.teacher_state == [clock_state(a, b) for a, b in zip(table.teacher_train_acc, table.teacher_unseen_acc)]
    ).all()
    # the clock read during training at a stop is the snapshot's accuracy computed afterwards
    clock = clock_curve(table)
    assert set(clock.step) >= {20, 40, 120}
    at_stops = clock.merge(
        table[["dataset", "teacher_step", "teacher_unseen_acc"]].drop_duplicates(),
        left_on=["dataset", "step"],
        right_on=["dataset", "teacher_step"],
        suffixes=("", "_row"),
    )
    assert len(at_stops) == 6
    np.testing.assert_allclose(at_stops.teacher_unseen_acc, at_stops.teacher_unseen_acc_row, atol=1e-6)
    # the teacher moves between its stops (its weights were copied, not shared)
    per_stop = table.groupby(["dataset", "teacher_step"]).teacher_train_acc.first().unstack()
    assert (per_stop[120] != per_stop[40]).any()
    json.dumps(cfg)  # its departures: tests/test_departures.py


def test_students_do_not_depend_on_the_ensemble_they_train_in():
    kw = dict(epochs=15, temperatures=(10.0,), teacher_steps=(60,), clock_every=30)
    together = teacher_clock("smoke", **kw)
    alone = teacher_clock("smoke", chunk=1, **kw)
    key = ["dataset", "teacher_step", "temperature", "student"]
    a, b = together.set_index(key).sort_index(), alone.set_index(key).sort_index()
    for column in ("train_acc", "heldout_acc", "unseen_acc"):
        np.testing.assert_allclose(a[column], b[column], atol=1.5 / 30)  # at most a pair flips


@pytest.mark.slow
def test_chapter_08_executes_at_smoke_with_the_teacher_clock(tmp_path):
    from conftest import execute_chapter_at_smoke

    results = execute_chapter_at_smoke(ROOT / "nbs" / "08_transformer.ipynb", tmp_path)
    clock = pd.read_csv(results / "clock_table.csv")
    assert {"teacher_step", "heldout_acc", "unseen_acc", "trivial_acc"} <= set(clock.columns)
    claims = pd.read_csv(results / "claims.csv")
    assert "no_fit_and_transfer" in set(claims.claim)  # the workshop's claim is kept
    assert claims.claim.str.startswith("clock_").any()
    departures = pd.read_csv(results / "departures.csv")
    assert "teacher clock: teacher stops" in set(departures.topic)


def _clock_table(
    gap_before: float, gap_after: float, teachers: int = 5, spread: float = 0.01, after_unseen: float = 0.99
) -> pd.DataFrame:
    """Students of `teachers` teachers at two stops: before (memorized, unseen 0.3) the held-out
    accuracy is the unseen one + gap_before; after (teacher unseen `after_unseen`) + gap_after."""
    rng = np.random.default_rng(1)
    rows = []
    for k in range(teachers):
        for step, t_unseen, gap in ((100, 0.3, gap_before), (900, after_unseen, gap_after)):
            for temp in (1.0, 10.0):
                unseen = 0.2 + 0.01 * k if step == 100 else 0.9
                held = min(1.0, unseen + gap + (rng.normal(0, spread) if spread else 0.0))
                rows.append(
                    {
                        "dataset": k,
                        "teacher_step": step,
                        "teacher_train_acc": 1.0,
                        "teacher_unseen_acc": t_unseen,
                        "teacher_state": clock_state(1.0, t_unseen),
                        "rho": 0.5,
                        "temperature": temp,
                        "student": 0,
                        "train_acc": 1.0,
                        "heldout_acc": held,
                        "unseen_acc": unseen,
                        "trivial_acc": unseen,
                        "modulus": 23,
                        "n_heldout": 100,
                        "n_unseen": 200,
                        "heldout_correct": int(round(100 * held)),
                        "unseen_correct": int(round(200 * unseen)),
                    }
                )
    return pd.DataFrame(rows)


def test_clock_claims_follow_the_clock_and_the_verdicts(tmp_path):
    from memkd.book.chapter import Chapter
    from memkd.book.chapters.ch08_transformer import clock_claims, clock_outcome
    from memkd.experiments.teacher_clock import stop_summary

    ch = Chapter("08_transformer", profile="smoke", results_dir=str(tmp_path), device="cpu")
    table = _clock_table(gap_before=0.2, gap_after=0.0)
    claims = clock_claims(ch, table)
    assert list(claims.claim) == [
        "clock_leak_100_T1",
        "clock_leak_100_T10",
        "clock_vanishes_900_T1",
        "clock_vanishes_900_T10",
    ]
    assert (claims.verdict == "holds").all()
    recorded = {c.claim: c for c in ch.claims}
    assert recorded["clock_leak_100_T1"].expect == "above" and recorded["clock_vanishes_900_T1"].margin == 0.05
    text = clock_outcome(stop_summary(table), claims)
    assert "**the leak exists**" in text and "**the leak has vanished into generalization**" in text
    # no leak before, a gap after: the sentences turn round
    ch.claims.clear()
    claims = clock_claims(ch, _clock_table(gap_before=-0.05, gap_after=0.2))
    assert (claims.verdict == "does not hold").all()
    text = clock_outcome(stop_summary(_clock_table(gap_before=-0.05, gap_after=0.2)), claims)
    assert "**no leak**" in text and "**the leak has not vanished**" in text and "the leak exists" not in text
    # equivalent after generalizing, but no leak before: nothing vanished, and the text says so
    ch.claims.clear()
    never = _clock_table(gap_before=-0.05, gap_after=0.0)
    claims = clock_claims(ch, never)
    text = clock_outcome(stop_summary(never), claims)
    assert "**nothing to vanish**" in text and "vanished into generalization" not in text
    # and the "vanishes" statements, with no leak to vanish, are checks, not claims
    assert {c.claim: c.kind for c in ch.claims}["clock_vanishes_900_T1"] == "check"
    assert {c.claim: c.kind for c in ch.claims}["clock_leak_100_T1"] == "claim"
    # too few teachers in one state at a stop: no claim there
    ch.claims.clear()
    assert clock_claims(ch, _clock_table(0.2, 0.0, teachers=2)).empty
    # outcomes without spread after the stop: the exact sign test across teachers decides (no pooled points)
    ch.claims.clear()
    flat = _clock_table(gap_before=0.2, gap_after=0.0)
    flat.loc[flat.teacher_step == 900, ["heldout_acc", "unseen_acc", "trivial_acc"]] = 1.0
    flat.loc[flat.teacher_step == 900, ["heldout_correct", "unseen_correct"]] = [100, 200]
    clock_claims(ch, flat)
    recorded = {c.claim: c for c in ch.claims}
    assert (
        recorded["clock_vanishes_900_T1"].test == "exact sign test"
        and recorded["clock_leak_100_T1"].test == "t interval"
    )
    assert recorded["clock_vanishes_900_T1"].verdict == "holds" and recorded["clock_vanishes_900_T1"].n == 5
    assert recorded["clock_vanishes_900_T1"].kind == "claim"  # the leak held at T = 1 before: it can vanish
    # no teacher generalized: nothing to test after, and the text says so
    ch.claims.clear()
    young = _clock_table(gap_before=0.2, gap_after=0.0, after_unseen=0.6)
    claims = clock_claims(ch, young)
    assert not claims.claim.str.startswith("clock_vanishes").any()
    assert "cannot test whether the leak vanishes" in clock_outcome(stop_summary(young), claims)


def test_paper_profile_is_the_released_protocol():
    from memkd.config import make_config
    from memkd.experiments.teacher_clock import TeacherClockConfig

    cfg = make_config(TeacherClockConfig, "teacher_clock", "paper", {})
    assert (cfg.modulus, cfg.memorized_fraction, cfg.d_model, cfg.heads, cfg.d_mlp) == (113, 0.3, 128, 4, 512)
    assert cfg.teacher_steps == (2500, 5000, 10000) and cfg.epochs == 40000 and cfg.warmup == 10
    assert (cfg.teacher_lr, cfg.teacher_weight_decay, cfg.lr, cfg.weight_decay) == (1e-3, 1.0, 1e-3, 1.0)
    assert cfg.temperatures == (0.1, 1.0, 10.0) and cfg.rhos == (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
    assert cfg.pairs == round(0.3 * 113**2) and cfg.teachers >= 5
    quick = make_config(TeacherClockConfig, "teacher_clock", "quick", {})
    assert quick.teachers >= 5 and len(quick.teacher_steps) >= 2  # claims at quick rest on five teachers
