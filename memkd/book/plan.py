"""What every claim fixes before its run: its margin (with the reason) and its power plan.

A **margin** is the bound a claim is tested against: for "equivalent" the half-width of the band
within which two quantities count as the same, for "above" / "below" how far beyond the baseline
the difference must lie (0: any difference in the stated direction). Each margin is a `Margin`
(value, reason); each chapter's named margins live in its module of `memkd.book.chapters` (e.g.
`ch13_one_hidden_layer.hidden_shuffle_at_chance`), beside its claims, and the one that chapters 11, 12
and 16 share (`linear_chance`) here: each a fraction of the paper's effect, of chance 1/C, or of the
measurement's resolution, with its reason, and never so wide that the claim cannot fail.

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


# ---------------------------------------------------------------------------- the margin several chapters share

PAPER_FIG1_EFFECT: float = _TABLES["constants"]["PAPER_FIG1_EFFECT"]  # Fig 1: about 40% held out against chance 1/3


def linear_chance(value: float = 0.05) -> Margin:
    """Chapters 11, 12 and 16: a within-class-shuffled linear student 'at chance'."""
    return Margin(
        value,
        f"{value:g} in held-out accuracy: the cells' held-out sets hold 10-100 points, so one "
        "teacher's mean moves by a few points by chance alone, while the recovery the chapter looks for "
        "is a move of 0.5 (from chance to 1)",
    )


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
    (chapter, pattern): Plan(
        effect=_TABLES["constants"].get(p["effect"], p["effect"]),
        reason=_text(p["reason"]),
        per_chance=p.get("per_chance", False),
        sd=p.get("sd"),
        sd_source=_text(p.get("sd_source", "")),
    )
    for chapter, plans in _TABLES["plans"].items()
    for pattern, p in plans.items()
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
    for chapter, baselines in _TABLES["baselines"].items()
    for pattern, reason in baselines.items()
}


def baseline_for(chapter: str, claim: str) -> str:
    """The stated baseline of a claim, with its reason (the first pattern that matches), or ""."""
    for (ch, pattern), reason in BASELINES.items():
        if ch == chapter and fnmatch.fnmatchcase(claim, pattern):
            return reason
    return ""
