"""Fig 7 (appendix A.3): logit surgery: drop a class, zero it elsewhere, or cut each sample's tail.

Every variant's students start from the plain students' initializations (paired comparisons).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import make_config, surgery_class_knob, tail_fractions_knob
from memkd.experiments.random_data import PAPER_PROFILE, QUICK_PROFILE, SMOKE_PROFILE, RandomDataConfig
from memkd.memorization import memorization_tasks, split
from memkd.students import distill, member_grid
from memkd.tables import tidy
from memkd.losses import cut_tail, drop_class, soft_targets, zero_class_elsewhere


@dataclass(frozen=True)
class SurgeryConfig(RandomDataConfig):
    surgery_class: int = surgery_class_knob()
    tail_fractions: tuple = tail_fractions_knob((0.02, 0.05, 0.1, 0.2, 0.5))

    SINGLE_VALUED = ("alphas", "student_widths")  # one alpha and one student width
    TABLE_COLUMNS = (*DISTILL_COLUMNS, "variant", "tail_fraction", "surgery_class")
    PROFILE_VALUES = {
        "smoke": {**SMOKE_PROFILE, "tail_fractions": (0.1, 0.5), "students": 2},
        # quick: one student per teacher (the class-c accuracy varies most from teacher to teacher),
        # students as wide as the teacher, and cuts from the paper's first, 0.5% (at C = 50 every
        # fraction up to 2% cuts one entry per sample), to half
        "quick": {
            **QUICK_PROFILE,
            "alphas": (0.6,),
            "student_widths": (125,),
            "teachers": 12,
            "students": 1,
            "tail_fractions": (0.005, 0.05, 0.1, 0.2, 0.5),
        },
        "paper": {
            **PAPER_PROFILE,
            "student_widths": (750,),
            "alphas": (0.6,),
            "tail_fractions": (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
        },
    }

    def check(self) -> None:
        super().check()
        if self.surgery_class >= self.classes:
            self.fail(
                "surgery_class",
                f"must be an int in [0, {self.classes - 1}] (classes={self.classes}). "
                f"Got {self.surgery_class!r} instead.",
            )


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
    flat = [
        {**{k: v for k, v in m.items() if k != "variant"}, "variant": m["variant"][0], "tail_fraction": m["variant"][1]}
        for m in members
    ]
    targets = [torch.stack([_surgery_targets(task, tr, m, c) for m in flat]) for task, (tr, _) in zip(tasks, splits)]
    rows = distill(
        tasks,
        splits,
        cfg=cfg,
        kind="soft",
        width=width,
        members=flat,
        targets=targets,
        setting=(alpha,),
        class_of_interest=c,
    )
    dropped = member_grid(
        variant=("drop_class",),
        tail_fraction=(0.0,),
        temperature=cfg.temperatures,
        lr=cfg.lrs,
        student=range(cfg.students),
    )
    rows += distill(
        tasks,
        [(drop_class(tr, task.y, c), te) for task, (tr, te) in zip(tasks, splits)],
        cfg=cfg,
        kind="soft",
        width=width,
        members=dropped,
        setting=(alpha,),
        class_of_interest=c,
    )
    return tidy([{**r, "alpha": alpha, "surgery_class": c} for r in rows], cfg=cfg)


def _surgery_targets(task, train_idx: torch.Tensor, member: dict, c: int) -> torch.Tensor:
    """sigma_T(teacher logits) on the student's part (N_train, C) after the member's surgery."""
    probs = soft_targets(task.logits[train_idx], member["temperature"])
    if member["variant"] == "zero_class":
        return zero_class_elsewhere(probs, task.y[train_idx], c)
    if member["variant"] == "cut_tail":
        return cut_tail(probs, member["tail_fraction"])
    return probs
