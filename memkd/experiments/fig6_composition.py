"""Fig 6 (appendix A.2): the dataset's composition (classes x samples per class x input dimension).

One teacher ensemble per cell; a teacher below 100% gets a row of NaN metrics and no students.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import POS_INTS, check_split, class_counts_knob, knob, make_config, per_class_values_knob
from memkd.experiments.random_data import PAPER_PROFILE, QUICK_PROFILE, SMOKE_PROFILE, RandomDataConfig
from memkd.memorization import memorization_tasks, split
from memkd.students import distill, member_grid
from memkd.tables import tidy


@dataclass(frozen=True)
class CompositionConfig(RandomDataConfig):
    class_counts: tuple = class_counts_knob((10, 50), " (one panel each)")
    per_class_values: tuple = per_class_values_knob((5, 10, 20), " (grid rows)")
    input_dims: tuple = knob((25, 100, 250), POS_INTS, "input dimensions D (grid columns)")

    SINGLE_VALUED = ("alphas", "student_widths")  # one alpha and one student width
    TABLE_COLUMNS = (*DISTILL_COLUMNS, "classes", "per_class", "input_dim", "teacher_train_acc", "ratio")
    PROFILE_VALUES = {
        "smoke": {
            **SMOKE_PROFILE,
            "class_counts": (10,),
            "per_class_values": (5, 10),
            "input_dims": (20, 50, 100),
            "alphas": (0.4,),
            "students": 2,
            "teachers": 3,
            "teacher_epochs": 400,
        },
        # quick: a panel per C (10 and 50), and d from 2 (where teachers fail: the paper's white
        # cells, and below the best d) to 640, about 5x the teacher's width as the paper's 2000 is 4x
        # its 500 (where transfer fades towards chance: its grey cells); two rows, since a C = 50
        # teacher on 20 or 40 per class at large d costs more than the rest of the grid; 10 teachers
        # per cell (5 to choose on, 5 to test on), two students each
        "quick": {
            **QUICK_PROFILE,
            "class_counts": (10, 50),
            "per_class_values": (5, 10),
            "input_dims": (2, 5, 20, 80, 640),
            "alphas": (0.4,),
            "student_widths": (125,),
            "teacher_width": 125,
            "students": 2,
            "teacher_epochs": 600,
            "teachers": 10,
        },
        "paper": {
            **PAPER_PROFILE,
            "class_counts": (10, 50, 100),
            "per_class_values": (10, 20, 50, 100, 200),
            "input_dims": (50, 100, 250, 500, 1000, 2000),
            "alphas": (0.4,),
            "student_widths": (750,),
            "students": 5,
        },
    }

    def check(self) -> None:  # the split of every per_class value, not of `per_class`
        self.check_single_valued()
        check_split(self, self.alphas, self.per_class_values)


@experiment(CompositionConfig)
def dataset_composition(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 6 (A.2): a grid over classes x per_class x input_dim, with `teachers` teachers per cell.

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
                tasks = memorization_tasks(
                    cfg, input_dim=input_dim, classes=classes, per_class=per_class, require_memorization=False
                )
                for task in tasks:
                    if not task.memorized:
                        rows.append(
                            {
                                **knobs,
                                "dataset": task.dataset,
                                "width": width,
                                "teacher_memorized": False,
                                "teacher_train_acc": float(task.teacher.train_acc.min()),
                                "chance": 1.0 / classes,
                                "test_acc": math.nan,
                            }
                        )
                good = [t for t in tasks if t.memorized]
                if good:
                    for r in distill(
                        good,
                        [split(t, alpha, cfg) for t in good],
                        cfg=cfg,
                        kind="soft",
                        width=width,
                        members=members,
                        setting=(alpha, classes, per_class, input_dim),
                    ):
                        rows.append({**r, **knobs, "teacher_train_acc": 1.0})
    return tidy(rows, ratio_to_trivial=True, cfg=cfg)
