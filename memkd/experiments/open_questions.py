"""The questions the paper leaves open, one function each (chapter 09, "Beyond the paper").

Same contract as the random-data figures (`memkd.experiments.fig2_logits`): `fn(profile="smoke" | "quick" | "paper", **overrides)
-> tidy DataFrame`, every knob validated before any training, one row per trained student (one row
per *pair* of students for the overlap question).

1. `logit_vs_similarity_overlap` : do logit and similarity students get the same held-out samples right?
2. `teacher_regularization`      : teachers trained with weight decay.
3. `architecture`                : activation, depth, and teacher/student mismatch.
4-6. in `memkd.experiments.training_choices`: the temperature convention, frozen-layer and linear
     students, and the teacher's stop.

Teachers are the unit of replication: every question trains `datasets` teachers (one per dataset D)
as one ensemble (`memorization_tasks`) and the students of all of them as another (`distill`).
Teachers with the same knobs are trained once per process and shared by the questions (`teachers`).
The verdicts live in `memkd.book.questions`. Shapes: K teachers, M students per teacher, N samples
of D, N_te held-out samples, C classes, P width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import (
    BOOL, epochs_knob, int_range, knob, list_of, lr_knob, make_config, one_of, real_interval,
)
from memkd.pipeline import (
    PAPER_PROFILE, SMOKE_PROFILE, MemorizationTask, RandomDataConfig, config_dict, distill, member_grid, memorization_tasks,
    split,
)
from memkd.losses import soft_targets
from memkd.metrics import nearest_neighbour_predictions, overlap_test, permutation_matrix, phi
from memkd.seeds import derive_seed
from memkd.distillation import TeacherDidNotMemorize

# Smoke: the figures' smallest sizes (3 teachers, seconds); quick: a CPU chapter of about a minute and a
# half on two cores (5 teachers); paper: the paper's scale. Every teacher at these sizes memorizes in
# 40-70 epochs (measured for each question's activation, depth and weight decay): 200 leaves 3x that.
SMOKE = dict(SMOKE_PROFILE, teacher_epochs=200, students=2, datasets=3)
QUICK = dict(input_dim=150, classes=20, per_class=20, teacher_width=100, teacher_lr=2e-3,
             teacher_epochs=200, student_widths=(100,), alphas=(0.6,), temperatures=(20.0,),
             lrs=(3e-3,), epochs=150, students=2, datasets=5)
PROFILES = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER_PROFILE}


# Each question uses one alpha and one student width (the first): its configs set SINGLE_VALUED so.
ONE_ALPHA_ONE_WIDTH = ("alphas", "student_widths")


def question_profiles(**extra: dict) -> dict:
    """PROFILE_VALUES: the shared profiles updated with each profile's question-specific values."""
    return {p: {**PROFILES[p], **extra.get(p, {})} for p in PROFILES}


# --- teachers and students shared by the questions ------------------------------------------------

_TEACHER_KNOBS = ("seed", "input_dim", "classes", "per_class", "distribution", "teacher_width", "hidden_layers",
                  "activation", "teacher_lr", "teacher_epochs", "teacher_stop", "batch_size", "device", "datasets")
_TEACHERS: dict[tuple, list[MemorizationTask]] = {}
_CACHED = 12  # teacher ensembles kept per process


def teachers(cfg: RandomDataConfig, require: bool = True, **overrides: Any) -> list[MemorizationTask]:
    """The `cfg.datasets` teachers for these knobs, trained as one ensemble once per process.

    overrides : teacher knobs of `train_teacher` (weight_decay, activation, hidden_layers); a value
        equal to the config's is dropped, so e.g. a ReLU teacher of the activation question is the
        reference teacher of every other question.
    require : raise TeacherDidNotMemorize when a teacher ends below 100% (else check `.memorized`).
    """
    overrides = {k: v for k, v in overrides.items() if getattr(cfg, k, None) != v and not (k == "weight_decay" and v == 0)}
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
            "Give the teachers more epochs or a larger learning rate.")
    return tasks


def splits_of(tasks: Sequence[MemorizationTask], cfg: RandomDataConfig) -> list[tuple[Tensor, Tensor]]:
    """The per-class alpha split (train_idx, test_idx) of each task, at the config's one alpha."""
    return [split(t, cfg.alphas[0], cfg) for t in tasks]


def soft_members(cfg: RandomDataConfig, temperatures: Sequence[float] | None = None,
                 lr: float | None = None) -> list[dict[str, Any]]:
    """Members of soft-label students: temperatures (default: the first) x one lr x `students` seeds."""
    return member_grid(temperature=tuple(temperatures or cfg.temperatures[:1]),
                       lr=(lr or cfg.lrs[0],), student=range(cfg.students))


