"""What the six questions of chapter 09 ("Beyond the paper") share; each question is a module of its own.

1. `q1_overlap.logit_vs_similarity_overlap` : do logit and similarity students get the same held-out
   samples right?
2. `q2_regularization.teacher_regularization` : teachers trained with weight decay.
3. `q3_architecture.architecture` : activation, depth, and teacher/student mismatch.
4. `q4_convention.temperature_convention` : the student's logits softened by T (the paper's text) or not.
5. `q5_probe.random_features_probe` : students with a frozen random first layer, and linear students.
6. `q6_teacher_protocol.teacher_protocol` : teachers trained for the whole budget or stopped at 100%.

Same contract as the random-data figures: `fn(profile="smoke" | "quick" | "paper", **overrides) ->
tidy DataFrame`, every knob validated before any training, one row per trained student (per *pair* of
students for the overlap question). Here: the questions' profiles, the teachers (`teachers`: trained
once per process as one ensemble and shared by the questions), the splits, the students' correct sets
and the table. Teachers are the unit of replication; the verdicts live in `memkd.book.chapters.ch09_open_questions`.
Shapes: K teachers, M students per teacher, N samples of D, N_te held-out samples, C classes, P width.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from memkd.experiments.random_data import PAPER_PROFILE, SMOKE_PROFILE, RandomDataConfig
from memkd.memorization import MemorizationTask, memorization_tasks, split
from memkd.students import distill, member_grid
from memkd.tables import config_dict
from memkd.losses import soft_targets
from memkd.metrics import nearest_neighbour_predictions
from memkd.distillation import TeacherDidNotMemorize

# Smoke: the figures' smallest sizes (3 teachers, seconds); quick: a CPU chapter of about a minute and a
# half on two cores (5 teachers); paper: the paper's scale. Every teacher at these sizes memorizes in
# 40-70 epochs (measured for each question's activation, depth and weight decay): 200 leaves 3x that.
SMOKE = dict(SMOKE_PROFILE, teacher_epochs=200, students=2, teachers=3)
QUICK = dict(
    input_dim=150,
    classes=20,
    per_class=20,
    teacher_width=100,
    teacher_lr=2e-3,
    teacher_epochs=200,
    student_widths=(100,),
    alphas=(0.6,),
    temperatures=(20.0,),
    lrs=(3e-3,),
    epochs=150,
    students=2,
    teachers=5,
)
PROFILES = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER_PROFILE}


# Each question uses one alpha and one student width (the first): its configs set SINGLE_VALUED so.
ONE_ALPHA_ONE_WIDTH = ("alphas", "student_widths")


def question_profiles(**extra: dict) -> dict:
    """PROFILE_VALUES: the shared profiles updated with each profile's question-specific values."""
    return {p: {**PROFILES[p], **extra.get(p, {})} for p in PROFILES}


# --- teachers and students shared by the questions ------------------------------------------------

_TEACHER_KNOBS = (
    "seed",
    "input_dim",
    "classes",
    "per_class",
    "distribution",
    "teacher_width",
    "hidden_layers",
    "activation",
    "teacher_lr",
    "teacher_epochs",
    "teacher_stop",
    "batch_size",
    "device",
    "teachers",
)
_TEACHERS: dict[tuple, list[MemorizationTask]] = {}
_CACHED = 12  # teacher ensembles kept per process


def teachers(cfg: RandomDataConfig, require: bool = True, **overrides: Any) -> list[MemorizationTask]:
    """The `cfg.teachers` teachers for these knobs, trained as one ensemble once per process.

    overrides : teacher knobs of `train_teacher` (weight_decay, activation, hidden_layers); a value
        equal to the config's is dropped, so e.g. a ReLU teacher of the activation question is the
        reference teacher of every other question.
    require : raise TeacherDidNotMemorize when a teacher ends below 100% (else check `.memorized`).
    """
    reference = {"activation": cfg.activation, "hidden_layers": cfg.hidden_layers, "weight_decay": 0.0}
    overrides = {k: v for k, v in overrides.items() if k not in reference or reference[k] != v}
    key = tuple(getattr(cfg, k) for k in _TEACHER_KNOBS) + tuple(sorted(overrides.items()))
    if key not in _TEACHERS:
        if len(_TEACHERS) >= _CACHED:
            _TEACHERS.pop(next(iter(_TEACHERS)))
        _TEACHERS[key] = memorization_tasks(cfg, require_memorization=False, teacher_overrides=overrides or None)
    tasks = _TEACHERS[key]
    failed = [t.dataset for t in tasks if not t.memorized]
    if require and failed:
        raise TeacherDidNotMemorize(
            f"{cfg.experiment}: the teachers of datasets {failed} ({overrides or 'reference knobs'}) did not reach "
            f"100% training accuracy (teacher_stop={cfg.teacher_stop!r}, teacher_epochs={cfg.teacher_epochs}). "
            "Give the teachers more epochs or a larger learning rate."
        )
    return tasks


