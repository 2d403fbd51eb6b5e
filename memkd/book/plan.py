"""What every claim fixes before its run: its margin (with the reason) and its power plan.

A **margin** is the bound a claim is tested against: for "equivalent" the half-width of the band
within which two quantities count as the same, for "above" / "below" how far beyond the baseline
the difference must lie (0: any difference in the stated direction). Each margin is a `Margin`
(value, reason); the named margins below are the book's, each with its reason, in one place:
a fraction of the paper's effect, of chance 1/C, or of the measurement's resolution, and never so
wide that the claim cannot fail.

A **plan** says how many teachers (or, for an exact test, outcomes) a claim needs for 80% power at
its level, for an assumed effect: the effect the paper reports where it gives a number, else the
smallest effect of interest, with its reason, in memkd/book/plans.yml (a table of prose beside this
module, like the baselines). `PLANS` maps (chapter, claim id pattern) to a `Plan`; `Chapter.claim`
looks its claim up there, computes the planned n with `memkd.power.planned_teachers` (t tests) or
`planned_trials` (exact tests) and records it with the claim, so that the report can label a claim
whose n falls short "underpowered". The spread the t plans assume is this build's per-teacher
standard deviation (no earlier estimate is kept in code; the report says so): the plan then answers "how many teachers would this spread need to
detect the assumed effect", not "how many were chosen before the run".
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from importlib import resources

import yaml

from memkd.config import invalid

# The plans' effects and reasons and the claims' baselines: data, kept in memkd/book/plans.yml.
_TABLES = yaml.safe_load(resources.files("memkd.book").joinpath("plans.yml").read_text(encoding="utf-8"))


def _text(template: str) -> str:
    """A text of plans.yml with its {NAME}s replaced by the shared reasons of the same file."""
    return template.format(**_TABLES["reasons"])


DIRECTION_REASON = "a direction: any difference beyond the baseline in the stated direction"


@dataclass(frozen=True)
class Margin:
    """A margin fixed before the run, with its reason (see the module docstring)."""

    value: float
    reason: str

    def __post_init__(self) -> None:
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value >= 0):
            raise invalid("value", "Margin", "a finite float >= 0", self.value)
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise invalid("reason", "Margin", "a non-empty string", self.reason)

    def __format__(self, spec: str) -> str:
        """Formats as its value, so that prose can print it: f"within ±{margin:g}"."""
        return format(self.value, spec)


def margin_of(margin: float | Margin, expect: str) -> tuple[float, str]:
    """(value, reason) of a margin given as a `Margin` or a bare number. A bare 0 on a claim of
    direction gets DIRECTION_REASON; any other bare number gets no reason ("": the report flags it)."""
    if isinstance(margin, Margin):
        return float(margin.value), margin.reason.strip()
    return margin, (DIRECTION_REASON if expect != "equivalent" and margin == 0 else "")


# ---------------------------------------------------------------------------- the book's margins

PAPER_FIG1_EFFECT: float = _TABLES["constants"]["PAPER_FIG1_EFFECT"]  # Fig 1: about 40% held out against chance 1/3


def toy_at_chance() -> Margin:
    """Chapter 01: hard-label students at chance in 2-D."""
    return Margin(PAPER_FIG1_EFFECT / 2, "half the soft-label effect of the paper's Fig 1 (about 40% held out "
                  "against chance 1/3: 0.067), so that a student with that effect could not pass as at chance")


def hard_labels_at_chance(chance: float) -> Margin:
    """Chapter 02: hard-label students at chance on held-out memorized data."""
    return Margin(chance / 2, "half of chance 1/C: half the smallest soft-label effect of interest "
                  "(a held-out accuracy of twice chance) tested beside it")


def surgery_class_kept(value: float) -> Margin:
    """Chapter 07: class-c held-out accuracy kept when class c is dropped (the chapter's parameter)."""
    return Margin(value, f"{value:g} in class-c held-out accuracy: one of the 10 held-out class-c points "
                  "of a teacher at the quick profile, the resolution of one teacher's class-c accuracy")


def surgery_overall_kept(chance: float) -> Margin:
    """Chapter 07: overall held-out accuracy kept under a surgery of class c."""
    return Margin(chance / 4, "a quarter of 1/C, the share of the held-out points that are of class c: a "
                  "surgery that changed only class c's points could move the overall accuracy by at most "
                  "1/C, so a margin of 1/C (the old one) could not fail")


def composition_far_above(chance: float) -> Margin:
    """Chapter 06: the best cell's held-out accuracy 'far above' its trivial accuracy."""
    return Margin(chance, "'far above' read as more than twice the trivial accuracy (a margin of 1/C of the "
                  "chosen cell): with a margin of 0 the best of many cells passes whenever any cell leaks at all")


def transformer_trivial(chance: float) -> Margin:
    """Chapter 08: held-out accuracy against the students' own accuracy outside D."""
    return Margin(chance, "1/k: fewer than one extra correct answer in k held-out pairs counts as trivial")


def convolution_no_leak(value: float) -> Margin:
    """Chapter 10: 'no leak' of CNN students (the chapter's parameter)."""
    return Margin(value, f"{value:g} in held-out accuracy: under a third of chance on ten classes, and far "
                  "below the leak of the MLP students tested beside it")


def linear_chance(value: float = 0.05) -> Margin:
    """Chapters 11-12: a within-class-shuffled linear student 'at chance'."""
    return Margin(value, f"{value:g} in held-out accuracy: the cells' held-out sets hold 10-100 points, so one "
                  "teacher's mean moves by a few points by chance alone, while the recovery the chapter looks for "
                  "is a move of 0.5 (from chance to 1)")


def linear_same_threshold(value: float = 0.02) -> Margin:
    """Chapter 11: the soft-label student 'reaches the same threshold' as least squares."""
    return Margin(value, f"{value:g} in held-out accuracy above the line: at most two held-out points in a hundred "
                  "apart, paired on teachers, against a gap of 0.5 between recovery and chance")


def window_same_width(value: float = 1.0) -> Margin:
    """Chapter 12: two precisions give 'the same window'."""
    return Margin(value, f"{value:g} temperature: one step of the temperature grid, the resolution at which a "
                  "window's edge is measured")


def hidden_shuffle_at_chance(value: float) -> Margin:
    """Chapter 13: the shuffle control of the one-hidden-layer students 'at chance' (pooled points)."""
    return Margin(value, f"{value:g} in held-out accuracy: twice chance 1/C at C = 100, far below the partial "
                  "leak (about 0.4) of the students whose inputs are not shuffled")


def clock_equivalent(value: float) -> Margin:
    """Chapter 08, the teacher clock: held-out memorized and unseen accuracies 'agree'."""
    return Margin(value, f"{value:g} in accuracy: about one standard error of one student's accuracy on 100 "
                  "pairs (0.5 / sqrt(100)); smaller gaps are what drawing the pairs alone gives")


# ---------------------------------------------------------------------------- power plans


@dataclass(frozen=True)
class Plan:
    """The effect a claim is planned for (see the module docstring).

    effect : the assumed true difference in the claim's direction (for an exact test: the true
        proportion's distance from p0); with `per_chance`, in units of chance 1/C
    reason : where the effect comes from (the paper's number, or why it is the smallest of interest)
    sd : the per-teacher standard deviation assumed; None: this build's own spread (a post hoc plan)
    sd_source : where `sd` comes from (e.g. a pilot build on other seeds), shown in the report
    """

    effect: float
    reason: str
    per_chance: bool = False
    sd: float | None = None
    sd_source: str = ""

    def effect_at(self, chance: float) -> float:
        """The assumed effect in the claim's units (NaN when it needs a chance level and has none)."""
        return self.effect * chance if self.per_chance else self.effect


PLANS: dict[tuple[str, str], Plan] = {
    (chapter, pattern): Plan(effect=_TABLES["constants"].get(p["effect"], p["effect"]), reason=_text(p["reason"]),
                             per_chance=p.get("per_chance", False), sd=p.get("sd"),
                             sd_source=_text(p.get("sd_source", "")))
    for chapter, plans in _TABLES["plans"].items() for pattern, p in plans.items()
}


def plan_for(chapter: str, claim: str) -> Plan | None:
    """The plan registered for a claim (patterns as in fnmatch), or None."""
    for (ch, pattern), plan in PLANS.items():
        if ch == chapter and fnmatch.fnmatchcase(claim, pattern):
            return plan
    return None


# ---------------------------------------------------------------------------- baselines

BASELINES: dict[tuple[str, str], str] = {
    (chapter, pattern): _text(reason)
    for chapter, baselines in _TABLES["baselines"].items() for pattern, reason in baselines.items()
}


def baseline_for(chapter: str, claim: str) -> str:
    """The stated baseline of a claim, with its reason (the first pattern that matches), or ""."""
    for (ch, pattern), reason in BASELINES.items():
        if ch == chapter and fnmatch.fnmatchcase(claim, pattern):
            return reason
    return ""
