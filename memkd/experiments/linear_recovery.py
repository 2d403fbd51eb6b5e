"""The recovery threshold of bias-free linear teachers (the published version's Fig 3, chapter 11).

`linear_recovery` trains `teachers` teachers at every size N/d (binary: one logit, or multinomial),
then students on the first floor(rho * n) points of each class for every rho: the least-squares fit
to the teacher's logits and the soft-label student (Adam), each also within-class shuffled. One row
per student. `student_grid` is the engine both this experiment and `temperature_window` use.

Shape letters: see `memkd.models.linear`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor

from memkd.config import (
    BOOL,
    ExperimentConfig,
    classes_knob,
    epochs_knob,
    fresh_knob,
    input_dim_knob,
    knob,
    list_of,
    lr_knob,
    make_config,
    one_of,
    real_interval,
    rhos_knob,
    shuffle_knob,
    soften_student_knob,
    students_knob,
    teacher_epochs_knob,
    teachers_knob,
    temperatures_knob,
)
from memkd.device import resolve_device
from memkd.data.linear import LinearData, make_linear_data, student_mask, within_class_permutation
from memkd.declare import experiment
from memkd.metrics import recovery_metrics, teacher_accuracy
from memkd.distillation import train_students, train_teacher
from memkd.models.linear import (
    DTYPES,
    STUDENT_KINDS,
    LinearFamily,
    class_logits,
    least_squares,
    linear_forward,
    linear_logits,
    soft_labels,
    solve_soft_labels,
)
from memkd.seeds import derive_seed
from memkd.tables import TEACHER_ID

RHOS = list_of(real_interval(0, 1))
SIZES = list_of(real_interval(0, 100))
KINDS = list_of(one_of(*STUDENT_KINDS))
DTYPE_NAMES = list_of(one_of(*DTYPES))


def dtype_knob() -> Any:
    """The one precision of a linear experiment's teachers, soft labels and students."""
    return knob("float32", one_of(*DTYPES), "precision of teachers, soft labels and students")


# The columns of one row of `student_grid` (one student), shared by both linear experiments.
LINEAR_COLUMNS = (
    "experiment",
    "dataset",
    "teacher",
    "n_over_d",
    "input_dim",
    "classes",
    "outputs",
    "n_memorized",
    "n_student",
    "rho",
    "rho_n_over_d",
    "student",
    "solver",
    "shuffled",
    "temperature",
    "soften_student",
    "dtype",
    "student_seed",
    "epochs",
    "lr",
    "teacher_train_acc",
    "teacher_perfect",
    "train_acc",
    "test_acc",
    "agreement_fresh",
    "logit_error",
    "chance",
)


def teacher_keys(seed: int, table: pd.DataFrame) -> pd.Series:
    """teacher_id for the linear tables: "{seed}:C{classes}/{k}/{N/d}" (teacher k of one size and C is
    its own dataset, so `dataset` alone repeats across sizes and class counts)."""
    return f"{seed}:C" + table["classes"].astype(str) + "/" + table["teacher"].astype(str)


