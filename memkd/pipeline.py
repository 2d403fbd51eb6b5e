"""The pipeline every random-data experiment shares: data -> teachers -> students -> metrics.

Shape letters (see `memkd`): K datasets (one teacher each), M students per dataset, E = K * M members,
N samples of D, N' samples of D', D input dim, C classes.
Teachers are the unit of replication, so an experiment trains several. `memorization_tasks`
draws K datasets and trains their K teachers as one ensemble; `distill` trains the students of
all K datasets (x temperatures x learning rates x seeds) as one ensemble, split into chunks only
when the device cannot hold them, and returns one row of knobs and metrics per student. Every
seed comes from `memkd.seeds.derive_seed`, so the stacked path gives the numbers of a loop over
datasets (tested).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol, Sequence

import pandas as pd
import torch
from torch import Tensor

from memkd.config import (
    ExperimentConfig, alphas_knob, batch_size_knob, check_split, classes_knob, datasets_knob, epochs_knob,
    hidden_layers_knob, input_dim_knob, knob, lr_knob, lrs_knob, one_of, per_class_knob, soften_student_knob,
    student_widths_knob, students_knob, teacher_epochs_knob, teacher_stop_knob, teacher_width_knob, temperatures_knob,
)
from memkd.declare import DISTILL_COLUMNS
from memkd.data.random_vectors import make_memorization_data, split_per_class
from memkd.device import resolve_device
from memkd.device_memory import check_run_fits, members_per_chunk, training_bytes_per_member
from memkd.metrics import accuracy, agreement, nearest_neighbour_accuracy
from memkd.seeds import derive_seed
from memkd.distillation import MLPFamily, Teacher, teacher_similarity, train_students, train_teacher


@dataclass(frozen=True)
class StudentShapes:
    """What a run's students look like, for the memory check before any work: every width P, every
    share of D a student trains on (alpha or rho), and whether any student learns pairwise similarities
    (targets of N_tr x N_tr)."""

    widths: tuple[int, ...]
    fractions: tuple[float, ...]
    similarity: bool = False


class MemorizationConfig(Protocol):
    """What `memorization_tasks` reads of a config (RandomDataConfig and its subclasses,
    memkd.experiments.one_hidden_layer.OneHiddenLayerConfig): the teachers' knobs, and the students'
    shapes from `student_shapes()`, which each config answers from its own knobs."""

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
    datasets: int

    def student_shapes(self) -> StudentShapes: ...


def check_memorization_fits(cfg: MemorizationConfig, device: torch.device, *, input_dim: int, classes: int,
                            per_class: int, hidden_layers: int, teacher_width: int) -> None:
    """Refuse (MemoryError naming the knob) a run whose teacher or widest student cannot fit the device,
    at the given sizes and the config's `student_shapes()`."""
    shapes = cfg.student_shapes()
    check_run_fits(device, cfg.experiment, samples=classes * per_class, dim=input_dim, classes=classes,
                   hidden_layers=hidden_layers, teacher_width=teacher_width, student_widths=shapes.widths,
                   student_samples=classes * max(int(round(a * per_class)) for a in shapes.fractions),
                   own_inputs=cfg.datasets > 1, similarity=shapes.similarity)


