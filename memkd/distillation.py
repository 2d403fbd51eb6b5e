"""One distillation protocol for every ensemble model family: `train_teacher` (teachers that
memorize their datasets) and `train_students` (students that learn from them: soft labels in both
temperature conventions, hard labels, or similarity scores), both through `memkd.train.fit`.

Shape letters (see `memkd`): K teachers, E members, N samples, D input dimension, C classes, T temperature.

A family (`memkd.models.family.Family`) builds an ensemble and says what it takes: `inputs` ("vectors"
and "images" as float rows (N, D), "tokens" as int64 sequences (N, S)), the student kinds it trains,
whether the fused full-batch step applies, its memory per member and its optimizer (Adam, or AdamW
for the transformer). The families: `MLPFamily` (k hidden layers; `memkd.models.family`), `CNNFamily`
(`memkd.models.cnn`) and `TransformerFamily` (`memkd.models.transformer`).

Defined here once: the teacher stop rules (named in `memkd.config.TEACHER_STOPS`, the range of every
config's `teacher_stop_knob`; checked by `check_teacher_stop`), the
error of a teacher below 100% (`TeacherDidNotMemorize`, raised by `require_memorized`), the
first-100% epoch (`Teacher.epochs_to_memorize`), the copies of a teacher along its training
(`snapshot_at`, `Teacher.at`) and its accuracy on a second set (`monitor`), and the temperature: a
soft student given the teacher's logits gets sigma_T(teacher logits) here, and the same T reaches its
loss, where the student's logits are divided by it too only with `soften_student=True` (see
`memkd.losses`). No model family trains through a loop of its own.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from memkd.models.family import STUDENT_KINDS, Family, MLPFamily
from memkd.models.fused_mlp import FusedCrossEntropy, FusedSimilarity
from memkd.losses import (
    cosine_similarity_matrix,
    hard_cross_entropy,
    similarity_mse,
    smoothed_labels,
    soft_cross_entropy,
    soft_targets,
)
from memkd.config import TEACHER_STOPS, invalid
from memkd.device_memory import format_bytes, members_per_chunk
from memkd.metrics import accuracy
from memkd.train import fit

__all__ = [
    "STUDENT_KINDS",
    "TEACHER_STOPS",
    "Family",
    "MLPFamily",
    "Teacher",
    "TeacherDidNotMemorize",
    "check_teacher_stop",
    "predict",
    "require_memorized",
    "teacher_similarity",
    "train_students",
    "train_teacher",
]


# --- families ---------------------------------------------------------------------------------


def _family(
    family: Family | None,
    where: str,
    d: int,
    classes: int | None,
    width: int | None,
    hidden_layers: int,
    activation: str,
) -> Family:
    """`family`, or the MLP family the shorthand keywords (classes, width, ...) describe."""
    if family is not None:
        if classes is not None or width is not None:
            raise invalid(
                "family",
                where,
                shown="both",
                must="not be combined with 'classes' or 'width' (they describe an MLP family)",
            )
        return family
    if classes is None or width is None:
        raise invalid("family", where, "a model family, or 'classes' and 'width' given for an MLP", shown="neither")
    return MLPFamily(d, width, classes, hidden_layers, activation)


def _check_epochs(name: str, value: Any, where: str) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise invalid(name, where, "an int >= 1", value)


def _shuffle_seed(seed: int | Sequence[int], shuffle_seed: int | None) -> int:
    """The seed of `fit`'s mini-batch order: `shuffle_seed`, else `seed` or its first entry."""
    if shuffle_seed is not None:
        return int(shuffle_seed)
    return int(seed) if isinstance(seed, numbers.Integral) else int(list(seed)[0])


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, chunk: int | None = 4096) -> Tensor:
    """Outputs (E, N, C) of an ensemble on x (N, D) or (E, N, D), `chunk` samples at a time (None: all)."""
    if chunk is None or x.shape[-2] <= chunk:
        return model(x)
    return torch.cat([model(x[..., i : i + chunk, :]) for i in range(0, x.shape[-2], chunk)], dim=1)


