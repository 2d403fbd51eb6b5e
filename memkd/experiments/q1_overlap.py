"""Question 1 of chapter 09: do logit and similarity students get the same held-out samples right?

One row per pair of students of one teacher; the permutation test of two groups' correct sets is
`memkd.metrics.overlap_test`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from memkd.declare import experiment
from memkd.config import int_range, knob, lr_knob, epochs_knob, make_config
from memkd.experiments.random_data import RandomDataConfig
from memkd.students import member_grid
from memkd.metrics import overlap_test, permutation_matrix, phi
from memkd.seeds import derive_seed
from memkd.experiments.open_questions import (
    ONE_ALPHA_ONE_WIDTH,
    correct_sets,
    question_profiles,
    question_table,
    soft_members,
    splits_of,
    teachers,
)


def overlap_rows(soft: np.ndarray, sim: np.ndarray, perms: np.ndarray) -> list[dict]:
    """One row per pair of students of one teacher: soft (M, N_te) and similarity (M, N_te) correct
    sets. pair is "soft-soft", "soft-similarity" or "similarity-similarity"; group_p_value is the
    teacher's joint test of that pair type (for within-kind pairs, the first half against the second)."""
    half = len(soft) // 2
    groups = {
        "soft-soft": (soft, soft, soft[:half], soft[half:]),
        "soft-similarity": (soft, sim, soft, sim),
        "similarity-similarity": (sim, sim, sim[:half], sim[half:]),
    }
    rows = []
    for pair, (a, b, ga, gb) in groups.items():
        group_p = overlap_test(ga, gb, perms=perms)["p_value"] if len(ga) and len(gb) else math.nan
        for i in range(len(a)):
            for j in range(len(b)):
                if a is b and j <= i:
                    continue
                rows.append(
                    {
                        "pair": pair,
                        "student_a": i,
                        "student_b": j,
                        **overlap_test(a[i], b[j], perms=perms),
                        "phi": phi(a[i], b[j]),
                        "group_p_value": group_p,
                    }
                )
    return rows


@dataclass(frozen=True)
class OverlapConfig(RandomDataConfig):
    similarity_lr: float = lr_knob(3e-3, "similarity students'")
    similarity_epochs: int = epochs_knob(300, "similarity students'", "epochs")
    permutations: int = knob(2000, int_range(100), "permutations of each overlap test")

    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    TABLE_COLUMNS = (
        "question",
        "dataset",
        "alpha",
        "width",
        "temperature",
        "epochs",
        "pair",
        "student_a",
        "student_b",
        "n",
        "acc_a",
        "acc_b",
        "both",
        "expected",
        "lift",
        "p_value",
        "phi",
        "group_p_value",
        "chance",
        "teacher_independent_acc",
    )
    SIMILARITY_STUDENTS = True
    PROFILE_VALUES = question_profiles(
        smoke={"similarity_epochs": 150, "permutations": 500, "students": 3},
        quick={"similarity_epochs": 300, "permutations": 1000, "students": 3},
        paper={"similarity_lr": 1e-4, "similarity_epochs": 2000},
    )


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
    sim, _ = correct_sets(
        tasks,
        splits,
        cfg,
        "similarity",
        member_grid(lr=(cfg.similarity_lr,), student=range(cfg.students)),
        setting=(cfg.alphas[0], "similarity"),
        epochs=cfg.similarity_epochs,
    )
    rows: list[dict] = []
    for k, task in enumerate(tasks):
        perms = permutation_matrix(len(splits[k][1]), cfg.permutations, derive_seed(cfg.seed, "shuffle", task.dataset))
        knobs = {
            "dataset": task.dataset,
            "alpha": cfg.alphas[0],
            "width": cfg.student_widths[0],
            "temperature": cfg.temperatures[0],
            "epochs": cfg.epochs,
        }
        rows += [
            {**knobs, **r, "chance": 1.0 / task.classes, "teacher_independent_acc": task.teacher_independent_acc}
            for r in overlap_rows(soft[k], sim[k], perms)
        ]
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
        long = pd.concat(
            [
                p.rename(columns={"student_a": "student"})[["dataset", "student", stat]],
                p.rename(columns={"student_b": "student"})[["dataset", "student", stat]],
            ]
        )
    return long.groupby(["dataset", "student"], as_index=False)[stat].mean()
