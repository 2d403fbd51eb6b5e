"""Question 2 of chapter 09: teachers trained with weight decay.

Every weight decay's teachers start from the same initializations on the same datasets; a teacher
that ends below 100% gets one row with NaN metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import make_config, weight_decays_knob
from memkd.experiments.random_data import RandomDataConfig
from memkd.students import distill
from memkd.experiments.open_questions import (
    ONE_ALPHA_ONE_WIDTH,
    failed_teacher_row,
    question_profiles,
    question_table,
    soft_members,
    splits_of,
    teacher_stats,
    teachers,
)


@dataclass(frozen=True)
class RegularizationConfig(RandomDataConfig):
    weight_decays: tuple = weight_decays_knob((0.0, 1e-3, 1e-2))

    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    TABLE_COLUMNS = (
        *DISTILL_COLUMNS,
        "question",
        "weight_decay",
        "teacher_logit_norm",
        "teacher_top_prob",
        "teacher_train_acc",
    )
    PROFILE_VALUES = question_profiles(smoke={"weight_decays": (0.0, 1e-2)}, quick={"weight_decays": (0.0, 1e-2)})


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
        rows += [failed_teacher_row(t, knobs) for t in tasks if not t.memorized]
        ok = [t for t in tasks if t.memorized]
        if not ok:
            continue
        stats = {t.dataset: teacher_stats(t, cfg.temperatures[0]) for t in ok}
        for r in distill(
            ok,
            splits_of(ok, cfg),
            cfg=cfg,
            kind="soft",
            width=cfg.student_widths[0],
            members=soft_members(cfg),
            setting=(cfg.alphas[0],),
        ):
            rows.append({**r, **knobs, **stats[r["dataset"]]})
    return question_table(rows, "regularization", cfg)
