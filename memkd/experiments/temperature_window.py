"""The temperature window of multinomial logistic regression (the published Fig 4a and App. Fig 13, ch. 12).

For every number of classes C, `teachers` teachers at every size N/d are trained once (float32, as in
the released code); then, for every precision in `dtypes`, students see the first floor(rho * n)
points of each class with soft labels softmax(z / T) stored in that precision, all temperatures of
one size in one ensemble. Two solvers of the same loss: ``adam`` (the released protocol, at this
profile's budget) and ``exact`` (the convex minimizer from the stored soft labels,
`memkd.models.linear.solve_soft_labels`): where ``exact`` recovers and ``adam`` does not, the optimizer sets
the edge; where neither does, the precision of the soft labels does. Each with its within-class-
shuffled control. One row per student (columns of `memkd.experiments.linear_recovery.student_grid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from memkd.config import class_counts_knob, knob, list_of, make_config, one_of, temperatures_knob
from memkd.device import resolve_device
from memkd.declare import experiment
from memkd.experiments.linear_recovery import DTYPE_NAMES, LinearConfig, linear_table, student_grid, teachers_for
from memkd.models.linear import DTYPES

# The released Fig 4a: 40 temperatures log-spaced over 10^-0.5 .. 10^3.5
RELEASED_TEMPERATURES = tuple(float(f"{10 ** (-0.5 + 4 * i / 39):.4g}") for i in range(40))
SOLVERS = {"adam": "soft_labels", "exact": "soft_labels_solved"}


def solvers_knob() -> Any:
    """The linear students' solvers (`SOLVERS`), the same knob wherever a linear experiment offers both."""
    return knob(
        ("adam", "exact"),
        list_of(one_of(*SOLVERS)),
        "adam: the released optimizer at this budget; exact: the loss's convex minimizer",
    )


@dataclass(frozen=True)
class WindowConfig(LinearConfig):
    class_counts: tuple = class_counts_knob((2, 10), " (multinomial: C logits each)")
    temperatures: tuple = temperatures_knob((1.0, 10.0, 100.0))
    dtypes: tuple = knob(
        ("float64", "float32", "bfloat16"), DTYPE_NAMES, "precisions of the soft labels and of the students"
    )
    solvers: tuple = solvers_knob()
    shuffle_adam_dtypes: tuple = knob(
        ("float32",), DTYPE_NAMES, "precisions in which the Adam student's shuffled control is trained"
    )

    RENAMED = {
        "students": "the students of temperature_window are chosen by 'solvers' (adam, exact) and "
        "'dtypes'; their seeds per setting by 'seeds_per_setting'",
        "classes": "use 'class_counts' (the numbers of classes C, one grid each; 'classes' is one C elsewhere)",
    }

    def check(self) -> None:
        for c in self.class_counts:
            self.check_sizes(c)

    PROFILE_VALUES = {
        "smoke": {
            "input_dim": 20,
            "class_counts": (2, 3),
            "n_over_d": (0.8, 1.6),
            "rhos": (0.8,),
            "teachers": 2,
            "temperatures": (1.0, 30.0),
            "dtypes": ("float64", "bfloat16"),
            "teacher_epochs": 300,
            "epochs": 200,
            "fresh": 200,
        },
        # line rho * N = d at N/d = 1.25: one size below it, three up to the binary capacity, one past it;
        # 7 teachers per size: about 18 eligible for C = 2, which the window claims need after Holm (pilot, seed 1)
        "quick": {
            "input_dim": 100,
            "n_over_d": (0.9, 1.4, 1.6, 1.8, 2.4),
            "rhos": (0.8,),
            "teachers": 7,
            "temperatures": tuple(float(f"{10 ** (-0.5 + 0.5 * i):.4g}") for i in range(9)),
        },
        # the released Fig 4a: d = 1000, 20 sizes, rho = 0.8, 40 temperatures, 5 repeats, 10,000 epochs
        "paper": {
            "input_dim": 1000,
            "n_over_d": tuple(round(0.25 + 0.125 * i, 4) for i in range(20)),
            "rhos": (0.8,),
            "teachers": 5,
            "temperatures": RELEASED_TEMPERATURES,
            "teacher_epochs": 10_000,
            "teacher_lr": 1e-3,
            "epochs": 10_000,
            "lr": 1e-4,
        },
    }


