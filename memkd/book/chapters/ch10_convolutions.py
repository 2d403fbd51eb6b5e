"""Chapter 10 (convolutional teachers and students): its claims, outcome sentences and departures.

The experiment (`memkd.experiments.convolutions`) returns one row per student; this module records the
chapter's claims on it (`architecture_claims` for the matched pairs, `crossing_claims` for the mismatched
ones, `probe_claims` for the fixed-permutation probe, with the margin `convolution_no_leak` fixed before
the run), shows their verdicts (`verdict_table`), says where the paper's remark on CNNs fails, holds or
is undecided (`convolution_outcomes`) and lists how the run departs from it (`departures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from memkd.book.plan import Margin
from memkd.book.departures import Departure, config_of, departure_row, temperature_departure
from memkd.book.outcomes import find

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def convolution_no_leak(value: float) -> Margin:
    """Chapter 10: 'no leak' of CNN students (the chapter's parameter)."""
    return Margin(
        value,
        f"{value:g} in held-out accuracy: under a third of chance on ten classes, and far "
        "below the leak of the MLP students tested beside it",
    )


# The settings whose claims are made, in the order the chapter shows them (the `fixed` one is the probe's)
CLAIM_SETTINGS = ("clean", "labels", "pixels", "both")


def claim_settings(table: pd.DataFrame) -> list[str]:
    """Chapter 10: the settings of `CLAIM_SETTINGS` that `table` holds, in that order."""
    return [s for s in CLAIM_SETTINGS if s in set(table.setting)]


def pair_rows(table: pd.DataFrame, setting: str, pair: str) -> pd.DataFrame:
    """Chapter 10: the rows of `table` (one per student of `convolutional_distillation`) of one `setting`
    and one teacher -> student `pair` ("mlp->mlp", "cnn->cnn", "cnn->mlp", "mlp->cnn")."""
    return table[(table.setting == setting) & (table.pair == pair)]


def architecture_claims(ch: "Chapter", table: pd.DataFrame, margin: float, data_kind: str) -> list[str]:
    """Record chapter 10's claims on the matched pairs on `ch` (a `memkd.book.chapter.Chapter`) and return
    the Markdown the chapter shows: per setting of `claim_settings`, its name in bold, then its sentences.

    Per setting: MLP students of an MLP teacher beat their own trivial accuracy (`independent_acc`,
    one-sided); CNN students of a CNN teacher are within `convolution_no_leak(margin)` of theirs
    (equivalence); the CNN pair's leak (`leak`) is below the MLP pair's (paired on teachers). Teachers are
    the unit; `data_kind` ("paper" on CIFAR-10, "stand-in" on digits) goes with every claim.
    """
    ch.rest_on(table)
    no_leak = convolution_no_leak(margin)  # the margin with its reason
    out = []
    for setting in claim_settings(table):
        out.append(f"**{setting}**")
        out.append(
            ch.claim(
                f"mlp_mlp_{setting}_leaks",
                f"{setting}: MLP students of an MLP teacher beat "
                "their own trivial accuracy on held-out memorized images.",
                pair_rows(table, setting, "mlp->mlp"),
                baseline="independent_acc",
                expect="above",
                what="MLP -> MLP, held out vs own trivial",
                data=data_kind,
            )
        )
        out.append(
            ch.claim(
                f"cnn_cnn_{setting}_no_leak",
                f"{setting}: CNN students of a CNN teacher do no "
                f"better on held-out memorized images than their own trivial accuracy (within ±{margin:g}).",
                pair_rows(table, setting, "cnn->cnn"),
                baseline="independent_acc",
                expect="equivalent",
                margin=no_leak,
                what="CNN -> CNN, held out vs own trivial",
                data=data_kind,
            )
        )
        out.append(
            ch.claim_difference(
                f"cnn_leaks_less_{setting}",
                f"{setting}: CNN students of a CNN teacher "
                "leak less than MLP students of an MLP teacher on the same images.",
                pair_rows(table, setting, "cnn->cnn"),
                pair_rows(table, setting, "mlp->mlp"),
                value="leak",
                expect="below",
                what="leak, CNN -> CNN vs MLP -> MLP",
                data=data_kind,
            )
        )
    return out


def crossing_claims(ch: "Chapter", table: pd.DataFrame, data_kind: str) -> list[str]:
    """Record chapter 10's claims on the mismatched pairs (CNN -> MLP, MLP -> CNN, where `table` has them)
    on `ch` and return their sentences: per setting of `claim_settings`, the students beat their own trivial
    accuracy (`independent_acc`, one-sided, teachers as the unit)."""
    ch.rest_on(table)
    pairs = set(table.pair)
    out = []
    for setting in claim_settings(table):
        for name, words in [
            ("cnn->mlp", "MLP students of a CNN teacher"),
            ("mlp->cnn", "CNN students of an MLP teacher"),
        ]:
            if name in pairs:
                out.append(
                    ch.claim(
                        f"{name.replace('->', '_')}_{setting}_leaks",
                        f"{setting}: {words} beat their own trivial accuracy on held-out memorized images.",
                        pair_rows(table, setting, name),
                        baseline="independent_acc",
                        expect="above",
                        what=f"{setting}, {name}",
                        data=data_kind,
                    )
                )
    return out


def probe_claims(ch: "Chapter", table: pd.DataFrame, margin: float, data_kind: str) -> list[str]:
    """Record the probe's claims (CNN -> CNN under one pixel order shared by all images, `fixed`) on `ch` and
    return their sentences; nothing where `table` lacks the fixed, clean or pixels setting or the CNN pair.

    Its students beat their own trivial accuracy (one-sided); their leak is above the clean setting's
    (paired on teachers: the same images) and within `convolution_no_leak(margin)` of the per-image
    shuffle's (equivalence, paired).
    """
    ch.rest_on(table)
    if not ({"fixed", "clean", "pixels"} <= set(table.setting) and "cnn->cnn" in set(table.pair)):
        return []
    no_leak = convolution_no_leak(margin)
    fixed, clean, pixels = (pair_rows(table, s, "cnn->cnn") for s in ("fixed", "clean", "pixels"))
    return [
        ch.claim(
            "probe_fixed_cnn_leaks",
            "With one pixel order shared by all images, CNN students of a CNN teacher beat their own trivial accuracy.",
            fixed,
            baseline="independent_acc",
            expect="above",
            what="fixed permutation, CNN -> CNN",
            data=data_kind,
        ),
        ch.claim_difference(
            "probe_fixed_leaks_more_than_clean",
            "A CNN teacher's students leak more "
            "when a fixed permutation makes the convolution's prior useless than on clean images.",
            fixed,
            clean,
            value="leak",
            expect="above",
            what="leak, fixed vs clean (CNN -> CNN)",
            data=data_kind,
        ),
        ch.claim_difference(
            "probe_fixed_like_per_image",
            "With the prior useless, a shared pixel "
            f"order and per-image orders give the same CNN leak (within ±{margin:g}).",
            fixed,
            pixels,
            value="leak",
            expect="equivalent",
            margin=no_leak,
            what="leak, fixed vs per-image (CNN -> CNN)",
            data=data_kind,
        ),
    ]


def verdict_table(claims: pd.DataFrame, settings: list[str], margin: float, images: str) -> str:
    """Chapter 10: the verdicts of `claims` (what `ch.finish()` returned) as Markdown: a table with one row per
    setting of `settings` and one column per pair's claim, then the probe's three claims; each entry the mean
    leak, its interval, teachers x students and the verdict ("not run" where the claim is absent). `images`
    names the data when it is not CIFAR-10 (a stand-in), with `margin` the one of the "no leak" claims."""

    def answer(claim_id: str) -> str:
        row = claims[claims.claim == claim_id]
        if row.empty:
            return "not run"
        r = row.iloc[0]
        return (
            f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}], {int(r.n)} × {int(r.students)}: **{r.verdict}**"
        )

    lines = [
        "| setting | MLP → MLP leaks | CNN → CNN no leak (±{:g}) | CNN leaks less than MLP | CNN → MLP leaks "
        "| MLP → CNN leaks |".format(margin),
        "|---|---|---|---|---|---|",
    ]
    for s in settings:
        lines.append(
            f"| {s} | {answer(f'mlp_mlp_{s}_leaks')} | {answer(f'cnn_cnn_{s}_no_leak')} | "
            f"{answer(f'cnn_leaks_less_{s}')} | {answer(f'cnn_mlp_{s}_leaks')} | "
            f"{answer(f'mlp_cnn_{s}_leaks')} |"
        )
    probe = [
        f"- {c}: {answer(c)}"
        for c in ("probe_fixed_cnn_leaks", "probe_fixed_leaks_more_than_clean", "probe_fixed_like_per_image")
    ]
    where = "" if images == "cifar10" else f" Measured on {images}, a stand-in for CIFAR-10."
    return (
        "\n".join(lines)
        + "\n\nThe probe:\n\n"
        + "\n".join(probe)
        + "\n\n"
        + f"Each cell: mean leak, its interval, teachers × students.{where}"
    )


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
        out.append(
            "**This build contradicts the paper's remark:** CNN students of a CNN teacher leak beyond the "
            f"margin on {', '.join(words['does not hold'])} images."
        )
    if words["holds"]:
        out.append(f"They do not leak (within the margin) on {', '.join(words['holds'])} images.")
    if words["inconclusive"]:
        out.append(
            f"On {', '.join(words['inconclusive'])} images the teachers measured here cannot tell a leak "
            "smaller than the margin from none: more teachers (the `teachers` parameter) narrow the interval."
        )
    less = {"holds": [], "does not hold": [], "inconclusive": []}
    for s in settings:
        c = find(ch, f"cnn_leaks_less_{s}")
        if c is not None:
            less[c.verdict if c.verdict in less else "inconclusive"].append(f"{s} ({c.difference:+.3f})")
    if less["holds"]:
        out.append(
            f"CNN students of a CNN teacher leak less than MLP students of an MLP teacher on "
            f"{', '.join(less['holds'])} images."
        )
    if less["does not hold"]:
        out.append(f"They do not leak less than the MLP pair on {', '.join(less['does not hold'])} images.")
    if less["inconclusive"]:
        out.append(
            f"Whether they leak less than the MLP pair is undecided on {', '.join(less['inconclusive'])} images."
        )
    probe = [
        find(ch, c)
        for c in ("probe_fixed_cnn_leaks", "probe_fixed_leaks_more_than_clean", "probe_fixed_like_per_image")
    ]
    probe = [c for c in probe if c is not None]
    if probe:
        told = [c.verdict for c in probe]
        summary = (
            "the probe confirms the explanation"
            if all(v == "holds" for v in told)
            else "the probe fails: a fixed pixel order does not make the CNN leak as the explanation predicts"
            if any(v == "does not hold" for v in told)
            else "the probe is undecided"
        )
        out.append(
            f"The probe (one pixel order shared by all images): {summary} ("
            + "; ".join(f"{c.claim} {c.verdict}, {c.difference:+.3f}" for c in probe)
            + ")."
        )
    return " ".join(out)


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 10: how a `convolutional_distillation` table departs from the paper's remark on CNNs."""
    out = [
        departure_row("10_convolutions", "architecture"),
        departure_row("10_convolutions", "trivial accuracy"),
        departure_row("10_convolutions", "pixel shuffle"),
    ]
    out += temperature_departure(config_of(table), name_the_knob=True)
    if table.images.iloc[0] != "cifar10":  # the chapter's data_kind "stand-in"
        out.append(departure_row("10_convolutions", "profile sizes", n_memorized=table.n_memorized.iloc[0]))
    return out
