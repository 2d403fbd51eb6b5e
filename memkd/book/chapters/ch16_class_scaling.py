"""Chapter 16 (how the threshold and the capacity move with the number of classes, the published Fig 4b):
its claims, closing text and departures.

The experiment (`memkd.experiments.class_scaling`) returns one row per student and the thresholds per C
(`thresholds`, `collapse`); this module records the chapter's claims on them (`scaling_claims`), writes
the closing text from the verdicts (`class_scaling_summary`) and lists how a run departs from the released
Fig 4b and App. Fig 13 (`departures`; the wording in departures.yml, group 16_class_scaling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from memkd import experiments as ex
from memkd.book.departures import Departure, config_of, departure_row
from memkd.book.outcomes import outcome
from memkd.experiments.class_scaling import students_of
from memkd.tables import TEACHER_ID

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


def scaling_claims(
    ch: "Chapter",
    table: pd.DataFrame,
    *,
    p_recover: float,
    p_fail: float,
    capacity_low: float,
    capacity_high: float,
    p_capacity: float,
    margin_chance: Any,
) -> list[str]:
    """Record chapter 16's claims on `ch` (a `memkd.book.chapter.Chapter`) and return their sentences.

    On the unshuffled Adam students (the released protocol) of teachers that memorized, pooled over C:
    above the line rho N >= d (the same N/d for every C) the share of teachers recovered exceeds
    `p_recover`, below it stays under `p_fail` (exact tests on teachers). On the teachers: at
    n ln C / d <= `capacity_low` the share that memorized exceeds `p_capacity`, at >= `capacity_high` the
    share that failed does (the capacity collapses in these units); teachers with C >= 10 memorize beyond
    the binary capacity N/d = 2 (so it does not collapse in N/d). The shuffled Adam students sit at chance
    within `margin_chance` (per teacher, held-out accuracy minus 1/C), where they see at least two points of
    each class (with one, the derangement within a class cannot move it).
    """
    ch.rest_on(table)
    out: list[str] = []
    adam = students_of(table, "adam")
    ok = adam[adam["teacher_perfect"]]
    t = float(adam["temperature"].iloc[0])
    for name, side, expect, p0, text in [
        (
            "recovery_above_line",
            ok["n_student"] >= ok["input_dim"],
            "above",
            p_recover,
            "Above the line rho N = d, i.e. from the same N/d = 1/rho for every C, the students recover the teacher "
            "(held-out accuracy 1).",
        ),
        (
            "no_recovery_below_line",
            ok["n_student"] < ok["input_dim"],
            "below",
            p_fail,
            "Below the line rho N = d the students do not recover the teacher, for any C.",
        ),
    ]:
        part = ok[side]
        s, n = int((part.groupby(TEACHER_ID)["test_acc"].min() == 1.0).sum()), int(part[TEACHER_ID].nunique())
        if n == 0:
            out.append(f"*Not tested ({name}): no teacher that memorized has students on that side of the line.*")
            continue
        out.append(
            ch.claim_count(
                name,
                text,
                s,
                n,
                p0,
                expect=expect,
                teachers=n,
                what=f"Adam, T = {t:g}, {'above' if expect == 'above' else 'below'} the line: teachers recovered",
            )
        )
    teachers = adam.drop_duplicates(TEACHER_ID)
    low, high = teachers[teachers["a_log_c"] <= capacity_low], teachers[teachers["a_log_c"] >= capacity_high]
    if len(low):
        out.append(
            ch.claim_count(
                "teacher_memorizes_below_log_capacity",
                f"For every C the teacher memorizes its random labels at n ln C / d <= {capacity_low:g}.",
                int(low["teacher_perfect"].sum()),
                len(low),
                p_capacity,
                expect="above",
                teachers=len(low),
                what=f"teachers at 100% for n ln C / d <= {capacity_low:g}",
            )
        )
    if len(high):
        out.append(
            ch.claim_count(
                "teacher_fails_above_log_capacity",
                f"For every C the teacher cannot memorize at n ln C / d >= {capacity_high:g}.",
                int((~high["teacher_perfect"]).sum()),
                len(high),
                p_capacity,
                expect="above",
                teachers=len(high),
                what=f"teachers below 100% for n ln C / d >= {capacity_high:g}",
            )
        )
    beyond = low[(low["classes"] >= 10) & (low["n_over_d"] > 2)]
    if len(beyond):
        out.append(
            ch.claim_count(
                "capacity_beyond_binary_line",
                "With C >= 10 classes the teacher memorizes beyond "
                "N/d = 2, the capacity of a binary linear separator: in N/d the capacity does not collapse.",
                int(beyond["teacher_perfect"].sum()),
                len(beyond),
                p_capacity,
                expect="above",
                teachers=len(beyond),
                what=f"teachers with C >= 10 at 100% for N/d > 2 (and n ln C / d <= {capacity_low:g})",
            )
        )
    shuffled = students_of(table, "adam", shuffled=True)
    # a student that sees one point of a class has no other point of it to trade soft labels with
    shuffled = shuffled[shuffled["teacher_perfect"] & (shuffled["n_student"] >= 2 * shuffled["classes"])]
    shuffled = shuffled.assign(excess=shuffled["test_acc"] - shuffled["chance"])
    if len(shuffled):
        out.append(
            ch.claim(
                "shuffled_at_chance",
                f"The within-class-shuffled Adam student sits at chance 1/C (within "
                f"±{margin_chance:g}; students that see at least two points of each class).",
                shuffled,
                value="excess",
                baseline=0.0,
                expect="equivalent",
                margin=margin_chance,
                unit=TEACHER_ID,
                what="shuffled: held-out accuracy minus 1/C",
            )
        )
    return out


def class_scaling_summary(ch: "Chapter", moves: pd.DataFrame, edges: pd.DataFrame) -> str:
    """Chapter 16's closing text (Markdown): the recovery and capacity claims' verdicts with their numbers,
    the unit in which each threshold moved least across C in this build (`moves`:
    `memkd.experiments.class_scaling.collapse`), and App. Fig 13's windows (`edges`:
    `memkd.experiments.temperature_window.window_edges` of the C = 10 run)."""

    def least(quantity: str) -> str:
        part = moves[(moves["quantity"] == quantity) & moves["ratio"].notna()]
        if part.empty:
            return f"this grid does not locate the {quantity} threshold at two or more class counts"
        best = part.loc[part["ratio"].idxmin()]
        others = ", ".join(f"{r.ratio:.2f} in {r.unit}" for r in part.itertuples() if r.unit != best["unit"])
        return (
            f"the {quantity} threshold moved least in **{best['unit']}** (largest over smallest across "
            f"{int(best['classes'])} class counts: {best['ratio']:.2f}; {others})"
        )

    lines = [
        outcome(
            ch,
            "recovery_above_line",
            "Above the line rho N = d the students recovered their teachers for every C ({measured:.0%} of "
            "{n} teachers): the line is one value of N/d for all class counts.",
            "Above the line rho N = d the students did not recover their teachers as the count predicts "
            "({measured:.0%} of {n} teachers recovered).",
            "Whether the students recover above the line is undecided in this build ({measured:.0%} of {n} "
            "teachers, {interval}).",
            "*No teacher that memorized has students above the line here.*",
        ),
        outcome(
            ch,
            "no_recovery_below_line",
            "Below it they did not ({measured:.0%} of {n} teachers).",
            "Below it some did ({measured:.0%} of {n} teachers): the threshold sits below the line here.",
            "Below it the build is undecided ({measured:.0%} of {n} teachers, {interval}).",
            "*No teacher that memorized has students below the line here.*",
        ),
        outcome(
            ch,
            "teacher_memorizes_below_log_capacity",
            "The teachers memorized at small n ln C / d for every C ({measured:.0%} of {n})",
            "The teachers failed to memorize at small n ln C / d more often than planned ({measured:.0%} "
            "memorized of {n})",
            "Whether the teachers memorize at small n ln C / d is undecided ({measured:.0%} of {n}, {interval})",
        ),
        outcome(
            ch,
            "teacher_fails_above_log_capacity",
            "and failed at large n ln C / d ({measured:.0%} of {n} failed): their capacity sits in one band "
            "of n ln C / d for every C.",
            "but did not fail at large n ln C / d as planned ({measured:.0%} of {n} failed).",
            "while their failure at large n ln C / d is undecided ({measured:.0%} of {n}, {interval}).",
        ),
        outcome(
            ch,
            "capacity_beyond_binary_line",
            "With C >= 10 they memorized beyond N/d = 2 ({measured:.0%} of {n}), where a binary teacher "
            "cannot: in N/d the capacity grows with C.",
            "With C >= 10 they did not memorize beyond N/d = 2 as planned ({measured:.0%} of {n}).",
            "Whether teachers with C >= 10 memorize beyond N/d = 2 is undecided ({measured:.0%} of {n}).",
            "*No teacher with C >= 10 beyond N/d = 2 within the capacity band in this grid.*",
        ),
    ]
    text = " ".join(line for line in lines if line)
    text += f"\n\nIn this build {least('recovery')}, and {least('capacity')}."
    rows = edges[(edges["classes"] == 10)].set_index("solver")
    windows = [
        f"{solver}: "
        + (
            f"T = {rows.loc[solver, 't_low']:.3g} .. {rows.loc[solver, 't_high']:.3g} "
            f"({int(rows.loc[solver, 'in_window'])} of {int(rows.loc[solver, 'of'])} temperatures)"
            if rows.loc[solver, "in_window"]
            else "no temperature"
        )
        for solver in ("adam", "exact")
        if solver in rows.index
    ]
    if windows:
        text += (
            "\n\nApp. Fig 13 (C = 10, float32): every eligible teacher's student recovers at "
            + "; ".join(windows)
            + "."
        )
        if {"adam", "exact"} <= set(rows.index):
            narrower = rows.loc["adam", "in_window"] < rows.loc["exact", "in_window"]
            text += (
                " Adam's window is the narrower: at this profile's budget the optimizer, not the soft labels, "
                "sets an edge, as in chapter 12."
                if narrower
                else " Adam's window is as wide as the exact "
                "solve's: on this grid the soft labels, not the optimizer, set the edges."
            )
    return text


def departures(table: pd.DataFrame, fig13: pd.DataFrame | None = None) -> list[Departure]:
    """Chapter 16: how a `class_scaling` table departs from the released Fig 4b, and, once its table `fig13`
    (a `temperature_window` run at C = 10) is there, how that run departs from App. Fig 13."""
    cfg, out = config_of(table), []
    if (cfg["teacher_epochs"], cfg["teacher_lr"]) != (5_000, 1e-3):
        out.append(departure_row("16_class_scaling", "teacher budget", **cfg))
    if (cfg["epochs"], cfg["lr"]) != (10_000, 1e-4):
        out.append(departure_row("16_class_scaling", "student budget", **cfg))
    released = ex.class_scaling.config.PROFILE_VALUES["paper"]
    if (
        any(tuple(cfg[k]) != tuple(released[k]) for k in ("a_log_c", "a_sqrt_c"))
        or cfg["input_dim"] != 100
        or tuple(cfg["class_counts"]) != (2, 10, 20, 30, 40, 50)
    ):
        grid = {k: ", ".join(f"{a:g}" for a in cfg[k]) or "none" for k in ("a_log_c", "a_sqrt_c", "a_c")}
        out.append(
            departure_row(
                "16_class_scaling",
                "profile sizes",
                **{**cfg, **grid},
                class_list=", ".join(map(str, cfg["class_counts"])),
            )
        )
    if cfg["a_c"] and cfg["input_dim"] != 1000:
        out.append(departure_row("16_class_scaling", "a d / C design", **cfg))
    if sum(bool(cfg[k]) for k in ("a_log_c", "a_sqrt_c", "a_c")) > 1:
        out.append(departure_row("16_class_scaling", "pooled designs"))
    out.append(departure_row("16_class_scaling", "inputs"))
    if cfg.get("shuffle", True):
        out.append(departure_row("16_class_scaling", "shuffle kind", smallest_n=int(table["n_per_class"].min())))
    if "exact" in cfg["solvers"]:
        out.append(departure_row("16_class_scaling", "exact solver"))
    if fig13 is not None:
        f = config_of(fig13)
        temps = sorted(fig13["temperature"].unique())
        out.append(
            departure_row(
                "16_class_scaling",
                "App. Fig 13 grid",
                **{**f, "rho": ", ".join(map(str, f["rhos"]))},
                n_sizes=len(f["n_over_d"]),
                n_temperatures=len(temps),
                lowest=temps[0],
                highest=temps[-1],
            )
        )
    return out
