"""Chapter 11 (the recovery threshold of linear teachers, the published Fig 3): its claims, outcome
sentences and departures.

The experiment (`memkd.experiments.linear_recovery`) returns one row per student and the per-teacher
summaries (`per_teacher`, `teacher_capacity`, `perfect_teachers`, `threshold_summary`); this module
records the chapter's claims on them (`recovery_claims`), says per student kind what the verdicts found
(`recovery_lines`) and lists how a run departs from the released Fig 3 (`departures`, against
`LINEAR_RELEASED`; the wording in departures.yml, group 11_linear_recovery).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from memkd.book.plan import Margin
from memkd.book.departures import Departure, config_of, departure_row
from memkd.experiments.linear_recovery import per_teacher, perfect_teachers, teacher_capacity

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter

# The released Fig 3's protocol: teacher and student budgets, and the input dimension
LINEAR_RELEASED = {"teacher_epochs": 10_000, "teacher_lr": 1e-3, "epochs": 10_000, "lr": 1e-4, "input_dim": 200}

# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def linear_same_threshold(value: float = 0.02) -> Margin:
    """Chapter 11: the soft-label student 'reaches the same threshold' as least squares."""
    return Margin(
        value,
        f"{value:g} in held-out accuracy above the line: at most two held-out points in a hundred "
        "apart, paired on teachers, against a gap of 0.5 between recovery and chance",
    )


def recovery_claims(
    ch: "Chapter",
    table: pd.DataFrame,
    *,
    p_perfect: float,
    margin_chance: Any,
    margin_same: Any,
    capacity_low: float,
    capacity_high: float,
    p_capacity: float,
) -> list[str]:
    """Record chapter 11's claims on `ch` (a `memkd.book.chapter.Chapter`) and return their sentences (Markdown).

    Per student kind: every cell above the line perfect (an exact test on teachers against `p_perfect`), the
    leak below the line above chance, below 1 (least squares) and growing with rho N / d, the shuffled
    control at chance within `margin_chance`; the soft-label student as good as least squares above the
    line within `margin_same` (paired); teachers memorize at N/d <= `capacity_low` and fail at
    N/d >= `capacity_high` (exact tests against `p_capacity`). Two of them cannot fail at these sizes and
    are recorded as checks (shown apart, not counted): least squares below 1 under the line (fewer
    equations than unknowns) and teachers failing far above capacity. Margins may be `memkd.book.plan.Margin`s.
    """
    ch.rest_on(table)
    out: list[str] = []
    teach = per_teacher(table)
    cap = teacher_capacity(table)

    def kind(student, shuffled=False):
        return teach[(teach.student == student) & (teach.shuffled == shuffled)]

    def above(student):
        return kind(student)[kind(student).cells_above > 0]

    for student, words in [("least_squares", "least-squares"), ("soft_labels", "soft-label")]:
        s, n = perfect_teachers(teach, student)
        out.append(
            ch.claim_count(
                f"{student}_perfect_above_line",
                f"Above the line rho N = d the {words} student's "
                "held-out accuracy is exactly 1 (share of teachers whose every cell above the line is perfect).",
                s,
                n,
                p_perfect,
                expect="above",
                teachers=n,
                what=f"{words}: teachers perfect above the line",
            )
        )
    part = kind("least_squares")
    out.append(
        ch.claim(
            "least_squares_partial_leak_below",
            "Below the line the least-squares student's held-out accuracy is above chance.",
            part,
            value="acc_below",
            baseline=0.5,
            expect="above",
            unit="teacher",
            what="least squares below the line, against chance",
        )
    )
    out.append(
        ch.claim(
            "least_squares_not_perfect_below",
            "Below the line the least-squares student's held-out accuracy stays below 1.",
            part,
            value="acc_below",
            baseline=1.0,
            expect="below",
            unit="teacher",
            what="least squares below the line, against 1",
            check=True,
        )
    )  # cannot fail: fewer equations than unknowns
    for student, words in [("least_squares", "least-squares"), ("soft_labels", "soft-label")]:
        out.append(
            ch.claim(
                f"{student}_leak_grows_below",
                f"Below the line the {words} student's held-out accuracy grows with rho N / d (slope per teacher).",
                kind(student),
                value="slope_below",
                expect="above",
                unit="teacher",
                what=f"{words}: slope of held-out accuracy in rho N / d",
            )
        )
        out.append(
            ch.claim(
                f"{student}_shuffled_at_chance",
                f"The within-class-shuffled {words} student sits at chance (within ±{margin_chance:g}).",
                kind(student, True),
                value="acc_all",
                baseline=0.5,
                expect="equivalent",
                margin=margin_chance,
                unit="teacher",
                what=f"{words}, shuffled, against chance",
            )
        )
    if len(above("soft_labels")) and len(above("least_squares")):
        out.append(
            ch.claim_difference(
                "soft_labels_same_threshold",
                "Above the line the soft-label student does as "
                f"well as the least-squares student (within ±{margin_same:g}, paired on teachers).",
                above("soft_labels"),
                above("least_squares"),
                value="acc_above",
                expect="equivalent",
                margin=margin_same,
                unit="teacher",
                what="soft labels minus least squares, above the line",
            )
        )
    else:
        out.append("*Not tested: no teacher that memorized its data has a cell above the line in this run.*")
    low, high = cap[cap.n_over_d <= capacity_low], cap[cap.n_over_d >= capacity_high]
    out.append(
        ch.claim_count(
            "teacher_memorizes_below_capacity",
            f"Linear teachers memorize random labels at N/d <= {capacity_low:g}.",
            int(low.perfect.sum()),
            int(low.teachers.sum()),
            p_capacity,
            expect="above",
            teachers=int(low.teachers.sum()),
            what=f"teachers at 100% for N/d <= {capacity_low:g}",
        )
    )
    out.append(
        ch.claim_count(
            "teacher_fails_above_capacity",
            f"Linear teachers do not memorize random labels at N/d >= {capacity_high:g}.",
            int((high.teachers - high.perfect).sum()),
            int(high.teachers.sum()),
            p_capacity,
            expect="above",
            teachers=int(high.teachers.sum()),
            what=f"teachers below 100% for N/d >= {capacity_high:g}",
            check=True,
        )
    )  # cannot fail: few random labelings that far above 2 d are linearly separable
    return out


def recovery_lines(summary: pd.DataFrame, verdict: dict[str, str]) -> list[str]:
    """Chapter 11: one Markdown bullet per student kind (least squares, soft labels): the share of
    perfect cells above and below the line (`summary`: student, shuffled, above, perfect, cells,
    teachers) and the verdicts of its claims (`verdict`: claim id -> verdict; "not run" if absent)."""

    def share(student: str, shuffled: bool, side: bool) -> str:
        r = summary[(summary.student == student) & (summary.shuffled == shuffled) & (summary.above == side)]
        return (
            f"{r.perfect.iloc[0]:.1%} of {int(r.cells.iloc[0])} cells ({int(r.teachers.iloc[0])} teachers)"
            if len(r)
            else "no cell"
        )

    lines = []
    for student, words in [("least_squares", "least-squares"), ("soft_labels", "soft-label")]:
        v = verdict.get(f"{student}_perfect_above_line", "not run")
        lines.append(
            f"- **{words} student**: above the line {share(student, False, True)} are perfect, below it "
            f"{share(student, False, False)}; perfect recovery above the line **{v}**, the leak growing below "
            f"it **{verdict.get(f'{student}_leak_grows_below', 'not run')}**, its shuffled control at chance "
            f"**{verdict.get(f'{student}_shuffled_at_chance', 'not run')}** (shuffled, above the line: "
            f"{share(student, True, True)} perfect)."
        )
    return lines


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 11: how a `linear_recovery` table departs from the released Fig 3 (`LINEAR_RELEASED`)."""
    cfg, released, out = config_of(table), LINEAR_RELEASED, []
    if (cfg["teacher_epochs"], cfg["teacher_lr"]) != (released["teacher_epochs"], released["teacher_lr"]):
        out.append(departure_row("11_linear_recovery", "teacher budget", **cfg))
    out.append(departure_row("11_linear_recovery", "soft-label student", **cfg))
    if cfg["input_dim"] != released["input_dim"] or len(cfg["n_over_d"]) != 50:
        out.append(
            departure_row(
                "11_linear_recovery",
                "profile sizes",
                n_sizes=len(cfg["n_over_d"]),
                smallest=min(cfg["n_over_d"]),
                largest=max(cfg["n_over_d"]),
                n_rhos=len(cfg["rhos"]),
                **cfg,
            )
        )
    if cfg.get("shuffle", True):
        out.append(departure_row("11_linear_recovery", "shuffle kind"))
    return out + [departure_row("11_linear_recovery", "functional recovery")]