@dataclass(frozen=True)
class LinearConfig(ExperimentConfig):
    """Knobs shared by the linear-teacher experiments."""

    input_dim: int = input_dim_knob(100, least=2)
    n_over_d: tuple = knob((0.5, 1.0, 1.5), SIZES, "sizes N/d of the memorized set (N = classes * n per class)")
    rhos: tuple = rhos_knob((0.8,), "the student gets the first floor(rho * n) points of each class")
    shuffle: bool = shuffle_knob(" of every student")
    soften_student: bool = soften_student_knob("the text's convention")
    teacher_epochs: int = teacher_epochs_knob(
        500, "full-batch Adam epoch", " (the released scripts: 10,000)", must_memorize=False
    )
    teacher_lr: float = lr_knob(1e-2, "teachers'", note=" (released: 1e-3)")
    epochs: int = epochs_knob(300, "soft-label students'", "Adam epochs", " (released: 10,000)")
    lr: float = lr_knob(5e-2, "soft-label students'", note=" (released: 1e-4)")
    seeds_per_setting: int = students_knob(1, "teacher and setting", "soft-label ")
    teachers: int = teachers_knob(5, " per size")
    fresh: int = fresh_knob(1000, note=" per teacher on which agreement is measured")

    TABLE_COLUMNS = LINEAR_COLUMNS
    # what these columns hold in the linear rows (memkd/columns.yml gives every experiment's meaning)
    COLUMN_NOTES = {
        "teacher_id": "the teacher, unique across seeds, class counts and sizes (the unit of replication): "
        '"{seed}:C{classes}/{k}/{N/d}", e.g. "0:C2/0/0.8": teacher k of C = 2 at N/d = 0.8',
        "student": 'the student\'s kind: "least_squares" (pseudo-inverse fit to the logits) or "soft_labels" '
        "(trained on the soft labels, by the solver in `solver`); its seed index is `student_seed`",
    }

    def per_class(self, classes: int) -> list[int]:
        """n per class of each size: round(N/d * d / C), at least 2 (one seen, one held out)."""
        sizes = [max(2, round(r * self.input_dim / classes)) for r in self.n_over_d]
        return sizes

    def check_sizes(self, classes: int) -> None:
        """Every size and rho must leave each class at least one seen and one held-out point."""
        for r, n in zip(self.n_over_d, self.per_class(classes)):
            for rho in self.rhos:
                seen = math.floor(rho * n + 1e-9)
                if not 1 <= seen <= n - 1:
                    self.fail(
                        "rhos",
                        f"contains {rho}, which with n_over_d={r} (n = {n} per class, C = {classes}) "
                        f"gives the student {seen} of {n} points of each class: it needs at least one seen "
                        "and one held-out point. Choose a larger size or rho further from 0 and 1.",
                    )


@dataclass(frozen=True)
class RecoveryConfig(LinearConfig):
    classes: int = classes_knob(2)
    student_kinds: tuple = knob(
        ("least_squares", "soft_labels"),
        KINDS,
        "which students to train: least_squares (the pseudo-inverse fit to the teacher's "
        "logits) and/or soft_labels (Adam on the soft labels); the rows' `student` column",
    )
    binary: bool = knob(True, BOOL, "one logit for C = 2 (the released Fig 3); False: C logits")
    temperatures: tuple = temperatures_knob((10.0,), " (the soft-label students)")
    dtype: str = dtype_knob()

    RENAMED = {
        "students": "use 'student_kinds' for the kinds of student to train ('students' counts student "
        "seeds in the other experiments; here the seeds are 'seeds_per_setting')"
    }

    PROFILE_VALUES = {
        "smoke": {
            "input_dim": 20,
            "n_over_d": (0.8, 1.4),
            "rhos": (0.3, 0.9),
            "teachers": 2,
            "teacher_epochs": 300,
            "epochs": 200,
            "fresh": 200,
        },
        # 11 teachers per size (each teacher is the unit of a claim): about 33 with a cell above the line, which
        # "perfect above the line" needs after Holm (0.8 ** 30 < 0.05 / 35; planned from a pilot at seed 1);
        # 9 sizes x 12 rhos around the line. The teachers' 2,000 epochs at lr 3e-2 memorize 3 of 4 random
        # labelings at N/d = 1.8 (93% are separable), against 1 of 6 at 500 epochs and lr 1e-2 (probe, Dec 2026)
        "quick": {
            "input_dim": 100,
            "n_over_d": (0.4, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.4),
            "rhos": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 0.95),
            "teachers": 11,
            "teacher_epochs": 2000,
            "teacher_lr": 3e-2,
        },
        # the released Fig 3: d = 200, n per class = a * d for 50 a in [0.2, 3.5], 50 rhos in [0.05, 0.95]
        "paper": {
            "input_dim": 200,
            "n_over_d": tuple(round(2 * (0.2 + i * 3.3 / 49), 4) for i in range(50)),
            "rhos": tuple(round(0.05 + i * 0.9 / 49, 4) for i in range(50)),
            "teachers": 5,
            "teacher_epochs": 10_000,
            "teacher_lr": 1e-3,
            "epochs": 10_000,
            "lr": 1e-4,
        },
    }

    def check(self) -> None:
        if self.binary and self.classes != 2:
            self.fail(
                "binary", f"needs classes=2 (one logit separates two classes). Got classes={self.classes} instead."
            )
        self.check_sizes(self.classes)


