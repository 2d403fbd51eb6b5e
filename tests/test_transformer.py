"""The transformer family memorizing through the one protocol (`TransformerFamily` in
`memkd.distillation.train_teacher` / `train_students`) and Fig 8's experiment
(memkd.experiments.modular_addition). Its ensemble against single models: tests/test_models.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memkd.distillation import TeacherDidNotMemorize, train_students, train_teacher
from memkd.data.tokens import make_modular_addition
from memkd.models.transformer import TransformerFamily


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
SMALL = TransformerFamily(11, d_model=32, d_mlp=64)


def test_teacher_memorizes_a_tiny_modulus_and_students_fit_it():
    data = make_modular_addition(11, 0.6, seed=0)
    x, y = data.tokens[data.memorized], data.labels[data.memorized]
    teacher = train_teacher(x, y, SMALL, max_epochs=1000)
    assert float(teacher.train_acc[0]) == 1.0 and 0 < int(teacher.epochs_to_memorize[0]) < 1000
    assert teacher.epochs_run == 1000 and bool(teacher.memorized[0])  # the budget protocol trains all steps
    students, history = train_students(  # one teacher's (1, N, C) logits shared by both students
        x,
        kind="soft",
        family=SMALL,
        teacher_logits=teacher.logits(x),
        members=2,
        temperatures=[1.0, 5.0],
        lrs=3e-3,
        epochs=300,
    )
    with torch.no_grad():
        acc = (students(x).argmax(-1) == y).float().mean(-1)
    assert acc.shape == (2,) and (acc > 0.9).all()
    assert set(history["member"]) == {0, 1}


def test_teacher_stop_first_perfect_freezes_each_teacher_at_its_first_100_percent():
    data = make_modular_addition(11, 0.6, seed=0)
    x, y = data.tokens[data.memorized], data.labels[data.memorized]
    early = train_teacher(x, y, SMALL, max_epochs=1000, stop="first_perfect")
    full = train_teacher(x, y, SMALL, max_epochs=1000)
    first = int(early.epochs_to_memorize[0])
    assert first == int(full.epochs_to_memorize[0])  # the same run up to the first 100%
    assert first <= early.epochs_run <= first + 1 < full.epochs_run == 1000  # stopped (the step at 100% is masked)
    # frozen at the first 100%, so different weights from the teacher trained on with weight decay
    assert not torch.allclose(early.model.w_in, full.model.w_in)
    with pytest.raises(ValueError, match=r"'stop' parameter of train_teacher .* must be one of"):
        train_teacher(x, y, SMALL, max_epochs=5, stop="early")


def test_teacher_that_cannot_memorize_raises_with_the_accuracy():
    data = make_modular_addition(11, 0.6, seed=0)
    x, y = data.tokens[data.memorized], data.labels[data.memorized]
    with pytest.raises(
        TeacherDidNotMemorize,
        match=r"train_teacher: 1 of 1 teacher\(s\) did not reach 100% training "
        r"accuracy after 2 full-batch steps \(teacher_stop='budget'; lowest reached \d+\.\d+%\)",
    ):
        train_teacher(x, y, SMALL, max_epochs=2)
    kept = train_teacher(x, y, SMALL, max_epochs=2, require_memorization=False)
    assert not bool(kept.memorized[0]) and float(kept.train_acc[0]) < 1.0


def test_stacked_teachers_with_own_data_equal_teachers_trained_alone():
    """K teachers on K memorized sets in one ensemble (per-member tokens and seeds) give each
    teacher's numbers alone, to float rounding."""
    draws = [make_modular_addition(11, 0.6, seed=s, balanced=True) for s in (1, 2)]
    x = torch.stack([d.tokens[d.memorized] for d in draws])
    y = torch.stack([d.labels[d.memorized] for d in draws])
    both = train_teacher(x, y, SMALL, max_epochs=150, seed=[5, 9], require_memorization=False)
    for k, seed in enumerate([5, 9]):
        alone = train_teacher(x[k], y[k], SMALL, max_epochs=150, seed=[seed], require_memorization=False)
        torch.testing.assert_close(both.logits(x)[k], alone.logits(x[k])[0], rtol=1e-4, atol=1e-4)
        assert int(both.epochs_to_memorize[k]) == int(alone.epochs_to_memorize[0])


def test_extra_steps_follow_only_once_every_teacher_memorized():
    """The protocol's rule, now the transformer's too: a teacher's extra steps come only after every
    member reached 100% within its budget (its own loop used to train them always)."""
    draws = [make_modular_addition(11, 0.6, seed=s, balanced=True) for s in (1, 2)]
    x = torch.stack([d.tokens[d.memorized] for d in draws])
    y = torch.stack([d.labels[d.memorized] for d in draws])
    kw = dict(seed=[5, 9], lr=3e-3, weight_decay=2.0, extra_epochs=7, require_memorization=False)
    short = train_teacher(x, y, SMALL, max_epochs=20, **kw)
    assert short.epochs_run == 20 and not bool(short.memorized.any()) and (short.epochs_to_memorize == -1).all()
    long = train_teacher(x, y, SMALL, max_epochs=150, **kw)
    assert (long.epochs_to_memorize > 0).all() and long.epochs_run == 157 and bool(long.memorized.all())
    assert int(long.history["epoch"].max()) == 157


