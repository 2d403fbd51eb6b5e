"""Chapter 03 (similarity scores, Fig 3): its claims and departures.

The experiment (`memkd.experiments.similarity_distillation`) returns one row per student, similarity and
soft-label students on the same teachers and splits; this module records the chapter's claims on it
(`similarity_claims`, at the setting chapter 02 fixes in advance, `ch02_logit_distillation.main_alpha`)
and lists how the run departs from the paper (`departures`: `standard_departures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from memkd.book.chapters.ch02_logit_distillation import main_alpha
from memkd.book.departures import Departure, standard_departures

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


def similarity_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Record chapter 03's claims on `ch` (a `memkd.book.chapter.Chapter`) and return their sentences (Markdown).

    `table`: one row per student of `similarity_distillation` (`kind` "similarity" or "soft"). The
    similarity students beat chance (the table's `chance`, 1/C) on the held-out points at `main_alpha`
    (the grid's alpha closest to 0.6, fixed in advance; one-sided); the soft-label students beat the
    similarity students over every alpha (paired on teachers, one-sided). Teachers are the unit.
    """
    ch.rest_on(table)
    chance = table["chance"].iloc[0]
    sim, soft = table[table.kind == "similarity"], table[table.kind == "soft"]
    alpha = main_alpha(sim)  # fixed in advance
    return [
        ch.claim(
            "similarity_beats_chance",
            "Students trained only on the teacher's pairwise cosine similarities beat chance on held-out memorized "
            "data.",
            sim[sim.alpha == alpha],
            baseline=chance,
            what=f"similarity students, held-out accuracy at alpha = {alpha}",
        ),
        ch.claim_difference(
            "logits_beat_similarity",
            "Similarity scores transfer less than soft labels: logit students beat similarity students.",
            soft,
            sim,
            what="soft-label against similarity students (all alphas)",
        ),
    ]


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 03: `standard_departures` (the paper's sizes of Fig 2, which Fig 3 shares)."""
    return standard_departures(table)
