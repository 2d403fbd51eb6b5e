"""Question 6 of chapter 09: teachers trained for the whole budget or stopped at their first 100%.

Both stops train from the same initializations; the rows record each teacher's first-100% epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import TEACHER_STOPS, knob, list_of, make_config, one_of
from memkd.experiments.random_data import RandomDataConfig
from memkd.students import distill
from memkd.experiments.open_questions import (
    ONE_ALPHA_ONE_WIDTH,
    question_profiles,
    question_table,
    soft_members,
    splits_of,
    teacher_stats,
    teachers,
)


@dataclass(frozen=True)
class ProtocolConfig(RandomDataConfig):
    teacher_stops: tuple = knob(
        TEACHER_STOPS,
        list_of(one_of(*TEACHER_STOPS)),
        "teacher protocols compared (budget: all teacher_epochs; first_perfect: stop at 100%)",
    )

    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    TABLE_COLUMNS = (
        *DISTILL_COLUMNS,
        "question",
        "teacher_epochs_run",
        "teacher_logit_norm",
        "teacher_top_prob",
        "teacher_train_acc",
    )
    PROFILE_VALUES = question_profiles(
        smoke={"temperatures": (2.0, 20.0)},
        quick={"temperatures": (2.0, 5.0, 20.0)},
        paper={"temperatures": (2.0, 5.0, 20.0)},
    )


@experiment(ProtocolConfig)
def teacher_protocol(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q6: what the teacher protocol changes. For each of `teacher_stops` the same datasets' teachers
    (same initializations) are trained, and students distilled at every temperature, on the same
    splits from the same initializations. One row per student: teacher_stop, temperature, student,
    the metrics and the teacher's teacher_first_perfect (first epoch at 100%), teacher_epochs_run,
    teacher_logit_norm and teacher_top_prob (at the student's T).
    """
    cfg = make_config(ProtocolConfig, "teacher_protocol", profile, overrides)
    rows: list[dict] = []
    for stop in cfg.teacher_stops:
        run = replace(cfg, teacher_stop=stop)
        tasks = teachers(run)
        info = {
            task.dataset: {
                "teacher_first_perfect": int(task.teacher.epochs_to_memorize[0]),
                "teacher_epochs_run": int(task.teacher.epochs_run),
            }
            for task in tasks
        }
        top = {
            (task.dataset, temperature): teacher_stats(task, temperature)
            for task in tasks
            for temperature in cfg.temperatures
        }
        for r in distill(
            tasks,
            splits_of(tasks, cfg),
            cfg=run,
            kind="soft",
            width=cfg.student_widths[0],
            members=soft_members(cfg, cfg.temperatures),
            setting=(cfg.alphas[0],),
        ):
            rows.append({**r, "alpha": cfg.alphas[0], **info[r["dataset"]], **top[(r["dataset"], r["temperature"])]})
    return question_table(rows, "protocol", cfg)
