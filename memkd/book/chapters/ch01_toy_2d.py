"""Chapter 01 (the 2-D toy of Fig 1): its claims, outcome sentences and departures.

The experiment (`memkd.experiments.toy`) returns one row per student; this module records the chapter's
claims on it (`toy_claims`, with the margin `toy_at_chance` fixed before the run), says which soft-label
students beat chance in this build (`toy_outcomes`) and lists how the run departs from the paper
(`departures`: `standard_departures` against the toy's sizes `PAPER_TOY_SIZES`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from memkd.book.plan import Margin, PAPER_FIG1_EFFECT
from memkd.book.departures import Departure, standard_departures
from memkd.book.outcomes import teacher_mean

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


PAPER_TOY_SIZES = {"input_dim": 2, "classes": 3, "per_class": 10}  # the toy of Fig 1


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def toy_at_chance() -> Margin:
    """Chapter 01: hard-label students at chance in 2-D."""
    return Margin(
        PAPER_FIG1_EFFECT / 2,
        "half the soft-label effect of the paper's Fig 1 (about 40% held out "
        "against chance 1/3: 0.067), so that a student with that effect could not pass as at chance",
    )


def toy_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Record chapter 01's claims on `ch` (a `memkd.book.chapter.Chapter`) and return their sentences (Markdown).

    `table`: one row per student of `memkd.experiments.toy_2d`, with the notebook's `setting` column
    ("hard", "soft T=5", ...). The hard-label students (rows `targets == "hard"`) are at chance (the
    table's `chance`, 1/C) on the held-out points within `toy_at_chance` (equivalence, teachers as the
    unit); the soft-label students of each `setting` beat chance there (one-sided), one claim per setting
    (ids `toy_soft_T<T>_beats_chance`).
    """
    ch.rest_on(table)
    chance = table["chance"].iloc[0]
    margin = toy_at_chance()  # fixed in advance: half the paper's Fig 1 effect
    out = [
        ch.claim(
            "toy_hard_at_chance",
            f"In 2-D, a student trained on hard labels of 60% of the memorized points is at chance on the rest "
            f"(equivalence margin ±{margin.value:g}).",
            table[table.targets == "hard"],
            baseline=chance,
            expect="equivalent",
            margin=margin,
            what="hard labels, held-out accuracy",
        )
    ]
    for setting, group in table[table.targets == "soft"].groupby("setting"):
        out.append(
            ch.claim(
                f"toy_{setting.replace(' ', '_').replace('=', '')}_beats_chance",
                f"In 2-D, students trained on the teacher's soft labels ({setting}) beat chance on the held-out memorized "
                "points.",
                group,
                baseline=chance,
                expect="above",
                what=f"{setting}, held-out accuracy",
            )
        )
    return out


def toy_outcomes(ch: "Chapter", table: pd.DataFrame) -> str:
    """Chapter 01: which soft-label students beat chance on the held-out points in this build, and
    the models' accuracy on fresh points (measured, not tested)."""
    soft = [c for c in ch.claims if c.claim.startswith("toy_soft")]
    held = [
        c.claim[len("toy_soft_") : -len("_beats_chance")].replace("T", "T = ") for c in soft if c.verdict == "holds"
    ]
    other = [
        f"{c.claim[len('toy_soft_') : -len('_beats_chance')].replace('T', 'T = ')} ({c.verdict}, {c.difference:+.3f})"
        for c in soft
        if c.verdict != "holds"
    ]
    parts = []
    if held:
        parts.append(f"soft-label students beat chance on the held-out memorized points at {', '.join(held)}")
    if other:
        parts.append(
            f"{'at' if held else 'soft-label students are not shown to beat chance on the held-out points at'} "
            f"{', '.join(other)}{' they are not shown to' if held else ''}"
        )
    text = "In this build, " + "; ".join(parts) + "." if parts else ""
    fresh = table.groupby("setting").apply(lambda g: teacher_mean(g, "independent_acc"), include_groups=False)
    chance = float(table["chance"].iloc[0])
    text += (
        f" On fresh points the models' mean accuracy runs from {fresh.min():.3f} to {fresh.max():.3f} against "
        f"chance {chance:.3f} (measured, not tested: the claims concern the held-out points)."
    )
    return text.strip()


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 01: `standard_departures` against the sizes of the toy of Fig 1."""
    return standard_departures(table, PAPER_TOY_SIZES)
