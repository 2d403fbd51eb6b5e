"""Outcome sentences chosen by a build's verdicts: what a chapter's prose says happened.

A chapter never states an outcome in fixed text: each sentence below is picked by the verdict (or
the interval) that the build recorded for a claim, and carries that build's numbers. `outcome`
picks one of three sentences for one claim; `contradictions` lists where the build contradicts the
paper. Below them, the sentences of the chapters without a module of their own (01, 02, 04, 05, 06, 07,
10); chapters 08, 11, 12, 13 and 16 keep theirs in `memkd.book.chapters` with their claims.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
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
    interval = (f"interval [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" if not (math.isnan(c.ci_low) or math.isnan(c.ci_high))
                else "no interval" + (f": {c.note}" if c.note else ""))
    return {"measured": c.measured, "baseline": c.baseline, "difference": c.difference, "ci_low": c.ci_low,
            "ci_high": c.ci_high, "n": c.n, "verdict": c.verdict, "interval": interval}


def outcome(ch: "Chapter", claim_id: str, holds: str, does_not_hold: str, inconclusive: str,
            missing: str = "") -> str:
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
        return (f"**Where this build disagrees with the paper:** nowhere among the {len(paper)} claims of the paper "
                f"tested here ({held} hold, {len(paper) - held} undecided with the estimate on the paper's side).")
    lines = [f"- {c.paper} This build: difference {c.difference:+.3f}, {numbers(c)['interval']}: "
             + ("**does not hold**." if kind == "contradicts" else
                "**inconclusive, the estimate on the other side of the bound** (leans against the paper).")
             for c, kind in against]
    return "**Where this build disagrees with the paper:**\n\n" + "\n".join(lines)


def _mean(table: pd.DataFrame, value: str, unit: str = "dataset") -> float:
    """Mean over teachers of the per-teacher means of `value`."""
    return float(table.groupby(unit)[value].mean().mean())


# ---------------------------------------------------------------------------- chapter 01


def toy_outcomes(ch: "Chapter", table: pd.DataFrame) -> str:
    """Chapter 01: which soft-label students beat chance on the held-out points in this build, and
    the models' accuracy on fresh points (measured, not tested)."""
    soft = [c for c in ch.claims if c.claim.startswith("toy_soft")]
    held = [c.claim[len("toy_soft_"):-len("_beats_chance")].replace("T", "T = ") for c in soft if c.verdict == "holds"]
    other = [f"{c.claim[len('toy_soft_'):-len('_beats_chance')].replace('T', 'T = ')} ({c.verdict}, "
             f"{c.difference:+.3f})" for c in soft if c.verdict != "holds"]
    parts = []
    if held:
        parts.append(f"soft-label students beat chance on the held-out memorized points at {', '.join(held)}")
    if other:
        parts.append(f"{'at' if held else 'soft-label students are not shown to beat chance on the held-out points at'} "
                     f"{', '.join(other)}{' they are not shown to' if held else ''}")
    text = ("In this build, " + "; ".join(parts) + "." if parts else "")
    fresh = table.groupby("setting").apply(lambda g: _mean(g, "independent_acc"), include_groups=False)
    chance = float(table["chance"].iloc[0])
    text += (f" On fresh points the models' mean accuracy runs from {fresh.min():.3f} to {fresh.max():.3f} against "
             f"chance {chance:.3f} (measured, not tested: the claims concern the held-out points).")
    return text.strip()


# ---------------------------------------------------------------------------- chapter 02


def capacity_outcome(table: pd.DataFrame, alpha: float, chance: float, teacher_width: int) -> str:
    """Chapter 02: the held-out accuracy by student width at one alpha (means over teachers), where it
    first clears twice chance, and whether it rises with width all along. Descriptive, not a test.

    table: one row per student with `width`, `alpha`, `test_acc`, `dataset`.
    """
    at = table[np.isclose(table["alpha"], alpha)]
    curve = pd.Series({w: _mean(g, "test_acc") for w, g in at.groupby("width")}).sort_index()
    if len(curve) < 2:
        return ""
    listed = ", ".join(f"{acc:.3f} at p = {w}" for w, acc in curve.items())
    above = [w for w, acc in curve.items() if acc > 2 * chance]
    first = (f"it first exceeds twice chance ({2 * chance:.3f}) at p = {above[0]} "
             f"({above[0] / teacher_width:.2g}× the teacher's width {teacher_width})" if above
             else f"no width reaches twice chance ({2 * chance:.3f})")
    steps = np.diff(curve.to_numpy())
    trend = ("it rises with every step in width" if (steps > 0).all() else
             f"it rises from p = {curve.index[0]} to p = {curve.idxmax()} overall, not at every step"
             if curve.idxmax() == curve.index[-1] else
             f"it peaks at p = {curve.idxmax()}, below the widest student")
    return (f"At alpha = {alpha:g}, the held-out accuracy by student width is {listed}: {first}, and {trend} "
            "(means over teachers, not a test).")


