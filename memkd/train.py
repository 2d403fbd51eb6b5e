"""One training loop for ensembles, a batched Adam, and the two uses: teachers and students.

Shape letters (see `memkd`): E members, N samples, D input dimension, C classes.
Every member is an independent network: the loop sums per-member losses (shape (E,)), so each
member receives exactly its own gradient, and `BatchedAdam` applies Adam with a learning rate
(and weight decay) per member. Left out on purpose: schedulers, callbacks, checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from memkd.losses import (
    cosine_similarity_matrix,
    hard_cross_entropy,
    similarity_mse,
    soft_cross_entropy,
)
from memkd.fused import FusedCrossEntropy
from memkd.memory import members_per_chunk, training_bytes_per_member
from memkd.metrics import accuracy
from memkd.models import EnsembleMLP

STUDENT_KINDS = ("soft", "hard", "similarity")
TEACHER_STOPS = ("budget", "first_perfect")


class BatchedAdam:
    """Adam over stacked parameters (E, ...) with a learning rate per member.

    Matches `torch.optim.Adam` (defaults betas=(0.9, 0.999), eps=1e-8) member by member.
    `weight_decay` adds wd * param to the gradient (Adam's L2) or, with `decoupled=True`,
    shrinks the parameter by lr * wd first (AdamW).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: Tensor | Sequence[float] | float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Tensor | Sequence[float] | float = 0.0,
        decoupled: bool = False,
    ) -> None:
        self.params = [p for p in params]
        members = self.params[0].shape[0]
        device = self.params[0].device
        self.lr = torch.as_tensor(lr, dtype=torch.float32, device=device).expand(members).clone()
        self.weight_decay = (
            torch.as_tensor(weight_decay, dtype=torch.float32, device=device).expand(members).clone()
        )
        self.uses_weight_decay = bool((self.weight_decay != 0).any())  # read once: no host sync per step
        self.betas, self.eps, self.decoupled = betas, eps, decoupled
        self.step_count = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self._scratch = [torch.empty_like(p) for p in self.params]  # no allocation per step

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Tensor | None = None) -> None:
        """One Adam step; members where `active` (bool, (E,)) is False keep their parameters."""
        self.step_count += 1
        beta1, beta2 = self.betas
        self.apply(1 - beta1**self.step_count, (1 - beta2**self.step_count) ** 0.5, active)

    @torch.no_grad()
    def apply(self, bias1: float | Tensor, bias2_sqrt: float | Tensor, active: Tensor | None = None) -> None:
        """The update of one step given its bias corrections (Python floats, or 0-dim tensors on the
        device for a step captured in a CUDA graph: `memkd.fused.adam_step_on_device`)."""
        beta1, beta2 = self.betas
        lr = self.lr if active is None else self.lr * active.to(self.lr.dtype)
        step_size = lr / bias1
        for p, m, v, scratch in zip(self.params, self.exp_avg, self.exp_avg_sq, self._scratch):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad = p.grad
            if self.uses_weight_decay:
                wd = self.weight_decay.view(shape)
                if self.decoupled:
                    p.mul_(1 - lr.view(shape) * wd)
                else:
                    grad = grad + wd * p
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = torch.sqrt(v, out=scratch).div_(bias2_sqrt).add_(self.eps)
            p.sub_(torch.div(m, denom, out=scratch).mul_(step_size.view(shape)))


Objective = Callable[[Tensor | None], tuple[Tensor, Tensor | None]]


