"""The pipeline every random-data experiment shares: data -> teacher -> students -> metrics.

Shapes: E students, K teachers, N samples of D, N' samples of D', D input dim, C classes.
`memorization_task` makes one dataset and its teacher; `distill` trains E students on the
student's part and returns one row of knobs and metrics per student.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor

from memkd.config import (
    ALPHAS, BOOL, DEVICE, LRS, OPTIONAL_INT, POS_INT, POS_INTS, TEMPERATURES,
    ExperimentConfig, int_range, knob, one_of, real_interval,
)
from memkd.data import make_memorization_data
from memkd.device import resolve_device
from memkd.losses import soft_targets
from memkd.metrics import accuracy, agreement, nearest_neighbour_accuracy
from memkd.train import Teacher, teacher_similarity, train_students, train_teacher

INDEPENDENT_SEED_OFFSET = 500_000  # D' is drawn with seed + this offset


@dataclass(frozen=True)
class RandomDataConfig(ExperimentConfig):
    """Knobs shared by the random-data experiments (figures 2, 3, 5, 6, 7)."""

    input_dim: int = knob(250, POS_INT, "D: input dimension")
    classes: int = knob(50, int_range(2), "C: number of classes")
    per_class: int = knob(25, int_range(2), "samples of each class in D (n = classes * per_class)")
    distribution: str = knob("uniform", one_of("uniform", "gaussian"), "input distribution")
    teacher_width: int = knob(125, POS_INT, "P of the teacher")
    hidden_layers: int = knob(2, int_range(1, 4), "hidden layers of teacher and students")
    activation: str = knob("relu", one_of("relu", "tanh", "linear"), "hidden activation")
    teacher_lr: float = knob(1e-3, real_interval(0, 1, "right"), "teacher's Adam learning rate")
    teacher_epochs: int = knob(1000, POS_INT, "teacher's epoch budget to reach 100%")
    student_widths: tuple = knob((125,), POS_INTS, "P of the students")
    alphas: tuple = knob((0.6,), ALPHAS, "fraction of each class the student sees")
    temperatures: tuple = knob((10.0,), TEMPERATURES, "softmax temperatures T of the soft labels")
    lrs: tuple = knob((3e-3,), LRS, "students' Adam learning rates")
    epochs: int = knob(200, POS_INT, "students' training epochs")
    students: int = knob(5, POS_INT, "student seeds per setting")
    datasets: int = knob(1, POS_INT, "independent datasets D, one teacher each")
    soften_student: bool = knob(False, BOOL, "also divide the student's logits by T (the paper's text)")
    batch_size: Any = knob(None, OPTIONAL_INT, "mini-batch size; None for full batch")
    seed: int = knob(0, int_range(0), "base random seed")
    device: str = knob("auto", DEVICE, "where to train")
    progress: bool = knob(False, BOOL, "show progress bars")

    def check(self) -> None:
        from memkd.config import check_split

        check_split(self, self.alphas, self.per_class)


@dataclass
class MemorizationTask:
    """One dataset D, its fresh twin D', and the teacher that memorized D."""

    dataset: int  # index of this dataset within the experiment
    x: Tensor  # (N, D)
    y: Tensor  # (N,)
    x_independent: Tensor  # (N', D)
    y_independent: Tensor  # (N',)
    teacher: Teacher
    logits: Tensor  # (N, C) teacher logits on D
    logits_independent: Tensor  # (N', C) teacher logits on D'
    classes: int
    info: dict = field(default_factory=dict)

    @property
    def memorized(self) -> bool:
        return bool(self.teacher.memorized.all())

    @property
    def teacher_independent_acc(self) -> float:
        """Trivial accuracy: the teacher on D'."""
        return float(accuracy(self.logits_independent.unsqueeze(0), self.y_independent)[0])


def memorization_task(
    cfg: RandomDataConfig,
    dataset: int,
    *,
    input_dim: int | None = None,
    classes: int | None = None,
    per_class: int | None = None,
    require_memorization: bool = True,
    teacher_overrides: dict | None = None,
) -> MemorizationTask:
    """Draw D and D' for dataset index `dataset` and train its teacher (to 100%, or raise)."""
    device = resolve_device(cfg.device)
    d = input_dim or cfg.input_dim
    c = classes or cfg.classes
    pc = per_class or cfg.per_class
    data_seed = cfg.seed * 1000 + dataset
    x, y = make_memorization_data(c, pc, d, data_seed, cfg.distribution, device)
    xi, yi = make_memorization_data(c, pc, d, data_seed + INDEPENDENT_SEED_OFFSET, cfg.distribution, device)
    kwargs = dict(classes=c, width=cfg.teacher_width, hidden_layers=cfg.hidden_layers,
                  activation=cfg.activation, lr=cfg.teacher_lr, max_epochs=cfg.teacher_epochs,
                  batch_size=cfg.batch_size, seed=data_seed + 17,
                  require_memorization=require_memorization, progress=cfg.progress)
    kwargs.update(teacher_overrides or {})
    teacher = train_teacher(x, y, **kwargs)
    with torch.no_grad():
        logits = teacher.logits(x)[0]
        logits_ind = teacher.logits(xi)[0]
    return MemorizationTask(dataset, x, y, xi, yi, teacher, logits, logits_ind, c)