@dataclass(frozen=True)
class RandomDataConfig(ExperimentConfig):
    """Knobs shared by the random-data experiments (figures 2, 3, 5, 6, 7)."""

    TABLE_COLUMNS = DISTILL_COLUMNS
    SINGLE_VALUED: ClassVar[tuple] = ()  # list knobs that must hold exactly one value (e.g. Figs 6, 7)
    SIMILARITY_STUDENTS: ClassVar[bool] = False  # some students learn pairwise similarities (Fig 3, Q1)

    input_dim: int = input_dim_knob(250)
    classes: int = classes_knob(50)
    per_class: int = per_class_knob(25)
    distribution: str = knob("uniform", one_of("uniform", "gaussian"), "input distribution")
    teacher_width: int = teacher_width_knob(125)
    hidden_layers: int = hidden_layers_knob(2)
    activation: str = knob("relu", one_of("relu", "tanh", "linear"), "hidden activation")
    teacher_lr: float = lr_knob(1e-3, "teacher's")
    teacher_epochs: int = teacher_epochs_knob(1000)
    teacher_stop: str = teacher_stop_knob()
    student_widths: tuple = student_widths_knob((125,))
    alphas: tuple = alphas_knob((0.6,))
    temperatures: tuple = temperatures_knob((10.0,))
    lrs: tuple = lrs_knob((3e-3,))
    epochs: int = epochs_knob(200)
    students: int = students_knob(5, "teacher and setting")
    datasets: int = datasets_knob(1)
    soften_student: bool = soften_student_knob()
    batch_size: Any = batch_size_knob("teacher's and students'")

    def check(self) -> None:
        check_split(self, self.alphas, self.per_class)
        self.check_single_valued()

    def check_resources(self) -> None:
        """The device exists and one teacher and one student of the widest width fit in its memory
        at the config's own sizes (input_dim, classes, per_class), before any work."""
        super().check_resources()
        check_memorization_fits(self, resolve_device(self.device, self.experiment), input_dim=self.input_dim,
                                classes=self.classes, per_class=self.per_class, hidden_layers=self.hidden_layers,
                                teacher_width=self.teacher_width)

    def student_shapes(self) -> StudentShapes:
        """The students' widths and shares of D (`student_widths`, `alphas`), and whether some learn
        similarities (`SIMILARITY_STUDENTS`); a config whose students differ overrides it."""
        return StudentShapes(self.student_widths, self.alphas, self.SIMILARITY_STUDENTS)

    def check_single_valued(self) -> None:
        """Fail the first knob of SINGLE_VALUED that holds more than one value."""
        for name in self.SINGLE_VALUED:
            if len(getattr(self, name)) != 1:
                self.fail(name, f"must hold exactly one value for {self.experiment}. Got {getattr(self, name)!r} instead.")


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
    """Draw D and D' for each dataset index (default: range(cfg.datasets)) and train their teachers
    as one ensemble (in chunks if the device cannot hold them all); returns one task per dataset.

    Raises TeacherDidNotMemorize when a teacher ends below 100%, unless require_memorization=False.
    """
    device = resolve_device(cfg.device, cfg.experiment)
    datasets = list(range(cfg.datasets)) if datasets is None else list(datasets)
    d, c, pc = input_dim or cfg.input_dim, classes or cfg.classes, per_class or cfg.per_class
    shape = (c, pc, d)
    draws = [make_memorization_data(c, pc, d, derive_seed(cfg.seed, "data", k, *shape), cfg.distribution, device)
             for k in datasets]
    fresh = [make_memorization_data(c, pc, d, derive_seed(cfg.seed, "independent", k, *shape), cfg.distribution,
                                    device) for k in datasets]
    kwargs = dict(classes=c, width=cfg.teacher_width, hidden_layers=cfg.hidden_layers,
                  activation=cfg.activation, lr=cfg.teacher_lr, max_epochs=cfg.teacher_epochs,
                  batch_size=cfg.batch_size, stop=cfg.teacher_stop,
                  require_memorization=require_memorization, progress=cfg.progress)
    kwargs.update(teacher_overrides or {})
    check_memorization_fits(cfg, device, input_dim=d, classes=c, per_class=pc, hidden_layers=kwargs["hidden_layers"],
                            teacher_width=kwargs["width"])
    per_teacher = training_bytes_per_member(c * pc, d, kwargs["width"], c, kwargs["hidden_layers"], own_inputs=True)
    chunk = members_per_chunk(len(datasets), per_teacher, device, "the teacher width or the dataset size")
    tasks: list[MemorizationTask] = []
    for start in range(0, len(datasets), chunk):
        part = list(range(start, min(start + chunk, len(datasets))))
        x = torch.stack([draws[i][0] for i in part])  # (K, N, D)
        y = torch.stack([draws[i][1] for i in part])  # (K, N)
        seeds = [derive_seed(cfg.seed, "teacher", datasets[i], *shape) for i in part]
        teacher = train_teacher(x, y, seed=seeds, **kwargs)
        for j, i in enumerate(part):
            xi, yi = fresh[i]
            one = teacher.member(j)
            tasks.append(MemorizationTask(datasets[i], x[j], y[j], xi, yi, one, one.logits(x[j])[0],
                                          one.logits(xi)[0], c))
    return tasks


