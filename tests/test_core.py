"""The core floor: losses, batched Adam, teachers, the fused step, metrics, devices (data and models:
tests/test_data.py and tests/test_models.py)."""

import pytest
import torch
import torch.nn.functional as F

from memkd.data.random_vectors import make_memorization_data
from memkd.device import resolve_device
from memkd.models.fused_mlp import FusedCrossEntropy, FusedSimilarity
from memkd.losses import (
    cosine_similarity_matrix,
    cut_tail,
    drop_class,
    hard_cross_entropy,
    similarity_mse,
    soft_cross_entropy,
    soft_targets,
    zero_class_elsewhere,
)
from memkd.metrics import (
    accuracy,
    nearest_neighbour_accuracy,
)
from memkd.models.mlp import EnsembleMLP
from memkd.distillation import TeacherDidNotMemorize, train_students, train_teacher
from memkd.train import BatchedAdam


# --- losses ---------------------------------------------------------------------------------------


def test_soft_cross_entropy_matches_formula_in_both_conventions():
    torch.manual_seed(0)
    z_s, z_t = torch.randn(2, 5, 4), torch.randn(5, 4)
    temps = torch.tensor([2.0, 10.0])
    p = soft_targets(z_t.unsqueeze(0), temps)
    for e, t in enumerate(temps):
        target = torch.softmax(z_t / t, -1)
        torch.testing.assert_close(p[e], target)
        released = -(target * torch.log_softmax(z_s[e], -1)).sum(-1).mean()
        text = -(target * torch.log_softmax(z_s[e] / t, -1)).sum(-1).mean()
        torch.testing.assert_close(soft_cross_entropy(z_s, p, temps, soften_student=False)[e], released)
        torch.testing.assert_close(soft_cross_entropy(z_s, p, temps, soften_student=True)[e], text)


def test_hard_cross_entropy_and_similarity_mse():
    torch.manual_seed(1)
    z, y = torch.randn(3, 6, 4), torch.randint(4, (6,))
    for e in range(3):
        torch.testing.assert_close(hard_cross_entropy(z, y)[e], F.cross_entropy(z[e], y))
    teacher = torch.randn(6, 4)
    rho_t = F.cosine_similarity(teacher[:, None], teacher[None], dim=-1)
    rho_s = F.cosine_similarity(z[1][:, None], z[1][None], dim=-1)
    torch.testing.assert_close(cosine_similarity_matrix(teacher.unsqueeze(0))[0], rho_t)
    torch.testing.assert_close(similarity_mse(z, rho_t)[1], ((rho_s - rho_t) ** 2).mean())


def test_logit_surgery():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    labels = torch.tensor([0, 2])
    cut = cut_tail(probs, 0.5)  # two smallest of four entries
    assert torch.equal(cut, torch.tensor([[0.0, 0.0, 0.3, 0.4], [0.4, 0.3, 0.0, 0.0]]))
    assert torch.equal(cut_tail(probs, 0.0), probs)
    assert torch.equal(cut_tail(probs, 0.1)[0], torch.tensor([0.0, 0.2, 0.3, 0.4]))  # any q > 0 cuts one
    zeroed = zero_class_elsewhere(probs, labels, cls=0)
    assert zeroed[0, 0] == 0.1 and zeroed[1, 0] == 0.0 and torch.equal(zeroed[:, 1:], probs[:, 1:])
    idx = torch.arange(2)
    assert drop_class(idx, labels, cls=0).tolist() == [1]


# --- training -------------------------------------------------------------------------------------


def test_batched_adam_equals_torch_adam_with_different_learning_rates():
    torch.manual_seed(0)
    lrs = [1e-3, 3e-2, 0.1]
    wd = 0.01
    ens = EnsembleMLP(3, 4, 6, 3, seed=2)
    plains = [ens.member(i) for i in range(3)]
    opts = [torch.optim.Adam(p.parameters(), lr=lr, weight_decay=wd) for p, lr in zip(plains, lrs)]
    batched = BatchedAdam(ens.parameters(), lr=lrs, weight_decay=wd)
    x, y = torch.randn(12, 4), torch.randint(3, (12,))
    for _ in range(25):
        batched.zero_grad()
        hard_cross_entropy(ens(x), y).sum().backward()
        batched.step()
        for p, o in zip(plains, opts):
            o.zero_grad()
            F.cross_entropy(p(x), y).backward()
            o.step()
    for i, p in enumerate(plains):
        torch.testing.assert_close(ens(x)[i], p(x), atol=1e-5, rtol=1e-5)