def test_transformer_distillation_validates_up_front():
    from memkd.experiments.modular_addition import transformer_distillation

    with pytest.raises(ValueError, match=r"'modulus' parameter of transformer_distillation must be an int >= 3"):
        transformer_distillation("smoke", modulus=2)
    with pytest.raises(ValueError, match=r"'heads' parameter .* must divide d_model=32"):
        transformer_distillation("smoke", heads=5)
    with pytest.raises(ValueError, match=r"'temperatures' parameter .* Got \(0\.0,\)"):
        transformer_distillation("smoke", temperatures=(0.0,))
    with pytest.raises(ValueError, match=r"'teacher_stop' parameter of transformer_distillation must be one of"):
        transformer_distillation("smoke", teacher_stop="early")
    with pytest.raises(ValueError, match=r"'alphas' parameter .* leaves an answer empty"):
        transformer_distillation("smoke", alphas=(0.01,))


def test_transformer_distillation_smoke_rows():
    from memkd.experiments.modular_addition import transformer_distillation

    table = transformer_distillation("smoke", students=1, epochs=50)
    assert len(table) == 3 * 2 and sorted(set(table["temperature"])) == [1.0, 10.0]
    assert sorted(set(table["dataset"])) == [0, 1, 2]  # three teachers, each its own D
    for column in ("train_acc", "test_acc", "independent_acc", "teacher_independent_acc", "chance"):
        assert table[column].between(0, 1).all()
    assert (table["chance"] == 1 / 13).all() and (table["teacher_first_perfect"] > 0).all()
    assert set(table["teacher_stop"]) == {"budget"} and (table["teacher_epochs_run"] == 600).all()
    assert table.attrs["config"]["teachers"] == 3 and table.attrs["config"]["teacher_stop"] == "budget"
    # the teachers differ: their own D, their own initialization
    assert table.groupby("dataset")["teacher_independent_acc"].first().nunique() > 1


def test_transformer_students_stacked_over_teachers_equal_fewer_teachers():
    """Students of teachers 0 and 1 get the same numbers whether a third teacher's students train
    in the same ensemble or not (stacking changes the speed, not the numbers)."""
    from memkd.experiments.modular_addition import transformer_distillation

    kw = dict(students=1, epochs=40, teacher_epochs=300, temperatures=(5.0,))
    three = transformer_distillation("smoke", teachers=3, **kw)
    two = transformer_distillation("smoke", teachers=2, chunk=1, **kw)
    key = ["dataset", "temperature", "student"]
    a = three[three["dataset"] < 2].set_index(key).sort_index()
    b = two.set_index(key).sort_index()
    for column in ("train_acc", "test_acc", "independent_acc", "teacher_independent_acc"):
        np.testing.assert_allclose(a[column], b[column], atol=1.5 / 40)  # at most a pair flips


def test_transformer_teacher_stop_first_perfect_runs_fewer_steps():
    from memkd.experiments.modular_addition import transformer_distillation

    table = transformer_distillation("smoke", students=1, epochs=20, temperatures=(5.0,), teacher_stop="first_perfect")
    assert set(table["teacher_stop"]) == {"first_perfect"}
    assert (table["teacher_epochs_run"] < 600).all() and (
        table["teacher_epochs_run"] <= table["teacher_first_perfect"].max() + 1
    ).all()


def _transfer_table(shift: dict, teachers: int = 5, spread: float = 0.002, train_acc: float = 1.0):
    """Students of `teachers` teachers at T = 1 and 10: held-out = outside + shift[T] + noise."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for k in range(teachers):
        for t in (1.0, 10.0):
            for s in range(2):
                outside = 0.2 + 0.01 * k
                rows.append(
                    {
                        "dataset": k,
                        "temperature": t,
                        "student": s,
                        "train_acc": train_acc,
                        "independent_acc": outside,
                        "test_acc": outside + shift[t] + rng.normal(0, spread),
                    }
                )
    return pd.DataFrame(rows)


def test_no_temperature_transfers_holds_fails_and_stays_inconclusive():
    from memkd.experiments.modular_addition import transfer_by_temperature

    per_t, t, level = transfer_by_temperature(_transfer_table({1.0: 0.0, 10.0: 0.001}), margin=0.04)
    assert (per_t.verdict == "holds").all() and level == 0.05 and t in (1.0, 10.0)
    # one temperature transfers well beyond the margin: refuted at the Bonferroni level, decisive T = 10
    per_t, t, level = transfer_by_temperature(_transfer_table({1.0: 0.0, 10.0: 0.2}), margin=0.04)
    assert t == 10.0 and level == 0.025
    assert per_t.set_index("temperature").loc[10.0, "verdict_bonferroni"] == "does not hold"
    # two noisy teachers: the interval straddles the margin
    per_t, t, level = transfer_by_temperature(
        _transfer_table({1.0: 0.0, 10.0: 0.03}, teachers=2, spread=0.03), margin=0.04
    )
    assert (per_t.verdict_bonferroni == "inconclusive").any() and level == 0.025
    # students that do not fit at any temperature: every temperature is tested all the same
    per_t, _, _ = transfer_by_temperature(_transfer_table({1.0: 0.0, 10.0: 0.0}, train_acc=0.5), margin=0.04)
    assert not per_t.fits.any() and len(per_t) == 2


def test_teacher_summary_says_where_the_budget_leaves_the_teachers():
    import pandas as pd
    from memkd.book.chapters.ch08_transformer import teacher_budget_text
    from memkd.experiments.modular_addition import teacher_summary

    base = dict(teacher_epochs_run=800, teacher_stop="budget", chance=0.05)
    table = pd.DataFrame(
        [
            {"dataset": k, "teacher_first_perfect": 100 + k, "teacher_independent_acc": acc, **base}
            for k, acc in enumerate([0.3, 0.5])
        ]
    )
    per, text = teacher_summary(table), teacher_budget_text(table)
    assert (
        len(per) == 2
        and list(per.dataset) == [0, 1]
        and "800 full-batch steps" in text
        and "7.9×" in text
        and "part of the way" in text
    )
    grokked = table.assign(teacher_independent_acc=0.99)
    assert "grokked" in teacher_budget_text(grokked)
