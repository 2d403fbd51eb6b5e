"""The memorization tasks of the random-data experiments: data -> teachers, and the student's split.

Shape letters (see `memkd`): K datasets (one teacher each), N samples of D, N' samples of D', D input
dim, C classes. Owns `MemorizationTask` (one dataset D, its fresh twin D' and the teacher that memorized
D), `memorization_tasks` (draws K datasets and trains their K teachers as one ensemble, in chunks only
when the device cannot hold them), `split` (the per-class alpha split of D into student-train and
held-out test), and the memory check before any work (`check_memorization_fits`, asking a config's
`student_shapes()`). Left out: the configs and profiles (`memkd.experiments.random_data`), the
students (`memkd.students`) and their metrics (`memkd.evaluation`). Every seed comes from
`memkd.seeds.derive_seed`, so the stacked path gives the numbers of a loop over datasets (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor

from memkd.data.random_vectors import make_memorization_data, split_per_class
from memkd.device import resolve_device
from memkd.device_memory import check_run_fits, chunks, members_per_chunk, training_bytes_per_member
from memkd.distillation import Teacher, train_teacher
from memkd.metrics import accuracy
from memkd.seeds import derive_seed


@dataclass(frozen=True)
class StudentShapes:
    """What a run's students look like, for the memory check before any work: every width P, every
    share of D a student trains on (alpha or rho), and whether any student learns pairwise similarities
    (targets of N_tr x N_tr)."""

    widths: tuple[int, ...]
    fractions: tuple[float, ...]
    similarity: bool = False


class MemorizationConfig(Protocol):
    """What `memorization_tasks` reads of a config (`memkd.experiments.random_data.RandomDataConfig`
    and its subclasses, `memkd.experiments.one_hidden_layer.OneHiddenLayerConfig`): the teachers'
    knobs, and the students' shapes from `student_shapes()`, which each config answers from its own
    knobs."""

    experiment: str
    seed: int
    device: str
    progress: bool
    input_dim: int
    classes: int
    per_class: Any
    distribution: str
    teacher_width: int
    hidden_layers: int
    activation: str
    teacher_lr: float
    teacher_epochs: int
    teacher_stop: str
    batch_size: Any
    teachers: int

    def student_shapes(self) -> StudentShapes: ...


def check_memorization_fits(
    cfg: MemorizationConfig,
    device: torch.device,
    *,
    input_dim: int,
    classes: int,
    per_class: int,
    hidden_layers: int,
    teacher_width: int,
) -> None:
    """Refuse (MemoryError naming the knob) a run whose teacher or widest student cannot fit the device,
    at the given sizes and the config's `student_shapes()`."""
    shapes = cfg.student_shapes()
    check_run_fits(
        device,
        cfg.experiment,
        samples=classes * per_class,
        dim=input_dim,
        classes=classes,
        hidden_layers=hidden_layers,
        teacher_width=teacher_width,
        student_widths=shapes.widths,
        student_samples=classes * max(int(round(a * per_class)) for a in shapes.fractions),
        own_inputs=cfg.teachers > 1,
        similarity=shapes.similarity,
    )


@dataclass
class MemorizationTask:
    """One dataset D, its fresh twin D', and the teacher that memorized D."""

    dataset: int  # index of this dataset within the experiment
    x: Tensor  # (N, D)
    y: Tensor  # (N,)
    x_independent: Tensor  # (N', D)
    y_independent: Tensor  # (N',)
    teacher: Teacher  # one member
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


def memorization_tasks(
    cfg: MemorizationConfig,
    datasets: Sequence[int] | None = None,
    *,
    input_dim: int | None = None,
    classes: int | None = None,
    per_class: int | None = None,
    require_memorization: bool = True,
    teacher_overrides: dict | None = None,
) -> list[MemorizationTask]:
    """Draw D and D' for each dataset index (default: range(cfg.teachers)) and train their teachers
    as one ensemble (in chunks if the device cannot hold them all); returns one task per dataset.

    Raises TeacherDidNotMemorize when a teacher ends below 100%, unless require_memorization=False.
    """
    device = resolve_device(cfg.device, cfg.experiment)
    datasets = list(range(cfg.teachers)) if datasets is None else list(datasets)
    d, c, pc = input_dim or cfg.input_dim, classes or cfg.classes, per_class or cfg.per_class
    shape = (c, pc, d)
    draws = [
        make_memorization_data(c, pc, d, derive_seed(cfg.seed, "data", k, *shape), cfg.distribution, device)
        for k in datasets
    ]
    fresh = [
        make_memorization_data(c, pc, d, derive_seed(cfg.seed, "independent", k, *shape), cfg.distribution, device)
        for k in datasets
    ]
    kwargs = dict(
        classes=c,
        width=cfg.teacher_width,
        hidden_layers=cfg.hidden_layers,
        activation=cfg.activation,
        lr=cfg.teacher_lr,
        max_epochs=cfg.teacher_epochs,
        batch_size=cfg.batch_size,
        stop=cfg.teacher_stop,
        require_memorization=require_memorization,
        progress=cfg.progress,
    )
    kwargs.update(teacher_overrides or {})
    check_memorization_fits(
        cfg,
        device,
        input_dim=d,
        classes=c,
        per_class=pc,
        hidden_layers=kwargs["hidden_layers"],
        teacher_width=kwargs["width"],
    )
    per_teacher = training_bytes_per_member(c * pc, d, kwargs["width"], c, kwargs["hidden_layers"], own_inputs=True)
    chunk = members_per_chunk(len(datasets), per_teacher, device, "the teacher width or the dataset size")
    tasks: list[MemorizationTask] = []
    for part in chunks(len(datasets), chunk):
        x = torch.stack([draws[i][0] for i in part])  # (K, N, D)
        y = torch.stack([draws[i][1] for i in part])  # (K, N)
        seeds = [derive_seed(cfg.seed, "teacher", datasets[i], *shape) for i in part]
        teacher = train_teacher(x, y, seed=seeds, **kwargs)
        for j, i in enumerate(part):
            xi, yi = fresh[i]
            one = teacher.member(j)
            tasks.append(
                MemorizationTask(datasets[i], x[j], y[j], xi, yi, one, one.logits(x[j])[0], one.logits(xi)[0], c)
            )
    return tasks


def memorization_task(cfg: MemorizationConfig, dataset: int, **kwargs: Any) -> MemorizationTask:
    """One dataset and its teacher: `memorization_tasks(cfg, [dataset], ...)[0]`."""
    return memorization_tasks(cfg, [dataset], **kwargs)[0]


def split(task: MemorizationTask, alpha: float, cfg: MemorizationConfig) -> tuple[Tensor, Tensor]:
    """The per-class alpha split of a task's D: (train_idx (N_tr,), test_idx (N_te,))."""
    return split_per_class(task.y, alpha, seed=derive_seed(cfg.seed, "split", task.dataset))