def memorization_task(cfg: RandomDataConfig, dataset: int, **kwargs: Any) -> MemorizationTask:
    """One dataset and its teacher: `memorization_tasks(cfg, [dataset], ...)[0]`."""
    return memorization_tasks(cfg, [dataset], **kwargs)[0]


def split(task: MemorizationTask, alpha: float, cfg: RandomDataConfig) -> tuple[Tensor, Tensor]:
    """The per-class alpha split of a task's D: (train_idx (N_tr,), test_idx (N_te,))."""
    return split_per_class(task.y, alpha, seed=derive_seed(cfg.seed, "split", task.dataset))


# On a CPU, students of several datasets stacked in one ensemble need a batched GEMM over their own
# inputs, which loses to one shared-input GEMM per dataset once the inputs are large: 8 datasets x 4
# students, benchmarks/stacked_datasets.py (2-core Xeon, 2026-12-01): stacked 1.9x the dataset loop at
# smoke shapes (N_tr x D = 120 x 100), 0.85x at quick shapes (750 x 250). Seeds are per member, so the
# numbers do not depend on this choice. On a GPU every dataset is stacked.
CPU_STACK_LIMIT = 50_000  # N_tr * D above which a CPU trains one dataset's students per ensemble


def member_grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """The product of the given axes, one dict per ensemble member, in a stable order."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def member_tensor(members: list[dict[str, Any]], key: str, default: float, device: torch.device) -> Tensor:
    """The per-member knob `key` (e.g. "temperature", "lr") as a float32 tensor (E,)."""
    return torch.tensor([m.get(key, default) for m in members], dtype=torch.float32, device=device)


def student_seed(cfg: RandomDataConfig, dataset: int, width: int, setting: Sequence[Any], student: int) -> int:
    """The initialization of student `student` of a setting on a dataset. It does not depend on the
    temperature or learning rate, so members that differ only in those start from the same weights
    (paired comparisons across T and lr are paired by initialization)."""
    return derive_seed(cfg.seed, "student", dataset, width, *setting, student)


def _stack(parts: list[Tensor], shared_if_one: bool) -> Tensor:
    return parts[0] if shared_if_one and len(parts) == 1 else torch.cat(parts)


def distill(
    tasks: MemorizationTask | Sequence[MemorizationTask],
    splits: tuple[Tensor, Tensor] | Sequence[tuple[Tensor, Tensor]],
    *,
    cfg: RandomDataConfig,
    kind: str,
    width: int,
    members: list[dict[str, Any]],
    targets: Sequence[Tensor] | Tensor | None = None,
    setting: Sequence[Any] = (),
    hidden_layers: int | None = None,
    activation: str | None = None,
    epochs: int | None = None,
    class_of_interest: int = 0,
    keep_models: list | None = None,
) -> list[dict[str, Any]]:
    """Train the students of every task as one ensemble and measure each of them.

    tasks, splits : K tasks and their (train_idx, test_idx); one task and one split also work.
    members : M dicts per dataset, each with "lr", "student" (seed index) and for soft students
        "temperature"; any other keys are copied into the rows. E = K * M students in all.
    targets : for kind="soft", per task probabilities (M, N_train, C) to use instead of
        sigma_T(teacher logits) (logit surgery).
    setting : values naming this setting (e.g. alpha) in every student's seed (`student_seed`).
    keep_models : a list to which each chunk's (model, ids) is appended: the trained ensemble and
        the global ids (task index * M + member index) of its members, for measures beyond the rows.
    Returns one dict per student: its knobs and train_acc, test_acc, memorized_acc, test_acc_class
    (held-out samples of `class_of_interest`; test_count_class: how many there are), independent_acc,
    teacher_agreement_independent, teacher_independent_acc, chance, teacher_memorized, teacher_first_perfect
    (the teacher's first epoch at 100%), teacher_stop.
    """
    if isinstance(tasks, MemorizationTask):
        tasks, splits = [tasks], [splits]
        targets = None if targets is None else [targets]
    device = tasks[0].x.device
    m, k = len(members), len(tasks)
    depth, act = hidden_layers or cfg.hidden_layers, activation or cfg.activation
    temps = member_tensor(members, "temperature", 1.0, device).repeat(k)  # (E,)
    lrs = member_tensor(members, "lr", math.nan, device).repeat(k)
    seeds = [student_seed(cfg, t.dataset, width, setting, mm["student"]) for t in tasks for mm in members]
    x_tr = [t.x[tr].expand(m, -1, -1) for t, (tr, _) in zip(tasks, splits)]  # K x (M, N_tr, D)
    if kind == "soft":  # given probabilities, or the teacher's logits: train_students applies sigma_T
        y_t = [targets[i] if targets is not None else t.logits[tr].expand(m, -1, -1)
               for i, (t, (tr, _)) in enumerate(zip(tasks, splits))]
    elif kind == "hard":
        y_t = [t.y[tr].expand(m, -1) for t, (tr, _) in zip(tasks, splits)]
    else:
        y_t = [teacher_similarity(t.logits[tr].unsqueeze(0)).expand(m, -1, -1) for t, (tr, _) in zip(tasks, splits)]
    n_tr, d = x_tr[0].shape[-2], x_tr[0].shape[-1]
    need = training_bytes_per_member(n_tr, d, width, tasks[0].classes, depth, own_inputs=k > 1)
    if kind == "similarity":
        need += 4 * 3 * n_tr * n_tr
    chunk = members_per_chunk(k * m, need, device, "the number of students, datasets or the student width")
    if device.type == "cpu" and n_tr * d >= CPU_STACK_LIMIT:
        chunk = min(chunk, m)  # one dataset per ensemble: its students share one input GEMM (faster on a CPU)
    rows: list[dict[str, Any]] = []
    for start in range(0, k * m, chunk):
        sel = list(range(start, min(start + chunk, k * m)))
        owners = sorted({i // m for i in sel})
        shared = len(owners) == 1
        x_c = torch.cat([x_tr[i // m][i % m:i % m + 1] for i in sel]) if not shared else x_tr[owners[0]][0]
        t_c = torch.cat([y_t[i // m][i % m:i % m + 1] for i in sel])
        if shared and kind != "soft" and targets is None:
            t_c = t_c[0]
        logits_c = t_c if kind == "soft" and targets is None else None
        model, _ = train_students(
            x_c, None if logits_c is not None else t_c, teacher_logits=logits_c, kind=kind,
            family=MLPFamily(d, width, tasks[0].classes, depth, act), members=len(sel), lrs=lrs[sel],
            epochs=epochs or cfg.epochs, temperatures=temps[sel], soften_student=cfg.soften_student,
            batch_size=cfg.batch_size, seed=[seeds[i] for i in sel], progress=cfg.progress,
        )
        if keep_models is not None:
            keep_models.append((model, sel))
        rows += _measure(model, [tasks[o] for o in owners], [splits[o] for o in owners],
                         [[i for i in sel if i // m == o] for o in owners], members, cfg, kind, width,
                         class_of_interest)
    return rows


@torch.no_grad()
def _measure(model, tasks, splits, member_ids, members, cfg, kind, width, class_of_interest) -> list[dict]:
    """Rows for the students of `model`; member_ids[j] are the global ids of task j's members."""
    m = len(members)
    if len(tasks) == 1:  # one dataset: its inputs are shared by every member, no per-member copy
        out_d, out_ind = model(tasks[0].x), model(tasks[0].x_independent)  # (E_c, N, C), (E_c, N', C)
    else:
        out_d = model(torch.cat([t.x.expand(len(ids), -1, -1) for t, ids in zip(tasks, member_ids)]))
        out_ind = model(torch.cat([t.x_independent.expand(len(ids), -1, -1) for t, ids in zip(tasks, member_ids)]))
    rows, offset = [], 0
    for task, (tr, te), ids in zip(tasks, splits, member_ids):
        part = slice(offset, offset + len(ids))
        offset += len(ids)
        metrics = evaluate_students(task, out_d[part], out_ind[part], tr, te, kind, class_of_interest)
        for j, gid in enumerate(ids):
            row = {"dataset": task.dataset, "kind": kind, "width": width, **members[gid % m]}
            row.update({key: float(v[j]) for key, v in metrics.items()})
            row.update(teacher_independent_acc=task.teacher_independent_acc, chance=1.0 / task.classes,
                       teacher_memorized=task.memorized, teacher_stop=cfg.teacher_stop,
                       teacher_first_perfect=int(task.teacher.epochs_to_memorize.max()))
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
        "test_count_class": torch.full_like(test_acc, float(len(test_c))).cpu(),  # held-out class-c points
    }


