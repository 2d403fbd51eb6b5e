"""Chapter 07 (logit surgery, Fig 7): its outcome sentences and departures.

The experiment (`memkd.experiments.fig7_surgery`) returns one row per student; the claims are recorded in
the notebook. This module says what dropping class c and zeroing p_c did in this build
(`surgery_outcomes`) and lists how the run departs from the paper (`departures`, with the grid the
chapter shows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

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
    return Margin(value, f"{value:g} in class-c held-out accuracy: one of the 10 held-out class-c points "
                  "of a teacher at the quick profile, the resolution of one teacher's class-c accuracy")


def surgery_overall_kept(chance: float) -> Margin:
    """Chapter 07: overall held-out accuracy kept under a surgery of class c."""
    return Margin(chance / 4, "a quarter of 1/C, the share of the held-out points that are of class c: a "
                  "surgery that changed only class c's points could move the overall accuracy by at most "
                  "1/C, so a margin of 1/C (the old one) could not fail")


def surgery_outcomes(ch: "Chapter", class_c: int) -> str:
    """Chapter 07: what dropping class c and zeroing p_c did to the class-c accuracy in this build."""
    c = find(ch, "drop_class_like_plain")
    lines = []
    if c is not None:
        if c.verdict == "does not hold":
            lines.append(f"**This build contradicts the paper here:** dropping class {class_c} lowers the class-"
                         f"{class_c} held-out accuracy beyond the margin, from {c.baseline:.3f} (plain) to "
                         f"{c.measured:.3f} ({numbers(c)['interval']}), where the paper finds it kept at a high level.")
        elif c.ci_high < 0:
            lines.append(f"**This build leans against the paper here:** dropping class {class_c} lowers the class-"
                         f"{class_c} held-out accuracy, from {c.baseline:.3f} (plain) to {c.measured:.3f} (the whole "
                         f"{numbers(c)['interval']} of the difference lies below 0, but not beyond the margin: "
                         "inconclusive), where the paper finds it kept at a high level.")
        elif c.verdict == "holds":
            lines.append(f"Dropping class {class_c} keeps its held-out accuracy at plain distillation's "
                         f"({c.measured:.3f} against {c.baseline:.3f}), as the paper finds.")
        else:
            lines.append(f"Whether dropping class {class_c} keeps its held-out accuracy is undecided here "
                         f"({c.measured:.3f} against {c.baseline:.3f} plain; {numbers(c)['interval']}).")
    lines.append(outcome(
        ch, "zero_class_kills_class",
        f"Zeroing p_{class_c} elsewhere leaves the students below chance on held-out class-{class_c} points "
        "({measured:.3f}), as the paper finds.",
        f"**This build contradicts the paper here:** with p_{class_c} zeroed elsewhere, the students are not "
        f"below chance on held-out class-{class_c} points ({{measured:.3f}}).",
        f"With p_{class_c} zeroed elsewhere the students get {{measured:.3f}} of the held-out class-{class_c} "
        "points right: too few teachers to tell this from chance (the test across teachers is inconclusive)."))
    return " ".join(line for line in lines if line)


def departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 07: `standard_departures`, the grid (`grid_keys`) against the paper profile's, the tail cut."""
    return grid_departures(table, ex.logit_surgery.config.PROFILE_VALUES["paper"], grid_keys) + [
        departure_row("07_logit_surgery", "tail cut")]