def _check_mask(mask: Tensor | None, shape: Sequence[int], where: str, of: str) -> None:
    """Raise ValueError unless `mask` is None or a bool tensor of `shape`."""
    if mask is not None and (
        not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(shape)
    ):
        raise invalid(
            "mask",
            where,
            f"None or a bool tensor of shape {tuple(shape)} (the {of})",
            shown=f"{type(mask).__name__} {tuple(getattr(mask, 'shape', ()))} {getattr(mask, 'dtype', '')}",
        )


# --- teachers -----------------------------------------------------------------------------------


class TeacherDidNotMemorize(RuntimeError):
    """A teacher did not reach 100% training accuracy within its epoch budget."""


def check_teacher_stop(stop: str, where: str, name: str = "stop") -> None:
    """Raise ValueError unless `stop` is one of TEACHER_STOPS."""
    if stop not in TEACHER_STOPS:
        raise invalid(name, f"{where} (a config's teacher_stop)", f"one of {TEACHER_STOPS}", stop)


def require_memorized(acc: Tensor, stop: str, budget: int, where: str, unit: str = "epochs") -> None:
    """Raise TeacherDidNotMemorize (how many, the lowest accuracy, the stop rule) unless acc (K,) is all 1."""
    below = acc < 1.0
    if bool(below.any()):
        raise TeacherDidNotMemorize(
            f"{where}: {int(below.sum())} of {len(acc)} teacher(s) did not reach 100% training accuracy "
            f"{'after' if stop == 'budget' else 'within'} {budget} {unit} (teacher_stop={stop!r}; lowest reached "
            f"{float(acc.min()):.2%}). Give the teacher more {unit}, more width or another learning rate, or "
            "pass require_memorization=False to keep it (results are then marked memorized=False)."
        )


