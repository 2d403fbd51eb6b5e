"""Chapter 07 (logit surgery, Fig 7): its claims, outcome sentences and departures.

The experiment (`memkd.experiments.fig7_surgery`) returns one row per student; this module records the
chapter's claims on it (`class_claims` on the class-c accuracy, `overall_claims` on the overall one and
the tail cut, with the margins `surgery_class_kept` and `surgery_overall_kept` fixed before the run), says
what dropping class c and zeroing p_c did in this build (`surgery_outcomes`) and lists how the run departs
from the paper (`departures`, with the grid the chapter shows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from memkd import experiments as ex
from memkd.book.plan import Margin
from memkd.book.departures import Departure, departure_row, grid_departures
from memkd.book.outcomes import find, numbers, outcome

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def surgery_class_kept(value: float) -> Margin:
    """Chapter 07: class-c held-out accuracy kept when class c is dropped (the chapter's parameter)."""
    return Margin(
        value,
        f"{value:g} in class-c held-out accuracy: one of the 10 held-out class-c points "
        "of a teacher at the quick profile, the resolution of one teacher's class-c accuracy",
    )


def surgery_overall_kept(chance: float) -> Margin:
    """Chapter 07: overall held-out accuracy kept under a surgery of class c."""
    return Margin(
        chance / 4,
        "a quarter of 1/C, the share of the held-out points that are of class c: a "
        "surgery that changed only class c's points could move the overall accuracy by at most "
        "1/C, so a margin of 1/C (the old one) could not fail",
    )


def variant_rows(table: pd.DataFrame, variant: str, tail_fraction: float = 0.0) -> pd.DataFrame:
    """Chapter 07: the rows of `table` (one per student of `logit_surgery`) of one surgery `variant`
    ("plain", "drop_class", "zero_class", "cut_tail") at one `tail_fraction` (0 for all but the cut)."""
    return table[(table.variant == variant) & np.isclose(table.tail_fraction, tail_fraction)]


def class_claims(ch: "Chapter", table: pd.DataFrame, surgery_class: int, class_margin: float) -> list[str]:
    """Record chapter 07's claims on the held-out class-c accuracy (`test_acc_class`, c = `surgery_class`)
    on `ch` (a `memkd.book.chapter.Chapter`) and return their sentences (Markdown).

    With class c dropped, the students beat chance (the table's `chance`, 1/C; one-sided) and stay within
    `surgery_class_kept(class_margin)` of plain distillation (equivalence, paired on teachers); with p_c
    zeroed elsewhere, they fall below chance and (a check that follows from it) below plain distillation.
    Teachers are the unit; the exact sign test replaces the t interval where the differences have no spread.
    """
    ch.rest_on(table)
    chance = table["chance"].iloc[0]
    plain, dropped, zeroed = (variant_rows(table, v) for v in ("plain", "drop_class", "zero_class"))
    c_acc = f"held-out class-{surgery_class} accuracy"
    return [
        ch.claim(
            "drop_class_keeps_class",
            "Without any sample of class c, students still beat the trivial accuracy on held-out class-c samples.",
            dropped,
            value="test_acc_class",
            baseline=chance,
            expect="above",
            what=f"class {surgery_class} dropped, held-out class-{surgery_class} accuracy against chance",
        ),
        ch.claim_difference(
            "drop_class_like_plain",
            "Dropping class c keeps the class-c held-out accuracy at the level of plain distillation.",
            dropped,
            plain,
            value="test_acc_class",
            expect="equivalent",
            margin=surgery_class_kept(class_margin),
            what=f"{c_acc}, class dropped against plain (margin ±{class_margin:g})",
        ),
        ch.claim(
            "zero_class_kills_class",
            "Zeroing p_c on the samples of other classes drops the class-c held-out accuracy below the trivial "
            "accuracy.",
            zeroed,
            value="test_acc_class",
            baseline=chance,
            expect="below",
            what=f"p_{surgery_class} zeroed elsewhere, held-out class-{surgery_class} accuracy against chance",
        ),
        ch.claim_difference(
            "zero_class_below_plain",
            "Zeroing p_c on the samples of other classes lowers the class-c held-out accuracy below plain "
            "distillation's.",
            zeroed,
            plain,
            value="test_acc_class",
            expect="below",
            check=True,  # follows from zero_class_kills_class
            what=f"{c_acc}, p_{surgery_class} zeroed against plain",
        ),
    ]


def overall_claims(ch: "Chapter", table: pd.DataFrame, overall_margin: float = 0.0) -> list[str]:
    """Record chapter 07's claims on the overall held-out accuracy (`test_acc`) on `ch` and return their
    sentences (Markdown).

    Dropping class c and zeroing p_c each keep it within the margin of plain distillation (equivalence,
    paired on teachers): `overall_margin` when the chapter's parameter sets it, else
    `surgery_overall_kept` (a quarter of 1/C). Cutting the smallest tail of the grid (fixed in advance)
    lowers it below plain distillation's (one-sided, paired on teachers).
    """
    ch.rest_on(table)
    chance = table["chance"].iloc[0]
    plain = variant_rows(table, "plain")
    margin_all = (
        Margin(overall_margin, "set by the chapter's overall_margin parameter")
        if overall_margin
        else surgery_overall_kept(chance)
    )  # fixed in advance: a quarter of class c's share 1/C
    out = [
        ch.claim_difference(
            f"{name}_overall_kept",
            f"The surgery '{name}' does not change the overall held-out accuracy much.",
            variant_rows(table, name),
            plain,
            value="test_acc",
            expect="equivalent",
            margin=margin_all,
            what=f"overall held-out accuracy, {name} against plain (margin ±{margin_all.value:.3g})",
        )
        for name in ("drop_class", "zero_class")
    ]
    q = table[table.variant == "cut_tail"].tail_fraction.min()
    out.append(
        ch.claim_difference(
            "tail_carries_information",
            "Cutting even a small tail of each sample's probabilities lowers the held-out accuracy.",
            variant_rows(table, "cut_tail", q),
            plain,
            value="test_acc",
            expect="below",
            what=f"overall held-out accuracy, smallest cut (q = {q:g}, fixed in advance) against plain",
        )
    )
    return out


def surgery_outcomes(ch: "Chapter", class_c: int) -> str:
    """Chapter 07: what dropping class c and zeroing p_c did to the class-c accuracy in this build."""
    c = find(ch, "drop_class_like_plain")
    lines = []
    if c is not None:
        if c.verdict == "does not hold":
            lines.append(
                f"**This build contradicts the paper here:** dropping class {class_c} lowers the class-"
                f"{class_c} held-out accuracy beyond the margin, from {c.baseline:.3f} (plain) to "
                f"{c.measured:.3f} ({numbers(c)['interval']}), where the paper finds it kept at a high level."
            )
        elif c.ci_high < 0:
            lines.append(
                f"**This build leans against the paper here:** dropping class {class_c} lowers the class-"
                f"{class_c} held-out accuracy, from {c.baseline:.3f} (plain) to {c.measured:.3f} (the whole "
                f"{numbers(c)['interval']} of the difference lies below 0, but not beyond the margin: "
                "inconclusive), where the paper finds it kept at a high level."
            )
        elif c.verdict == "holds":
            lines.append(
                f"Dropping class {class_c} keeps its held-out accuracy at plain distillation's "
                f"({c.measured:.3f} against {c.baseline:.3f}), as the paper finds."
            )
        else:
            lines.append(
                f"Whether dropping class {class_c} keeps its held-out accuracy is undecided here "
                f"({c.measured:.3f} against {c.baseline:.3f} plain; {numbers(c)['interval']})."
            )
    lines.append(
        outcome(
            ch,
            "zero_class_kills_class",
            f"Zeroing p_{class_c} elsewhere leaves the students below chance on held-out class-{class_c} points "
            "({measured:.3f}), as the paper finds.",
            f"**This build contradicts the paper here:** with p_{class_c} zeroed elsewhere, the students are not "
            f"below chance on held-out class-{class_c} points ({{measured:.3f}}).",
            f"With p_{class_c} zeroed elsewhere the students get {{measured:.3f}} of the held-out class-{class_c} "
            "points right: too few teachers to tell this from chance (the test across teachers is inconclusive).",
        )
    )
    return " ".join(line for line in lines if line)


def departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 07: `standard_departures`, the grid (`grid_keys`) against the paper profile's, the tail cut."""
    return grid_departures(table, ex.logit_surgery.config.PROFILE_VALUES["paper"], grid_keys) + [
        departure_row("07_logit_surgery", "tail cut")
    ]