def member_grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """The product of the given axes, one dict per ensemble member, in a stable order."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def distill(
    task: MemorizationTask,
    train_idx: Tensor,
    test_idx: Tensor,
    *,
    cfg: RandomDataConfig,
    kind: str,
    width: int,
    members: list[dict[str, Any]],
    targets: Tensor | None = None,
    seed: int = 0,
    hidden_layers: int | None = None,
    activation: str | None = None,
    epochs: int | None = None,
    class_of_interest: int = 0,
) -> list[dict[str, Any]]:
    """Train one ensemble of students on the student's part of D and measure each of them.

    members : one dict per student with its "temperature", "lr" and "student" (seed index);
        any other keys are copied into its row.
    targets : for kind="soft", probabilities (E, N_train, C) to use instead of sigma_T(teacher
        logits) (logit surgery); computed from the teacher otherwise.
    Returns one dict per student: its knobs and train_acc, test_acc, memorized_acc,
    test_acc_class (held-out samples of `class_of_interest`), independent_acc,
    teacher_agreement_independent, teacher_independent_acc, chance.
    """
    e = len(members)
    temps = torch.tensor([m.get("temperature", 1.0) for m in members], dtype=torch.float32, device=task.x.device)
    lrs = torch.tensor([m["lr"] for m in members], dtype=torch.float32, device=task.x.device)
    x_tr, y_tr = task.x[train_idx], task.y[train_idx]
    if kind == "soft":
        train_targets = targets if targets is not None else soft_targets(task.logits[train_idx].unsqueeze(0), temps)
    elif kind == "hard":
        train_targets = y_tr
    else:
        train_targets = teacher_similarity(task.logits[train_idx].unsqueeze(0))[0]
    model, _ = train_students(
        x_tr, train_targets, kind=kind, classes=task.classes, width=width, members=e, lrs=lrs,
        epochs=epochs or cfg.epochs, temperatures=temps, hidden_layers=hidden_layers or cfg.hidden_layers,
        activation=activation or cfg.activation, soften_student=cfg.soften_student,
        batch_size=cfg.batch_size, seed=seed, progress=cfg.progress,
    )
    with torch.no_grad():
        out_d = model(task.x)  # (E, N, C)
        out_ind = model(task.x_independent)  # (E, N', C)
    metrics = evaluate_students(task, out_d, out_ind, train_idx, test_idx, kind, class_of_interest)
    rows = []
    for i, m in enumerate(members):
        row = {"dataset": task.dataset, "kind": kind, "width": width, **m}
        row.update({k: float(v[i]) for k, v in metrics.items()})
        row.update(teacher_independent_acc=task.teacher_independent_acc, chance=1.0 / task.classes,
                   teacher_memorized=task.memorized, teacher_epochs=int(task.teacher.epochs_to_memorize.max()))
        rows.append(row)
    return rows


def evaluate_students(
    task: MemorizationTask,
    out_d: Tensor,
    out_ind: Tensor,
    train_idx: Tensor,
    test_idx: Tensor,
    kind: str,
    class_of_interest: int = 0,
) -> dict[str, Tensor]:
    """Per-student metrics (each (E,)) from outputs on D (E, N, C) and on D' (E, N', C).

    Logit students predict argmax; similarity students predict the label of the nearest
    student-part sample in their embedding space (cosine), so their train accuracy is 1.
    """
    y = task.y
    test_c = test_idx[y[test_idx] == class_of_interest]
    if kind == "similarity":
        ref, ref_y = out_d[:, train_idx], y[train_idx]

        def acc_on(idx: Tensor) -> Tensor:
            return nearest_neighbour_accuracy(ref, ref_y, out_d[:, idx], y[idx])

        train_acc = acc_on(train_idx)
        test_acc = acc_on(test_idx)
        class_acc = acc_on(test_c)
        independent = nearest_neighbour_accuracy(ref, ref_y, out_ind, task.y_independent)
        teacher_agree = torch.full_like(test_acc, math.nan)
    else:
        train_acc = accuracy(out_d[:, train_idx], y[train_idx])
        test_acc = accuracy(out_d[:, test_idx], y[test_idx])
        class_acc = accuracy(out_d[:, test_c], y[test_c])
        independent = accuracy(out_ind, task.y_independent)
        teacher_agree = agreement(out_ind, task.logits_independent.unsqueeze(0))
    n_tr, n_te = len(train_idx), len(test_idx)
    memorized = (train_acc * n_tr + test_acc * n_te) / (n_tr + n_te)
    return {
        "train_acc": train_acc.cpu(), "test_acc": test_acc.cpu(), "memorized_acc": memorized.cpu(),
        "test_acc_class": class_acc.cpu(), "independent_acc": independent.cpu(),
        "teacher_agreement_independent": teacher_agree.cpu(),
    }


def tidy(rows: list[dict], ratio_to_trivial: bool = False) -> pd.DataFrame:
    """Rows -> DataFrame with the knob columns first and the metrics after.

    ratio_to_trivial: add `ratio` = test_acc / teacher_independent_acc, how many times the
    teacher's accuracy on fresh data D' the student reaches on held-out memorized data.
    """
    table = pd.DataFrame(rows)
    first = [c for c in ("dataset", "classes", "per_class", "input_dim", "alpha", "width", "kind", "targets",
                         "variant", "tail_fraction", "temperature", "lr", "student") if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    if ratio_to_trivial:
        table["ratio"] = table["test_acc"] / table["teacher_independent_acc"]
    return table