def splits_of(tasks: Sequence[MemorizationTask], cfg: RandomDataConfig) -> list[tuple[Tensor, Tensor]]:
    """The per-class alpha split (train_idx, test_idx) of each task, at the config's one alpha."""
    return [split(t, cfg.alphas[0], cfg) for t in tasks]


def soft_members(
    cfg: RandomDataConfig, temperatures: Sequence[float] | None = None, lr: float | None = None
) -> list[dict[str, Any]]:
    """Members of soft-label students: temperatures (default: the first) x one lr x `students` seeds."""
    return member_grid(
        temperature=tuple(temperatures or cfg.temperatures[:1]), lr=(lr or cfg.lrs[0],), student=range(cfg.students)
    )


def correct_sets(
    tasks: Sequence[MemorizationTask],
    splits: Sequence[tuple[Tensor, Tensor]],
    cfg: RandomDataConfig,
    kind: str,
    members: list[dict[str, Any]],
    *,
    setting: Sequence[Any] = (),
    epochs: int | None = None,
) -> tuple[list[np.ndarray], list[dict]]:
    """Distill the students of every task (`distill`) and read which held-out samples each gets right.

    Returns (sets, rows): sets[k] is a bool array (M, N_te) for task k (members in order), rows are
    `distill`'s rows. Similarity students predict the label of the nearest student-part sample.
    """
    models: list = []
    rows = distill(
        tasks,
        splits,
        cfg=cfg,
        kind=kind,
        width=cfg.student_widths[0],
        members=members,
        setting=setting,
        epochs=epochs,
        keep_models=models,
    )
    m = len(members)
    sets: list[list[np.ndarray | None]] = [[None] * m for _ in tasks]
    for model, ids in models:
        with torch.no_grad():
            out = model(torch.stack([tasks[i // m].x for i in ids]))  # (E_c, N, C)
        for j, gid in enumerate(ids):
            k, s = divmod(gid, m)
            (tr, te), y = splits[k], tasks[k].y
            if kind == "similarity":
                pred = nearest_neighbour_predictions(out[j : j + 1, tr], y[tr], out[j : j + 1, te])[0]
            else:
                pred = out[j, te].argmax(-1)
            sets[k][s] = (pred == y[te]).cpu().numpy()
    return [np.stack(per_task) for per_task in sets], rows


def question_table(rows: list[dict], question: str, cfg: RandomDataConfig) -> pd.DataFrame:
    """The question's tidy table: `rows` with a leading column `question` and the config in attrs."""
    table = pd.DataFrame(rows)
    table.insert(0, "question", question)
    table.attrs["config"] = config_dict(cfg)
    return table


def teacher_stats(task: MemorizationTask, temperature: float) -> dict:
    """How peaked a teacher's soft labels are: mean logit norm and mean top probability of sigma_T on D."""
    with torch.no_grad():
        probs = soft_targets(task.logits, temperature)  # (N, C)
    return {
        "teacher_logit_norm": float(task.logits.norm(dim=-1).mean()),
        "teacher_top_prob": float(probs.max(-1).values.mean()),
        "teacher_train_acc": float(task.teacher.train_acc.min()),
    }


def failed_teacher_row(task: MemorizationTask, knobs: dict) -> dict:
    """The one row of a teacher that did not memorize D: no student learns from it."""
    return {
        "dataset": task.dataset,
        **knobs,
        "teacher_memorized": False,
        "chance": 1.0 / task.classes,
        "teacher_train_acc": float(task.teacher.train_acc.min()),
        "test_acc": math.nan,
        "independent_acc": math.nan,
    }


__all__ = [
    "teachers",
    "splits_of",
    "soft_members",
    "correct_sets",
    "question_table",
    "question_profiles",
    "teacher_stats",
    "failed_teacher_row",
    "ONE_ALPHA_ONE_WIDTH",
    "PROFILES",
]