def test_adamw_variant_and_inactive_members_stay_put():
    ens = EnsembleMLP(2, 3, 4, 2, seed=0)
    plain = ens.member(1)
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-2, weight_decay=0.5)
    batched = BatchedAdam(ens.parameters(), lr=1e-2, weight_decay=0.5, decoupled=True)
    before0 = ens.weights[0][0].detach().clone()
    x, y = torch.randn(5, 3), torch.randint(2, (5,))
    for _ in range(5):
        batched.zero_grad()
        hard_cross_entropy(ens(x), y).sum().backward()
        batched.step(active=torch.tensor([False, True]))
        opt.zero_grad()
        F.cross_entropy(plain(x), y).backward()
        opt.step()
    assert torch.equal(ens.weights[0][0], before0)
    torch.testing.assert_close(ens(x)[1], plain(x), atol=1e-5, rtol=1e-5)


def test_teacher_memorizes_and_stops_at_first_perfect_epoch():
    x, y = make_memorization_data(10, 20, 100, seed=0)
    teacher = train_teacher(x, y, classes=10, width=50, lr=3e-3, max_epochs=600, seed=0, stop="first_perfect")
    assert bool(teacher.memorized.all()) and float(teacher.train_acc[0]) == 1.0
    assert 0 < int(teacher.epochs_to_memorize[0]) < 600
    assert teacher.epochs_run == int(teacher.epochs_to_memorize[0]) + 1  # stopped moving, then ended


def test_budget_teacher_trains_every_epoch_and_moves_on_after_memorizing():
    x, y = make_memorization_data(10, 20, 100, seed=0)
    early = train_teacher(x, y, classes=10, width=50, lr=3e-3, max_epochs=600, seed=0, stop="first_perfect")
    budget = train_teacher(x, y, classes=10, width=50, lr=3e-3, max_epochs=600, seed=0, stop="budget")
    assert budget.epochs_run == 600 and bool(budget.memorized.all())
    assert torch.equal(budget.epochs_to_memorize, early.epochs_to_memorize)  # same path up to 100%
    assert not torch.allclose(budget.logits(x), early.logits(x))  # ... then it kept training
    with pytest.raises(ValueError, match="'stop'.*budget"):
        train_teacher(x, y, classes=10, width=50, max_epochs=5, stop="early")


def test_budget_teacher_below_100_percent_at_the_end_raises():
    x, y = make_memorization_data(10, 20, 100, seed=0)
    with pytest.raises(TeacherDidNotMemorize, match="after 3 epochs.*teacher_stop='budget'"):
        train_teacher(x, y, classes=10, width=50, lr=3e-3, max_epochs=3, seed=0, stop="budget")


