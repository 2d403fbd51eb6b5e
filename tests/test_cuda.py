"""The GPU path of `fit`: the epoch without host synchronisation, its CUDA graph, TF32.

Tests marked `cuda` need a CUDA device and are skipped without one (`pytest -m cuda` runs them;
`benchmarks/gpu_check.sh` does so first). The unmarked tests check on the CPU the pieces the GPU
path is built from, so that they cannot rot on a machine without a GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from memkd.data.random_vectors import make_memorization_data
from memkd.device import set_tf32, tf32_enabled
from memkd.fused import PerfectTracker, StaticEpoch
from memkd.models.fused_mlp import FusedCrossEntropy
from memkd.losses import soft_targets
from memkd.models.mlp import EnsembleMLP
from memkd.distillation import train_students, train_teacher
from memkd.train import BatchedAdam, fit

needs_cuda = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
pytestmark = pytest.mark.usefixtures("one_thread")


def _teacher_problem(device: str = "cpu", members: int = 3):
    """A small memorization problem every member can learn in a few dozen epochs."""
    x, y = make_memorization_data(5, 8, 12, seed=1)
    return x.to(device), y.to(device), EnsembleMLP(members, 12, 32, 5, seed=4).to(device)


def _fit_teacher(model, x, y, **kwargs):
    step = FusedCrossEntropy(model, x, y, y)
    return fit(
        model,
        step,
        n_samples=len(x),
        epochs=kwargs.pop("epochs", 80),
        lr=1e-2,
        freeze_when_perfect=True,
        record_first_perfect=True,
        log_every=7,
        **kwargs,
    )


# --- on the CPU: the pieces of the GPU path -----------------------------------------------------


def test_static_epoch_trains_like_fits_eager_loop():
    """StaticEpoch (what the CUDA graph records), run eagerly, follows fit's loop step by step."""
    x, y, model = _teacher_problem()
    history, first = _fit_teacher(model, x, y)
    assert bool((first >= 0).all()), "the problem must freeze every member within the budget"
    x, y, twin = _teacher_problem()
    step = FusedCrossEntropy(twin, x, y, y)
    tracker = PerfectTracker(3, x.device, freeze=True, remember_stop=True)
    epoch = StaticEpoch(step, BatchedAdam(step.parameters(), 1e-2), tracker, track=True, freeze=True, capture=True)
    for _ in range(80):  # runs on after every member froze: frozen members must not move
        epoch()
    assert epoch.graph is None  # no capture on a CPU
    assert torch.equal(tracker.first_perfect, first)
    assert int(tracker.stopped_at) == int(history["epoch"].max()) == int(first.max()) + 1
    torch.testing.assert_close(twin(x), model(x), atol=1e-5, rtol=1e-5)
    last = history[history["epoch"] == history["epoch"].max()]
    torch.testing.assert_close(tracker.loss_at_stop, torch.tensor(last["loss"].values, dtype=torch.float32))


@pytest.mark.parametrize("fused", [True, False])
def test_reading_the_device_every_few_epochs_changes_nothing(fused):
    """sync_every > 1 (the CUDA default) gives the history, first-perfect epochs and weights of 1."""
    runs = []
    for sync_every in (1, 10):
        x, y, model = _teacher_problem()
        if fused:
            history, first = _fit_teacher(model, x, y, sync_every=sync_every)
        else:

            def objective(idx, model=model):
                logits = model(x)
                return torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), y.expand(3, -1), reduction="none"
                ).mean(1), (logits.argmax(-1) == y).float().mean(-1)

            history, first = fit(
                model,
                objective,
                n_samples=len(x),
                epochs=80,
                lr=1e-2,
                freeze_when_perfect=True,
                log_every=7,
                sync_every=sync_every,
            )
        runs.append((history, first, model(x).detach()))
    (h1, f1, out1), (h10, f10, out10) = runs
    assert h1["epoch"].max() % 10 != 0  # the stop falls between two reads of the device
    assert h1.equals(h10) and torch.equal(f1, f10) and torch.equal(out1, out10)


def test_fit_refuses_bad_gpu_knobs_and_warns_when_capture_is_impossible():
    x, y, model = _teacher_problem()
    with pytest.raises(ValueError, match="'sync_every' parameter of fit must be None or an int >= 1"):
        _fit_teacher(model, x, y, sync_every=0)
    with pytest.raises(ValueError, match="'cuda_graph' parameter of fit"):
        _fit_teacher(model, x, y, cuda_graph="yes")
    with pytest.warns(RuntimeWarning, match="capture needs a CUDA device"):
        _fit_teacher(model, x, y, cuda_graph=True, epochs=3)


def test_set_tf32_switches_and_restores():
    before = tf32_enabled()
    try:
        set_tf32(True)
        assert tf32_enabled()
        assert set_tf32(False) is True and not tf32_enabled()
    finally:
        set_tf32(before)
    with pytest.raises(ValueError, match="'enabled' parameter of set_tf32 must be a bool"):
        set_tf32(1)


