"""Chapter 06 (dataset composition, Fig 6): its outcome sentence and departures.

The experiment (`memkd.experiments.fig6_composition`) and `memkd.book.grid_analysis` give the grid and its
tests; the claims are recorded in the notebook. This module names the grid's white and grey cells
(`composition_cells`) and lists how the run departs from the paper (`departures`, with the grid the
chapter shows).
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from memkd import experiments as ex
from memkd.book.plan import Margin
from memkd.book.departures import Departure, grid_departures
from memkd.book.outcomes import teacher_mean


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def composition_far_above(chance: float) -> Margin:
    """Chapter 06: the best cell's held-out accuracy 'far above' its trivial accuracy."""
    return Margin(chance, "'far above' read as more than twice the trivial accuracy (a margin of 1/C of the "
                  "chosen cell): with a margin of 0 the best of many cells passes whenever any cell leaks at all")


def composition_cells(table: pd.DataFrame) -> str:
    """Chapter 06: which cells of the composition grid are white (no teacher memorized its dataset)
    and which grey (mean held-out accuracy over teachers below chance 1/C), as the figure draws them.

    table: one row per student, or per failed teacher (teacher_memorized False, NaN metrics), with
    classes, per_class, input_dim, dataset, teacher_memorized, test_acc.
    """
    def names(cells) -> str:
        return "; ".join(f"C = {c}, {pc} per class, d = {d}" for c, pc, d in cells) or "none"

    white, grey = [], []
    for (c, pc, d), cell in table.groupby(["classes", "per_class", "input_dim"], sort=True):
        ok = cell[cell["teacher_memorized"].astype(bool)]
        if ok.empty:
            white.append((int(c), int(pc), int(d)))
        elif teacher_mean(ok, "test_acc") < 1.0 / c:
            grey.append((int(c), int(pc), int(d)))
    return (f"White cells (no teacher memorized its dataset within its budget): {names(white)}. Grey cells (mean "
            f"held-out accuracy below chance 1/C): {names(grey)}.")


def departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 06: `standard_departures` (sizes: only the teacher's width, the grid sets the rest) and
    the grid (`grid_keys`) against the paper profile's."""
    paper = ex.dataset_composition.config.PROFILE_VALUES["paper"]
    return grid_departures(table, paper, grid_keys, paper_sizes={"teacher_width": paper["teacher_width"]})
