"""Chapter 12 (the temperature window of multinomial logistic regression, the published Fig 4a): its claims,
outcome table and departures.

The experiment (`memkd.experiments.temperature_window`) returns one row per student and the windows per
teacher (`window_per_teacher`) and per setting (`window_edges`); this module records the chapter's claims
on them (`window_claims`), writes the windows and what sets each edge (`window_table`) and lists how a run
departs from the released Fig 4a and App. Fig 13 (`departures`; the wording in departures.yml, group
12_temperature_window).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from memkd.book.plan import Margin
from memkd.book.departures import Departure, config_of, departure_row
from memkd.experiments.temperature_window import window_per_teacher

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def window_same_width(value: float = 1.0) -> Margin:
    """Chapter 12: two precisions give 'the same window'."""
    return Margin(
        value,
        f"{value:g} temperature: one step of the temperature grid, the resolution at which a window's edge is measured",
    )


def window_claims(
    ch: "Chapter",
    table: pd.DataFrame,
    *,
    t_in: float,
    p_recover: float,
    p_fail: float,
    margin_width: Any,
    margin_chance: Any,
) -> list[str]:
    """Record chapter 12's claims on `ch` (a `memkd.book.chapter.Chapter`) and return their sentences
    (Markdown, a "**C = c**" line before each class count's).

    Per C: Adam recovers at `t_in` and fails at the smallest T, the exact solve recovers there (exact
    tests on teachers against `p_recover` / `p_fail`); each solver's window is wider with the more
    precise soft labels (paired on teachers; the book's own finding, `ch.section(beyond_paper=True)`),
    except Adam's float64 against float32, the same within `margin_width`; bfloat16's exact solve fails
    at the largest T; the shuffled Adam student sits at chance within `margin_chance`. Margins may be
    `memkd.book.plan.Margin`s or bare numbers.
    """
    ch.rest_on(table)
    temps = sorted(table.temperature.unique())
    dtypes = [d for d in ("float64", "float32", "bfloat16") if d in set(table.dtype)]
    classes = sorted(table.classes.unique())
    out: list[str] = []
    widths = window_per_teacher(table)
    eligible = table[table.teacher_perfect & ~table.shuffled & (table.n_student >= table.input_dim)]
    t_low, t_high = temps[0], temps[-1]

    def count(c, dt, solver, t):
        part = eligible[
            (eligible.classes == c)
            & (eligible.dtype == dt)
            & (eligible.solver == solver)
            & np.isclose(eligible.temperature, t)
        ]
        return int((part.test_acc == 1.0).sum()), int(part.teacher.nunique())

    def width(c, dt, solver):
        return widths[(widths.classes == c) & (widths.dtype == dt) & (widths.solver == solver)]

    ref = "float32" if "float32" in dtypes else dtypes[-1]
    for c in classes:
        out.append(f"**C = {c}**")
        if any(np.isclose(temps, t_in)):
            s, n = count(c, ref, "adam", t_in)
            out.append(
                ch.claim_count(
                    f"c{c}_adam_recovers_at_T{t_in:g}",
                    f"C = {c}: at T = {t_in:g} students "
                    f"trained by Adam on {ref} soft labels recover the teacher (held-out accuracy 1).",
                    s,
                    n,
                    p_recover,
                    expect="above",
                    teachers=n,
                    what=f"C = {c}, Adam, {ref}, T = {t_in:g}: teachers recovered",
                )
            )
        s, n = count(c, ref, "adam", t_low)
        out.append(
            ch.claim_count(
                f"c{c}_adam_fails_at_lowest_T",
                f"C = {c}: at the smallest T ({t_low:g}) Adam "
                f"students on {ref} soft labels do not recover at this budget.",
                s,
                n,
                p_fail,
                expect="below",
                teachers=n,
                what=f"C = {c}, Adam, {ref}, T = {t_low:g}: teachers recovered",
            )
        )
        s, n = count(c, dtypes[0], "exact", t_low)
        out.append(
            ch.claim_count(
                f"c{c}_exact_recovers_at_lowest_T",
                f"C = {c}: at the smallest T ({t_low:g}) the "
                f"exact solve from {dtypes[0]} soft labels recovers the teacher.",
                s,
                n,
                p_recover,
                expect="above",
                teachers=n,
                what=f"C = {c}, exact, {dtypes[0]}, T = {t_low:g}: teachers recovered",
                check=dtypes[0] == "float64",
            )
        )  # float64 keeps the logit differences exactly: it cannot fail
        for solver in ("exact", "adam"):
            for hi, lo in zip(dtypes[:-1], dtypes[1:]):
                same = solver == "adam" and (hi, lo) == ("float64", "float32")
                text = (
                    f"C = {c}: with Adam, float64 soft labels give the same window as float32 (within "
                    f"±{margin_width:g} temperature)."
                    if same
                    else f"C = {c}: the {solver} student's window is wider with {hi} soft labels than with {lo}."
                )
                with ch.section(beyond_paper=not same):  # precision: beyond the published version
                    out.append(
                        ch.claim_difference(
                            f"c{c}_{solver}_window_{hi}_vs_{lo}",
                            text,
                            width(c, hi, solver),
                            width(c, lo, solver),
                            value="width",
                            expect="equivalent" if same else "above",
                            margin=margin_width if same else 0.0,
                            unit="teacher",
                            what=f"C = {c}, {solver}: window width, {hi} vs {lo} (temperatures)",
                            detail="" if same else "beyond the published version",
                        )
                    )
        if "bfloat16" in dtypes:
            s, n = count(c, "bfloat16", "exact", t_high)
            with ch.section(beyond_paper=True):  # precision: beyond the published version
                out.append(
                    ch.claim_count(
                        f"c{c}_bfloat16_upper_edge_precision",
                        f"C = {c}: at the largest T ({t_high:g}) even the exact "
                        "solve from bfloat16 soft labels does not recover.",
                        s,
                        n,
                        p_fail,
                        expect="below",
                        teachers=n,
                        what=f"C = {c}, exact, bfloat16, T = {t_high:g}: teachers recovered",
                        detail="beyond the published version",
                        check=True,
                    )
                )  # 8 bits of mantissa: it cannot recover
        shuffled = table[
            (table.classes == c)
            & table.shuffled
            & table.teacher_perfect
            & (table.solver == "adam")
            & (table.dtype == ref)
            & np.isclose(table.temperature, t_in)
        ]
        if len(shuffled):
            out.append(
                ch.claim(
                    f"c{c}_shuffled_at_chance",
                    f"C = {c}: the within-class-shuffled Adam student "
                    f"({ref}, T = {t_in:g}) sits at chance (within ±{margin_chance:g}).",
                    shuffled,
                    baseline=1 / c,
                    expect="equivalent",
                    margin=margin_chance,
                    unit="teacher",
                    what=f"C = {c}, shuffled, against 1/C",
                )
            )
    return out


def window_table(edges: pd.DataFrame, classes: list[int], dtypes: list[str], temps: list[float]) -> str:
    """Chapter 12: a Markdown table of the temperature windows, one row per (C, precision), with the
    Adam student's and the exact solve's windows and what sets each edge. `edges`: classes, dtype,
    solver, t_low, t_high (NaN: no window), in_window, of, and optionally gaps (temperatures between
    the edges that fail, named in the window's cell); `temps`: the temperature grid, ascending."""

    def edge_cause(adam: pd.Series, exact: pd.Series, side: str) -> str:
        a, e = adam[f"t_{side}"], exact[f"t_{side}"]
        end = temps[0] if side == "low" else temps[-1]
        if np.isnan(e):
            return "no window"
        why_exact = "the grid's end" if e == end else "the precision"
        if np.isnan(a):
            return f"exact {e:.3g}: {why_exact}; Adam has no window"
        if a == e:
            return f"{a:.3g} for both: {why_exact}"
        return f"Adam {a:.3g}: the optimizer at this budget (the exact solve reaches {e:.3g}: {why_exact})"

    def window(r: pd.Series) -> str:
        if not r.in_window:
            return "none"
        gaps = tuple(r.get("gaps", ()) or ())
        holes = f"; fails inside at T = {', '.join(f'{t:.3g}' for t in gaps)}" if gaps else ""
        return f"{r.t_low:.3g} .. {r.t_high:.3g} ({r.in_window} of {r.of}{holes})"

    lines = ["| C | precision | Adam window | exact window | lower edge | upper edge |", "|---|---|---|---|---|---|"]
    for c in classes:
        for dt in dtypes:
            a = edges[(edges.classes == c) & (edges.dtype == dt) & (edges.solver == "adam")].iloc[0]
            e = edges[(edges.classes == c) & (edges.dtype == dt) & (edges.solver == "exact")].iloc[0]
            lines.append(
                f"| {c} | {dt} | {window(a)} | {window(e)} | {edge_cause(a, e, 'low')} | {edge_cause(a, e, 'high')} |"
            )
    return "\n".join(lines)


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 12: how a `temperature_window` table departs from the released Fig 4a and App. Fig 13."""
    cfg, out = config_of(table), []
    temps = sorted(table.temperature.unique())
    dtypes = [d for d in ("float64", "float32", "bfloat16") if d in set(table.dtype)]
    if (cfg["epochs"], cfg["lr"]) != (10_000, 1e-4):
        out.append(departure_row("12_temperature_window", "student budget", **cfg))
    if (cfg["teacher_epochs"], cfg["teacher_lr"]) != (10_000, 1e-3):
        out.append(departure_row("12_temperature_window", "teacher budget", **cfg))
    if cfg["input_dim"] != 1000 or len(cfg["n_over_d"]) != 20 or len(temps) != 40:
        out.append(
            departure_row(
                "12_temperature_window",
                "profile sizes",
                n_sizes=len(cfg["n_over_d"]),
                n_temperatures=len(temps),
                lowest=temps[0],
                highest=temps[-1],
                **cfg,
            )
        )
    out.append(departure_row("12_temperature_window", "temperatures for C = 10"))
    out.append(departure_row("12_temperature_window", "inputs"))
    out.append(departure_row("12_temperature_window", "shuffle kind"))  # the exact solve's control always runs
    out.append(departure_row("12_temperature_window", "precision and solver", dtypes=", ".join(dtypes)))
    if "bfloat16" in dtypes:
        out.append(departure_row("12_temperature_window", "bfloat16 training"))
    return out + [
        departure_row("12_temperature_window", "shuffled control", shuffle_dtypes=", ".join(cfg["shuffle_adam_dtypes"]))
    ]
