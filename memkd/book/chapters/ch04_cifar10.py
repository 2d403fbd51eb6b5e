"""Chapter 04 (CIFAR-10 with shuffled labels and pixels, section 3.3): its outcome sentence and departures.

The experiment (`memkd.experiments.cifar`) returns one row per student; the claims are recorded in the
notebook. This module says what shuffling pixels on top of the labels did in this build (`cifar_outcomes`)
and lists how the run departs from section 3.3 (`departures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from memkd.book.departures import (
    Departure, config_of, config_values, departure_row, sizes_departure, temperature_departure,
)
from memkd.book.outcomes import outcome
from memkd.experiments.cifar import PAPER_FIG4

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


def cifar_outcomes(ch: "Chapter") -> str:
    """Chapter 04: shuffling labels and pixels against labels only, as this build found it."""
    return outcome(
        ch, "both_beats_labels",
        "Shuffling pixels on top of the labels raises the held-out accuracy ({measured:.3f} against "
        "{baseline:.3f}), as the paper reports.",
        "**This build contradicts the paper here:** with labels and pixels shuffled the held-out accuracy "
        "({measured:.3f}) is not above, and with labels alone ({baseline:.3f}) it is at least as high "
        "(difference {difference:+.3f}, {interval}).",
        "Whether shuffling pixels on top of the labels changes the held-out accuracy is undecided here "
        "({measured:.3f} against {baseline:.3f}, {interval}).")


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 04: how a `cifar_shuffles` table departs from section 3.3."""
    config = config_of(table)
    out = [departure_row("04_cifar10", "pixel shuffle")]
    if (table["images"] != "cifar10").any():
        out.append(departure_row("04_cifar10", "input data", n_memorized=int(table.n_memorized.iloc[0]),
                                 n_trivial=int(table.n_trivial.iloc[0])))
    out.append(departure_row("04_cifar10", "teachers", **config_values(config, "teachers")))
    out.append(departure_row("04_cifar10", "epochs and learning rates",
                             first_perfect=int(table.teacher_first_perfect.max()),
                             **config_values(config, "teacher_lr", "teacher_epochs", "lrs", "epochs")))
    return out + [d for d in [sizes_departure(config, PAPER_FIG4)] if d] + temperature_departure(config)