# --- on a CUDA device ----------------------------------------------------------------------------

cuda = pytest.mark.parametrize("device", [pytest.param("cuda", marks=needs_cuda)])


@cuda
@pytest.mark.parametrize(
    "hidden_layers,activation,soften,per_member,hard",
    [
        (1, "relu", False, False, False),
        (2, "relu", True, False, False),
        (2, "tanh", False, True, False),
        (3, "linear", True, True, False),
        (2, "relu", False, False, True),
    ],
)
def test_fused_step_equals_autograd_on_cuda(device, hidden_layers, activation, soften, per_member, hard):
    from memkd.losses import hard_cross_entropy, soft_cross_entropy
    from memkd.metrics import accuracy

    gen = torch.Generator().manual_seed(0)
    e, n, d, c = 4, 37, 9, 6
    x = torch.randn(e, n, d, generator=gen, dtype=torch.double) if per_member else torch.randn(n, d, dtype=torch.double)
    targets = (
        torch.randint(c, (n,), generator=gen)
        if hard
        else torch.softmax(3 * torch.randn(e, n, c, generator=gen, dtype=torch.double), -1)
    )
    x, targets = x.to(device), targets.to(device)
    labels = targets if hard else targets.argmax(-1)
    temps = torch.tensor([1.0, 2.0, 5.0, 20.0], device=device)
    fused_model = EnsembleMLP(e, d, 7, c, hidden_layers, activation, seed=3).double().to(device)
    reference = EnsembleMLP(e, d, 7, c, hidden_layers, activation, seed=3).double().to(device)
    step = FusedCrossEntropy(fused_model, x, targets, labels, temps, soften)
    loss, acc = step()
    ref_loss = (
        hard_cross_entropy(reference(x), targets) if hard else soft_cross_entropy(reference(x), targets, temps, soften)
    )
    ref_loss.sum().backward()
    torch.testing.assert_close(loss, ref_loss.detach())
    torch.testing.assert_close(acc, accuracy(reference(x), labels))
    for got, param in zip(step.weight_grads + step.bias_grads, reference.parameters()):
        torch.testing.assert_close(got.transpose(1, 2), param.grad)


