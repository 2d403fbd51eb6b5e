"""Chapter 05 (temperature x learning rate, Fig 5): its claims, outcome sentences and departures.

The experiment (`memkd.experiments.fig5_temperature_lr`) and `memkd.book.grid_analysis` give the grid and
its tests. This module records the chapter's claims: at the setting fixed in advance (`tested_setting`,
`fixed_setting_claims`), at the cell chosen on half of the teachers and tested on the other half
(`chosen_cell_claims`) and at the second teacher clock (`second_clock_claim`); it says where the held-out accuracy peaks
along each axis (`axis_optimum`, `temperature_lr_optima`), how far each axis moves it with the temperature
claim's verdict (`temperature_lr_outcomes`), what the second teacher clock changes (`clock_outcome`,
`clock_note`) and how the run departs from the paper (`departures`, with the grid the chapter shows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import pandas as pd

from memkd import experiments as ex, metrics
from memkd.book import grid_analysis as an
from memkd.book.departures import Departure, config_of, departure_row, grid_departures
from memkd.book.outcomes import find, outcome

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


def axis_optimum(curve: pd.Series, name: str, fmt: str = "{:g}") -> str:
    """Where a curve over one axis of a grid peaks (the best value of the other axes at each point),
    in words (a predicate for "the held-out accuracy ..."): inside the grid, with the values at both
    ends, or at an edge.

    curve: (K,) accuracy indexed by the axis's values, sorted ascending; name: the axis ("T").
    """
    curve = curve.dropna().sort_index()
    if len(curve) < 2:
        return f"the grid has a single {name}"
    best = curve.idxmax()
    at = f"{name} = {fmt.format(best)} ({curve[best]:.3f})"
    first, last = curve.index[0], curve.index[-1]
    if best == last:
        return f"is highest at the grid's largest {at}: the grid does not reach past the optimum"
    if best == first:
        return f"is highest at the grid's smallest {at}: the grid does not reach below the optimum"
    return (
        f"peaks inside the grid, at {at}: {curve[first]:.3f} at the smallest {name} = {fmt.format(first)}, "
        f"and beyond the peak it falls to {curve[last]:.3f} at the largest {name} = {fmt.format(last)}"
    )


def temperature_lr_optima(grid: pd.DataFrame) -> str:
    """Chapter 05: where the held-out accuracy peaks along each axis of the grid (temperatures x
    learning rates, means over teachers): each temperature at its best learning rate, and each
    learning rate at its best temperature. Descriptive, not a test."""
    return (
        f"Taking each temperature at its best learning rate, the held-out accuracy "
        f"{axis_optimum(grid.max(axis=1), 'T')}; taking each learning rate at its best temperature, it "
        f"{axis_optimum(grid.max(axis=0), 'lr')}."
    )


def temperature_lr_outcomes(ch: "Chapter", grid: pd.DataFrame) -> str:
    """Chapter 05: how far the temperature and the learning rate move the held-out accuracy on this
    build's grid (temperatures x learning rates, means over teachers), and the temperature claim."""
    by_lr = (grid.max(axis=1) - grid.min(axis=1)).mean()  # at a fixed T, across learning rates
    by_t = (grid.max(axis=0) - grid.min(axis=0)).mean()  # at a fixed learning rate, across temperatures
    which = (
        "the temperature moves it more than the learning rate"
        if by_t > by_lr
        else "the learning rate moves it more than the temperature"
        if by_lr > by_t
        else "both move it as much"
    )
    text = (
        f"On this build's grid, changing the temperature at a fixed learning rate moves the held-out "
        f"accuracy by {by_t:.3f} on average (largest minus smallest), changing the learning rate at a fixed "
        f"temperature by {by_lr:.3f}: {which} (means over teachers, not a test). " + temperature_lr_optima(grid)
    )
    return (
        text
        + " "
        + outcome(
            ch,
            "high_temperature_helps",
            "The high temperature fixed in advance beats T = 1 by {difference:+.3f} ({interval}).",
            "The high temperature fixed in advance does not beat T = 1 here ({difference:+.3f}, {interval}): this "
            "build contradicts the paper's 'a higher temperature seems necessary' at this budget.",
            "Whether the high temperature fixed in advance beats T = 1 is undecided ({difference:+.3f}, {interval}).",
        )
    )