def correct_sets(tasks: Sequence[MemorizationTask], splits: Sequence[tuple[Tensor, Tensor]],
                 cfg: RandomDataConfig, kind: str, members: list[dict[str, Any]], *,
                 setting: Sequence[Any] = (), epochs: int | None = None) -> tuple[list[np.ndarray], list[dict]]:
    """Distill the students of every task (`distill`) and read which held-out samples each gets right.

    Returns (sets, rows): sets[k] is a bool array (M, N_te) for task k (members in order), rows are
    `distill`'s rows. Similarity students predict the label of the nearest student-part sample.
    """
    models: list = []
    rows = distill(tasks, splits, cfg=cfg, kind=kind, width=cfg.student_widths[0], members=members,
                   setting=setting, epochs=epochs, keep_models=models)
    m = len(members)
    sets: list[list[np.ndarray | None]] = [[None] * m for _ in tasks]
    for model, ids in models:
        with torch.no_grad():
            out = model(torch.stack([tasks[i // m].x for i in ids]))  # (E_c, N, C)
        for j, gid in enumerate(ids):
            k, s = divmod(gid, m)
            (tr, te), y = splits[k], tasks[k].y
            if kind == "similarity":
                pred = nearest_neighbour_predictions(out[j:j + 1, tr], y[tr], out[j:j + 1, te])[0]
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


# --- statistics of the overlap question ------------------------------------------------------------


def overlap_rows(soft: np.ndarray, sim: np.ndarray, perms: np.ndarray) -> list[dict]:
    """One row per pair of students of one teacher: soft (M, N_te) and similarity (M, N_te) correct
    sets. pair is "soft-soft", "soft-similarity" or "similarity-similarity"; group_p_value is the
    teacher's joint test of that pair type (for within-kind pairs, the first half against the second)."""
    half = len(soft) // 2
    groups = {"soft-soft": (soft, soft, soft[:half], soft[half:]),
              "soft-similarity": (soft, sim, soft, sim),
              "similarity-similarity": (sim, sim, sim[:half], sim[half:])}
    rows = []
    for pair, (a, b, ga, gb) in groups.items():
        group_p = overlap_test(ga, gb, perms=perms)["p_value"] if len(ga) and len(gb) else math.nan
        for i in range(len(a)):
            for j in range(len(b)):
                if a is b and j <= i:
                    continue
                rows.append({"pair": pair, "student_a": i, "student_b": j, **overlap_test(a[i], b[j], perms=perms),
                             "phi": phi(a[i], b[j]), "group_p_value": group_p})
    return rows


# --- 1. logit vs similarity students -------------------------------------------------------------


@dataclass(frozen=True)
class OverlapConfig(RandomDataConfig):
    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    similarity_lr: float = lr_knob(3e-3, "similarity students'")
    similarity_epochs: int = epochs_knob(300, "similarity students'", "epochs")
    permutations: int = knob(2000, int_range(100), "permutations of each overlap test")

    TABLE_COLUMNS = ('question', 'dataset', 'alpha', 'width', 'temperature', 'epochs', 'pair', 'student_a',
                     'student_b', 'n', 'acc_a', 'acc_b', 'both', 'expected', 'lift', 'p_value', 'phi',
                     'group_p_value', 'chance', 'teacher_independent_acc')
    PROFILE_VALUES = question_profiles(smoke={"similarity_epochs": 150, "permutations": 500, "students": 3},
                               quick={"similarity_epochs": 300, "permutations": 1000, "students": 3},
                               paper={"similarity_lr": 1e-4, "similarity_epochs": 2000})


@experiment(OverlapConfig)
def logit_vs_similarity_overlap(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q1: overlap of the held-out samples that logit ("soft") and similarity students get right.

    Per teacher one split, `students` soft and `students` similarity students. Similarity students
    get seeds of their own (setting "similarity"), so no soft-similarity pair shares an
    initialization, as no soft-soft pair does. One row per pair of students: dataset, pair,
    student_a, student_b, n, acc_a, acc_b, both, expected, lift, phi, p_value (permutation test of
    that pair) and group_p_value (see `overlap_rows`).
    """
    cfg = make_config(OverlapConfig, "logit_vs_similarity_overlap", profile, overrides)
    tasks = teachers(cfg)
    splits = splits_of(tasks, cfg)
    soft, _ = correct_sets(tasks, splits, cfg, "soft", soft_members(cfg), setting=(cfg.alphas[0],))
    sim, _ = correct_sets(tasks, splits, cfg, "similarity", member_grid(lr=(cfg.similarity_lr,), student=range(cfg.students)),
                          setting=(cfg.alphas[0], "similarity"), epochs=cfg.similarity_epochs)
    rows: list[dict] = []
    for k, task in enumerate(tasks):
        perms = permutation_matrix(len(splits[k][1]), cfg.permutations, derive_seed(cfg.seed, "shuffle", task.dataset))
        knobs = {"dataset": task.dataset, "alpha": cfg.alphas[0], "width": cfg.student_widths[0],
                 "temperature": cfg.temperatures[0], "epochs": cfg.epochs}
        rows += [{**knobs, **r, "chance": 1.0 / task.classes, "teacher_independent_acc": task.teacher_independent_acc}
                 for r in overlap_rows(soft[k], sim[k], perms)]
    return question_table(rows, "overlap", cfg)


def overlap_per_student(table: pd.DataFrame, pair: str, stat: str = "phi") -> pd.DataFrame:
    """Average `stat` over each student's pairs of type `pair`: one row per (dataset, student).

    For "soft-similarity" the student is the similarity student (its mean over the logit
    students); for within-kind pairs every student is averaged over its pairs with the others.
    """
    p = table[table["pair"] == pair]
    if pair == "soft-similarity":
        long = p.rename(columns={"student_b": "student"})[["dataset", "student", stat]]
    else:
        long = pd.concat([p.rename(columns={"student_a": "student"})[["dataset", "student", stat]],
                          p.rename(columns={"student_b": "student"})[["dataset", "student", stat]]])
    return long.groupby(["dataset", "student"], as_index=False)[stat].mean()


# --- 2. regularized teachers ---------------------------------------------------------------------


@dataclass(frozen=True)
class RegularizationConfig(RandomDataConfig):
    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    weight_decays: tuple = knob((0.0, 1e-3, 1e-2), list_of(real_interval(0, 1, "left")),
                                "teacher's L2 weight decay (Adam's, added to the gradient)")

    TABLE_COLUMNS = (*DISTILL_COLUMNS, 'question', 'weight_decay', 'teacher_logit_norm', 'teacher_top_prob',
                     'teacher_train_acc')
    PROFILE_VALUES = question_profiles(smoke={"weight_decays": (0.0, 1e-2)}, quick={"weight_decays": (0.0, 1e-2)})


def teacher_stats(task: MemorizationTask, temperature: float) -> dict:
    """How peaked a teacher's soft labels are: mean logit norm and mean top probability of sigma_T on D."""
    with torch.no_grad():
        probs = soft_targets(task.logits, temperature)  # (N, C)
    return {"teacher_logit_norm": float(task.logits.norm(dim=-1).mean()),
            "teacher_top_prob": float(probs.max(-1).values.mean()),
            "teacher_train_acc": float(task.teacher.train_acc.min())}


def _failed_row(task: MemorizationTask, knobs: dict) -> dict:
    """The one row of a teacher that did not memorize D: no student learns from it."""
    return {"dataset": task.dataset, **knobs, "teacher_memorized": False, "chance": 1.0 / task.classes,
            "teacher_train_acc": float(task.teacher.train_acc.min()), "test_acc": math.nan,
            "independent_acc": math.nan}


@experiment(RegularizationConfig)
def teacher_regularization(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q2: teachers trained with L2 weight decay under the config's teacher protocol.

    Every weight decay's teachers start from the same initializations on the same datasets, and
    their students from the same ones. One row per student (soft labels, the profile's T and lr)
    with weight_decay, teacher_memorized, teacher_train_acc, teacher_logit_norm, teacher_top_prob
    and the metrics; a teacher that ends below 100% on D gets one row with NaN metrics.
    """
    cfg = make_config(RegularizationConfig, "teacher_regularization", profile, overrides)
    rows: list[dict] = []
    for wd in cfg.weight_decays:
        tasks = teachers(cfg, require=False, weight_decay=wd)
        knobs = {"weight_decay": wd, "alpha": cfg.alphas[0]}
        rows += [_failed_row(t, knobs) for t in tasks if not t.memorized]
        ok = [t for t in tasks if t.memorized]
        if not ok:
            continue
        stats = {t.dataset: teacher_stats(t, cfg.temperatures[0]) for t in ok}
        for r in distill(ok, splits_of(ok, cfg), cfg=cfg, kind="soft", width=cfg.student_widths[0],
                         members=soft_members(cfg), setting=(cfg.alphas[0],)):
            rows.append({**r, **knobs, **stats[r["dataset"]]})
    return question_table(rows, "regularization", cfg)


# --- 3. architecture -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchitectureConfig(RandomDataConfig):
    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    activations: tuple = knob(("relu", "tanh"), list_of(one_of("relu", "tanh")),
                              "hidden activations of teacher and student (both the same)")
    depths: tuple = knob((1, 2, 3), list_of(int_range(1, 4)), "hidden layers of teacher and student (both the same)")
    width_factors: tuple = knob((0.5, 2.0), list_of(real_interval(0, math.inf)),
                                "student width / teacher width for the mismatched students")
    mismatch: bool = knob(True, BOOL, "also train students narrower, wider, shallower, deeper than the teacher")
    parts: tuple = knob(("activation", "depth", "mismatch"), list_of(one_of("activation", "depth", "mismatch")),
                        "which parts of the grid to train (e.g. only the activation part, for a blind re-test)")

    TABLE_COLUMNS = (*DISTILL_COLUMNS, 'question', 'part', 'variant', 'teacher_activation', 'teacher_depth',
                     'teacher_width', 'student_activation', 'student_depth', 'teacher_train_acc')
    PROFILE_VALUES = question_profiles()

    def check(self) -> None:
        super().check()
        if self.mismatch and self.hidden_layers < 2:
            self.fail("hidden_layers", f"must be >= 2 when mismatch=True (a shallower student needs a layer "
                      f"to lose). Got {self.hidden_layers!r} instead.")


def architecture_plan(cfg: ArchitectureConfig) -> list[tuple[str, str, tuple, tuple]]:
    """(part, variant, (teacher activation, depth), (student activation, depth, width)) of every panel."""
    ref_act, ref_depth, p = cfg.activation, cfg.hidden_layers, cfg.teacher_width
    other = "tanh" if ref_act == "relu" else "relu"
    plan = [("activation", a, (a, ref_depth), (a, ref_depth, p)) for a in cfg.activations]
    plan += [("depth", f"{d} hidden", (ref_act, d), (ref_act, d, p)) for d in cfg.depths]
    if cfg.mismatch and "mismatch" in cfg.parts:
        plan += [("mismatch", "matched", (ref_act, ref_depth), (ref_act, ref_depth, p))]
        plan += [("mismatch", "narrower" if f < 1 else "wider", (ref_act, ref_depth),
                  (ref_act, ref_depth, max(1, int(round(f * p))))) for f in cfg.width_factors]
        plan += [("mismatch", "shallower", (ref_act, ref_depth), (ref_act, ref_depth - 1, p)),
                 ("mismatch", "deeper", (ref_act, ref_depth), (ref_act, ref_depth + 1, p)),
                 ("mismatch", f"{other} student", (ref_act, ref_depth), (other, ref_depth, p))]
    return plan


@experiment(ArchitectureConfig)
def architecture(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q3: does the effect survive other activations, depths and teacher/student mismatch?

    part "activation": teacher and student share the activation (depth `hidden_layers`).
    part "depth": teacher and student share the depth (activation `activation`).
    part "mismatch": the reference teacher (activation, hidden_layers, teacher_width) and students
    that are matched, narrower/wider (width_factors), shallower/deeper (one layer), or use the
    other activation. A student configuration that appears in several parts (the reference does in
    all three) is trained once and reported in each. One row per (part, variant, student) with
    teacher_activation, teacher_depth, student_activation, student_depth, width and the metrics.
    """
    cfg = make_config(ArchitectureConfig, "architecture", profile, overrides)
    rows: list[dict] = []
    students: dict[tuple, list[dict]] = {}
    for part, variant, (t_act, t_depth), (s_act, s_depth, s_width) in architecture_plan(cfg):
        tasks = teachers(cfg, require=False, activation=t_act, hidden_layers=t_depth)
        knobs = {"part": part, "variant": variant, "teacher_activation": t_act, "teacher_depth": t_depth,
                 "teacher_width": cfg.teacher_width, "student_activation": s_act, "student_depth": s_depth,
                 "alpha": cfg.alphas[0]}
        rows += [{**_failed_row(t, knobs), "width": s_width} for t in tasks if not t.memorized]
        ok = [t for t in tasks if t.memorized]
        key = (t_act, t_depth, s_act, s_depth, s_width)
        if ok and key not in students:
            students[key] = distill(ok, splits_of(ok, cfg), cfg=cfg, kind="soft", width=s_width,
                                    members=soft_members(cfg), setting=(cfg.alphas[0], s_depth, s_act),
                                    hidden_layers=s_depth, activation=s_act)
        rows += [{**r, **knobs, "teacher_train_acc": 1.0} for r in students.get(key, [])]
    return question_table(rows, "architecture", cfg)


__all__ = [
    "logit_vs_similarity_overlap", "teacher_regularization", "architecture", "teachers", "splits_of",
    "soft_members", "correct_sets", "overlap_test", "overlap_rows", "overlap_per_student",
    "permutation_matrix", "phi", "teacher_stats", "architecture_plan",
]
