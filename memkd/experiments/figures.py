"""Figures 2, 3 and 5-7 of the paper (Fig 1 is in `toy`): a profile and overrides in, a tidy table out.

Each function validates every knob before training (ValueError naming the knob, the value and
what is allowed) and returns one row per trained student: its knobs as columns (dataset,
alpha, width, temperature, lr, student, ...) and its metrics (train_acc, test_acc,
memorized_acc, test_acc_class, independent_acc, ...). `chance` = 1 / classes is on every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import POS_INTS, epochs_knob, int_range, knob, list_of, make_config, one_of, real_interval
from memkd.pipeline import (
    PAPER_PROFILE, RandomDataConfig, distill, member_grid, memorization_tasks, split, tidy,
)
from memkd.losses import cut_tail, drop_class, soft_targets, zero_class_elsewhere

# The smallest setting that shows each effect in seconds (tests), a CPU book (quick), the paper.
# Teachers are the unit of replication: at least 3 per claim at smoke, 5 at quick and paper.
# Teacher budgets: the paper's protocol trains every teacher for its whole budget; the smoke and
# quick budgets are about 3x the epochs their teachers need to reach 100% (45 and 90, measured),
# the paper profile keeps the released code's 2000.
SMOKE = dict(input_dim=100, classes=10, per_class=20, teacher_width=50, teacher_lr=3e-3,
             teacher_epochs=150, student_widths=(50,), alphas=(0.6,), temperatures=(20.0,),
             lrs=(1e-2,), epochs=100, students=3, datasets=4)
QUICK = dict(input_dim=250, classes=50, per_class=25, teacher_width=125, teacher_lr=1e-3,
             teacher_epochs=300, student_widths=(125,), alphas=(0.6,), temperatures=(10.0,),
             lrs=(3e-3,), epochs=200, students=2, datasets=5)
PAPER = PAPER_PROFILE


def _settings(cfg: RandomDataConfig):
    """Train every dataset's teacher (one ensemble), then for every alpha and student width yield
    (tasks, alpha, splits, width): the loop figures 2, 3 and 5 share. The students of all datasets
    of one (alpha, width) train as one ensemble."""
    tasks = memorization_tasks(cfg)
    for alpha in cfg.alphas:
        splits = [split(task, alpha, cfg) for task in tasks]
        for width in cfg.student_widths:
            yield tasks, alpha, splits, width


# --- Fig 2: logit distillation -------------------------------------------------------------------


@dataclass(frozen=True)
class LogitDistillationConfig(RandomDataConfig):
    targets: str = knob("soft", one_of("soft", "hard"), "soft: sigma_T(teacher logits); hard: labels")

    PROFILE_VALUES = {
        "smoke": SMOKE,
        "quick": {**QUICK, "student_widths": (64, 250), "alphas": (0.2, 0.4, 0.6, 0.8)},
        "paper": {**PAPER, "student_widths": (250, 500, 750), "alphas": (0.1, 0.2, 0.4, 0.6, 0.8, 0.9)},
    }


@experiment(LogitDistillationConfig)
def logit_distillation(profile: str = "quick", targets: str = "soft", **overrides: Any) -> pd.DataFrame:
    """Fig 2: students learn from sigma_T(teacher logits) (or hard labels: `targets`, the rows'
    `kind`) on alpha of D."""
    cfg = make_config(LogitDistillationConfig, "logit_distillation", profile, {**overrides, "targets": targets})
    temps = cfg.temperatures if cfg.targets == "soft" else (math.nan,)
    members = member_grid(temperature=temps, lr=cfg.lrs, student=range(cfg.students))
    rows: list[dict] = []
    for tasks, alpha, splits, width in _settings(cfg):
        for r in distill(tasks, splits, cfg=cfg, kind=cfg.targets, width=width, members=members,
                         setting=(alpha,)):
            rows.append({**r, "alpha": alpha})
    return tidy(rows, cfg=cfg)


# --- Fig 3: similarity scores --------------------------------------------------------------------


@dataclass(frozen=True)
class SimilarityConfig(RandomDataConfig):
    similarity_lrs: tuple = knob((1e-3,), list_of(real_interval(0, math.inf)), "similarity students' learning rates")
    similarity_epochs: int = epochs_knob(300, "similarity students'", "epochs")

    TABLE_COLUMNS = (*DISTILL_COLUMNS, )
    PROFILE_VALUES = {
        "smoke": {**SMOKE, "similarity_lrs": (3e-3,), "similarity_epochs": 150},
        "quick": {**QUICK, "alphas": (0.2, 0.4, 0.6, 0.8), "similarity_lrs": (1e-3,),
                  "similarity_epochs": 300},
        "paper": {**PAPER, "student_widths": (500,), "alphas": (0.2, 0.4, 0.6, 0.8),
                  "similarity_lrs": (1e-4,), "similarity_epochs": 2000},
    }


@experiment(SimilarityConfig)
def similarity_distillation(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 3: students matching the teacher's pairwise cosine similarities, beside logit students.

    Similarity students classify by the nearest student-part sample in their embedding space.
    The `kind` column says "similarity" or "soft"; both learn from the same teachers and splits.
    """
    cfg = make_config(SimilarityConfig, "similarity_distillation", profile, overrides)
    sim_members = member_grid(temperature=(math.nan,), lr=cfg.similarity_lrs, student=range(cfg.students))
    soft_members = member_grid(temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
    rows: list[dict] = []
    for tasks, alpha, splits, width in _settings(cfg):
        rows += [{**r, "alpha": alpha} for r in distill(
            tasks, splits, cfg=cfg, kind="similarity", width=width, members=sim_members,
            setting=(alpha,), epochs=cfg.similarity_epochs)]
        rows += [{**r, "alpha": alpha} for r in distill(
            tasks, splits, cfg=cfg, kind="soft", width=width, members=soft_members, setting=(alpha,))]
    return tidy(rows, cfg=cfg)


# --- Fig 5: temperature x learning rate ----------------------------------------------------------


@dataclass(frozen=True)
class TemperatureLrConfig(RandomDataConfig):
    tested_temperature: float = knob(10.0, real_interval(0, math.inf),
                                     "the high T tested against T = 1, fixed in advance (one of temperatures)")
    tested_lr: float = knob(3e-3, real_interval(0, math.inf),
                            "the learning rate of that test, fixed in advance (one of lrs)")

    # The tested setting is each profile's own (T, lr) of figures 2, 3 and 7, fixed before any run.
    TABLE_COLUMNS = (*DISTILL_COLUMNS, 'epochs')
    PROFILE_VALUES = {
        "smoke": {**SMOKE, "temperatures": (1.0, 20.0), "lrs": (3e-3, 1e-2), "students": 2,
                  "tested_temperature": SMOKE["temperatures"][0], "tested_lr": SMOKE["lrs"][0]},
        # quick: 10 teachers (5 to choose a cell on, 5 to test it on) with one student each (it
        # starts from the same weights in every cell); about 45 s on 2 CPU cores
        "quick": {**QUICK, "alphas": (0.4,), "temperatures": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                  "lrs": (1e-3, 3e-3, 1e-2), "students": 1, "datasets": 10,
                  "tested_temperature": QUICK["temperatures"][0], "tested_lr": QUICK["lrs"][0]},
        "paper": {**PAPER, "student_widths": (750,), "alphas": (0.4,),
                  "temperatures": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
                  "lrs": (1e-5, 1e-4, 1e-3, 1e-2), "students": 5,
                  "tested_temperature": PAPER["temperatures"][0], "tested_lr": PAPER["lrs"][0]},
    }

    def check(self) -> None:
        super().check()
        for name, value, grid in (("tested_temperature", self.tested_temperature, self.temperatures),
                                  ("tested_lr", self.tested_lr, self.lrs)):
            if not any(math.isclose(value, g) for g in grid):
                self.fail(name, f"must be one of {grid!r} (the grid it is tested in). Got {value!r} instead.")


@experiment(TemperatureLrConfig)
def temperature_lr(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 5 (A.1): every (temperature, learning rate, seed) is one member of one ensemble.

    Student s of a dataset starts from the same initialization at every temperature and learning
    rate. `table.attrs["config"]` holds tested_temperature and tested_lr, the setting fixed in advance.
    """
    cfg = make_config(TemperatureLrConfig, "temperature_lr", profile, overrides)
    members = member_grid(temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
    rows: list[dict] = []
    for tasks, alpha, splits, width in _settings(cfg):
        rows += [{**r, "alpha": alpha, "epochs": cfg.epochs} for r in distill(
            tasks, splits, cfg=cfg, kind="soft", width=width, members=members, setting=(alpha,))]
    return tidy(rows, cfg=cfg)


# --- Fig 6: dataset composition ------------------------------------------------------------------


@dataclass(frozen=True)
class CompositionConfig(RandomDataConfig):
    class_counts: tuple = knob((10, 50), list_of(int_range(2)), "numbers of classes C (one panel each)")
    per_class_values: tuple = knob((5, 10, 20), list_of(int_range(2)), "samples per class (grid rows)")
    input_dims: tuple = knob((25, 100, 250), POS_INTS, "input dimensions D (grid columns)")

    TABLE_COLUMNS = (*DISTILL_COLUMNS, 'classes', 'per_class', 'input_dim', 'teacher_train_acc', 'ratio')
    PROFILE_VALUES = {
        "smoke": {**SMOKE, "class_counts": (10,), "per_class_values": (5, 10), "input_dims": (20, 50, 100),
                  "alphas": (0.4,), "students": 2, "datasets": 3, "teacher_epochs": 400},
        # quick: one panel (C = 10), four rows and six columns doubling d, 10 teachers per cell (5 to
        # choose on, 5 to test on); about a minute on 2 CPU cores; the paper profile has three panels
        "quick": {**QUICK, "class_counts": (10,), "per_class_values": (5, 10, 20, 40),
                  "input_dims": (5, 10, 20, 40, 80, 160), "alphas": (0.4,), "student_widths": (125,),
                  "teacher_width": 125, "students": 3, "teacher_epochs": 600, "datasets": 10},
        "paper": {**PAPER, "class_counts": (10, 50, 100), "per_class_values": (10, 20, 50, 100, 200),
                  "input_dims": (50, 100, 250, 500, 1000, 2000), "alphas": (0.4,),
                  "student_widths": (750,), "students": 5},
    }

    def check(self) -> None:
        from memkd.config import check_split

        if len(self.alphas) != 1:
            self.fail("alphas", f"must hold exactly one alpha for dataset_composition. Got {self.alphas!r} instead.")
        if len(self.student_widths) != 1:
            self.fail("student_widths", f"must hold exactly one width for dataset_composition. Got {self.student_widths!r} instead.")
        check_split(self, self.alphas, self.per_class_values)


@experiment(CompositionConfig)
def dataset_composition(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 6 (A.2): a grid over classes x per_class x input_dim, with `datasets` teachers per cell.

    A teacher that does not reach 100% gets one row with teacher_memorized=False and NaN metrics
    (no student learns from a failed teacher). `ratio` = test_acc / teacher_independent_acc.
    """
    cfg = make_config(CompositionConfig, "dataset_composition", profile, overrides)
    alpha, width = cfg.alphas[0], cfg.student_widths[0]
    members = member_grid(temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
    rows: list[dict] = []
    for classes in cfg.class_counts:
        for per_class in cfg.per_class_values:
            for input_dim in cfg.input_dims:
                knobs = {"classes": classes, "per_class": per_class, "input_dim": input_dim, "alpha": alpha}
                tasks = memorization_tasks(cfg, input_dim=input_dim, classes=classes, per_class=per_class,
                                           require_memorization=False)
                for task in tasks:
                    if not task.memorized:
                        rows.append({**knobs, "dataset": task.dataset, "width": width, "teacher_memorized": False,
                                     "teacher_train_acc": float(task.teacher.train_acc.min()),
                                     "chance": 1.0 / classes, "test_acc": math.nan})
                good = [t for t in tasks if t.memorized]
                if good:
                    for r in distill(good, [split(t, alpha, cfg) for t in good], cfg=cfg, kind="soft",
                                     width=width, members=members, setting=(alpha, classes, per_class, input_dim)):
                        rows.append({**r, **knobs, "teacher_train_acc": 1.0})
    return tidy(rows, ratio_to_trivial=True, cfg=cfg)


# --- Fig 7: logit surgery ------------------------------------------------------------------------


@dataclass(frozen=True)
class SurgeryConfig(RandomDataConfig):
    surgery_class: int = knob(0, int_range(0), "the class c that the surgery touches")
    tail_fractions: tuple = knob((0.02, 0.05, 0.1, 0.2, 0.5), list_of(real_interval(0, 1)),
                                 "fractions of each sample's smallest probabilities set to zero")

    TABLE_COLUMNS = (*DISTILL_COLUMNS, 'variant', 'tail_fraction', 'surgery_class')
    PROFILE_VALUES = {
        "smoke": {**SMOKE, "tail_fractions": (0.1, 0.5), "students": 2},
        # quick: 12 teachers with one student each (the class-c accuracy varies most from teacher to
        # teacher), students as wide as the teacher and four cuts: about 35 s on 2 CPU cores
        "quick": {**QUICK, "alphas": (0.6,), "student_widths": (125,), "datasets": 12, "students": 1,
                  "tail_fractions": (0.02, 0.05, 0.2, 0.5)},
        "paper": {**PAPER, "student_widths": (750,), "alphas": (0.6,),
                  "tail_fractions": (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)},
    }

    def check(self) -> None:
        super().check()
        if self.surgery_class >= self.classes:
            self.fail("surgery_class", f"must be an int in [0, {self.classes - 1}] (classes={self.classes}). "
                      f"Got {self.surgery_class!r} instead.")
        if len(self.alphas) != 1 or len(self.student_widths) != 1:
            self.fail("alphas", "and 'student_widths' must each hold one value for logit_surgery. "
                      f"Got {self.alphas!r} and {self.student_widths!r} instead.")


@experiment(SurgeryConfig)
def logit_surgery(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 7 (A.3): plain distillation against three ways of removing information.

    variant "plain"; "drop_class" (no class-c samples in the student's part); "zero_class"
    (sigma_T(z)_c set to 0 on samples not of class c); "cut_tail" with `tail_fraction` (the
    ceil(tail_fraction * C) smallest probabilities of each sample set to 0: by size, as the paper's
    text says, where the released code masks entries by class index). `test_acc_class` is the
    held-out accuracy on class c. Student s of a dataset starts from the same initialization in
    every variant, so comparisons with "plain" are paired by initialization.
    """
    cfg = make_config(SurgeryConfig, "logit_surgery", profile, overrides)
    c, alpha, width = cfg.surgery_class, cfg.alphas[0], cfg.student_widths[0]
    tasks = memorization_tasks(cfg)
    splits = [split(task, alpha, cfg) for task in tasks]
    variants = [("plain", 0.0), ("zero_class", 0.0)] + [("cut_tail", q) for q in cfg.tail_fractions]
    members = member_grid(variant=variants, temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
    flat = [{**{k: v for k, v in m.items() if k != "variant"}, "variant": m["variant"][0],
             "tail_fraction": m["variant"][1]} for m in members]
    targets = [torch.stack([_surgery_targets(task, tr, m, c) for m in flat]) for task, (tr, _) in zip(tasks, splits)]
    rows = distill(tasks, splits, cfg=cfg, kind="soft", width=width, members=flat, targets=targets,
                   setting=(alpha,), class_of_interest=c)
    dropped = member_grid(variant=("drop_class",), tail_fraction=(0.0,), temperature=cfg.temperatures,
                          lr=cfg.lrs, student=range(cfg.students))
    rows += distill(tasks, [(drop_class(tr, task.y, c), te) for task, (tr, te) in zip(tasks, splits)], cfg=cfg,
                    kind="soft", width=width, members=dropped, setting=(alpha,), class_of_interest=c)
    return tidy([{**r, "alpha": alpha, "surgery_class": c} for r in rows], cfg=cfg)


def _surgery_targets(task, train_idx: torch.Tensor, member: dict, c: int) -> torch.Tensor:
    """sigma_T(teacher logits) on the student's part (N_train, C) after the member's surgery."""
    probs = soft_targets(task.logits[train_idx], member["temperature"])
    if member["variant"] == "zero_class":
        return zero_class_elsewhere(probs, task.y[train_idx], c)
    if member["variant"] == "cut_tail":
        return cut_tail(probs, member["tail_fraction"])
    return probs
