"""One claim's record, a row of claims.csv, and how its numbers are written in a sentence.

Numbers are over teachers (the unit of replication): see `memkd.book.chapter.Chapter.claim`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

CLAIM_COLUMNS = [
    "chapter",
    "claim",
    "paper",
    "data",
    "beyond_paper",
    "expect",
    "value",
    "measured",
    "baseline",
    "difference",
    "sem",
    "ci_low",
    "ci_high",
    "margin",
    "level",
    "n",
    "students",
    "p_value",
    "verdict",
    "detail",
    "test",
    "note",
    "supports",
    "published_version",
    "margin_reason",
    "assumed_effect",
    "effect_reason",
    "planned_n",
    "sd_source",
    "baseline_reason",
    "kind",
    "experiment",
    "teachers_run",
]
CLAIM_KINDS = ("claim", "check")  # a claim can fail; a check cannot fail at this size (shown apart, never counted)
DEPARTURE_COLUMNS = ["chapter", "topic", "paper", "book", "reason"]


@dataclass
class Claim:
    """One claim with what this build measured: a row of claims.csv (see `Chapter.claim`).

    Numbers are over teachers: `measured` and `baseline` are means of the per-teacher means,
    `difference` their mean difference with its `sem`, [ci_low, ci_high] its (1 - 2*level) interval,
    `n` the number of teachers and `students` the fewest students any teacher had."""

    chapter: str
    claim: str  # short id, e.g. "soft_beats_chance"
    paper: str  # the claim in our own words
    measured: float
    sem: float
    n: int
    p_value: float
    verdict: str  # one of memkd.metrics.VERDICTS
    detail: str = ""
    data: str = "paper"  # DATA_KINDS
    beyond_paper: bool = False
    expect: str = "above"  # above | below | equivalent
    value: str = ""  # the column measured, e.g. "test_acc"
    baseline: float = math.nan
    difference: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    margin: float = 0.0
    level: float = math.nan
    students: float = math.nan  # students per teacher (the minimum over teachers)
    test: str = "t interval"  # how the verdict was reached: "t interval", "exact sign test" or "exact binomial"
    note: str = ""  # why the test gave no interval (too few teachers, no spread), else ""
    supports: str = ""  # "<chapter>:<claim>" this claim tests again (shown, not counted); "" counts
    published_version: bool = False  # a chapter of "The published version" (its own headline block)
    margin_reason: str = ""  # why the margin is what it is (memkd.book.plan), fixed before the run
    assumed_effect: float = math.nan  # the effect the claim is planned for, in the claim's units
    effect_reason: str = ""  # where that effect comes from (the paper's number or the smallest of interest)
    planned_n: float = math.nan  # the n (teachers; outcomes for an exact test) for 80% power at the level
    sd_source: str = ""  # the spread the plan assumes
    baseline_reason: str = ""  # what the claim is measured against, and why (memkd.book.plan.BASELINES)
    kind: str = "claim"  # CLAIM_KINDS: "check" for a statement that cannot fail at this size (not counted)
    # the experiment whose table the claim rests on and its `teachers` knob in this run ("" / NaN: not known):
    # n grows with that knob, so a claim that needs n' units needs the knob at teachers_run * n' / n
    experiment: str = ""
    teachers_run: float = math.nan


def plural(count: Any, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def units_text(n: Any, students: Any = math.nan) -> str:
    """How many teachers and students a claim rests on: '5 teachers × 4 students', or 'n = 20'
    for a claim recorded in the old form (no students per teacher)."""
    try:
        n_ok = n is not None and not math.isnan(float(n))
        s_ok = students is not None and not math.isnan(float(students))
    except (TypeError, ValueError):
        return "–"
    if not n_ok:
        return "–"
    if not s_ok:
        return f"n = {int(float(n))}"
    return f"{plural(int(float(n)), 'teacher')} × {plural(int(float(students)), 'student')}"


def interval_text(r: dict, of: str = "difference") -> str:
    """'90% interval of the difference [0.050, 0.080] > 0' from an interval_test result (or a
    claims.csv row with ci_low, ci_high, expect, margin, level); '90% interval [...]' when `of` is
    empty; '' without an interval."""
    low, high, level = float(r["ci_low"]), float(r["ci_high"]), float(r["level"])
    if math.isnan(low) or math.isnan(high) or math.isnan(level):
        return ""
    margin = float(r["margin"]) if not math.isnan(float(r["margin"])) else 0.0
    criterion = {
        "above": f"> {margin:.3g}",
        "below": f"< {(-margin if margin else 0.0):.3g}",
        "equivalent": f"within the equivalence margin ±{margin:.3g}",
    }.get(str(r["expect"]), "")
    where = f" of the {of}" if of else ""
    return f"{100 * (1 - 2 * level):.0f}% interval{where} [{low:.3f}, {high:.3f}] {criterion}".rstrip()


def pm_text(mean: float, sem: float) -> str:
    """'0.085 ± 0.006', '0.085' without a SEM, 'n/a' without a mean."""
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if sem is None or math.isnan(sem) else f"{mean:.3f} ± {sem:.3f}"


def verdict_reason(r: dict) -> str:
    if r["verdict"] != "inconclusive":
        return ""
    note = r.get("note")
    if isinstance(note, str) and note:
        return f" ({note})"
    if r["n"] < 2:
        return f" ({plural(r['n'], 'teacher')}: no interval)"
    return " (the interval straddles the bound)"


def power_status(planned_n: Any, n: Any) -> str:
    """'underpowered' (n below the plan), 'powered' (n reaches it), 'not plannable' (the assumed
    effect does not clear the margin), or 'not planned' (no plan, or no spread to plan with)."""
    try:
        planned, n = float(planned_n), float(n)
    except (TypeError, ValueError):
        return "not planned"
    if math.isnan(planned) or math.isnan(n):
        return "not planned"
    if math.isinf(planned):
        return "not plannable"
    return "underpowered" if n < planned else "powered"


def power_text(c: "Claim") -> str:
    """' *Underpowered: ...*' after a claim's sentence where its n falls short of its plan, else ''."""
    status = power_status(c.planned_n, c.n)
    unit = "outcomes" if c.test == "exact binomial" else "teachers"
    if status == "underpowered":
        text = (
            f" *Underpowered: 80% power for the assumed effect ({c.assumed_effect:.3g}; {c.effect_reason}) "
            f"needs {c.planned_n:.0f} {unit}; this build has {c.n}"
        )
        return text + (": it holds with an effect larger than the one planned for.*" if c.verdict == "holds" else ".*")
    if status == "not plannable":
        return f" *Not plannable: the assumed effect ({c.assumed_effect:.3g}) does not clear the margin.*"
    return ""


