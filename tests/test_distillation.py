"""The one protocol of `memkd.distillation` for every model family: members of an ensemble trained
by `train_teacher` / `train_students` equal the same models trained one by one, for the MLP and
the CNN families alike; the stop rules and sigma_T act in one place."""

from __future__ import annotations

import pytest
import torch

from memkd.distillation import (
    TEACHER_STOPS, MLPFamily, TeacherDidNotMemorize, check_teacher_stop, require_memorized, train_students,
    train_teacher,
)
from memkd.experiments.cnn import CNNFamily
from memkd.losses import soft_targets

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

SEEDS = [7, 19, 3]
FAMILIES = {
    "mlp": MLPFamily(64, 16, 4, hidden_layers=2),
    "mlp-k1": MLPFamily(64, 16, 4, hidden_layers=1),
    "mlp-frozen": MLPFamily(64, 16, 4, hidden_layers=2, frozen_layers=1),  # autograd: not fusable
    "cnn": CNNFamily((1, 8, 8), 4, width=4, conv_layers=2, head_width=16),
}


def _data(members: int, n: int = 24, classes: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(members, n, 64, generator=gen)  # (E, N, D): 8x8 images, flattened
    logits = 3 * torch.randn(members, n, classes, generator=gen)  # (E, N, C)
    return x, logits


def _assert_members_equal(ensemble, singles):
    for i, one in enumerate(singles):
        for pe, po in zip(ensemble.parameters(), one.parameters()):
            torch.testing.assert_close(pe[i], po[0], atol=2e-5, rtol=1e-4)
    first = list(ensemble.parameters())[-2]
    assert not torch.allclose(first[0], first[1])  # members differ: the check can fail


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("batch", [None, 8])
def test_teachers_of_every_family_equal_separately_trained_ones(name, batch):
    family = FAMILIES[name]
    x, logits = _data(3)
    y = logits.argmax(-1)
    stacked = train_teacher(x, y, family, lr=1e-2, max_epochs=5, batch_size=batch, seed=SEEDS, shuffle_seed=5,
                            require_memorization=False)
    singles = [train_teacher(x[i], y[i], family, lr=1e-2, max_epochs=5, batch_size=batch, seed=[s],
                             shuffle_seed=5, require_memorization=False) for i, s in enumerate(SEEDS)]
    _assert_members_equal(stacked.model, [t.model for t in singles])
    for i, t in enumerate(singles):
        torch.testing.assert_close(stacked.member(i).logits(x[i]), t.logits(x[i]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("kind,soften,batch", [("soft", False, None), ("soft", True, None), ("hard", False, None),
                                               ("soft", False, 8)])
def test_students_of_every_family_equal_separately_trained_ones(name, kind, soften, batch):
    """Each member with its own data, teacher logits, learning rate and temperature."""
    family = FAMILIES[name]
    x, logits = _data(3)
    temps = torch.tensor([1.0, 2.0, 5.0])
    lrs = torch.tensor([1e-3, 3e-3, 1e-2])
    given = dict(teacher_logits=logits) if kind == "soft" else dict(targets=logits.argmax(-1))
    ens, _ = train_students(x, kind=kind, family=family, members=3, lrs=lrs, epochs=4, temperatures=temps,
                            soften_student=soften, batch_size=batch, seed=SEEDS, shuffle_seed=5, **given)
    singles = []
    for i, s in enumerate(SEEDS):
        one_given = {key: v[i:i + 1] for key, v in given.items()}
        one, _ = train_students(x[i:i + 1], kind=kind, family=family, members=1, lrs=lrs[i:i + 1], epochs=4,
                                temperatures=temps[i:i + 1], soften_student=soften, batch_size=batch, seed=[s],
                                shuffle_seed=5, **one_given)
        singles.append(one)
    _assert_members_equal(ens, singles)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_sigma_T_is_applied_once_by_the_protocol(name):
    """Teacher logits with T give the students that sigma_T(logits) gives; soften_student changes them."""
    family = FAMILIES[name]
    x, logits = _data(2)
    temps = torch.tensor([2.0, 5.0])
    common = dict(kind="soft", family=family, members=2, lrs=1e-2, epochs=3, temperatures=temps, seed=[1, 2])
    from_logits, _ = train_students(x, teacher_logits=logits, **common)
    from_probs, _ = train_students(x, soft_targets(logits, temps), **common)
    softened, _ = train_students(x, teacher_logits=logits, soften_student=True, **common)
    torch.testing.assert_close(from_logits(x), from_probs(x))
    assert not torch.allclose(from_logits(x), softened(x))
    with pytest.raises(ValueError, match="'targets' parameter"):
        train_students(x, soft_targets(logits, temps), teacher_logits=logits, **common)


def test_the_stop_rules_and_their_error_are_defined_once():
    assert TEACHER_STOPS == ("budget", "first_perfect")
    with pytest.raises(ValueError, match="'teacher_stop' parameter of f .*'budget', 'first_perfect'"):
        check_teacher_stop("early", "f", name="teacher_stop")
    require_memorized(torch.ones(3), "budget", 10, "f")  # all at 100%: no error
    with pytest.raises(TeacherDidNotMemorize, match=r"f: 1 of 2 .* within 7 steps \(teacher_stop='first_perfect'"):
        require_memorized(torch.tensor([1.0, 0.5]), "first_perfect", 7, "f", unit="steps")


def test_the_list_of_stops_is_written_out_once():
    """Every other module imports TEACHER_STOPS; the transformer's own loop (not yet on the one
    protocol) is the one known exception."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "memkd"
    found = sorted(str(p.relative_to(package.parent)) for p in package.rglob("*.py")
                   if '("budget", "first_perfect")' in p.read_text() or "one_of(\"budget\"" in p.read_text())
    assert found == ["memkd/distillation.py", "memkd/experiments/transformer.py"]
