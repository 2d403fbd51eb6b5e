"""Fig 3 of the paper: students that see only the teacher's pairwise similarity scores.

Similarity students classify a held-out point by the label of its nearest student-part point in
their own embedding; logit students of the same teachers and splits train beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import epochs_knob, knob, list_of, make_config, real_interval
from memkd.experiments.random_data import (
    PAPER_PROFILE,
    QUICK_PROFILE,
    SMOKE_PROFILE,
    RandomDataConfig,
    alpha_width_settings,
)
from memkd.students import distill, member_grid
from memkd.tables import tidy


@dataclass(frozen=True)
class SimilarityConfig(RandomDataConfig):
    similarity_lrs: tuple = knob((1e-3,), list_of(real_interval(0, math.inf)), "similarity students' learning rates")
    similarity_epochs: int = epochs_knob(300, "similarity students'", "epochs")

    TABLE_COLUMNS = (*DISTILL_COLUMNS,)
    SIMILARITY_STUDENTS = True
    PROFILE_VALUES = {
        "smoke": {**SMOKE_PROFILE, "similarity_lrs": (3e-3,), "similarity_epochs": 150},
        "quick": {**QUICK_PROFILE, "alphas": (0.2, 0.4, 0.6, 0.8), "similarity_lrs": (1e-3,), "similarity_epochs": 300},
        "paper": {
            **PAPER_PROFILE,
            "student_widths": (500,),
            "alphas": (0.2, 0.4, 0.6, 0.8),
            "similarity_lrs": (1e-4,),
            "similarity_epochs": 2000,
        },
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
    for tasks, alpha, splits, width in alpha_width_settings(cfg):
        rows += [
            {**r, "alpha": alpha}
            for r in distill(
                tasks,
                splits,
                cfg=cfg,
                kind="similarity",
                width=width,
                members=sim_members,
                setting=(alpha,),
                epochs=cfg.similarity_epochs,
            )
        ]
        rows += [
            {**r, "alpha": alpha}
            for r in distill(tasks, splits, cfg=cfg, kind="soft", width=width, members=soft_members, setting=(alpha,))
        ]
    return tidy(rows, cfg=cfg)