def train_teachers(
    data: LinearData, outputs: int, seeds: Sequence[int], epochs: int, lr: float, dtype: torch.dtype = torch.float32
) -> Tensor:
    """One bias-free linear teacher per dataset, through the one protocol (`memkd.distillation.train_teacher`:
    cross-entropy to its labels on its own points, full-batch Adam, the budget kept whatever it reaches:
    the caller measures and flags a teacher below 100%).

    outputs : 1 (binary, one logit) or C; seeds : one per dataset. Returns the weights (K, D, O) in `dtype`.
    """
    k, _, d = data.x.shape
    teacher = train_teacher(
        data.x.to(dtype),
        data.y,
        LinearFamily(d, outputs, k, dtype),
        lr=lr,
        max_epochs=epochs,
        seed=list(seeds),
        require_memorization=False,
        mask=data.valid,
    )
    return teacher.model.weight.detach()[:, :, 0]


def teachers_for(
    cfg: LinearConfig, classes: int, outputs: int, device: torch.device, dtype: torch.dtype
) -> tuple[LinearData, Tensor, list[tuple[int, float]]]:
    """Draw `cfg.teachers` datasets at every size and train their teachers as one ensemble.

    Returns (data (K = datasets * sizes, float64), teacher weights (K, D, O) in `dtype`, and the
    (dataset, N/d) of every teacher, in order).
    """
    ids = [(k, r) for r in cfg.n_over_d for k in range(cfg.teachers)]
    pcs = [pc for pc in cfg.per_class(classes) for _ in range(cfg.teachers)]
    data = make_linear_data(
        pcs,
        classes,
        cfg.input_dim,
        [derive_seed(cfg.seed, "data", k, r, cfg.input_dim, classes) for k, r in ids],
        cfg.fresh,
        device,
    )
    seeds = [derive_seed(cfg.seed, "teacher", k, r, cfg.input_dim, classes) for k, r in ids]
    w = train_teachers(data, outputs, seeds, cfg.teacher_epochs, cfg.teacher_lr, dtype)
    return data, w, ids


