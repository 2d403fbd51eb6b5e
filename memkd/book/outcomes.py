"""Outcome sentences chosen by a build's verdicts: what a chapter's prose says happened.

A chapter never states an outcome in fixed text: each sentence below is picked by the verdict (or
the interval) that the build recorded for a claim, and carries that build's numbers. `outcome`
picks one of three sentences for one claim; `contradictions` lists where the build contradicts the
paper; `teacher_mean` is the mean over teachers of per-teacher means. Each chapter's own sentences live
in its module of `memkd.book.chapters`, beside its claims.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # the chapter layer's own module
    from memkd.book.chapter import Chapter
    from memkd.book.claims import Claim


def find(ch: "Chapter", claim_id: str) -> "Claim | None":
    """The claim recorded under `claim_id` in this run, or None."""
    return next((c for c in ch.claims if c.claim == claim_id), None)


def numbers(c: "Claim") -> dict[str, Any]:
    """The fields a sentence may use: measured, baseline, difference, ci_low, ci_high (floats), n,
    verdict, and `interval` ('interval [-0.123, +0.045]', or 'no interval' with the reason)."""
    interval = (
        f"interval [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
        if not (math.isnan(c.ci_low) or math.isnan(c.ci_high))
        else "no interval" + (f": {c.note}" if c.note else "")
    )
    return {
        "measured": c.measured,
        "baseline": c.baseline,
        "difference": c.difference,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "n": c.n,
        "verdict": c.verdict,
        "interval": interval,
    }


def outcome(ch: "Chapter", claim_id: str, holds: str, does_not_hold: str, inconclusive: str, missing: str = "") -> str:
    """The sentence for the verdict this build recorded for `claim_id`, formatted with `numbers`
    (e.g. "{difference:+.3f}"); `missing` when the claim was not tested in this run."""
    c = find(ch, claim_id)
    if c is None:
        return missing
    text = {"holds": holds, "does not hold": does_not_hold}.get(c.verdict, inconclusive)
    return text.format(**numbers(c))


def contradictions(ch: "Chapter") -> str:
    """Markdown: where this build stands against the paper's claims tested here (claims only: not the
    checks, nor claims that test an effect counted elsewhere): each claim that contradicts it (verdict
    "does not hold") or leans against it (inconclusive, the estimate on the other side of the bound;
    `memkd.book.claims.disagreement`), with its numbers; or one sentence saying that none does, with
    the count of the listed claims that hold and that are undecided. Raw verdicts: the report adjusts
    each block for multiplicity, which can only turn a "holds" into "inconclusive"."""
    from memkd.book.claims import disagreement

    paper = [c for c in ch.claims if not c.beyond_paper and not c.supports and c.kind != "check"]
    if not paper:
        return ""
    against = [(c, disagreement(c.verdict, c.expect, c.difference, c.margin)) for c in paper]
    against = [(c, kind) for c, kind in against if kind]
    held = sum(c.verdict == "holds" for c in paper)
    if not against:
        return (
            f"**Where this build disagrees with the paper:** nowhere among the {len(paper)} claims of the paper "
            f"tested here ({held} hold, {len(paper) - held} undecided with the estimate on the paper's side)."
        )
    lines = [
        f"- {c.paper} This build: difference {c.difference:+.3f}, {numbers(c)['interval']}: "
        + (
            "**does not hold**."
            if kind == "contradicts"
            else "**inconclusive, the estimate on the other side of the bound** (leans against the paper)."
        )
        for c, kind in against
    ]
    return "**Where this build disagrees with the paper:**\n\n" + "\n".join(lines)


def teacher_mean(table: pd.DataFrame, value: str, unit: str = "dataset") -> float:
    """Mean over teachers of the per-teacher means of `value`."""
    return float(table.groupby(unit)[value].mean().mean())
