"""The two uses of `memkd.train.fit`: teachers that memorize their datasets, students that learn
from them (soft labels in both temperature conventions, hard labels, or similarity scores).

Shape letters (see `memkd`): K teachers, E members, N samples, D input dimension, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import Tensor

from memkd.fused import FusedCrossEntropy
from memkd.losses import cosine_similarity_matrix, hard_cross_entropy, similarity_mse, soft_cross_entropy
from memkd.memory import format_bytes, members_per_chunk, training_bytes_per_member
from memkd.metrics import accuracy
from memkd.models import EnsembleMLP
from memkd.train import fit

STUDENT_KINDS = ("soft", "hard", "similarity")
TEACHER_STOPS = ("budget", "first_perfect")


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
                          f"about {format_bytes(k * need)}, more than {x.device} has free. Train fewer "
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