def student_grid(
    cfg: LinearConfig,
    data: LinearData,
    w_teacher: Tensor,
    ids: Sequence[tuple[int, float]],
    *,
    kind: str,
    temperatures: Sequence[float],
    dtype: str,
    shuffled: bool,
) -> list[dict]:
    """Students of one kind for every teacher x rho x temperature (x seed), as one ensemble.

    The soft labels are stored in `dtype` (`memkd.models.linear.soft_labels`); the soft-label student trains
    in `dtype`; least squares runs in float64 for float64, else float32 (no bfloat16 pseudo-inverse).
    One dict per student: the knobs and `memkd.metrics.recovery_metrics`.
    """
    seeds = cfg.seeds_per_setting if kind == "soft_labels" else 1
    temperatures = [1.0] if kind == "least_squares" else list(temperatures)
    setting = [(rho, temperature, s) for rho in cfg.rhos for temperature in temperatures for s in range(seeds)]
    k_all, m = len(ids), len(setting)
    device, outputs = data.x.device, w_teacher.shape[-1]
    mask = student_mask(data, [rho for rho, _, _ in setting])  # (K, M, N)
    temperature = torch.tensor(
        [[temperature for _, temperature, _ in setting]] * k_all, dtype=torch.float64, device=device
    )  # (K, M)
    torch_dtype = DTYPES[dtype]
    if kind == "least_squares":
        solve_dtype = torch.float64 if dtype == "float64" else torch.float32
        targets = linear_forward(w_teacher.to(solve_dtype).unsqueeze(2), data.x.to(solve_dtype)).expand(-1, m, -1, -1)
    else:
        targets = soft_labels(w_teacher, data.x, temperature, torch_dtype)  # (K, M, N, C)
    if shuffled:
        perm = within_class_permutation(
            data, mask, [derive_seed(cfg.seed, "shuffle", k, r, kind, *st) for k, r in ids for st in setting]
        )
        targets = targets.gather(2, perm.unsqueeze(-1).expand(*perm.shape, targets.shape[-1]))
    if kind == "least_squares":
        w = least_squares(data.x.to(solve_dtype), targets, mask)
        fit_to, scale = class_logits(targets), torch.ones_like(temperature)
    elif kind == "soft_labels_solved":
        w = solve_soft_labels(data.x, targets, mask, outputs)
        fit_to, scale = targets, 1 / temperature
    else:
        init = [
            derive_seed(cfg.seed, "student", k, r, "linear", rho, temperature, s)
            for k, r in ids
            for rho, temperature, s in setting
        ]
        n = data.x.shape[1]
        model, _ = train_students(
            data.x.to(torch_dtype),
            targets.reshape(k_all * m, n, -1),
            kind="soft",
            members=k_all * m,
            lrs=cfg.lr,
            epochs=cfg.epochs,
            family=LinearFamily(cfg.input_dim, outputs, k_all, torch_dtype),
            temperatures=temperature.to(torch_dtype).flatten(),
            soften_student=cfg.soften_student,
            seed=init,
            mask=mask.reshape(k_all * m, n),
        )  # members (E = K * M, ...)
        w = model.weight.detach()
        fit_to, scale = targets, (torch.ones_like(temperature) if cfg.soften_student else 1 / temperature)
    measured = recovery_metrics(
        linear_logits(w, data.x),
        linear_logits(w, data.fresh),
        linear_logits(w_teacher, data.fresh),
        data.y,
        data.valid,
        mask,
        fit_to,
        scale,
    )
    metrics = {key: v.cpu() for key, v in measured.items()}
    teacher_acc = teacher_accuracy(linear_logits(w_teacher, data.x)[:, 0], data.y, data.valid).cpu()
    n_seen = mask.sum(-1).cpu()  # (K, M)
    rows = []
    for i, (k, r) in enumerate(ids):
        n = data.classes * data.per_class[i]
        for j, (rho, _, s) in enumerate(setting):
            rows.append(
                {
                    "dataset": k,
                    "teacher": f"{k}/{r:g}",
                    "n_over_d": r,
                    "input_dim": cfg.input_dim,
                    "classes": data.classes,
                    "outputs": outputs,
                    "n_memorized": n,
                    "n_student": int(n_seen[i, j]),
                    "rho": rho,
                    "rho_n_over_d": int(n_seen[i, j]) / cfg.input_dim,
                    "student": "soft_labels" if kind == "soft_labels_solved" else kind,
                    "solver": {"least_squares": "pinv", "soft_labels": "adam", "soft_labels_solved": "exact"}[kind],
                    "shuffled": shuffled,
                    "temperature": setting[j][1] if kind != "least_squares" else float("nan"),
                    "soften_student": cfg.soften_student if kind == "soft_labels" else False,
                    "dtype": dtype if kind != "least_squares" else str(solve_dtype).replace("torch.", ""),
                    "student_seed": s,
                    "epochs": cfg.epochs if kind == "soft_labels" else 0,
                    "lr": cfg.lr if kind == "soft_labels" else 0.0,
                    "teacher_train_acc": float(teacher_acc[i]),
                    "teacher_perfect": bool(teacher_acc[i] == 1.0),
                    **{key: float(v[i, j]) for key, v in metrics.items()},
                }
            )
    return rows


