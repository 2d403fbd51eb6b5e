"""Chapter 02 (logit distillation, Fig 2): its claims, outcome sentence and departures.

The experiment (`memkd.experiments.fig2_logits`) returns one row per student; this module fixes the
setting the claims are tested at (`main_alpha`), records the chapter's claims (`soft_label_claims`,
`capacity_claim`, `hard_label_claim`, with the margin `hard_labels_at_chance` fixed before the run),
describes the held-out accuracy by student width (`capacity_outcome`) and lists how the run departs from
the paper (`departures`, with the grid the chapter shows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from memkd import experiments as ex
from memkd.book.plan import Margin
from memkd.book.departures import Departure, grid_departures, standard_departures
from memkd.book.outcomes import teacher_mean

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter

# The student fraction of the paper's main setting: the claims are tested at the grid's alpha closest to it
PAPER_MAIN_ALPHA = 0.6

# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def hard_labels_at_chance(chance: float) -> Margin:
    """Chapter 02: hard-label students at chance on held-out memorized data."""
    return Margin(
        chance / 2,
        "half of chance 1/C: half the smallest soft-label effect of interest "
        "(a held-out accuracy of twice chance) tested beside it",
    )


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


def main_alpha(table: pd.DataFrame) -> float:
    """Chapters 02 and 03: the alpha of `table`'s grid (its `alpha` column) closest to the paper's main
    setting (`PAPER_MAIN_ALPHA`), fixed in advance (never the best of the run)."""
    return min(table.alpha.unique(), key=lambda a: abs(a - PAPER_MAIN_ALPHA))


def soft_label_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Record chapter 02's soft-label claims on `ch` (a `memkd.book.chapter.Chapter`) and return their
    sentences (Markdown).

    On the widest students of `table` (one row per soft-label student of `logit_distillation`) at
    `main_alpha`: their held-out accuracy beats chance (the table's `chance`, 1/C), and beats the same
    students' accuracy on fresh data (`independent_acc`; it tests the same effect again:
    `supports` the first). At the smallest alpha of the grid: the held-out accuracy beats chance.
    All one-sided, teachers as the unit.
    """
    ch.rest_on(table)
    chance = table["chance"].iloc[0]
    widest = table[table.width == table.width.max()]
    at = widest[widest.alpha == main_alpha(widest)]
    small_alpha = widest[widest.alpha == widest.alpha.min()]
    return [
        ch.claim(
            "logits_beat_chance",
            "Students trained on soft labels classify held-out memorized data better than chance.",
            at,
            baseline=chance,
            what=f"held-out accuracy (p = {at.width.iloc[0]}, alpha = {main_alpha(widest)})",
        ),
        ch.claim(
            "logits_beat_trivial",
            "The held-out accuracy is higher than the same students' accuracy on fresh data (trivial accuracy).",
            at,
            baseline="independent_acc",
            what="held out against fresh data",
            supports="02_logit_distillation:logits_beat_chance",
        ),  # the same students, a second baseline
        ch.claim(
            "little_data_suffices",
            "Even a small student fraction alpha gives non-trivial held-out accuracy.",
            small_alpha,
            baseline=chance,
            what=f"held-out accuracy at alpha = {small_alpha.alpha.iloc[0]}",
        ),
    ]


def capacity_claim(ch: "Chapter", table: pd.DataFrame) -> str:
    """Record on `ch` that the widest students of `table` get more held-out points right than the narrowest
    (paired on teachers, every alpha and seed averaged within a teacher) and return its sentence; with one
    student width in `table`, record nothing and say so."""
    ch.rest_on(table)
    if table.width.nunique() < 2:
        return f"This profile trains one student width ({table.width.iloc[0]}): no capacity comparison."
    return ch.claim_difference(
        "wider_students_extract_more",
        "Wider students extract more memorized information than narrower ones.",
        table[table.width == table.width.max()],
        table[table.width == table.width.min()],
        what=f"width {table.width.max()} against width {table.width.min()}",
    )


def hard_label_claim(ch: "Chapter", hard: pd.DataFrame, chance: float) -> str:
    """Record on `ch` that the hard-label students of `hard` (one row per student of `logit_distillation`
    with `targets="hard"`) stay at `chance` on the held-out points, within `hard_labels_at_chance`
    (equivalence, teachers as the unit), and return its sentence."""
    margin = hard_labels_at_chance(chance)  # fixed in advance: half of chance
    return ch.claim(
        "hard_labels_at_chance",
        "Students trained on hard labels stay at chance on held-out memorized data "
        f"(equivalence margin ±{margin.value:.3g}).",
        hard,
        baseline=chance,
        expect="equivalent",
        margin=margin,
        what="hard labels, held-out accuracy",
    )


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
    first = (
        f"it first exceeds twice chance ({2 * chance:.3f}) at p = {above[0]} "
        f"({above[0] / teacher_width:.2g}× the teacher's width {teacher_width})"
        if above
        else f"no width reaches twice chance ({2 * chance:.3f})"
    )
    steps = np.diff(curve.to_numpy())
    trend = (
        "it rises with every step in width"
        if (steps > 0).all()
        else f"it rises from p = {curve.index[0]} to p = {curve.idxmax()} overall, not at every step"
        if curve.idxmax() == curve.index[-1]
        else f"it peaks at p = {curve.idxmax()}, below the widest student"
    )
    return (
        f"At alpha = {alpha:g}, the held-out accuracy by student width is {listed}: {first}, and {trend} "
        "(means over teachers, not a test)."
    )


def departures(table: pd.DataFrame, grid_keys: Sequence[str] = ()) -> list[Departure]:
    """Chapter 02: `standard_departures`, and with `grid_keys` (e.g. the student widths and alphas) the
    grid against the paper profile's."""
    if not grid_keys:
        return standard_departures(table)
    return grid_departures(table, ex.logit_distillation.config.PROFILE_VALUES["paper"], grid_keys)