# ---------------------------------------------------------------------------- chapter 05


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
    return (f"peaks inside the grid, at {at}: {curve[first]:.3f} at the smallest {name} = {fmt.format(first)}, "
            f"and beyond the peak it falls to {curve[last]:.3f} at the largest {name} = {fmt.format(last)}")


def temperature_lr_optima(grid: pd.DataFrame) -> str:
    """Chapter 05: where the held-out accuracy peaks along each axis of the grid (temperatures x
    learning rates, means over teachers): each temperature at its best learning rate, and each
    learning rate at its best temperature. Descriptive, not a test."""
    return (f"Taking each temperature at its best learning rate, the held-out accuracy "
            f"{axis_optimum(grid.max(axis=1), 'T')}; taking each learning rate at its best temperature, it "
            f"{axis_optimum(grid.max(axis=0), 'lr')}.")


def temperature_lr_outcomes(ch: "Chapter", grid: pd.DataFrame) -> str:
    """Chapter 05: how far the temperature and the learning rate move the held-out accuracy on this
    build's grid (temperatures x learning rates, means over teachers), and the temperature claim."""
    by_lr = (grid.max(axis=1) - grid.min(axis=1)).mean()  # at a fixed T, across learning rates
    by_t = (grid.max(axis=0) - grid.min(axis=0)).mean()  # at a fixed learning rate, across temperatures
    which = ("the temperature moves it more than the learning rate" if by_t > by_lr else
             "the learning rate moves it more than the temperature" if by_lr > by_t else "both move it as much")
    text = (f"On this build's grid, changing the temperature at a fixed learning rate moves the held-out "
            f"accuracy by {by_t:.3f} on average (largest minus smallest), changing the learning rate at a fixed "
            f"temperature by {by_lr:.3f}: {which} (means over teachers, not a test). "
            + temperature_lr_optima(grid))
    return text + " " + outcome(
        ch, "high_temperature_helps",
        "The high temperature fixed in advance beats T = 1 by {difference:+.3f} ({interval}).",
        "The high temperature fixed in advance does not beat T = 1 here ({difference:+.3f}, {interval}): this "
        "build contradicts the paper's 'a higher temperature seems necessary' at this budget.",
        "Whether the high temperature fixed in advance beats T = 1 is undecided ({difference:+.3f}, {interval}).")


# ---------------------------------------------------------------------------- chapter 04


def cifar_outcomes(ch: "Chapter") -> str:
    """Chapter 04: shuffling labels and pixels against labels only, as this build found it."""
    return outcome(
        ch, "both_beats_labels",
        "Shuffling pixels on top of the labels raises the held-out accuracy ({measured:.3f} against "
        "{baseline:.3f}), as the paper reports.",
        "**This build contradicts the paper here:** with labels and pixels shuffled the held-out accuracy "
        "({measured:.3f}) is not above, and with labels alone ({baseline:.3f}) it is at least as high "
        "(difference {difference:+.3f}, {interval}).",
        "Whether shuffling pixels on top of the labels changes the held-out accuracy is undecided here "
        "({measured:.3f} against {baseline:.3f}, {interval}).")


# ---------------------------------------------------------------------------- chapter 06


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
        elif _mean(ok, "test_acc") < 1.0 / c:
            grey.append((int(c), int(pc), int(d)))
    return (f"White cells (no teacher memorized its dataset within its budget): {names(white)}. Grey cells (mean "
            f"held-out accuracy below chance 1/C): {names(grey)}.")


# ---------------------------------------------------------------------------- chapter 07


def surgery_outcomes(ch: "Chapter", class_c: int) -> str:
    """Chapter 07: what dropping class c and zeroing p_c did to the class-c accuracy in this build."""
    c = find(ch, "drop_class_like_plain")
    lines = []
    if c is not None:
        if c.verdict == "does not hold":
            lines.append(f"**This build contradicts the paper here:** dropping class {class_c} lowers the class-"
                         f"{class_c} held-out accuracy beyond the margin, from {c.baseline:.3f} (plain) to "
                         f"{c.measured:.3f} ({numbers(c)['interval']}), where the paper finds it kept at a high level.")
        elif c.ci_high < 0:
            lines.append(f"**This build leans against the paper here:** dropping class {class_c} lowers the class-"
                         f"{class_c} held-out accuracy, from {c.baseline:.3f} (plain) to {c.measured:.3f} (the whole "
                         f"{numbers(c)['interval']} of the difference lies below 0, but not beyond the margin: "
                         "inconclusive), where the paper finds it kept at a high level.")
        elif c.verdict == "holds":
            lines.append(f"Dropping class {class_c} keeps its held-out accuracy at plain distillation's "
                         f"({c.measured:.3f} against {c.baseline:.3f}), as the paper finds.")
        else:
            lines.append(f"Whether dropping class {class_c} keeps its held-out accuracy is undecided here "
                         f"({c.measured:.3f} against {c.baseline:.3f} plain; {numbers(c)['interval']}).")
    lines.append(outcome(
        ch, "zero_class_kills_class",
        f"Zeroing p_{class_c} elsewhere leaves the students below chance on held-out class-{class_c} points "
        "({measured:.3f}), as the paper finds.",
        f"**This build contradicts the paper here:** with p_{class_c} zeroed elsewhere, the students are not "
        f"below chance on held-out class-{class_c} points ({{measured:.3f}}).",
        f"With p_{class_c} zeroed elsewhere the students get {{measured:.3f}} of the held-out class-{class_c} "
        "points right: too few teachers to tell this from chance (the test across teachers is inconclusive)."))
    return " ".join(line for line in lines if line)


