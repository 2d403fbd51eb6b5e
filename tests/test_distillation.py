"""The one protocol of `memkd.distillation` for every model family: members of an ensemble trained
by `train_teacher` / `train_students` equal the same models trained one by one, for the MLP (k = 0,
the bias-free linear model, to k = 2 hidden layers), CNN and transformer families alike; a family's optimizer reaches the loop; the stop rules and sigma_T
act in one place."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from memkd.distillation import (
    TEACHER_STOPS,
    MLPFamily,
    TeacherDidNotMemorize,
    check_teacher_stop,
    require_memorized,
    train_students,
    train_teacher,
)
from memkd.models.cnn import CNNFamily
from memkd.models.transformer import TransformerFamily
from memkd.models.family import Optimizer
from memkd.losses import soft_targets

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

SEEDS = [7, 19, 3]
FAMILIES = {
    "mlp": MLPFamily(64, 16, 4, hidden_layers=2),
    "mlp-k1": MLPFamily(64, 16, 4, hidden_layers=1),
    "linear": MLPFamily(64, 16, 4, hidden_layers=0, bias=False),  # k = 0: the bias-free linear model
    "mlp-frozen": MLPFamily(64, 16, 4, hidden_layers=2, frozen_layers=1),  # autograd: not fusable
    "cnn": CNNFamily((1, 8, 8), 4, width=4, conv_layers=2, head_width=16),
    "transformer": TransformerFamily(4, d_model=16, heads=2, d_mlp=32),  # AdamW, weight decay 1
}


def _data(members: int, n: int = 24, classes: int = 4, seed: int = 0, inputs: str = "vectors"):
    """Inputs (E, N, D) (8x8 images, flattened) or tokens (E, N, 3) ("a b =" mod 4), and logits (E, N, C)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(members, n, 64, generator=gen)
    if inputs == "tokens":
        x = torch.cat(
            [torch.randint(0, classes, (members, n, 2), generator=gen), torch.full((members, n, 1), classes)], dim=-1
        )  # "=" is token id C
    logits = 3 * torch.randn(members, n, classes, generator=gen)
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
    x, logits = _data(3, inputs=family.inputs)
    y = logits.argmax(-1)
    stacked = train_teacher(
        x,
        y,
        family,
        lr=1e-2,
        max_epochs=5,
        batch_size=batch,
        seed=SEEDS,
        shuffle_seed=5,
        require_memorization=False,
        snapshot_at=(2,),
    )
    singles = [
        train_teacher(
            x[i],
            y[i],
            family,
            lr=1e-2,
            max_epochs=5,
            batch_size=batch,
            seed=[s],
            shuffle_seed=5,
            require_memorization=False,
            snapshot_at=(2,),
        )
        for i, s in enumerate(SEEDS)
    ]
    _assert_members_equal(stacked.model, [t.model for t in singles])
    _assert_members_equal(stacked.at(2), [t.at(2) for t in singles])  # the copies along the way too
    for i, t in enumerate(singles):
        torch.testing.assert_close(stacked.member(i).logits(x[i]), t.logits(x[i]), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(stacked.member(i).at(2)(x[i]), t.at(2)(x[i]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize(
    "kind,soften,batch", [("soft", False, None), ("soft", True, None), ("hard", False, None), ("soft", False, 8)]
)
def test_students_of_every_family_equal_separately_trained_ones(name, kind, soften, batch):
    """Each member with its own data, teacher logits, learning rate and temperature."""
    family = FAMILIES[name]
    if kind not in family.student_kinds:
        with pytest.raises(ValueError, match=r"'kind' parameter of train_students must be one of \('soft',\)"):
            train_students(
                _data(1, inputs=family.inputs)[0],
                torch.zeros(1, 24, dtype=torch.long),
                kind=kind,
                family=family,
                members=1,
                lrs=1e-3,
                epochs=1,
            )
        return
    x, logits = _data(3, inputs=family.inputs)
    temps = torch.tensor([1.0, 2.0, 5.0])
    lrs = torch.tensor([1e-3, 3e-3, 1e-2])
    given = dict(teacher_logits=logits) if kind == "soft" else dict(targets=logits.argmax(-1))
    ens, _ = train_students(
        x,
        kind=kind,
        family=family,
        members=3,
        lrs=lrs,
        epochs=4,
        temperatures=temps,
        soften_student=soften,
        batch_size=batch,
        seed=SEEDS,
        shuffle_seed=5,
        **given,
    )
    singles = []
    for i, s in enumerate(SEEDS):
        one_given = {key: v[i : i + 1] for key, v in given.items()}
        one, _ = train_students(
            x[i : i + 1],
            kind=kind,
            family=family,
            members=1,
            lrs=lrs[i : i + 1],
            epochs=4,
            temperatures=temps[i : i + 1],
            soften_student=soften,
            batch_size=batch,
            seed=[s],
            shuffle_seed=5,
            **one_given,
        )
        singles.append(one)
    _assert_members_equal(ens, singles)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_students_of_one_teacher_may_share_its_inputs_and_logits(name):
    """Shared inputs (N, ...) and one teacher's logits (1, N, C) give the students that the same
    inputs and logits repeated per member (E, N, ...) give."""
    family = FAMILIES[name]
    x, logits = _data(1, inputs=family.inputs)
    common = dict(
        kind="soft",
        family=family,
        members=3,
        lrs=[1e-3, 3e-3, 1e-2],
        epochs=4,
        temperatures=[1.0, 2.0, 5.0],
        seed=SEEDS,
    )
    shared, _ = train_students(x[0], teacher_logits=logits, **common)
    repeated, _ = train_students(x.expand(3, *x.shape[1:]), teacher_logits=logits.expand(3, -1, -1), **common)
    for a, b in zip(shared.parameters(), repeated.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_sigma_T_is_applied_once_by_the_protocol(name):
    """Teacher logits with T give the students that sigma_T(logits) gives; soften_student changes them."""
    family = FAMILIES[name]
    x, logits = _data(2, inputs=family.inputs)
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
    """memkd.config declares TEACHER_STOPS (and the one teacher_stop knob); every other module imports it."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "memkd"
    found = sorted(
        str(p.relative_to(package.parent))
        for p in package.rglob("*.py")
        if '("budget", "first_perfect")' in p.read_text() or 'one_of("budget"' in p.read_text()
    )
    assert found == ["memkd/config.py"]


@dataclass(frozen=True)
class AdamWMLP(MLPFamily):
    """An MLP family that trains with AdamW (the optimizer hook of a family)."""

    optimizer = Optimizer(weight_decay=0.5, decoupled=True, betas=(0.8, 0.95))


def test_a_family_sets_the_optimizer_and_an_explicit_weight_decay_wins():
    x, logits = _data(2)
    y = logits.argmax(-1)
    common = dict(kind="hard", members=2, lrs=1e-2, epochs=5, seed=[1, 2], fused=False)
    adamw = AdamWMLP(64, 16, 4)
    by_family, _ = train_students(x, y, family=adamw, **common)
    explicit, _ = train_students(x, y, family=adamw, weight_decay=0.5, **common)
    no_decay, _ = train_students(x, y, family=adamw, weight_decay=0.0, **common)
    adam, _ = train_students(x, y, family=MLPFamily(64, 16, 4), weight_decay=0.5, **common)
    torch.testing.assert_close(by_family(x), explicit(x))  # None: the family's weight decay
    assert not torch.allclose(by_family(x), no_decay(x), atol=1e-4)
    assert not torch.allclose(by_family(x), adam(x), atol=1e-4)  # AdamW, not Adam with L2 decay
    # the transformer's optimizer is torch's AdamW (betas 0.9/0.98, weight decay 1): member 0 alone
    family = FAMILIES["transformer"]
    tokens, logits = _data(1, inputs="tokens")
    labels = logits.argmax(-1)
    teacher = train_teacher(tokens, labels, family, lr=1e-2, max_epochs=6, seed=[3], require_memorization=False)
    plain = family.build(1, [3], torch.device("cpu")).member(0)
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-2, betas=(0.9, 0.98), weight_decay=1.0)
    for _ in range(6):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(plain(tokens[0]), labels[0]).backward()
        opt.step()
    torch.testing.assert_close(teacher.logits(tokens)[0], plain(tokens[0]), atol=1e-4, rtol=1e-4)


def test_the_linear_teacher_of_the_protocol_is_the_published_versions():
    """k = 0 without biases through `train_teacher` is the bias-free linear teacher of chapters 11-12
    (`memkd.experiments.linear_recovery.train_teachers`, the `LinearFamily` through the same protocol):
    the same draw, loss and Adam, so the same weights."""
    from memkd.data.linear import make_linear_data
    from memkd.experiments.linear_recovery import train_teachers

    data = make_linear_data([6], classes=3, input_dim=5, seeds=[11], fresh=4, device=torch.device("cpu"))
    w = train_teachers(data, outputs=3, seeds=[21], epochs=40, lr=1e-2)  # (K, D, O)
    teacher = train_teacher(
        data.x[0].float(),
        data.y[0],
        MLPFamily(5, 1, 3, hidden_layers=0, bias=False),
        lr=1e-2,
        max_epochs=40,
        seed=[21],
        require_memorization=False,
        fused=False,
    )
    linear = teacher.model.weights[0].detach()  # (E, D, C)
    torch.testing.assert_close(linear[0], w[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(linear[0], teacher.model.weights[0].new_zeros(5, 3))  # it trained
    assert teacher.model.biases[0].abs().max() == 0 and not teacher.model.biases[0].requires_grad


def test_a_sample_mask_of_the_wrong_shape_or_kind_is_refused_before_training():
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(
        ValueError,
        match=r"The 'mask' parameter of train_students must be None or a bool tensor of "
        r"shape \(2, 6\)",
    ):
        train_students(x, y, kind="hard", members=2, lrs=1e-2, epochs=1, classes=3, width=4, mask=torch.ones(2, 5) > 0)
    with pytest.raises(ValueError, match="The 'mask' parameter of train_students must be None for kind='similarity'"):
        train_students(
            x,
            torch.eye(6),
            kind="similarity",
            members=2,
            lrs=1e-2,
            epochs=1,
            classes=3,
            width=4,
            mask=torch.ones(2, 6) > 0,
        )
    with pytest.raises(ValueError, match="The 'mask' parameter of train_teacher must be None or a bool tensor"):
        train_teacher(x, y, classes=3, width=4, max_epochs=1, mask=torch.ones(6))


def test_a_masked_member_equals_the_member_trained_on_its_own_points():
    """train_students' mask: a student that sees 4 of 6 shared points is the student trained on those 4."""
    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    mask = torch.tensor([[True, True, False, True, True, False]])
    masked, _ = train_students(
        x, y.unsqueeze(0), kind="hard", members=1, lrs=1e-2, epochs=20, classes=3, width=8, seed=[4], mask=mask
    )
    own, _ = train_students(
        x[mask[0]], y[mask[0]], kind="hard", members=1, lrs=1e-2, epochs=20, classes=3, width=8, seed=[4], fused=False
    )
    every, _ = train_students(
        x, y, kind="hard", members=1, lrs=1e-2, epochs=20, classes=3, width=8, seed=[4], fused=False
    )
    assert torch.allclose(masked.weights[0], own.weights[0], atol=1e-6)
    assert not torch.allclose(masked.weights[0], every.weights[0], atol=1e-6)