@cuda
def test_similarity_students_train_the_same_fused_on_cuda(device):
    """The similarity students' fused step (through `StaticEpoch`, captured in a CUDA graph) gives
    autograd's training on the GPU."""
    from memkd.losses import cosine_similarity_matrix

    x, _ = make_memorization_data(4, 6, 10, seed=0, device=device)
    teacher = cosine_similarity_matrix(torch.randn(1, 24, 4, generator=torch.Generator().manual_seed(2)))[0].to(device)
    kwargs = dict(kind="similarity", classes=4, width=16, members=2, lrs=[1e-3, 3e-3], epochs=20, log_every=5)
    (m_fused, h_fused), (m_plain, h_plain) = (train_students(x, teacher, fused=f, **kwargs) for f in (True, False))
    torch.testing.assert_close(m_fused(x), m_plain(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(h_fused.loss.values), torch.tensor(h_plain.loss.values))


@cuda
def test_fused_training_follows_autograd_training_on_cuda(device):
    x, y = make_memorization_data(5, 8, 12, seed=0, device=device)
    kwargs = dict(classes=5, width=32, lr=1e-2, max_epochs=300, seed=0, stop="first_perfect")
    t_fused, t_plain = train_teacher(x, y, **kwargs), train_teacher(x, y, fused=False, **kwargs)
    assert torch.equal(t_fused.epochs_to_memorize, t_plain.epochs_to_memorize)
    assert t_fused.epochs_run == t_plain.epochs_run
    torch.testing.assert_close(t_fused.logits(x), t_plain.logits(x), atol=1e-4, rtol=1e-4)


@cuda
def test_stacked_teachers_equal_separate_runs_on_cuda(device):
    """K datasets stacked into one ensemble (per-member seeds) give the K separate teachers."""
    xs, ys = zip(*(make_memorization_data(5, 8, 12, seed=s, device=device) for s in (1, 2)))
    stacked = train_teacher(
        torch.stack(xs), torch.stack(ys), classes=5, width=32, lr=1e-2, max_epochs=60, seed=[11, 12]
    )
    for k, s in enumerate((11, 12)):
        alone = train_teacher(xs[k], ys[k], classes=5, width=32, lr=1e-2, max_epochs=60, seed=s)
        torch.testing.assert_close(stacked.logits(xs[k])[k], alone.logits(xs[k])[0], atol=1e-4, rtol=1e-4)


@cuda
def test_stacked_experiment_equals_separate_datasets_on_cuda(device):
    """An experiment with teachers=2 gives, for each dataset, what a run of that dataset alone gives."""
    from memkd import experiments as ex

    knobs = dict(device=device, students=2, epochs=30)
    both = ex.logit_distillation("smoke", teachers=2, **knobs)
    first = ex.logit_distillation("smoke", teachers=1, **knobs)
    mine = both[both["dataset"] == 0].reset_index(drop=True)
    cols = ["test_acc", "independent_acc", "train_acc"]
    torch.testing.assert_close(torch.tensor(mine[cols].values), torch.tensor(first[cols].values), atol=0.05, rtol=0)
    # (float rounding may flip a held-out sample or two, at most 0.05 here)


@cuda
def test_cuda_graph_gives_the_eager_numbers(device):
    """fit with the captured epoch equals fit without capture: teacher (freezing) and students."""
    results = []
    for cuda_graph in (False, True):
        x, y, model = _teacher_problem(device)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a failed capture warns: fail here instead
            history, first = _fit_teacher(model, x, y, cuda_graph=cuda_graph, epochs=120)
        probs = soft_targets(model(x)[0].detach(), 10.0)
        students = EnsembleMLP(3, 12, 16, 5, seed=1).to(device)
        step = FusedCrossEntropy(
            students, x, probs, probs.argmax(-1), torch.tensor([2.0, 5.0, 10.0], device=device), soften_student=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            s_hist, _ = fit(
                students,
                step,
                n_samples=len(x),
                epochs=40,
                lr=[1e-3, 3e-3, 1e-2],
                weight_decay=1e-3,
                log_every=10,
                cuda_graph=cuda_graph,
            )
        results.append((history, first, model(x).detach(), students(x).detach(), s_hist))
    (h0, f0, t0, s0, sh0), (h1, f1, t1, s1, sh1) = results
    assert torch.equal(f0, f1) and h0["epoch"].tolist() == h1["epoch"].tolist()
    torch.testing.assert_close(t1, t0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s1, s0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(sh1["loss"].values), torch.tensor(sh0["loss"].values), atol=1e-5, rtol=1e-5)


@cuda
def test_static_epoch_captures_a_graph_and_replays_it(device):
    x, y, model = _teacher_problem(device)
    step = FusedCrossEntropy(model, x, y, y)
    tracker = PerfectTracker(3, x.device, freeze=True, remember_stop=True)
    epoch = StaticEpoch(step, BatchedAdam(step.parameters(), 1e-2), tracker, track=True, freeze=True, capture=True)
    outs = [epoch()[0].clone() for _ in range(6)]
    assert epoch.graph is not None, epoch.capture_error
    assert int(epoch.epoch) == 6 and float(epoch.steps) == 6.0
    assert not torch.equal(outs[-1], outs[-2])  # the replayed graph trains: the loss moves


@cuda
def test_cuda_graph_with_mini_batches_or_autograd_falls_back_to_eager(device):
    x, y, model = _teacher_problem(device)
    step = FusedCrossEntropy(model, x, y, y)
    with pytest.warns(RuntimeWarning, match="capture needs"):
        fit(model, step, n_samples=len(x), epochs=3, lr=1e-2, batch_size=len(x), cuda_graph=True)


@pytest.mark.parametrize("sync_every", [1, 10])
def test_fits_gpu_path_runs_on_the_cpu_with_the_same_history(monkeypatch, sync_every):
    """fit's StaticEpoch path (what CUDA uses, here without a graph) gives the eager loop's results."""
    import memkd.train

    x, y, model = _teacher_problem()
    history, first = _fit_teacher(model, x, y)
    monkeypatch.setattr(memkd.train, "_sync_free", lambda device: True)
    x, y, twin = _teacher_problem()
    twin_history, twin_first = _fit_teacher(twin, x, y, sync_every=sync_every)
    assert torch.equal(twin_first, first)
    assert twin_history[["epoch", "member"]].equals(history[["epoch", "member"]])
    torch.testing.assert_close(
        torch.tensor(twin_history[["loss", "train_acc"]].values),
        torch.tensor(history[["loss", "train_acc"]].values),
        atol=1e-5,
        rtol=1e-5,
    )
    torch.testing.assert_close(twin(x), model(x), atol=1e-5, rtol=1e-5)


def test_students_through_fits_gpu_path_on_the_cpu(monkeypatch):
    import memkd.train

    x, y = make_memorization_data(5, 8, 12, seed=1)
    probs = torch.softmax(torch.randn(40, 5, generator=torch.Generator().manual_seed(0)) * 3, -1)
    kwargs = dict(
        kind="soft",
        classes=5,
        width=16,
        members=3,
        lrs=[1e-3, 3e-3, 1e-2],
        epochs=25,
        temperatures=[2.0, 5.0, 10.0],
        soften_student=True,
        weight_decay=1e-3,
        log_every=5,
        seed=1,
    )
    model, history = train_students(x, probs, **kwargs)
    monkeypatch.setattr(memkd.train, "_sync_free", lambda device: True)
    twin, twin_history = train_students(x, probs, **kwargs)
    assert twin_history[["epoch", "member"]].equals(history[["epoch", "member"]])
    torch.testing.assert_close(
        torch.tensor(twin_history["loss"].values), torch.tensor(history["loss"].values), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(twin(x), model(x), atol=1e-5, rtol=1e-5)
