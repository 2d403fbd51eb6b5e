"""Question 4 of chapter 09: the temperature convention (the student's logits softened by T or not).

The paper's text softens the student's logits too; the released code does not (`soften_student`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import make_config
from memkd.experiments.random_data import RandomDataConfig
from memkd.students import distill
from memkd.experiments.open_questions import (
    ONE_ALPHA_ONE_WIDTH,
    question_profiles,
    question_table,
    soft_members,
    splits_of,
    teachers,
)


@dataclass(frozen=True)
class ConventionConfig(RandomDataConfig):
    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    TABLE_COLUMNS = (*DISTILL_COLUMNS, "question", "soften_student")
    PROFILE_VALUES = question_profiles(
        smoke={"temperatures": (1.0, 20.0)},
        quick={"temperatures": (1.0, 5.0, 30.0)},
        paper={"temperatures": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)},
    )


@experiment(ConventionConfig)
def temperature_convention(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q4: soften_student False (the released code, the book's choice) vs True (the paper's text).

    Same teachers, splits and student initializations for both conventions at every temperature.
    """
    cfg = make_config(ConventionConfig, "temperature_convention", profile, overrides)
    tasks = teachers(cfg)
    splits = splits_of(tasks, cfg)
    rows: list[dict] = []
    for soften in (False, True):
        for r in distill(
            tasks,
            splits,
            cfg=replace(cfg, soften_student=soften),
            kind="soft",
            width=cfg.student_widths[0],
            members=soft_members(cfg, cfg.temperatures),
            setting=(cfg.alphas[0],),
        ):
            rows.append({**r, "soften_student": soften, "alpha": cfg.alphas[0]})
    return question_table(rows, "convention", cfg)