# ---------------------------------------------------------------------------- chapter 10


def convolution_outcomes(ch: "Chapter", settings: list[str]) -> str:
    """Chapter 10: where the paper's remark (CNN students of a CNN teacher do not leak) fails,
    holds or is undecided in this build."""
    words = {"holds": [], "does not hold": [], "inconclusive": []}
    for s in settings:
        c = find(ch, f"cnn_cnn_{s}_no_leak")
        if c is not None:
            words[c.verdict if c.verdict in words else "inconclusive"].append(f"{s} ({c.difference:+.3f})")
    out = []
    if words["does not hold"]:
        out.append("**This build contradicts the paper's remark:** CNN students of a CNN teacher leak beyond the "
                   f"margin on {', '.join(words['does not hold'])} images.")
    if words["holds"]:
        out.append(f"They do not leak (within the margin) on {', '.join(words['holds'])} images.")
    if words["inconclusive"]:
        out.append(f"On {', '.join(words['inconclusive'])} images the teachers measured here cannot tell a leak "
                   "smaller than the margin from none: more teachers (the `teachers` parameter) narrow the interval.")
    less = {"holds": [], "does not hold": [], "inconclusive": []}
    for s in settings:
        c = find(ch, f"cnn_leaks_less_{s}")
        if c is not None:
            less[c.verdict if c.verdict in less else "inconclusive"].append(f"{s} ({c.difference:+.3f})")
    if less["holds"]:
        out.append(f"CNN students of a CNN teacher leak less than MLP students of an MLP teacher on "
                   f"{', '.join(less['holds'])} images.")
    if less["does not hold"]:
        out.append(f"They do not leak less than the MLP pair on {', '.join(less['does not hold'])} images.")
    if less["inconclusive"]:
        out.append(f"Whether they leak less than the MLP pair is undecided on {', '.join(less['inconclusive'])} images.")
    probe = [find(ch, c) for c in ("probe_fixed_cnn_leaks", "probe_fixed_leaks_more_than_clean",
                                   "probe_fixed_like_per_image")]
    probe = [c for c in probe if c is not None]
    if probe:
        told = [c.verdict for c in probe]
        summary = ("the probe confirms the explanation" if all(v == "holds" for v in told) else
                   "the probe fails: a fixed pixel order does not make the CNN leak as the explanation predicts"
                   if any(v == "does not hold" for v in told) else "the probe is undecided")
        out.append(f"The probe (one pixel order shared by all images): {summary} ("
                   + "; ".join(f"{c.claim} {c.verdict}, {c.difference:+.3f}" for c in probe) + ").")
    return " ".join(out)


def clock_outcome(ch: "Chapter", first: str = "high_temperature_helps",
                  second: str = "high_temperature_helps_second_clock") -> str:
    """Chapter 05: the temperature claim at the chapter's teacher clock and at the second one."""
    a, b = find(ch, first), find(ch, second)
    if a is None or b is None:
        return ""
    both = (f"{a.difference:+.3f} ({a.verdict}) at the chapter's clock, {b.difference:+.3f} ({b.verdict}) at the "
            "second")
    if a.verdict == b.verdict:
        return f"The temperature claim gets the same verdict at both teacher clocks: {both}."
    if "does not hold" in (a.verdict, b.verdict) and "holds" in (a.verdict, b.verdict):
        return (f"**The temperature effect depends on how long the teachers train:** {both}. The verdict of the "
                "chapter's claim holds for its own teacher clock only.")
    return f"The two teacher clocks give different verdicts, one of them undecided: {both}."


def clock_note(ch: "Chapter", first: str = "high_temperature_helps",
               second: str = "high_temperature_helps_second_clock") -> str:
    """Chapter 05: the words added to the headline temperature claim's sentence when its verdict moves
    with the teachers' clock ("" when both clocks give the same verdict, or one was not run)."""
    a, b = find(ch, first), find(ch, second)
    if a is None or b is None or a.verdict == b.verdict:
        return ""
    return (f"(Its verdict moves with the teachers' clock: {a.verdict} here, {b.verdict} with the teachers on the "
            f"second clock, {b.difference:+.3f}.)")
