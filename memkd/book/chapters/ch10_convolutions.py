"""Chapter 10 (convolutional teachers and students): its outcome sentences and departures.

The experiment (`memkd.experiments.convolutions`) returns one row per student; the claims are recorded in
the notebook. This module says where the paper's remark on CNNs fails, holds or is undecided
(`convolution_outcomes`) and lists how the run departs from it (`departures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from memkd.book.plan import Margin
from memkd.book.departures import Departure, config_of, departure_row, temperature_departure
from memkd.book.outcomes import find

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def convolution_no_leak(value: float) -> Margin:
    """Chapter 10: 'no leak' of CNN students (the chapter's parameter)."""
    return Margin(value, f"{value:g} in held-out accuracy: under a third of chance on ten classes, and far "
                  "below the leak of the MLP students tested beside it")


def convolution_outcomes(ch: "Chapter", settings: list[str]) -> str:
    """Chapter 10: where the paper's remark (CNN students of a CNN teacher do not leak) fails,
    holds or is undecided in this build."""
    words = {"holds": [], "does not hold": [], "inconclusive": []}
    for s in settings:
        c = find(ch, f"cnn_cnn_{s}_no_leak")
        if c is not None:
            words[c.verdict if c.verdict in words else "inconclusive"].append(f"{s} ({c.difference:+.3f})")
    out = []
    if words["does not hold"]:
        out.append("**This build contradicts the paper's remark:** CNN students of a CNN teacher leak beyond the "
                   f"margin on {', '.join(words['does not hold'])} images.")
    if words["holds"]:
        out.append(f"They do not leak (within the margin) on {', '.join(words['holds'])} images.")
    if words["inconclusive"]:
        out.append(f"On {', '.join(words['inconclusive'])} images the teachers measured here cannot tell a leak "
                   "smaller than the margin from none: more teachers (the `teachers` parameter) narrow the interval.")
    less = {"holds": [], "does not hold": [], "inconclusive": []}
    for s in settings:
        c = find(ch, f"cnn_leaks_less_{s}")
        if c is not None:
            less[c.verdict if c.verdict in less else "inconclusive"].append(f"{s} ({c.difference:+.3f})")
    if less["holds"]:
        out.append(f"CNN students of a CNN teacher leak less than MLP students of an MLP teacher on "
                   f"{', '.join(less['holds'])} images.")
    if less["does not hold"]:
        out.append(f"They do not leak less than the MLP pair on {', '.join(less['does not hold'])} images.")
    if less["inconclusive"]:
        out.append(f"Whether they leak less than the MLP pair is undecided on {', '.join(less['inconclusive'])} images.")
    probe = [find(ch, c) for c in ("probe_fixed_cnn_leaks", "probe_fixed_leaks_more_than_clean",
                                   "probe_fixed_like_per_image")]
    probe = [c for c in probe if c is not None]
    if probe:
        told = [c.verdict for c in probe]
        summary = ("the probe confirms the explanation" if all(v == "holds" for v in told) else
                   "the probe fails: a fixed pixel order does not make the CNN leak as the explanation predicts"
                   if any(v == "does not hold" for v in told) else "the probe is undecided")
        out.append(f"The probe (one pixel order shared by all images): {summary} ("
                   + "; ".join(f"{c.claim} {c.verdict}, {c.difference:+.3f}" for c in probe) + ").")
    return " ".join(out)


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 10: how a `convolutional_distillation` table departs from the paper's remark on CNNs."""
    out = [departure_row("10_convolutions", "architecture"), departure_row("10_convolutions", "trivial accuracy"),
           departure_row("10_convolutions", "pixel shuffle")]
    out += temperature_departure(config_of(table), name_the_knob=True)
    if table.images.iloc[0] != "cifar10":  # the chapter's data_kind "stand-in"
        out.append(departure_row("10_convolutions", "profile sizes", n_memorized=table.n_memorized.iloc[0]))
    return out