def linear_table(
    rows: list[dict], experiment_name: str, cfg: LinearConfig, chance: float | None = None
) -> pd.DataFrame:
    """The tidy table of a linear experiment from its rows (one per student): its name and teacher ids first,
    chance (1 / C of each row's `classes`, or `chance` where given) and the validated config in attrs."""
    from memkd.tables import config_dict

    table = pd.DataFrame(rows)
    table.insert(0, "experiment", experiment_name)
    table.insert(0, TEACHER_ID, teacher_keys(cfg.seed, table))
    table["chance"] = 1.0 / table["classes"] if chance is None else chance
    table.attrs["config"] = config_dict(cfg)
    return table


@experiment(RecoveryConfig)
def linear_recovery(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """The released Fig 3 over (N/d, rho): one row per student (see `student_grid`'s columns).

    Teachers train in `dtype` (float32 in the released code); `teachers` teachers per size are the
    unit of replication. Cells whose teacher is below 100% are kept, flagged by `teacher_perfect`
    (the released analysis drops them).
    """

    cfg = make_config(RecoveryConfig, "linear_recovery", profile, overrides)
    device = resolve_device(cfg.device, cfg.experiment)
    outputs = 1 if cfg.binary else cfg.classes
    data, w, ids = teachers_for(cfg, cfg.classes, outputs, device, DTYPES[cfg.dtype])
    rows: list[dict] = []
    for kind in cfg.student_kinds:
        for shuffled in (False, True) if cfg.shuffle else (False,):
            rows += student_grid(
                cfg, data, w, ids, kind=kind, temperatures=cfg.temperatures, dtype=cfg.dtype, shuffled=shuffled
            )
    return linear_table(rows, "linear_recovery", cfg, chance=1.0 / cfg.classes)


# --- the counting argument and the analysis of the map --------------------------------------------


def counting_curve(
    input_dim: int = 20,
    classes: Sequence[int] = (2, 10),
    temperatures: Sequence[float] = (1.0, 30.0),
    draws: int = 8,
    seed: int = 0,
) -> pd.DataFrame:
    """The counting argument in float64: `draws` random bias-free teachers W (D, C), each solved exactly
    from its soft labels softmax(x W / T) on the first n = 1 .. 2D of its points. One row per (C, T,
    draw, n): n_over_d and logit_error (relative error of the recovered class-centered logits on fresh
    inputs). No training: n = D soft-labelled points pin W down whatever C and T; below D the
    minimum-norm solution keeps only W's part in the span of the n points (error about sqrt(1 - n/D))."""
    rows = []
    n_max, ns = 2 * input_dim, list(range(1, 2 * input_dim + 1))
    for c in classes:
        gen = torch.Generator().manual_seed(derive_seed(seed, "probe", "counting", input_dim, c))
        w = torch.randn(draws, input_dim, c, generator=gen, dtype=torch.float64)  # (K = draws, D, C)
        x = torch.randn(draws, n_max, input_dim, generator=gen, dtype=torch.float64)
        data = LinearData(
            x,
            torch.zeros(draws, n_max, dtype=torch.int64),
            torch.ones(draws, n_max, dtype=torch.bool),
            torch.randn(draws, 500, input_dim, generator=gen, dtype=torch.float64),
            [n_max] * draws,
            1,
        )
        mask = (torch.arange(n_max).view(1, 1, -1) < torch.tensor(ns).view(1, -1, 1)).expand(draws, -1, -1)  # (K, M, N)
        for temperature in temperatures:
            maps = (draws, len(ns))  # (K, M): one T for every map
            probs = soft_labels(w, x, torch.full(maps, float(temperature), dtype=torch.float64), torch.float64)
            solved = solve_soft_labels(x, probs, mask, c)
            err = recovery_metrics(
                linear_logits(solved, x),
                linear_logits(solved, data.fresh),
                linear_logits(w, data.fresh),
                data.y,
                data.valid,
                mask,
                None,
                torch.full(maps, 1 / float(temperature), dtype=torch.float64),
            )["logit_error"]
            rows += [
                {
                    "classes": c,
                    "temperature": temperature,
                    "draw": k,
                    "n_student": n,
                    "n_over_d": n / input_dim,
                    "logit_error": float(err[k, j]),
                }
                for k in range(draws)
                for j, n in enumerate(ns)
            ]
    return pd.DataFrame(rows)


def eligible(table: pd.DataFrame) -> pd.DataFrame:
    """Cells whose teacher memorized its data (the released analysis keeps only these), with
    `above` = rho * N >= d and `perfect` = held-out accuracy exactly 1."""
    ok = table[table["teacher_perfect"]].copy()
    ok["above"] = ok["n_student"] >= ok["input_dim"]
    ok["perfect"] = ok["test_acc"] == 1.0
    return ok


def threshold_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per student kind, solver, shuffle and side of the line: cells, teachers, share of perfect cells,
    mean held-out accuracy and agreement on fresh inputs (eligible cells only)."""
    ok = eligible(table)
    keys = [k for k in ("student", "solver", "dtype", "temperature", "shuffled", "above") if k in ok]
    keys = [k for k in keys if ok[k].nunique(dropna=False) > 1 or k in ("student", "shuffled", "above")]
    return (
        ok.groupby(keys, dropna=False)
        .agg(
            cells=("perfect", "size"),
            teachers=("teacher", "nunique"),
            perfect=("perfect", "mean"),
            test_acc=("test_acc", "mean"),
            agreement_fresh=("agreement_fresh", "mean"),
        )
        .reset_index()
    )


def per_teacher(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (teacher, student kind, solver, shuffled) over its eligible cells: all_perfect_above
    (every cell above the line perfect; NaN if it has none), acc_below (mean held-out accuracy below
    the line) and slope_below (least-squares slope of held-out accuracy against rho * N / d below the
    line; NaN with fewer than 2 such cells)."""
    import numpy as np

    rows = []
    for key, part in eligible(table).groupby(["teacher", "dataset", "n_over_d", "student", "solver", "shuffled"]):
        above, below = part[part["above"]], part[~part["above"]]
        slope = (
            float(np.polyfit(below["rho_n_over_d"], below["test_acc"], 1)[0])
            if below["rho_n_over_d"].nunique() >= 2
            else float("nan")
        )
        rows.append(
            {
                **dict(zip(["teacher", "dataset", "n_over_d", "student", "solver", "shuffled"], key)),
                "cells_above": len(above),
                "all_perfect_above": bool(above["perfect"].all()) if len(above) else None,
                "acc_below": float(below["test_acc"].mean()) if len(below) else float("nan"),
                "acc_above": float(above["test_acc"].mean()) if len(above) else float("nan"),
                "acc_all": float(part["test_acc"].mean()),
                "slope_below": slope,
            }
        )
    return pd.DataFrame(rows)


def teacher_capacity(table: pd.DataFrame) -> pd.DataFrame:
    """Per size N/d (and C): the teachers, how many memorized their data, and their mean training accuracy."""
    keys = [k for k in ("classes", "n_over_d") if k in table]
    one = table.drop_duplicates(keys + ["teacher"])
    return (
        one.groupby(keys)
        .agg(
            teachers=("teacher", "nunique"),
            perfect=("teacher_perfect", "sum"),
            teacher_train_acc=("teacher_train_acc", "mean"),
        )
        .reset_index()
    )


__all__ = [
    "LinearConfig",
    "RecoveryConfig",
    "dtype_knob",
    "linear_recovery",
    "linear_table",
    "student_grid",
    "teachers_for",
    "counting_curve",
    "eligible",
    "threshold_summary",
    "per_teacher",
    "teacher_capacity",
]


def perfect_teachers(teach: pd.DataFrame, student: str) -> tuple[int, int]:
    """(teachers whose every cell above the line is perfect, teachers with a cell above the line) for one
    student kind, unshuffled; `teach` is `per_teacher(table)`."""
    part = teach[(teach.student == student) & ~teach.shuffled.astype(bool)]
    part = part[part.cells_above > 0]
    return int(part.all_perfect_above.astype(bool).sum()), len(part)