def tested_setting(config: dict) -> tuple[float, float, float]:
    """Chapter 05: the setting fixed in advance, from an experiment's saved `config`: the profile's own
    temperature and learning rate (`tested_temperature`, `tested_lr`, those of chapters 02, 03 and 07) and
    the grid's lowest temperature (T = 1 in every profile). Returns (high T, its lr, low T)."""
    return config["tested_temperature"], config["tested_lr"], min(config["temperatures"])


def fixed_setting_claims(ch: "Chapter", table: pd.DataFrame, teacher_stop: str) -> list[str]:
    """Record chapter 05's claims at the setting fixed in advance (`tested_setting`) on `ch` (a
    `memkd.book.chapter.Chapter`) and return their sentences (Markdown).

    `table`: one row per student of `temperature_lr` (its config in `table.attrs`), its teachers trained
    under `teacher_stop`. The high temperature beats the lowest at the tested learning rate (paired on
    teachers, one-sided); at that cell the held-out accuracy beats the teachers' trivial accuracy
    (`teacher_independent_acc`; Fig 2's effect again: it `supports` chapter 02's claim).
    """
    ch.rest_on(table)
    t_hi, lr0, t_lo = tested_setting(table.attrs["config"])
    return [
        ch.claim_difference(
            "high_temperature_helps",
            "A high softmax temperature transfers more memorized information than T = 1.",
            an.select(table, {"temperature": t_hi, "lr": lr0}),
            an.select(table, {"temperature": t_lo, "lr": lr0}),
            expect="above",
            what=f"held-out accuracy, T = {t_hi:g} against T = {t_lo:g} at lr = {lr0:g} (fixed in advance); teachers "
            f"{teacher_stop}, {(an.teacher_clock(table) or {}).get('median', float('nan')):g}× their first 100%",
        ),
        ch.claim(
            "temperature_grid_beats_trivial",
            "At a good temperature and learning rate the held-out accuracy is far above the trivial accuracy.",
            an.select(table, {"temperature": t_hi, "lr": lr0}),
            baseline="teacher_independent_acc",
            expect="above",
            supports="02_logit_distillation:logits_beat_chance",  # Fig 2's effect again, at Fig 5's setting
            what=f"held-out accuracy at T = {t_hi:g}, lr = {lr0:g} (fixed in advance) against the trivial accuracy",
        ),
    ]


def chosen_cell_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Choose on half of the teachers, test on the other half (split at random with `ch.seed`): the best cell
    with T above the grid's lowest against the lowest T at its own best learning rate (paired on the test
    teachers, one-sided; the same effect as `high_temperature_helps`, which it `supports`). Returns the
    sentence saying what was chosen on which teachers, then the claim's sentence (Markdown)."""
    ch.rest_on(table)
    t_lo = tested_setting(table.attrs["config"])[2]
    choose, test = metrics.choose_and_test_units(table.dataset, seed=ch.seed)
    t_best, lr_best = an.best_cell(table[table.temperature > t_lo], ["temperature", "lr"], units=choose)
    (lr_cold,) = an.best_cell(table[table.temperature == t_lo], ["lr"], units=choose)
    return [
        f"Chosen on teachers {choose}: T = {t_best:g} at lr = {lr_best:g}; T = {t_lo:g} at lr = {lr_cold:g}. "
        f"Tested on teachers {test}:",
        ch.claim_difference(
            "best_temperature_above_one",
            "The best temperature is above 1: a higher temperature seems necessary.",
            an.select(table, {"temperature": t_best, "lr": lr_best}, test),
            an.select(table, {"temperature": t_lo, "lr": lr_cold}, test),
            expect="above",
            supports="05_temperature_lr:high_temperature_helps",  # the same effect, at the chosen cell
            what=f"held-out accuracy, T = {t_best:g} (lr = {lr_best:g}) against T = {t_lo:g} (lr = {lr_cold:g})",
            detail=f"chosen on teachers {choose}, tested on teachers {test}",
        ),
    ]