@experiment(WindowConfig)
def temperature_window(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 4a's grid (C x sizes x temperatures) for every precision and solver; one row per student.

    Columns: those of `student_grid` (dataset, teacher, n_over_d, classes, rho, temperature, dtype,
    solver, shuffled, teacher_train_acc, teacher_perfect, train_acc, test_acc, agreement_fresh,
    logit_error, ...). Teachers are trained once per C in float32 and shared by every precision.
    """

    cfg = make_config(WindowConfig, "temperature_window", profile, overrides)
    device = resolve_device(cfg.device, cfg.experiment)
    rows: list[dict] = []
    for c in cfg.class_counts:
        data, w, ids = teachers_for(cfg, c, c, device, DTYPES["float32"])
        for dtype in cfg.dtypes:
            for solver in cfg.solvers:
                shuffles = cfg.shuffle and (solver == "exact" or dtype in cfg.shuffle_adam_dtypes)
                for shuffled in (False, True) if shuffles else (False,):
                    rows += student_grid(
                        cfg,
                        data,
                        w,
                        ids,
                        kind=SOLVERS[solver],
                        temperatures=cfg.temperatures,
                        dtype=dtype,
                        shuffled=shuffled,
                    )
    return linear_table(rows, "temperature_window", cfg)


# --- the window -------------------------------------------------------------------------------------


def window_per_teacher(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (classes, dtype, solver, teacher) over the unshuffled students of teachers that
    memorized their data, above the line rho * N >= d: width (how many of the grid's temperatures give
    held-out accuracy exactly 1), t_low and t_high (the smallest and largest such T; NaN if none)."""
    ok = table[table["teacher_perfect"] & ~table["shuffled"] & (table["n_student"] >= table["input_dim"])]
    ok = ok.assign(perfect=ok["test_acc"] == 1.0)
    rows = []
    for key, part in ok.groupby(["classes", "dtype", "solver", "teacher"]):
        hit = part.loc[part["perfect"], "temperature"]
        rows.append(
            {
                **dict(zip(["classes", "dtype", "solver", "teacher"], key)),
                "width": int(len(hit)),
                "temperatures": int(part["temperature"].nunique()),
                "t_low": float(hit.min()) if len(hit) else float("nan"),
                "t_high": float(hit.max()) if len(hit) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def window_edges(table: pd.DataFrame) -> pd.DataFrame:
    """Per (classes, dtype, solver): the temperatures at which every eligible teacher's student is
    perfect (the window), its edges, the teachers it rests on, and `gaps`: the grid's temperatures
    between the edges where some student is not perfect (a tuple; empty when the window is whole)."""
    per_t = table[table["teacher_perfect"] & ~table["shuffled"] & (table["n_student"] >= table["input_dim"])]
    per_t = (
        per_t.assign(perfect=per_t["test_acc"] == 1.0)
        .groupby(["classes", "dtype", "solver", "temperature"])
        .agg(perfect=("perfect", "all"), teachers=("teacher", "nunique"))
        .reset_index()
    )
    rows = []
    for key, part in per_t.groupby(["classes", "dtype", "solver"]):
        inside = part.loc[part["perfect"], "temperature"].sort_values()
        between = (
            part[(part["temperature"] > inside.min()) & (part["temperature"] < inside.max())]
            if len(inside)
            else part.iloc[:0]
        )
        rows.append(
            {
                **dict(zip(["classes", "dtype", "solver"], key)),
                "teachers": int(part["teachers"].max()),
                "in_window": int(len(inside)),
                "of": int(len(part)),
                "t_low": float(inside.min()) if len(inside) else float("nan"),
                "t_high": float(inside.max()) if len(inside) else float("nan"),
                "gaps": tuple(float(t) for t in between.loc[~between["perfect"], "temperature"].sort_values()),
            }
        )
    return pd.DataFrame(rows)


def released_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The published Fig 4a's three curves per (classes, dtype, solver, temperature), over the sizes N/d:
    recovered (sizes at which every teacher memorized and every student is perfect on held-out data),
    capacity (the largest size at which every teacher memorized) and shuffled_fits (the largest size at
    which every shuffled student fits its own points, train_acc = 1; NaN where none was trained)."""
    rows = []
    for key, part in table.groupby(["classes", "dtype", "solver", "temperature"]):
        honest, shuffled = part[~part["shuffled"]], part[part["shuffled"]]
        per_size = honest.groupby("n_over_d").agg(
            teacher=("teacher_perfect", "all"), perfect=("test_acc", lambda v: bool((v == 1.0).all()))
        )
        fits = shuffled.groupby("n_over_d")["train_acc"].apply(lambda v: bool((v == 1.0).all()))
        rows.append(
            {
                **dict(zip(["classes", "dtype", "solver", "temperature"], key)),
                "recovered": [float(s) for s, r in per_size.iterrows() if r["teacher"] and r["perfect"]],
                "capacity": float(per_size.index[per_size["teacher"]].max())
                if per_size["teacher"].any()
                else float("nan"),
                "shuffled_fits": float(fits.index[fits].max()) if len(fits) and fits.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "WindowConfig",
    "temperature_window",
    "RELEASED_TEMPERATURES",
    "SOLVERS",
    "solvers_knob",
    "window_per_teacher",
    "window_edges",
    "released_layout",
]
