"""Chapter 02 (logit distillation, Fig 2): its outcome sentence and departures.

The experiment (`memkd.experiments.fig2_logits`) returns one row per student; the claims are recorded in
the notebook. This module describes the held-out accuracy by student width (`capacity_outcome`) and lists
how the run departs from the paper (`departures`, with the grid the chapter shows).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from memkd import experiments as ex
from memkd.book.plan import Margin
from memkd.book.departures import Departure, grid_departures, standard_departures
from memkd.book.outcomes import teacher_mean


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def hard_labels_at_chance(chance: float) -> Margin:
    """Chapter 02: hard-label students at chance on held-out memorized data."""
    return Margin(chance / 2, "half of chance 1/C: half the smallest soft-label effect of interest "
                  "(a held-out accuracy of twice chance) tested beside it")


# Teachers of the hard-label run, per profile: its at-chance claim's plan (plans.yml, pilot at seed 1) needs 7
# after Holm at quick, where the soft-label grid trains 5; one more to spare. The first 5 are the soft run's teachers.
HARD_LABEL_TEACHERS = {"quick": 8}


def hard_label_teachers(profile: str, teachers: int = 0) -> dict[str, int]:
    """The `teachers` override of chapter 02's hard-label run: the reader's `teachers` when given (> 0), else the
    count its power plan asks for at `profile` (`HARD_LABEL_TEACHERS`), else nothing (the profile's own count).

    >>> hard_label_teachers("quick"), hard_label_teachers("quick", 3), hard_label_teachers("smoke")
    ({'teachers': 8}, {'teachers': 3}, {})
    """
    if teachers > 0:
        return {"teachers": teachers}
    return {"teachers": HARD_LABEL_TEACHERS[profile]} if profile in HARD_LABEL_TEACHERS else {}


def capacity_outcome(table: pd.DataFrame, alpha: float, chance: float, teacher_width: int) -> str:
    """Chapter 02: the held-out accuracy by student width at one alpha (means over teachers), where it
    first clears twice chance, and whether it rises with width all along. Descriptive, not a test.

    table: one row per student with `width`, `alpha`, `test_acc`, `dataset`.
    """
    at = table[np.isclose(table["alpha"], alpha)]
    curve = pd.Series({w: teacher_mean(g, "test_acc") for w, g in at.groupby("width")}).sort_index()
    if len(curve) < 2:
        return ""
    listed = ", ".join(f"{acc:.3f} at p = {w}" for w, acc in curve.items())
    above = [w for w, acc in curve.items() if acc > 2 * chance]
    first = (f"it first exceeds twice chance ({2 * chance:.3f}) at p = {above[0]} "
             f"({above[0] / teacher_width:.2g}× the teacher's width {teacher_width})" if above
             else f"no width reaches twice chance ({2 * chance:.3f})")
    steps = np.diff(curve.to_numpy())
    trend = ("it rises with every step in width" if (steps > 0).all() else
             f"it rises from p = {curve.index[0]} to p = {curve.idxmax()} overall, not at every step"
             if curve.idxmax() == curve.index[-1] else
             f"it peaks at p = {curve.idxmax()}, below the widest student")
    return (f"At alpha = {alpha:g}, the held-out accuracy by student width is {listed}: {first}, and {trend} "
            "(means over teachers, not a test).")


def departures(table: pd.DataFrame, grid_keys: Sequence[str] = ()) -> list[Departure]:
    """Chapter 02: `standard_departures`, and with `grid_keys` (e.g. the student widths and alphas) the
    grid against the paper profile's."""
    if not grid_keys:
        return standard_departures(table)
    return grid_departures(table, ex.logit_distillation.config.PROFILE_VALUES["paper"], grid_keys)
