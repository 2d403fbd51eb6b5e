"""Fig 5 (appendix A.1): the students' temperature x learning-rate grid, with the tested cell fixed in
advance.

The cell tested against T = 1 (tested_temperature, tested_lr) is each profile's own setting of
Figs 2, 3 and 7, fixed before any run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import knob, make_config, real_interval
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
class TemperatureLrConfig(RandomDataConfig):
    tested_temperature: float = knob(
        10.0, real_interval(0, math.inf), "the high T tested against T = 1, fixed in advance (one of temperatures)"
    )
    tested_lr: float = knob(
        3e-3, real_interval(0, math.inf), "the learning rate of that test, fixed in advance (one of lrs)"
    )

    # The tested setting is each profile's own (T, lr) of figures 2, 3 and 7, fixed before any run.
    TABLE_COLUMNS = (*DISTILL_COLUMNS, "epochs")
    PROFILE_VALUES = {
        "smoke": {
            **SMOKE_PROFILE,
            "temperatures": (1.0, 20.0),
            "lrs": (3e-3, 1e-2),
            "students": 2,
            "tested_temperature": SMOKE_PROFILE["temperatures"][0],
            "tested_lr": SMOKE_PROFILE["lrs"][0],
        },
        # quick: the paper's axes: temperatures 1 to 100 and learning rates over 1000x (a decade apart,
        # through the tested 3e-3); 10 teachers (5 to choose a cell on, 5 to test it on) with one
        # student each (it starts from the same weights in every cell)
        "quick": {
            **QUICK_PROFILE,
            "alphas": (0.4,),
            "temperatures": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
            "lrs": (3e-5, 3e-4, 3e-3, 3e-2),
            "students": 1,
            "teachers": 10,
            "tested_temperature": QUICK_PROFILE["temperatures"][0],
            "tested_lr": QUICK_PROFILE["lrs"][0],
        },
        "paper": {
            **PAPER_PROFILE,
            "student_widths": (750,),
            "alphas": (0.4,),
            "temperatures": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
            "lrs": (1e-5, 1e-4, 1e-3, 1e-2),
            "students": 5,
            "tested_temperature": PAPER_PROFILE["temperatures"][0],
            "tested_lr": PAPER_PROFILE["lrs"][0],
        },
    }

    def check(self) -> None:
        super().check()
        for name, value, grid in (
            ("tested_temperature", self.tested_temperature, self.temperatures),
            ("tested_lr", self.tested_lr, self.lrs),
        ):
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
    for tasks, alpha, splits, width in alpha_width_settings(cfg):
        rows += [
            {**r, "alpha": alpha, "epochs": cfg.epochs}
            for r in distill(tasks, splits, cfg=cfg, kind="soft", width=width, members=members, setting=(alpha,))
        ]
    return tidy(rows, cfg=cfg)
