"""Question 3 of chapter 09: activation, depth, and teacher/student mismatch.

`architecture_plan` lists the panels; a student configuration that appears in several parts is
trained once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import BOOL, int_range, knob, list_of, make_config, one_of, real_interval
from memkd.experiments.random_data import RandomDataConfig
from memkd.students import distill
from memkd.experiments.open_questions import (
    ONE_ALPHA_ONE_WIDTH,
    failed_teacher_row,
    question_profiles,
    question_table,
    soft_members,
    splits_of,
    teachers,
)


@dataclass(frozen=True)
class ArchitectureConfig(RandomDataConfig):
    activations: tuple = knob(
        ("relu", "tanh"), list_of(one_of("relu", "tanh")), "hidden activations of teacher and student (both the same)"
    )
    depths: tuple = knob((1, 2, 3), list_of(int_range(1, 4)), "hidden layers of teacher and student (both the same)")
    width_factors: tuple = knob(
        (0.5, 2.0), list_of(real_interval(0, math.inf)), "student width / teacher width for the mismatched students"
    )
    mismatch: bool = knob(True, BOOL, "also train students narrower, wider, shallower, deeper than the teacher")
    parts: tuple = knob(
        ("activation", "depth", "mismatch"),
        list_of(one_of("activation", "depth", "mismatch")),
        "which parts of the grid to train (e.g. only the activation part, for a blind re-test)",
    )

    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    TABLE_COLUMNS = (
        *DISTILL_COLUMNS,
        "question",
        "part",
        "variant",
        "teacher_activation",
        "teacher_depth",
        "teacher_width",
        "student_activation",
        "student_depth",
        "teacher_train_acc",
    )
    PROFILE_VALUES = question_profiles()

    def check(self) -> None:
        super().check()
        if self.mismatch and self.hidden_layers < 2:
            self.fail(
                "hidden_layers",
                f"must be >= 2 when mismatch=True (a shallower student needs a layer "
                f"to lose). Got {self.hidden_layers!r} instead.",
            )


def architecture_plan(cfg: ArchitectureConfig) -> list[tuple[str, str, tuple, tuple]]:
    """(part, variant, (teacher activation, depth), (student activation, depth, width)) of every panel."""
    ref_act, ref_depth, p = cfg.activation, cfg.hidden_layers, cfg.teacher_width
    other = "tanh" if ref_act == "relu" else "relu"
    plan = [("activation", a, (a, ref_depth), (a, ref_depth, p)) for a in cfg.activations]
    plan += [("depth", f"{d} hidden", (ref_act, d), (ref_act, d, p)) for d in cfg.depths]
    if cfg.mismatch and "mismatch" in cfg.parts:
        plan += [("mismatch", "matched", (ref_act, ref_depth), (ref_act, ref_depth, p))]
        plan += [
            (
                "mismatch",
                "narrower" if f < 1 else "wider",
                (ref_act, ref_depth),
                (ref_act, ref_depth, max(1, int(round(f * p)))),
            )
            for f in cfg.width_factors
        ]
        plan += [
            ("mismatch", "shallower", (ref_act, ref_depth), (ref_act, ref_depth - 1, p)),
            ("mismatch", "deeper", (ref_act, ref_depth), (ref_act, ref_depth + 1, p)),
            ("mismatch", f"{other} student", (ref_act, ref_depth), (other, ref_depth, p)),
        ]
    return plan


@experiment(ArchitectureConfig)
def architecture(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q3: does the effect survive other activations, depths and teacher/student mismatch?

    part "activation": teacher and student share the activation (depth `hidden_layers`).
    part "depth": teacher and student share the depth (activation `activation`).
    part "mismatch": the reference teacher (activation, hidden_layers, teacher_width) and students
    that are matched, narrower/wider (width_factors), shallower/deeper (one layer), or use the
    other activation. A student configuration that appears in several parts (the reference does in
    all three) is trained once and reported in each. One row per (part, variant, student) with
    teacher_activation, teacher_depth, student_activation, student_depth, width and the metrics.
    """
    cfg = make_config(ArchitectureConfig, "architecture", profile, overrides)
    rows: list[dict] = []
    students: dict[tuple, list[dict]] = {}
    for part, variant, (t_act, t_depth), (s_act, s_depth, s_width) in architecture_plan(cfg):
        tasks = teachers(cfg, require=False, activation=t_act, hidden_layers=t_depth)
        knobs = {
            "part": part,
            "variant": variant,
            "teacher_activation": t_act,
            "teacher_depth": t_depth,
            "teacher_width": cfg.teacher_width,
            "student_activation": s_act,
            "student_depth": s_depth,
            "alpha": cfg.alphas[0],
        }
        rows += [{**failed_teacher_row(t, knobs), "width": s_width} for t in tasks if not t.memorized]
        ok = [t for t in tasks if t.memorized]
        key = (t_act, t_depth, s_act, s_depth, s_width)
        if ok and key not in students:
            students[key] = distill(
                ok,
                splits_of(ok, cfg),
                cfg=cfg,
                kind="soft",
                width=s_width,
                members=soft_members(cfg),
                setting=(cfg.alphas[0], s_depth, s_act),
                hidden_layers=s_depth,
                activation=s_act,
            )
        rows += [{**r, **knobs, "teacher_train_acc": 1.0} for r in students.get(key, [])]
    return question_table(rows, "architecture", cfg)