def fit(
    model: torch.nn.Module,
    objective: Objective,
    *,
    n_samples: int,
    epochs: int,
    lr: Tensor | Sequence[float] | float,
    batch_size: int | None = None,
    weight_decay: Tensor | Sequence[float] | float = 0.0,
    decoupled_weight_decay: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    freeze_when_perfect: bool = False,
    record_first_perfect: bool = False,
    evaluate: Callable[[], Tensor] | None = None,
    log_every: int = 0,
    seed: int = 0,
    progress: bool = False,
    desc: str = "train",
    cuda_graph: bool | None = None,
    sync_every: int | None = None,
) -> tuple[pd.DataFrame, Tensor]:
    """Train all members of `model` together.

    objective(batch_idx) -> (loss (E,), train_acc (E,) or None); batch_idx is None for full batch.
        An objective with `fills_gradients = True` (`memkd.fused.FusedCrossEntropy`) computes
        the gradients itself, and its `parameters()` are what the optimizer updates.
    freeze_when_perfect: a member whose training accuracy reaches 1 stops moving (its learning
        rate is masked from that step on; with full batches the accuracy is the one computed
        before the step, so the frozen parameters are exactly the ones that reached 100%).
    record_first_perfect: track the first epoch at 100% (as freeze_when_perfect does) without
        freezing anyone: the teacher's fixed-budget protocol.
    evaluate() -> training accuracy (E,) on the full data, used at the end of each epoch with
        mini-batches (full batch uses the objective's own accuracy).
    cuda_graph: on CUDA, a fused objective with batch_size=None trains through
        `memkd.fused.StaticEpoch` (no host synchronisation per epoch), captured in a CUDA graph
        after 3 eager epochs. None (auto): capture there; False: never capture; True: capture,
        and warn where it is not possible (not CUDA, not fused full batch). A failed capture
        warns and trains eagerly. The numbers equal the eager ones to float rounding.
    sync_every: how often (epochs) the host reads the device to stop early once every member
        is frozen; None: 1 on CPU and MPS, 50 on CUDA. The history and first-perfect epochs do
        not depend on it (the device remembers the epoch at which the last member froze).
    Returns (history, first_perfect_epoch): history is a long table with columns
    epoch, member, loss, train_acc every `log_every` epochs (and at the last epoch);
    first_perfect_epoch (E,) holds the first epoch (1-based) at which each member reached 100%
    training accuracy, or -1.
    """
    from memkd.fused import PerfectTracker, StaticEpoch

    fused = getattr(objective, "fills_gradients", False)
    params = objective.parameters() if fused else [p for p in model.parameters()]
    members = params[0].shape[0]
    device = params[0].device
    if sync_every is None:
        sync_every = 50 if device.type == "cuda" else 1
    if not isinstance(sync_every, int) or isinstance(sync_every, bool) or sync_every < 1:
        raise ValueError(f"The 'sync_every' parameter of fit must be None or an int >= 1. Got {sync_every!r} instead.")
    if cuda_graph not in (None, True, False):
        raise ValueError(f"The 'cuda_graph' parameter of fit must be None, True or False. Got {cuda_graph!r} instead.")
    opt = BatchedAdam(params, lr, betas=betas, weight_decay=weight_decay, decoupled=decoupled_weight_decay)
    track = freeze_when_perfect or record_first_perfect
    tracker = PerfectTracker(members, device, freeze=freeze_when_perfect, remember_stop=sync_every > 1)
    active, first_perfect = tracker.active, tracker.first_perfect
    static = None
    if fused and batch_size is None and _sync_free(device):
        static = StaticEpoch(objective, opt, tracker, track=track, freeze=freeze_when_perfect,
                             capture=cuda_graph is not False)
    elif cuda_graph:
        import warnings

        warnings.warn("fit(cuda_graph=True): capture needs a CUDA device and a fused full-batch objective "
                      f"(here {device.type}, fused={fused}, batch_size={batch_size}); training eagerly.",
                      RuntimeWarning, stacklevel=2)
    gen = torch.Generator().manual_seed(int(seed) + 104729)
    logged: list[tuple[int, Tensor, Tensor | None]] = []  # kept on the device until the end
    stop: int | None = None
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        if static is not None:
            loss, acc = static()
        else:
            if batch_size is None or batch_size >= n_samples:
                batches: list[Tensor | None] = [None]
            else:
                order = torch.randperm(n_samples, generator=gen).to(device)
                batches = list(order.split(batch_size))
            for idx in batches:
                opt.zero_grad()
                loss, acc = objective(idx)
                if track and idx is None and acc is not None:
                    tracker.mark(acc, epoch - 1)  # perfect before this epoch's step
                if not fused:
                    loss.sum().backward()
                opt.step(active if freeze_when_perfect else None)
            if track and batch_size is not None and evaluate is not None:
                with torch.no_grad():
                    acc = evaluate()
                tracker.mark(acc, epoch)
            tracker.end_epoch(epoch, loss, acc)
        last = epoch == epochs
        if (log_every and epoch % log_every == 0) or last:
            logged.append((epoch, loss.detach().clone(), None if acc is None else acc.detach().clone()))
        if freeze_when_perfect and (epoch % sync_every == 0 or last) and not bool(active.any()):
            stop = int(tracker.stopped_at) if tracker.remember_stop else epoch
            if tracker.remember_stop:  # what the epoch we stop at reported
                loss, acc = tracker.loss_at_stop, tracker.acc_at_stop
            logged = [entry for entry in logged if entry[0] <= stop]
            if not logged or logged[-1][0] != stop:  # always log the epoch we stop at
                logged.append((stop, loss.detach().clone(), acc.detach().clone()))
            break
    bar.close()
    return _history(logged, members), first_perfect.cpu()