def second_clock_claim(ch: "Chapter", table: pd.DataFrame, second: pd.DataFrame, other_stop: str) -> str:
    """Record on `ch` the claim fixed in advance again on `second`, the same datasets with the teachers on
    the other clock (`other_stop`), and return its sentence: the high temperature beats the lowest at the
    tested learning rate (paired on teachers, one-sided; it `supports` `high_temperature_helps`). `table`
    (the chapter's own run) gives the setting and its teachers' clock for the comparison."""
    ch.rest_on(table)
    t_hi, lr0, t_lo = tested_setting(table.attrs["config"])
    clocks = an.teacher_clock(table), an.teacher_clock(second)
    return ch.claim_difference(
        "high_temperature_helps_second_clock",
        "A high softmax temperature transfers more memorized information than T = 1, with the teachers on a "
        "second clock.",
        an.select(second, {"temperature": t_hi, "lr": lr0}),
        an.select(second, {"temperature": t_lo, "lr": lr0}),
        expect="above",
        supports="05_temperature_lr:high_temperature_helps",
        what=f"held-out accuracy, T = {t_hi:g} against T = {t_lo:g} at lr = {lr0:g}, teachers {other_stop} "
        f"({clocks[1]['median']:g}× their first 100%, against {clocks[0]['median']:g}× above)",
    )


def clock_outcome(
    ch: "Chapter", first: str = "high_temperature_helps", second: str = "high_temperature_helps_second_clock"
) -> str:
    """Chapter 05: the temperature claim at the chapter's teacher clock and at the second one."""
    a, b = find(ch, first), find(ch, second)
    if a is None or b is None:
        return ""
    both = f"{a.difference:+.3f} ({a.verdict}) at the chapter's clock, {b.difference:+.3f} ({b.verdict}) at the second"
    if a.verdict == b.verdict:
        return f"The temperature claim gets the same verdict at both teacher clocks: {both}."
    if "does not hold" in (a.verdict, b.verdict) and "holds" in (a.verdict, b.verdict):
        return (
            f"**The temperature effect depends on how long the teachers train:** {both}. The verdict of the "
            "chapter's claim holds for its own teacher clock only."
        )
    return f"The two teacher clocks give different verdicts, one of them undecided: {both}."


def clock_note(
    ch: "Chapter", first: str = "high_temperature_helps", second: str = "high_temperature_helps_second_clock"
) -> str:
    """Chapter 05: the words added to the headline temperature claim's sentence when its verdict moves
    with the teachers' clock ("" when both clocks give the same verdict, or one was not run)."""
    a, b = find(ch, first), find(ch, second)
    if a is None or b is None or a.verdict == b.verdict:
        return ""
    return (
        f"(Its verdict moves with the teachers' clock: {a.verdict} here, {b.verdict} with the teachers on the "
        f"second clock, {b.difference:+.3f}.)"
    )


def qualify_by_clock(ch: "Chapter", claim: str = "high_temperature_helps") -> str:
    """Add `clock_note` to the headline claim's sentence when its verdict moves with the teachers' clock
    (a headline that depends on the clock says so where it is read); return the note ("" if none)."""
    note = clock_note(ch, first=claim)
    if note:
        ch.qualify(claim, note)
    return note


def departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 05: `standard_departures`, the grid (`grid_keys`) against the paper profile's, one
    student budget for the whole grid."""
    return grid_departures(table, ex.temperature_lr.config.PROFILE_VALUES["paper"], grid_keys) + [
        departure_row("05_temperature_lr", "student epochs", epochs=config_of(table)["epochs"])
    ]