@dataclass
class Teacher:
    """Trained teacher(s): `model` holds one member per dataset (K members) of `family`."""

    model: nn.Module
    train_acc: Tensor  # (K,) final training accuracy
    memorized: Tensor  # (K,) bool: 100% training accuracy
    epochs_to_memorize: Tensor  # (K,) first epoch at 100%, -1 if never
    epochs_run: int
    history: pd.DataFrame
    family: Family | None = None
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # epoch -> copied parameters (K, ...)
    monitor: pd.DataFrame | None = None  # epoch, member, monitor_acc: accuracy on a second set

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Teacher logits (K, N, C) for inputs (N, D) or (K, N, D) (tokens: (N, S) or (K, N, S))."""
        return predict(self.model, x, getattr(self.family, "eval_chunk", None))

    def _rebuilt(self, members: int, weights: dict[str, Tensor]) -> nn.Module:
        """A fresh ensemble of the family holding `weights` (copies)."""
        model = self.family.build(members, 0, next(self.model.parameters()).device)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(weights[name])
        return model

    def at(self, epoch: int) -> nn.Module:
        """The K teachers as they were after `epoch` epochs (a copy; see train_teacher's snapshot_at)."""
        if epoch not in self.snapshots:
            raise invalid(
                "epoch",
                "Teacher.at",
                f"an epoch with a snapshot (train_teacher's snapshot_at), one of {sorted(self.snapshots)}",
                epoch,
            )
        return self._rebuilt(len(self.train_acc), self.snapshots[epoch])

    def member(self, k: int) -> "Teacher":
        """Teacher k alone, as a one-member Teacher (copies of its weights and snapshots)."""
        one = lambda weights: {name: w[k : k + 1] for name, w in weights.items()}  # noqa: E731
        history = self.history[self.history["member"] == k].assign(member=0) if len(self.history) else self.history
        monitor = None if self.monitor is None else self.monitor[self.monitor["member"] == k].assign(member=0)
        return Teacher(
            self._rebuilt(1, one(dict(self.model.named_parameters()))),
            self.train_acc[k : k + 1],
            self.memorized[k : k + 1],
            self.epochs_to_memorize[k : k + 1],
            self.epochs_run,
            history,
            self.family,
            {e: {n: w.clone() for n, w in one(s).items()} for e, s in self.snapshots.items()},
            monitor,
        )


def _watch(
    model: nn.Module,
    snapshot_at: Sequence[int],
    monitor: tuple[Tensor, Tensor] | None,
    monitor_every: int,
    max_epochs: int,
    chunk: int | None,
):
    """fit's after_epoch hook that copies the weights at `snapshot_at` and reads the accuracy on
    `monitor` every `monitor_every` epochs and at each snapshot; returns (hook or None, snapshots, rows)."""
    stops = sorted({int(s) for s in snapshot_at})
    if stops and not 1 <= stops[0] <= stops[-1] <= max_epochs:
        raise invalid(
            "snapshot_at", "train_teacher", must=f"hold epochs in [1, max_epochs={max_epochs}]", got=list(snapshot_at)
        )
    snapshots: dict[int, dict[str, Tensor]] = {}
    rows: list[dict] = []
    watching = monitor is not None and monitor_every > 0

    def after_epoch(epoch: int) -> None:
        if epoch in stops:
            snapshots[epoch] = {name: p.detach().clone() for name, p in model.named_parameters()}
        if watching and (epoch % monitor_every == 0 or epoch in stops):
            acc = accuracy(predict(model, monitor[0], chunk), monitor[1]).cpu().tolist()
            rows.extend({"epoch": epoch, "member": i, "monitor_acc": a} for i, a in enumerate(acc))

    return (after_epoch if stops or watching else None), snapshots, rows


def train_teacher(
    x: Tensor,
    y: Tensor,
    family: Family | None = None,
    *,
    classes: int | None = None,
    width: int | None = None,
    hidden_layers: int = 2,
    activation: str = "relu",
    lr: float = 1e-3,
    max_epochs: int = 1000,
    batch_size: int | None = None,
    weight_decay: float | None = None,
    label_smoothing: float = 0.0,
    extra_epochs: int = 0,
    stop: str = "budget",
    seed: int | Sequence[int] = 0,
    shuffle_seed: int | None = None,
    require_memorization: bool = True,
    progress: bool = False,
    fused: bool = True,
    warmup: int = 0,
    snapshot_at: Sequence[int] = (),
    monitor: tuple[Tensor, Tensor] | None = None,
    monitor_every: int = 0,
    mask: Tensor | None = None,
) -> Teacher:
    """Train K teachers of `family` at once, each required to end at 100% training accuracy.

    x : (N, D) for one teacher or (K, N, D) for K teachers on K datasets (tokens: (N, S) or
        (K, N, S)); y : (N,) or (K, N).
    family : any model family (`MLPFamily`, `CNNFamily`, `TransformerFamily`); without it,
        `classes`, `width`, `hidden_layers` and `activation` describe an MLP.
    weight_decay : None: the family's optimizer's (0 for Adam, 1 for the transformer's AdamW).
    label_smoothing : in [0, 1): the teacher learns (1 - s) on its label plus s / C on every class
        (`memkd.losses.smoothed_labels`; a teacher-side defence, chapter 14); 0: the labels themselves.
    stop : "budget" (the paper's protocol and the released code's default): every teacher trains
        for all `max_epochs` and must be at 100% at the end; "first_perfect": each teacher stops
        moving at the first epoch where it classifies all of its data correctly (an early stop).
    extra_epochs : once every member has memorized (reached 100% within `max_epochs`), train every
        member this many epochs more (a teacher "trained on long after" memorizing; a fresh
        optimizer, no warm-up); skipped when one has not.
    seed : one int for the whole ensemble, or one seed per teacher (see `memkd.seeds`).
    shuffle_seed : the mini-batch order; None: `seed` (its first entry).
    Raises TeacherDidNotMemorize (with the accuracy reached) if a member ends below 100%,
    unless `require_memorization=False`; then check `teacher.memorized`.
    fused : full batch, train a fusable family through `memkd.models.fused_mlp.FusedCrossEntropy` (no
        autograd, the same numbers to float rounding, 1.2-1.3x faster on a CPU); False: autograd.
    warmup : linear learning-rate warm-up over the first epochs' steps (see `memkd.train.fit`).
    snapshot_at : epochs (1-based, within max_epochs) after which every teacher's parameters are
        copied into `snapshots` (one training run, several stops); `Teacher.at(epoch)` rebuilds them.
    monitor : (inputs (K, M, ...), labels (K, M)), e.g. data outside each D; with monitor_every > 0
        each teacher's accuracy there is recorded every `monitor_every` epochs and at every
        snapshot (`Teacher.monitor`: epoch, member, monitor_acc).
    mask : of the labels' shape, bool: the points each teacher learns from and is measured on
        (False: the padding of datasets of different sizes, whose labels are not read); None: all.
        Trains through autograd.

    >>> from memkd.data.random_vectors import make_memorization_data
    >>> x, y = make_memorization_data(classes=3, per_class=5, input_dim=20, seed=0)   # (N, D) = (15, 20)
    >>> teacher = train_teacher(x, y, classes=3, width=32, lr=1e-2, max_epochs=100)
    >>> teacher.memorized.tolist(), teacher.logits(x).shape     # K = 1 teacher: logits (K, N, C)
    ([True], torch.Size([1, 15, 3]))
    """
    check_teacher_stop(stop, "train_teacher")
    _check_epochs("max_epochs", max_epochs, "train_teacher")
    _check_mask(mask, y.shape, "train_teacher", "labels")
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, numbers.Real)
        or not 0 <= label_smoothing < 1
    ):
        raise invalid("label_smoothing", "train_teacher", "a float in [0, 1)", label_smoothing)
    if weight_decay is not None and (
        isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not weight_decay >= 0
    ):
        raise invalid("weight_decay", "train_teacher", "None or a float >= 0", weight_decay)
    if x.dim() == 2:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    k, n, d = x.shape
    family = _family(family, "train_teacher", d, classes, width, hidden_layers, activation)
    need = family.training_bytes(n, own_inputs=True, soft_targets=False)
    if (
        need is not None
        and members_per_chunk(k, need, x.device, "the teacher width, the dataset size or the number of teachers") < k
    ):
        raise MemoryError(
            f"train_teacher: {k} teachers ({family}) on {n} samples of dimension {d} need "
            f"about {format_bytes(k * need)}, more than {x.device} has free. Train fewer "
            "teachers at once, or reduce the teacher width or the dataset size."
        )
    model = family.build(k, seed, x.device)
    fit_seed = _shuffle_seed(seed, shuffle_seed)
    after_epoch, snapshots, watched = _watch(model, snapshot_at, monitor, monitor_every, max_epochs, family.eval_chunk)
    optimizer = family.optimizer.fit_options(weight_decay)
    smooth = None
    if label_smoothing > 0:  # the targets (K, N, C); C read from the model's output
        smooth = smoothed_labels(y, predict(model, x[:, :1], None).shape[-1], float(label_smoothing))

    def objective(idx: Tensor | None):
        xb, yb = (x, y) if idx is None else (x[:, idx], y[:, idx])
        mb = mask if idx is None or mask is None else mask[:, idx]
        logits = model(xb)
        if smooth is not None:
            target = smooth if idx is None else smooth[:, idx]
            return soft_cross_entropy(logits, target, mask=mb), accuracy(logits.detach(), yb, mb)
        return hard_cross_entropy(logits, yb, mb), accuracy(logits.detach(), yb, mb)

    def evaluate() -> Tensor:
        return accuracy(predict(model, x, family.eval_chunk), y, mask)

    if fused and family.fusable and mask is None and (batch_size is None or batch_size >= n):
        objective = FusedCrossEntropy(model, x, y if smooth is None else smooth, y)
    history, first = fit(
        model,
        objective,
        n_samples=n,
        epochs=max_epochs,
        lr=lr,
        batch_size=batch_size,
        **optimizer,
        freeze_when_perfect=stop == "first_perfect",
        record_first_perfect=True,
        evaluate=evaluate,
        log_every=max(1, max_epochs // 50),
        seed=fit_seed,
        progress=progress,
        desc="teacher",
        warmup=warmup,
        after_epoch=after_epoch,
    )
    epochs_run = int(history["epoch"].max()) if len(history) else 0
    if extra_epochs > 0 and bool((first >= 0).all()):
        more, _ = fit(
            model,
            objective,
            n_samples=n,
            epochs=extra_epochs,
            lr=lr,
            batch_size=batch_size,
            **optimizer,
            log_every=max(1, extra_epochs // 20),
            seed=fit_seed + 1,
            progress=progress,
            desc="teacher (extra)",
        )
        more["epoch"] += epochs_run
        history = pd.concat([history, more], ignore_index=True)
        epochs_run += extra_epochs
    with torch.no_grad():
        acc = evaluate().cpu()
    if require_memorization:
        require_memorized(acc, stop, max_epochs, "train_teacher", family.unit)
    monitored = pd.DataFrame(watched, columns=["epoch", "member", "monitor_acc"]) if monitor is not None else None
    return Teacher(model, acc, acc >= 1.0, first, epochs_run, history, family, snapshots, monitored)


# --- students -----------------------------------------------------------------------------------


def train_students(
    x: Tensor,
    targets: Tensor | None = None,
    *,
    kind: str,
    members: int,
    lrs: Tensor | Sequence[float] | float,
    epochs: int,
    family: Family | None = None,
    classes: int | None = None,
    width: int | None = None,
    hidden_layers: int = 2,
    activation: str = "relu",
    teacher_logits: Tensor | None = None,
    temperatures: Tensor | Sequence[float] | float = 1.0,
    soften_student: bool = False,
    batch_size: int | None = None,
    max_full_similarity: int = 4096,
    weight_decay: float | None = None,
    seed: int | Sequence[int] = 0,
    shuffle_seed: int | None = None,
    log_every: int = 0,
    progress: bool = False,
    fused: bool = True,
    warmup: int = 0,
    mask: Tensor | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train E students of `family` at once on the student's part of D.

    x : (N, D) shared or (E, N, D) per member (the student's training inputs; tokens (N, S) or (E, N, S)).
    family : any model family; without it, `classes`, `width`, `hidden_layers` and `activation`
        describe an MLP.
    targets, by kind:
      "soft"        probabilities (N, C) or (E, N, C) (e.g. after logit surgery), or instead
                    `teacher_logits` (N, C), (1, N, C) or (E, N, C): then the targets are sigma_T(teacher_logits)
                    with `temperatures` (E,), applied here. T reaches the student's loss only with
                    soften_student=True (the paper's text convention; the released code's is False).
      "hard"        labels (N,) or (E, N).
      "similarity"  the teacher's cosine-similarity matrix (N, N) or (E, N, N); students output
                    C-dimensional embeddings. Above `max_full_similarity` samples, each step
                    uses a random block of that many rows instead of the full matrix.
    fused : full-batch students of a fusable family train through `memkd.models.fused_mlp`
        (no autograd, the same numbers to float rounding): "soft" and "hard" through
        `FusedCrossEntropy` (1.2-1.3x faster on a CPU), "similarity" through `FusedSimilarity`;
        False uses autograd.
    weight_decay : None: the family's optimizer's (0 for Adam, 1 for the transformer's AdamW).
    seed : one int for the whole ensemble, or one seed per student (see `memkd.seeds`).
    shuffle_seed : the mini-batch order; None: `seed` (its first entry).
    warmup : linear learning-rate warm-up steps (see `memkd.train.fit`).
    mask : (E, N) bool, the samples each member learns from (and fits, in the history's train_acc),
        for members that see different points of one padded N (the linear students of one teacher,
        a rho each); None: all. Soft and hard students only; trains through autograd.
    Raises MemoryError naming the knobs to reduce when one student cannot fit on the device.
    Returns (model, history).

    >>> from memkd.data.random_vectors import make_memorization_data
    >>> x, y = make_memorization_data(classes=3, per_class=5, input_dim=20, seed=0)
    >>> teacher = train_teacher(x, y, classes=3, width=32, lr=1e-2, max_epochs=100)
    >>> students, history = train_students(x[:9], kind="soft", members=2, lrs=1e-2, epochs=50, classes=3,
    ...                                    width=32, teacher_logits=teacher.logits(x[:9]), temperatures=10.0)
    >>> students(x[9:]).shape                                   # E = 2 students on the 6 held-out points
    torch.Size([2, 6, 3])
    """
    _check_epochs("epochs", epochs, "train_students")
    n, d = x.shape[-2], x.shape[-1]
    family = _family(family, "train_students", d, classes, width, hidden_layers, activation)
    if kind not in family.student_kinds:
        raise invalid("kind", "train_students", f"one of {family.student_kinds} for {type(family).__name__}", kind)
    if mask is not None and kind == "similarity":
        raise invalid(
            "mask", "train_students", "None for kind='similarity' (a mask selects soft or hard targets)", shown="a mask"
        )
    _check_mask(mask, (members, n), "train_students", "members and samples")
    floating = isinstance(temperatures, Tensor) and temperatures.is_floating_point()  # a float64 T stays exact
    temperatures = (
        temperatures.to(x.device) if floating else torch.as_tensor(temperatures, dtype=torch.float32, device=x.device)
    ).expand(members)  # (E,)
    if (teacher_logits is None) == (targets is None) or (teacher_logits is not None and kind != "soft"):
        raise invalid(
            "targets",
            "train_students",
            says="must be given, or for kind='soft' 'teacher_logits' instead. "
            "Got both, neither, or teacher logits for another kind.",
        )
    if teacher_logits is not None:
        targets = soft_targets(teacher_logits, temperatures)  # sigma_T: the one place it is applied
    need = family.training_bytes(n, own_inputs=x.dim() == 3, soft_targets=kind != "hard")
    if need is not None:
        if kind == "similarity":
            need += 4 * 3 * min(n, max_full_similarity) ** 2
        members_per_chunk(1, need, x.device, "the student width or the number of training samples")
    model = family.build(members, seed, x.device)
    fit_seed = _shuffle_seed(seed, shuffle_seed)

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
        mb = None if mask is None else rows(mask, idx, 0)
        out = model(xb)
        if kind == "hard":
            yb = rows(targets, idx, 0)
            return hard_cross_entropy(out, yb, mb), accuracy(out.detach(), yb, mb)
        if kind == "soft":
            pb = rows(targets, idx, 1)
            return (
                soft_cross_entropy(out, pb, temperatures, soften_student, mask=mb),
                accuracy(out.detach(), rows(soft_labels, idx, 0), mb),
            )
        sim = targets if idx is None else targets[..., idx, :][..., idx]
        return similarity_mse(out, sim), None

    if fused and family.fusable and mask is None and (batch_size is None or batch_size >= n):
        if kind == "hard":  # hard labels ignore the temperature, as hard_cross_entropy does
            objective = FusedCrossEntropy(model, x, targets, targets)
        elif kind == "similarity":
            objective = FusedSimilarity(model, x, targets)
        else:
            objective = FusedCrossEntropy(model, x, targets, soft_labels, temperatures, soften_student)

    history, _ = fit(
        model,
        objective,
        n_samples=n,
        epochs=epochs,
        lr=lrs,
        batch_size=batch_size,
        **family.optimizer.fit_options(weight_decay),
        log_every=log_every,
        seed=fit_seed,
        progress=progress,
        desc=f"{kind} students",
        warmup=warmup,
    )
    return model, history


def teacher_similarity(teacher_outputs: Tensor) -> Tensor:
    """The teacher's pairwise cosine similarities: outputs (K, N, C) -> (K, N, N)."""
    return cosine_similarity_matrix(teacher_outputs)