def _sync_free(device: torch.device) -> bool:
    """Whether `fit` trains fused full batches through `StaticEpoch` on `device` (CUDA: yes)."""
    return device.type == "cuda"


def _history(logged: list[tuple[int, Tensor, Tensor | None]], members: int) -> pd.DataFrame:
    """The long history table (epoch, member, loss, train_acc) from (epoch, loss (E,), acc (E,) or None)."""
    rows: list[dict] = []
    for epoch, loss, acc in logged:
        acc_vals = acc.cpu().tolist() if acc is not None else [float("nan")] * members
        for m, (l_val, a_val) in enumerate(zip(loss.cpu().tolist(), acc_vals)):
            rows.append({"epoch": epoch, "member": m, "loss": l_val, "train_acc": a_val})
    return pd.DataFrame(rows)


# --- teachers -----------------------------------------------------------------------------------


class TeacherDidNotMemorize(RuntimeError):
    """A teacher did not reach 100% training accuracy within its epoch budget."""


@dataclass
class Teacher:
    """Trained teacher(s): `model` holds one member per dataset (K members)."""

    model: EnsembleMLP
    train_acc: Tensor  # (K,) final training accuracy
    memorized: Tensor  # (K,) bool: 100% training accuracy
    epochs_to_memorize: Tensor  # (K,) first epoch at 100%, -1 if never
    epochs_run: int
    history: pd.DataFrame

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Teacher logits (K, N, C) for inputs (N, D) or (K, N, D)."""
        return self.model(x)

    @torch.no_grad()
    def member(self, k: int) -> "Teacher":
        """Teacher k alone, as a one-member Teacher (a copy of its weights)."""
        m = self.model
        one = EnsembleMLP(1, m.input_dim, m.width, m.classes, m.hidden_layers, m.activation)
        for dst, src in zip(list(one.weights) + list(one.biases), list(m.weights) + list(m.biases)):
            dst.data = src.data[k:k + 1].clone()
        history = self.history[self.history["member"] == k].assign(member=0) if len(self.history) else self.history
        return Teacher(one.to(m.weights[0].device), self.train_acc[k:k + 1], self.memorized[k:k + 1],
                       self.epochs_to_memorize[k:k + 1], self.epochs_run, history)


def train_teacher(
    x: Tensor,
    y: Tensor,
    *,
    classes: int,
    width: int,
    hidden_layers: int = 2,
    activation: str = "relu",
    lr: float = 1e-3,
    max_epochs: int = 1000,
    batch_size: int | None = None,
    weight_decay: float = 0.0,
    extra_epochs: int = 0,
    stop: str = "budget",
    seed: int | Sequence[int] = 0,
    require_memorization: bool = True,
    progress: bool = False,
    fused: bool = True,
) -> Teacher:
    """Train K teachers at once, each required to end at 100% training accuracy.

    x : (N, D) for one teacher or (K, N, D) for K teachers on K datasets; y : (N,) or (K, N).
    stop : "budget" (the paper's protocol and the released code's default): every teacher trains
        for all `max_epochs` and must be at 100% at the end; "first_perfect": each teacher stops
        moving at the first epoch where it classifies all of its data correctly (an early stop).
    extra_epochs : with stop="first_perfect", after all members memorized, train every member
        this many epochs more (a teacher "trained on long after" memorizing).
    seed : one int for the whole ensemble, or one seed per teacher (see `memkd.seeds`).
    Raises TeacherDidNotMemorize (with the accuracy reached) if a member ends below 100%,
    unless `require_memorization=False`; then check `teacher.memorized`.
    fused : full batch, train through `memkd.fused.FusedCrossEntropy` (no autograd, the same
        numbers to float rounding, 1.2-1.3x faster on a CPU); False uses autograd.
    """
    if stop not in TEACHER_STOPS:
        raise ValueError(f"The 'stop' parameter of train_teacher must be one of {TEACHER_STOPS}. Got {stop!r} instead.")
    if x.dim() == 2:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    k, n, d = x.shape
    need = training_bytes_per_member(n, d, width, classes, hidden_layers, own_inputs=True, soft_targets=False)
    if members_per_chunk(k, need, x.device, "the teacher width, the dataset size or the number of datasets") < k:
        raise MemoryError(f"train_teacher: {k} teachers of width {width} on {n} samples of dimension {d} need "
                          f"about {k * need / 2**30:.1f} GiB, more than {x.device} has free. Train fewer "
                          "datasets at once, or reduce the teacher width or the dataset size.")
    model = EnsembleMLP(k, d, width, classes, hidden_layers, activation, seed=seed).to(x.device)
    fit_seed = seed if isinstance(seed, int) else int(list(seed)[0])

    def objective(idx: Tensor | None):
        xb, yb = (x, y) if idx is None else (x[:, idx], y[:, idx])
        logits = model(xb)
        return hard_cross_entropy(logits, yb), accuracy(logits.detach(), yb)

    def evaluate() -> Tensor:
        return accuracy(model(x), y)

    if fused and (batch_size is None or batch_size >= n):
        objective = FusedCrossEntropy(model, x, y, y)
    history, first = fit(
        model, objective, n_samples=n, epochs=max_epochs, lr=lr, batch_size=batch_size,
        weight_decay=weight_decay, freeze_when_perfect=stop == "first_perfect", record_first_perfect=True,
        evaluate=evaluate, log_every=max(1, max_epochs // 50), seed=fit_seed, progress=progress, desc="teacher",
    )
    epochs_run = int(history["epoch"].max()) if len(history) else 0
    if extra_epochs > 0 and bool((first >= 0).all()):
        more, _ = fit(
            model, objective, n_samples=n, epochs=extra_epochs, lr=lr, batch_size=batch_size,
            weight_decay=weight_decay, log_every=max(1, extra_epochs // 20), seed=fit_seed + 1,
            progress=progress, desc="teacher (extra)",
        )
        more["epoch"] += epochs_run
        history = pd.concat([history, more], ignore_index=True)
        epochs_run += extra_epochs
    with torch.no_grad():
        acc = accuracy(model(x), y).cpu()
    memorized = acc >= 1.0
    if require_memorization and not bool(memorized.all()):
        worst = float(acc.min())
        raise TeacherDidNotMemorize(
            f"train_teacher: {int((~memorized).sum())} of {k} teacher(s) did not reach 100% training "
            f"accuracy {'after' if stop == 'budget' else 'within'} {max_epochs} epochs (teacher_stop={stop!r}; "
            f"lowest reached {worst:.2%}). Give the teacher more "
            "epochs, more width or a larger learning rate, or pass require_memorization=False to "
            "keep it (results are then marked memorized=False)."
        )
    return Teacher(model, acc, memorized, first, epochs_run, history)


# --- students -----------------------------------------------------------------------------------


def train_students(
    x: Tensor,
    targets: Tensor,
    *,
    kind: str,
    classes: int,
    width: int,
    members: int,
    lrs: Tensor | Sequence[float] | float,
    epochs: int,
    temperatures: Tensor | Sequence[float] | float = 1.0,
    hidden_layers: int = 2,
    activation: str = "relu",
    soften_student: bool = False,
    batch_size: int | None = None,
    max_full_similarity: int = 4096,
    weight_decay: float = 0.0,
    seed: int | Sequence[int] = 0,
    log_every: int = 0,
    progress: bool = False,
    fused: bool = True,
) -> tuple[EnsembleMLP, pd.DataFrame]:
    """Train E students at once on the student's part of D.

    x : (N, D) shared or (E, N, D) per member (the student's training inputs).
    targets, by kind:
      "soft"        probabilities (N, C) or (E, N, C), e.g. soft_targets(teacher logits, T)
                    (possibly after logit surgery); `temperatures` (E,) only matters with
                    soften_student=True (the paper's text convention).
      "hard"        labels (N,) or (E, N).
      "similarity"  the teacher's cosine-similarity matrix (N, N) or (E, N, N); students output
                    C-dimensional embeddings. Above `max_full_similarity` samples, each step
                    uses a random block of that many rows instead of the full matrix.
    fused : full-batch "soft" and "hard" students train through `memkd.fused.FusedCrossEntropy`
        (no autograd, the same numbers to float rounding, 1.2-1.3x faster on a CPU);
        False uses autograd.
    seed : one int for the whole ensemble, or one seed per student (see `memkd.seeds`).
    Raises MemoryError naming the knobs to reduce when one student cannot fit on the device.
    Returns (model, history).
    """
    if kind not in STUDENT_KINDS:
        raise ValueError(f"The 'kind' parameter of train_students must be one of {STUDENT_KINDS}. Got {kind!r} instead.")
    n, d = x.shape[-2], x.shape[-1]
    need = training_bytes_per_member(n, d, width, classes, hidden_layers, own_inputs=x.dim() == 3,
                                     soft_targets=kind != "hard")
    if kind == "similarity":
        need += 4 * 3 * min(n, max_full_similarity) ** 2
    members_per_chunk(1, need, x.device, "the student width or the number of training samples")
    model = EnsembleMLP(members, d, width, classes, hidden_layers, activation, seed=seed).to(x.device)
    fit_seed = seed if isinstance(seed, int) else int(list(seed)[0])
    temps = torch.as_tensor(temperatures, dtype=torch.float32, device=x.device).expand(members)

    def rows(t: Tensor, idx: Tensor | None, dims: int) -> Tensor:
        """Select samples `idx` along the sample axis of a tensor with `dims` trailing dims."""
        if idx is None:
            return t
        return t[..., idx, :] if dims == 1 else t[..., idx]

    if kind == "similarity" and batch_size is None and n > max_full_similarity:
        batch_size = max_full_similarity
    soft_labels = targets.argmax(dim=-1) if kind == "soft" else None

    def objective(idx: Tensor | None):
        xb = rows(x, idx, 1)
        out = model(xb)
        if kind == "hard":
            yb = rows(targets, idx, 0)
            return hard_cross_entropy(out, yb), accuracy(out.detach(), yb)
        if kind == "soft":
            pb = rows(targets, idx, 1)
            return (soft_cross_entropy(out, pb, temps, soften_student),
                    accuracy(out.detach(), rows(soft_labels, idx, 0)))
        sim = targets if idx is None else targets[..., idx, :][..., idx]
        return similarity_mse(out, sim), None

    if fused and kind != "similarity" and (batch_size is None or batch_size >= n):
        if kind == "hard":  # hard labels ignore the temperature, as hard_cross_entropy does
            objective = FusedCrossEntropy(model, x, targets, targets)
        else:
            objective = FusedCrossEntropy(model, x, targets, soft_labels, temps, soften_student)

    history, _ = fit(
        model, objective, n_samples=n, epochs=epochs, lr=lrs, batch_size=batch_size,
        weight_decay=weight_decay, log_every=log_every, seed=fit_seed, progress=progress, desc=f"{kind} students",
    )
    return model, history


def teacher_similarity(teacher_outputs: Tensor) -> Tensor:
    """The teacher's pairwise cosine similarities: outputs (K, N, C) -> (K, N, N)."""
    return cosine_similarity_matrix(teacher_outputs)