def claim_units(c: Any) -> str:
    """What a claim rests on: '5 teachers × 4 students', or for an exact test '120 outcomes of 12
    teachers' (a Claim or a claims.csv row)."""
    if getattr(c, "test", "") == "exact binomial" and c.n == c.n:
        teachers = c.students
        return f"{int(c.n)} outcomes" + (f" of {plural(int(teachers), 'teacher')}" if teachers == teachers else "")
    return units_text(c.n, c.students)


def disagreement(verdict: str, expect: str, difference: float, margin: float) -> str:
    """How a claim of the paper stands against it in this build: "contradicts" (the verdict is "does not
    hold"), "leans against" (inconclusive, with the estimate on the other side of the claim's bound:
    for "above" at or below +margin, for "below" at or above -margin, for "equivalent" outside the
    margin), else "" (it agrees, or is undecided with the estimate on the paper's side).

    >>> disagreement("inconclusive", "above", -0.01, 0.0), disagreement("holds", "above", 0.1, 0.0)
    ('leans against', '')
    """
    margin = 0.0 if margin != margin else float(margin)
    if verdict == "does not hold":
        return "contradicts"
    if verdict != "inconclusive" or difference != difference:
        return ""
    wrong = {
        "above": difference <= margin,
        "below": difference >= -margin,
        "equivalent": abs(difference) >= margin,
    }.get(str(expect), False)
    return "leans against" if wrong else ""
