"""The students of the random-data experiments: the ensemble grid, `distill`, one row per student.

Shape letters (see `memkd`): K datasets (one teacher each), M students per dataset, E = K * M
members, N samples of D, N' samples of D', D input dim, C classes. Owns the grid of members
(`member_grid`: one dict of knobs per student; `member_tensor`: one knob as a tensor (E,)), the
students' seeds (`student_seed`) and `distill`, which trains the students of all K datasets
(x temperatures x learning rates x seeds) as one ensemble through `memkd.distillation.train_students`,
split into chunks only when the device cannot hold them, and returns one row of knobs and metrics per
student (`memkd.evaluation.evaluate_students`). Left out: the tasks and teachers
(`memkd.memorization`), the configs (`memkd.experiments.random_data`), the tables (`memkd.tables.tidy`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor

from memkd.device_memory import chunks, members_per_chunk, training_bytes_per_member
from memkd.distillation import MLPFamily, teacher_similarity, train_students
from memkd.evaluation import evaluate_students
from memkd.memorization import MemorizationTask
from memkd.seeds import derive_seed


class StudentConfig(Protocol):
    """What `distill` reads of a config (`memkd.experiments.random_data.RandomDataConfig` and its
    subclasses): the base seed, the students' protocol knobs and the teachers' stop rule (a row's column)."""

    seed: int
    progress: bool
    hidden_layers: int
    activation: str
    epochs: int
    soften_student: bool
    batch_size: Any
    teacher_stop: str


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


def student_seed(cfg: StudentConfig, dataset: int, width: int, setting: Sequence[Any], student: int) -> int:
    """The initialization of student `student` of a setting on a dataset. It does not depend on the
    temperature or learning rate, so members that differ only in those start from the same weights
    (paired comparisons across T and lr are paired by initialization)."""
    return derive_seed(cfg.seed, "student", dataset, width, *setting, student)


def distill(
    tasks: MemorizationTask | Sequence[MemorizationTask],
    splits: tuple[Tensor, Tensor] | Sequence[tuple[Tensor, Tensor]],
    *,
    cfg: StudentConfig,
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
    seeds = [student_seed(cfg, t.dataset, width, setting, mm["student"]) for t in tasks for mm in members]
    x_tr = [t.x[tr].expand(m, -1, -1) for t, (tr, _) in zip(tasks, splits)]  # K x (M, N_tr, D)
    if kind == "soft":  # given probabilities, or the teacher's logits: train_students applies sigma_T
        y_t = [
            targets[i] if targets is not None else t.logits[tr].expand(m, -1, -1)
            for i, (t, (tr, _)) in enumerate(zip(tasks, splits))
        ]
    elif kind == "hard":
        y_t = [t.y[tr].expand(m, -1) for t, (tr, _) in zip(tasks, splits)]
    else:
        y_t = [teacher_similarity(t.logits[tr].unsqueeze(0)).expand(m, -1, -1) for t, (tr, _) in zip(tasks, splits)]
    n_tr, d = x_tr[0].shape[-2], x_tr[0].shape[-1]
    need = training_bytes_per_member(n_tr, d, width, tasks[0].classes, depth, own_inputs=k > 1)
    if kind == "similarity":
        need += 4 * 3 * n_tr * n_tr
    chunk = members_per_chunk(k * m, need, device, "the number of students, teachers or the student width")
    if device.type == "cpu" and n_tr * d >= CPU_STACK_LIMIT:
        chunk = min(chunk, m)  # one dataset per ensemble: its students share one input GEMM (faster on a CPU)
    rows: list[dict[str, Any]] = []
    for sel in chunks(list(range(k * m)), chunk):
        owners = sorted({i // m for i in sel})
        shared = len(owners) == 1
        x_c = torch.cat([x_tr[i // m][i % m : i % m + 1] for i in sel]) if not shared else x_tr[owners[0]][0]
        t_c = torch.cat([y_t[i // m][i % m : i % m + 1] for i in sel])
        if shared and kind != "soft" and targets is None:
            t_c = t_c[0]
        logits_c = t_c if kind == "soft" and targets is None else None
        knobs = [members[i % m] for i in sel]  # the chunk's students: student i is member i % m of task i // m
        model, _ = train_students(
            x_c,
            None if logits_c is not None else t_c,
            teacher_logits=logits_c,
            kind=kind,
            family=MLPFamily(d, width, tasks[0].classes, depth, act),
            members=len(sel),
            lrs=member_tensor(knobs, "lr", math.nan, device),
            epochs=epochs or cfg.epochs,
            temperatures=member_tensor(knobs, "temperature", 1.0, device),
            soften_student=cfg.soften_student,
            batch_size=cfg.batch_size,
            seed=[seeds[i] for i in sel],
            progress=cfg.progress,
        )
        if keep_models is not None:
            keep_models.append((model, sel))
        rows += _measure(
            model,
            [tasks[o] for o in owners],
            [splits[o] for o in owners],
            [[i for i in sel if i // m == o] for o in owners],
            members,
            cfg,
            kind,
            width,
            class_of_interest,
        )
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
            row.update(
                teacher_independent_acc=task.teacher_independent_acc,
                chance=1.0 / task.classes,
                teacher_memorized=task.memorized,
                teacher_stop=cfg.teacher_stop,
                teacher_first_perfect=int(task.teacher.epochs_to_memorize.max()),
            )
            rows.append(row)
    return rows