def tidy(rows: list[dict], ratio_to_trivial: bool = False, cfg: ExperimentConfig | None = None) -> pd.DataFrame:
    """Rows -> DataFrame with the knob columns first and the metrics after.

    ratio_to_trivial: add `ratio` = test_acc / teacher_independent_acc, how many times the
    teacher's accuracy on fresh data D' the student reaches on held-out memorized data.
    cfg: the validated configuration, kept as `table.attrs["config"]` (a chapter saves it as
    <table>.config.json beside the table).
    """
    table = pd.DataFrame(rows)
    first = [c for c in ("dataset", "classes", "per_class", "input_dim", "alpha", "width", "kind", "targets",
                         "variant", "tail_fraction", "temperature", "lr", "student") if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    if ratio_to_trivial:
        table["ratio"] = table["test_acc"] / table["teacher_independent_acc"]
    if cfg is not None:
        table.attrs["config"] = config_dict(cfg)
    return table


def config_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """A validated configuration as plain JSON-ready values (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(i) for i in v]
        return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
    return {"experiment": type(cfg).__name__, **{k: plain(v) for k, v in asdict(cfg).items()}}


# The sizes of the paper's main setting (Fig 2); the departures from them: memkd.book.departures.
PAPER_SIZES = {"input_dim": 1000, "classes": 100, "per_class": 100, "teacher_width": 500}
# The random-data figures' profiles (memkd.experiments.fig2_logits ... fig7_surgery; the open questions
# start from them too): the smallest setting that shows each effect in seconds (tests), a CPU book
# (quick), and the paper's main setting (Fig 2) with the released code's teacher protocol. Teachers are
# the unit of replication: at least 3 per claim at smoke, 5 at quick and paper. Every teacher trains
# for its whole budget (the paper's protocol): about 3x the epochs the smoke and quick teachers need to
# reach 100% (45 and 90, measured); the paper profile keeps the released code's 2000.
SMOKE_PROFILE = dict(input_dim=100, classes=10, per_class=20, teacher_width=50, teacher_lr=3e-3, teacher_epochs=150,
                     student_widths=(50,), alphas=(0.6,), temperatures=(20.0,), lrs=(1e-2,), epochs=100, students=3,
                     datasets=4)
QUICK_PROFILE = dict(input_dim=250, classes=50, per_class=25, teacher_width=125, teacher_lr=1e-3, teacher_epochs=300,
                     student_widths=(125,), alphas=(0.6,), temperatures=(10.0,), lrs=(3e-3,), epochs=200, students=2,
                     datasets=5)
PAPER_PROFILE = dict(PAPER_SIZES, teacher_lr=1e-3, teacher_epochs=2000, student_widths=(500,), alphas=(0.6,),
                     temperatures=(20.0,), lrs=(1e-3,), epochs=1000, students=4, datasets=5)


def alpha_width_settings(cfg: RandomDataConfig):
    """Train every dataset's teacher (one ensemble), then yield (tasks, alpha, splits, width) for every
    alpha and student width: the loop of Figs 2, 3 and 5, whose students of one (alpha, width) train
    as one ensemble over all datasets."""
    tasks = memorization_tasks(cfg)
    for alpha in cfg.alphas:
        splits = [split(task, alpha, cfg) for task in tasks]
        for width in cfg.student_widths:
            yield tasks, alpha, splits, width