def test_per_member_seeds_make_stacked_teachers_equal_separate_ones():
    xs, ys = zip(*(make_memorization_data(5, 8, 12, seed=s) for s in (1, 2)))
    stacked = train_teacher(
        torch.stack(xs), torch.stack(ys), classes=5, width=32, lr=1e-2, max_epochs=60, seed=[11, 12]
    )
    for k, s in enumerate((11, 12)):
        alone = train_teacher(xs[k], ys[k], classes=5, width=32, lr=1e-2, max_epochs=60, seed=s)
        torch.testing.assert_close(stacked.logits(xs[k])[k], alone.logits(xs[k])[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="one seed per member"):
        EnsembleMLP(3, 4, 5, 2, seed=[1, 2])


def test_teacher_that_fails_raises_with_accuracy_unless_accepted():
    x, y = make_memorization_data(10, 50, 5, seed=0)  # 500 points in 5-D, a tiny net: impossible
    with pytest.raises(TeacherDidNotMemorize, match=r"lowest reached \d+\.\d+%"):
        train_teacher(x, y, classes=10, width=4, max_epochs=20, seed=0)
    t = train_teacher(x, y, classes=10, width=4, max_epochs=20, seed=0, require_memorization=False)
    assert not bool(t.memorized.all()) and float(t.train_acc[0]) < 1.0


def test_mini_batch_teacher_and_students_run():
    x, y = make_memorization_data(5, 10, 20, seed=0)
    t = train_teacher(x, y, classes=5, width=64, lr=1e-2, max_epochs=400, batch_size=16, seed=0)
    assert bool(t.memorized.all())
    model, hist = train_students(
        x, y, kind="hard", classes=5, width=32, members=3, lrs=[1e-3, 1e-2, 3e-2], epochs=5, batch_size=16, log_every=1
    )
    assert set(hist.columns) == {"epoch", "member", "loss", "train_acc"} and hist.epoch.max() == 5


# --- the fused full-batch step --------------------------------------------------------------------


def _autograd_reference(model, x, targets, temps, soften):
    loss = (
        hard_cross_entropy(model(x), targets)
        if targets.dtype == torch.long
        else soft_cross_entropy(model(x), targets, temps, soften)
    )
    loss.sum().backward()
    return loss.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize(
    "hidden_layers,activation,soften,per_member,hard",
    [
        (1, "relu", False, False, False),
        (2, "relu", True, False, False),
        (2, "tanh", False, True, False),
        (3, "linear", True, True, False),
        (2, "relu", False, False, True),
        (3, "tanh", False, True, True),
    ],
)
def test_fused_step_gives_autograds_loss_accuracy_and_gradients(hidden_layers, activation, soften, per_member, hard):
    gen = torch.Generator().manual_seed(0)
    e, n, d, c = 4, 15, 6, 5
    x = torch.randn(e, n, d, generator=gen, dtype=torch.double) if per_member else torch.randn(n, d, dtype=torch.double)
    targets = (
        torch.randint(c, (n,), generator=gen)
        if hard
        else torch.softmax(3 * torch.randn(e, n, c, generator=gen, dtype=torch.double), -1)
    )
    if not hard:
        targets[..., 0] = 0.0  # after logit surgery targets need not sum to one
    labels = targets if hard else targets.argmax(-1)
    temps = torch.tensor([1.0, 2.0, 5.0, 20.0])
    fused_model = EnsembleMLP(e, d, 7, c, hidden_layers, activation, seed=3).double()
    reference = EnsembleMLP(e, d, 7, c, hidden_layers, activation, seed=3).double()
    step = FusedCrossEntropy(fused_model, x, targets, labels, temps, soften)
    loss, acc = step()
    ref_loss, ref_grads = _autograd_reference(reference, x, targets, temps, soften)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(acc, accuracy(reference(x), labels))
    assert [p.shape for p in fused_model.parameters()] == [p.shape for p in reference.parameters()]
    grads = step.weight_grads + step.bias_grads  # stored (E, out, in) and (E, out, 1)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.transpose(1, 2), want)
    torch.testing.assert_close(fused_model(x), reference(x))  # the module still reads its weights


def test_fused_training_follows_autograd_training():
    x, y = make_memorization_data(5, 8, 12, seed=0)
    t_fused = train_teacher(x, y, classes=5, width=32, lr=1e-2, max_epochs=300, seed=0, stop="first_perfect")
    t_plain = train_teacher(
        x, y, classes=5, width=32, lr=1e-2, max_epochs=300, seed=0, fused=False, stop="first_perfect"
    )
    assert torch.equal(t_fused.epochs_to_memorize, t_plain.epochs_to_memorize)
    torch.testing.assert_close(t_fused.logits(x), t_plain.logits(x), atol=1e-4, rtol=1e-4)
    probs = soft_targets(t_fused.logits(x)[0], 10.0)
    for kind, targets in (("soft", probs), ("hard", y)):
        runs = [
            train_students(
                x,
                targets,
                kind=kind,
                classes=5,
                width=16,
                members=3,
                lrs=[1e-3, 3e-3, 1e-2],
                epochs=10,
                temperatures=[2.0, 5.0, 10.0],
                soften_student=True,
                fused=fused,
                log_every=5,
            )
            for fused in (True, False)
        ]
        (m_fused, h_fused), (m_plain, h_plain) = runs
        torch.testing.assert_close(m_fused(x), m_plain(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(h_fused.loss.values), torch.tensor(h_plain.loss.values))


@pytest.mark.parametrize(
    "hidden_layers,activation,per_member",
    [(1, "relu", False), (2, "relu", True), (3, "tanh", False), (2, "linear", True)],
)
def test_fused_similarity_step_gives_autograds_loss_and_gradients(hidden_layers, activation, per_member):
    gen = torch.Generator().manual_seed(1)
    e, n, d, c = 3, 12, 6, 4
    x = torch.randn(e, n, d, generator=gen, dtype=torch.double) if per_member else torch.randn(n, d, dtype=torch.double)
    teacher = cosine_similarity_matrix(torch.randn(e if per_member else 1, n, 5, generator=gen, dtype=torch.double))
    teacher = teacher if per_member else teacher[0]  # (E, N, N) or shared (N, N)
    fused_model = EnsembleMLP(e, d, 7, c, hidden_layers, activation, seed=3).double()
    reference = EnsembleMLP(e, d, 7, c, hidden_layers, activation, seed=3).double()
    with torch.no_grad():  # member 0's outputs have a norm below the normalize clamp's eps (1e-12)
        for m in (fused_model, reference):
            m.weights[-1][0].zero_()
            m.biases[-1][0].fill_(1e-13)
    step = FusedSimilarity(fused_model, x, teacher)
    loss, acc = step()
    ref_loss = similarity_mse(reference(x), teacher)
    ref_loss.sum().backward()
    assert acc is None
    torch.testing.assert_close(loss, ref_loss.detach())
    for got, want in zip(step.weight_grads + step.bias_grads, [p.grad for p in reference.parameters()]):
        torch.testing.assert_close(got.transpose(1, 2), want)


def test_similarity_students_train_the_same_fused_and_through_autograd():
    x, _ = make_memorization_data(4, 6, 10, seed=0)
    teacher = cosine_similarity_matrix(torch.randn(1, 24, 4, generator=torch.Generator().manual_seed(2)))[0]
    (m_fused, h_fused), (m_plain, h_plain) = (
        train_students(
            x,
            teacher,
            kind="similarity",
            classes=4,
            width=16,
            members=2,
            lrs=[1e-3, 3e-3],
            epochs=20,
            fused=fused,
            log_every=5,
        )
        for fused in (True, False)
    )
    assert h_fused.loss.iloc[-1] < h_fused.loss.iloc[0]  # it learns
    torch.testing.assert_close(m_fused(x), m_plain(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(h_fused.loss.values), torch.tensor(h_plain.loss.values))


def test_fused_similarity_refuses_a_matrix_of_the_wrong_size():
    with pytest.raises(ValueError, match="teacher_similarity.*N = 6"):
        FusedSimilarity(EnsembleMLP(2, 3, 4, 2), torch.randn(6, 3), torch.eye(5))


def test_fused_step_refuses_mini_batches_and_frozen_parameters():
    model = EnsembleMLP(2, 3, 4, 2)
    step = FusedCrossEntropy(
        model, torch.randn(6, 3), torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long)
    )
    with pytest.raises(ValueError, match="full batch only"):
        step(torch.arange(3))
    frozen = EnsembleMLP(2, 3, 4, 2)
    frozen.weights[0].requires_grad_(False)
    with pytest.raises(ValueError, match="frozen parameters"):
        FusedCrossEntropy(frozen, torch.randn(6, 3), torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long))


# --- metrics --------------------------------------------------------------------------------------


def test_metrics():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]])
    labels = torch.tensor([0, 0, 1])
    assert accuracy(logits, labels)[0] == 1 / 3
    ref = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    q = torch.tensor([[[0.9, 0.1], [0.2, 5.0]]])
    assert nearest_neighbour_accuracy(ref, torch.tensor([0, 1]), q, torch.tensor([0, 1]))[0] == 1.0


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="'device'"):
        resolve_device("tpu-of-dreams")
