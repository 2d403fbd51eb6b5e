"""Chapter 06 (dataset composition, Fig 6): its claims, outcome sentence and departures.

The experiment (`memkd.experiments.fig6_composition`) and `memkd.book.grid_analysis` give the grid and its
tests. This module records the chapter's claims (`nontrivial_cell_claim` with the margin
`composition_far_above` fixed before the run, `best_dimension_claim`, `interior_claim`; the cells are
chosen on one half of the teachers and tested on the other, `split_teachers`), names the grid's white and grey cells
(`composition_cells`) and lists how the run departs from the paper (`departures`, with the grid the
chapter shows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import pandas as pd

from memkd import experiments as ex, metrics
from memkd.book import grid_analysis as an
from memkd.book.plan import Margin
from memkd.book.departures import Departure, grid_departures
from memkd.book.outcomes import teacher_mean

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def composition_far_above(chance: float) -> Margin:
    """Chapter 06: the best cell's held-out accuracy 'far above' its trivial accuracy."""
    return Margin(
        chance,
        "'far above' read as more than twice the trivial accuracy (a margin of 1/C of the "
        "chosen cell): with a margin of 0 the best of many cells passes whenever any cell leaks at all",
    )


def memorized_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Chapter 06: the rows of `table` whose teacher memorized its dataset (the claims use only these)."""
    return table[table.teacher_memorized.astype(bool)]


def split_teachers(table: pd.DataFrame, seed: int) -> tuple[list, list]:
    """Chapter 06: the teachers (datasets) that memorized, split at random (`seed`) into those a cell is
    chosen on and those it is tested on (`memkd.metrics.choose_and_test_units`)."""
    return metrics.choose_and_test_units(memorized_rows(table).dataset, seed=seed)


def nontrivial_cell_claim(ch: "Chapter", table: pd.DataFrame) -> str:
    """Record on `ch` (a `memkd.book.chapter.Chapter`) that the best cell of the grid (by the ratio of
    held-out to trivial accuracy, chosen on one half of the teachers, `split_teachers` with `ch.seed`) has
    held-out accuracy above the teachers' trivial accuracy by more than `composition_far_above(1/C)` on the
    other half (one-sided, teachers as the unit), and return its sentence (Markdown)."""
    ch.rest_on(table)
    ok = memorized_rows(table)
    choose, test = split_teachers(table, ch.seed)
    c, pc, d = an.best_cell(ok, an.GRID_KEYS, "ratio", units=choose)
    far = composition_far_above(1 / c)  # "far above": more than twice the trivial accuracy
    return ch.claim(
        "composition_nontrivial_cells",
        "Some dataset compositions give students held-out accuracy far above the trivial accuracy "
        f"(more than 1/C = {far.value:.3g} above it).",
        an.select(ok, {"classes": c, "per_class": pc, "input_dim": d}, test),
        baseline="teacher_independent_acc",
        expect="above",
        margin=far,
        what=f"held-out accuracy in the cell C = {c}, {pc} per class, d = {d} (chosen on "
        f"teachers {choose}, tested on {test}) against the trivial accuracy",
        detail=f"chosen on {choose}, tested on {test}",
    )


def best_dimension_claim(ch: "Chapter", table: pd.DataFrame, best: pd.DataFrame) -> str:
    """Record on `ch` that the best input dimension grows with the samples per class, and return its sentence:
    per teacher, the slope of log(best d) on log(samples per class) averaged over the panels C
    (`grid_analysis.dimension_slopes` of `best`, `grid_analysis.best_dimension_per_unit` of the memorized
    rows); the claim is an exact sign test, more than half of the teachers with a slope above 0 (p0 = 0.5).
    The teachers of `table` that did not memorize are named in its detail."""
    ch.rest_on(table)
    slopes = an.dimension_slopes(best)
    failed = an.failed_cells(table)
    total = table.groupby(["classes", "per_class", "input_dim", "dataset"]).ngroups
    return ch.claim_count(
        "best_dimension_grows",
        "The best input dimension grows with the number of samples per class.",
        **an.sign_counts(slopes.slope),
        p0=0.5,
        expect="above",
        what="teachers whose slope of log(best d) on log(samples per class) is above 0 (sign test)",
        detail="per-teacher slopes: "
        + ", ".join(f"{s:.2f}" for s in slopes.slope)
        + f"; {len(failed)} of {total} teachers did not memorize and are left out",
        source=table,
    )


def interior_claim(ch: "Chapter", table: pd.DataFrame) -> str:
    """Record on `ch` that the best input dimension lies inside the grid, and return its sentence: the row and
    interior d chosen on one half of the teachers (`split_teachers` with `ch.seed`), the held-out accuracy there
    above the better of the two ends on the other half (one-sided, teachers as the unit). A grid with fewer
    than three input dimensions has no interior: nothing is recorded, and the sentence says so."""
    ch.rest_on(table)
    if len(table.attrs["config"]["input_dims"]) < 3:
        return "*This grid has fewer than three input dimensions, so it has no interior: not tested.*"
    ok = memorized_rows(table)
    choose, test = split_teachers(table, ch.seed)
    row = an.interior_row(ok, "test_acc", units=choose)
    advantage = an.interior_advantage(ok, row, "test_acc", units=test)
    return ch.claim(
        "optimum_inside_grid",
        "The best input dimension lies inside the grid: overly large (and too small) dimensions transfer less.",
        an.student_rows(advantage, "advantage").assign(chance=1 / row["classes"]),
        value="advantage",
        expect="above",
        what=f"held-out accuracy at d = {row['input_dim']} minus the better end "
        f"(d = {row['ends'][0]} or {row['ends'][1]}) "
        f"for C = {row['classes']}, {row['per_class']} per class (chosen on teachers {choose}, tested on {test})",
        detail=f"row and d chosen on {choose} (advantage there {row['advantage']:.3f}), tested on {test}",
    )


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
    return (
        f"White cells (no teacher memorized its dataset within its budget): {names(white)}. Grey cells (mean "
        f"held-out accuracy below chance 1/C): {names(grey)}."
    )


def departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 06: `standard_departures` (sizes: only the teacher's width, the grid sets the rest) and
    the grid (`grid_keys`) against the paper profile's."""
    paper = ex.dataset_composition.config.PROFILE_VALUES["paper"]
    return grid_departures(table, paper, grid_keys, paper_sizes={"teacher_width": paper["teacher_width"]})
