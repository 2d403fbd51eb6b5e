"""Chapter 16 (how the threshold and the capacity move with the number of classes, the published Fig 4b):
its claims.

The experiment (`memkd.experiments.class_scaling`) returns one row per student and the thresholds per C
(`thresholds`, `collapse`); this module records the chapter's claims on them (`scaling_claims`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from memkd.experiments.class_scaling import students_of
from memkd.tables import TEACHER_ID

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


def scaling_claims(ch: "Chapter", table: pd.DataFrame, *, p_recover: float, p_fail: float, capacity_low: float,
                   capacity_high: float, p_capacity: float, margin_chance: Any) -> list[str]:
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
    out: list[str] = []
    adam = students_of(table, "adam")
    ok = adam[adam["teacher_perfect"]]
    t = float(adam["temperature"].iloc[0])
    for name, side, expect, p0, text in [
            ("recovery_above_line", ok["n_student"] >= ok["input_dim"], "above", p_recover,
             "Above the line rho N = d, i.e. from the same N/d = 1/rho for every C, the students recover the teacher "
             "(held-out accuracy 1)."),
            ("no_recovery_below_line", ok["n_student"] < ok["input_dim"], "below", p_fail,
             "Below the line rho N = d the students do not recover the teacher, for any C.")]:
        part = ok[side]
        s, n = int((part.groupby(TEACHER_ID)["test_acc"].min() == 1.0).sum()), int(part[TEACHER_ID].nunique())
        if n == 0:
            out.append(f"*Not tested ({name}): no teacher that memorized has students on that side of the line.*")
            continue
        out.append(ch.claim_count(name, text, s, n, p0, expect=expect, teachers=n,
                                  what=f"Adam, T = {t:g}, {'above' if expect == 'above' else 'below'} the line: "
                                       "teachers recovered"))
    teachers = adam.drop_duplicates(TEACHER_ID)
    low, high = teachers[teachers["a_log_c"] <= capacity_low], teachers[teachers["a_log_c"] >= capacity_high]
    if len(low):
        out.append(ch.claim_count("teacher_memorizes_below_log_capacity", f"For every C the teacher memorizes its "
            f"random labels at n ln C / d <= {capacity_low:g}.", int(low["teacher_perfect"].sum()), len(low),
            p_capacity, expect="above", teachers=len(low), what=f"teachers at 100% for n ln C / d <= {capacity_low:g}"))
    if len(high):
        out.append(ch.claim_count("teacher_fails_above_log_capacity", f"For every C the teacher cannot memorize at "
            f"n ln C / d >= {capacity_high:g}.", int((~high["teacher_perfect"]).sum()), len(high), p_capacity,
            expect="above", teachers=len(high), what=f"teachers below 100% for n ln C / d >= {capacity_high:g}"))
    beyond = low[(low["classes"] >= 10) & (low["n_over_d"] > 2)]
    if len(beyond):
        out.append(ch.claim_count("capacity_beyond_binary_line", "With C >= 10 classes the teacher memorizes beyond "
            "N/d = 2, the capacity of a binary linear separator: in N/d the capacity does not collapse.",
            int(beyond["teacher_perfect"].sum()), len(beyond), p_capacity, expect="above", teachers=len(beyond),
            what=f"teachers with C >= 10 at 100% for N/d > 2 (and n ln C / d <= {capacity_low:g})"))
    shuffled = students_of(table, "adam", shuffled=True)
    # a student that sees one point of a class has no other point of it to trade soft labels with
    shuffled = shuffled[shuffled["teacher_perfect"] & (shuffled["n_student"] >= 2 * shuffled["classes"])]
    shuffled = shuffled.assign(excess=shuffled["test_acc"] - shuffled["chance"])
    if len(shuffled):
        out.append(ch.claim("shuffled_at_chance", f"The within-class-shuffled Adam student sits at chance 1/C (within "
            f"±{margin_chance:g}; students that see at least two points of each class).", shuffled, value="excess", baseline=0.0, expect="equivalent", margin=margin_chance,
            unit=TEACHER_ID, what="shuffled: held-out accuracy minus 1/C"))
    return out

