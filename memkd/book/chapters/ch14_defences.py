"""Chapter 14 (defences against the leak and what they cost): the analysis of
`memkd.experiments.defence_frontier`'s table, its claims, its figure and its departures, in one place.

Every function reads the experiment's table (one row per student) and works per teacher first
(`teacher_id`, the unit): `per_teacher` (leak and fidelity per teacher and defence), `decimals_check`
(the linear setting's failing decimal against the precision argument's prediction),
`leak_fidelity_correlation` (per teacher, over the server-side grid), `frontier_excess` (a
teacher-side defence against the best server-side one of equal fidelity), `frontier_figure`, `defence_claims`
(records the chapter's claims), `holm_block` (the chapter's claims adjusted as one family), `closing_lines`
and `departures` (how the chapter's settings depart from the paper's).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from memkd.book.departures import Departure, config_of, departure_row

TEACHER_SIDE = ("label smoothing", "weight decay")
FAMILY_ORDER = ("none", "top-k", "round", "logprob round", "noise", "combined", "label only", *TEACHER_SIDE)


def frontier_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the frontier: memorizing teachers, without the linear setting's rounding probe at further
    temperatures (`probe`)."""
    keep = table.teacher_memorized.astype(bool)
    if "probe" in table.columns:
        keep &= ~table.probe.fillna(False).astype(bool)
    return table[keep]


def server_side(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    """The frontier rows of one setting whose defence is the server's (not a teacher knob)."""
    part = frontier_rows(table)
    part = part[part.setting == setting]
    return part[~part.family.isin(TEACHER_SIDE)]


def per_teacher(table: pd.DataFrame) -> pd.DataFrame:
    """Mean leak, fidelity and held-out accuracy per (setting, family, strength, defence, teacher), memorizing
    teachers only."""
    ok = frontier_rows(table)
    keys = ["setting", "family", "strength", "defence", "teacher_id"]
    return ok.groupby(keys, sort=False)[["leak", "fidelity", "test_acc", "chance"]].mean().reset_index()


def frontier_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean +- SEM over teachers of leak and fidelity per (setting, family, strength, defence), with n teachers."""
    per = per_teacher(table)
    g = per.groupby(["setting", "family", "strength", "defence"], sort=False)
    out = g.agg(
        leak=("leak", "mean"),
        leak_sem=("leak", "sem"),
        fidelity=("fidelity", "mean"),
        fidelity_sem=("fidelity", "sem"),
        n=("teacher_id", "nunique"),
    ).reset_index()
    return out


def frontier_figure(table: pd.DataFrame):
    """Leak against fidelity, one panel per setting, a curve per defence family over its strengths (mean +- SEM
    over teachers); the undefended point is a black star, label only a black cross."""
    import matplotlib.pyplot as plt

    summary = frontier_summary(table)
    settings = list(dict.fromkeys(summary.setting))
    fig, axes = plt.subplots(1, len(settings), figsize=(4.4 * len(settings), 3.6), squeeze=False)
    colours = {f: f"C{i}" for i, f in enumerate(FAMILY_ORDER)}
    for ax, setting in zip(axes[0], settings):
        part = summary[summary.setting == setting]
        for family, curve in part.groupby("family", sort=False):
            curve = curve.sort_values("strength")
            style = dict(color="k", ms=10) if family in ("none", "label only") else dict(color=colours[family])
            marker = {"none": "*", "label only": "X"}.get(family, "o" if family not in TEACHER_SIDE else "s")
            ax.errorbar(
                curve.fidelity,
                curve.leak,
                xerr=curve.fidelity_sem,
                yerr=curve.leak_sem,
                marker=marker,
                ls="-" if len(curve) > 1 and family != "combined" else "none",
                label=family,
                capsize=2,
                lw=1.2,
                **style,
            )
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        ax.set(
            title=setting.replace("_", " "),
            xlabel="fidelity (agreement with the teacher on fresh inputs)",
            ylabel="leak (held-out minus own fresh accuracy)",
        )
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="upper center",
        ncol=min(len(handles), 5),
        fontsize=7,
        bbox_to_anchor=(0.5, 1.1),
    )
    fig.tight_layout()
    return fig


def predicted_failing_decimal(p_small: float, margin: float) -> int:
    """The largest r with 10^-r / p >= the margin: rounding to r decimals perturbs the solved logit differences
    by about 10^-r / p (chapter 12's precision argument), enough to flip a held-out point of margin `margin`.
    `p` is the smallest probability among the student's points: the exact student is a least-squares solve,
    and its worst equation (the one whose log p rounding moves most) spreads its error to every weight."""
    return int(math.floor(math.log10(1.0 / (p_small * margin))))


def decimals_check(table: pd.DataFrame, family: str = "round") -> pd.DataFrame:
    """Per linear teacher and server temperature (the probe's included): the largest rounding decimal at which
    exact recovery fails (held-out accuracy below 1; -1 if it never does within the grid), the prediction, and
    whether they lie within one decimal."""
    part = table[(table.setting == "linear") & table.teacher_memorized.astype(bool) & (table.family == family)]
    rows = []
    for (teacher, t), rows_t in part.groupby(["teacher_id", "temperature"]):
        failed = rows_t[rows_t.test_acc < 1.0].strength
        measured = int(failed.max()) if len(failed) else -1
        predicted = predicted_failing_decimal(float(rows_t.p_small.iloc[0]), float(rows_t.margin_small.iloc[0]))
        recovers = bool(rows_t.sort_values("strength").test_acc.iloc[-1] == 1.0)
        # a teacher that never recovers on the grid fails at least up to its top: consistent with any prediction
        # from the top minus one decimal on (a censored outcome)
        within = abs(measured - predicted) <= 1 or (not recovers and predicted >= measured - 1)
        rows.append(
            {
                "teacher_id": teacher,
                "temperature": t,
                "p_small": float(rows_t.p_small.iloc[0]),
                "margin_small": float(rows_t.margin_small.iloc[0]),
                "measured_decimal": measured,
                "predicted_decimal": predicted,
                "within_one": within,
                "recovers_at_grid_top": recovers,
            }
        )
    return pd.DataFrame(rows)


def decimals_per_teacher(check: pd.DataFrame) -> pd.DataFrame:
    """One outcome per teacher from `decimals_check`: within one decimal of the prediction at every temperature."""
    return (
        check.groupby("teacher_id")
        .agg(within_one=("within_one", "all"), temperatures=("temperature", "size"))
        .reset_index()
    )


def leak_fidelity_correlation(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Per teacher: Spearman's rank correlation of leak and fidelity over the server-side defences of one setting."""
    from scipy.stats import spearmanr

    per = per_teacher(server_side(table, setting))
    rows = []
    for teacher, part in per.groupby("teacher_id"):
        rho = (
            spearmanr(part.leak, part.fidelity).statistic
            if part.leak.nunique() > 1 and part.fidelity.nunique() > 1
            else math.nan
        )
        rows.append({"teacher_id": teacher, "rank_correlation": float(rho), "defences": len(part)})
    return pd.DataFrame(rows)


def frontier_excess(table: pd.DataFrame, family: str) -> pd.DataFrame:
    """Per teacher (MLP setting): the leak of its students under the teacher-side knob `family` minus the lowest
    leak among the server-side defences of the same teacher whose fidelity is at least as high (the best a server
    could do at equal or better fidelity; where none reaches it, the server-side defence of highest fidelity).
    Below 0: the knob lowers the leak at equal fidelity. One row per teacher (and strength) with `excess`,
    `leak`, `fidelity`, `server_leak`, `server_fidelity`, `server_defence`."""
    per = per_teacher(table[table.setting == "mlp"])
    server, knob = per[~per.family.isin(TEACHER_SIDE)], per[per.family == family]
    rows = []
    for _, k in knob.iterrows():
        own = server[server.teacher_id == k.teacher_id]
        if own.empty:
            continue
        kept = own[own.fidelity >= k.fidelity]
        best = kept.loc[kept.leak.idxmin()] if len(kept) else own.loc[own.fidelity.idxmax()]
        rows.append(
            {
                "teacher_id": k.teacher_id,
                "strength": k.strength,
                "leak": k.leak,
                "fidelity": k.fidelity,
                "server_leak": best.leak,
                "server_fidelity": best.fidelity,
                "server_defence": best.defence,
                "excess": k.leak - best.leak,
                "chance": k.chance,
            }
        )
    return pd.DataFrame(rows)


def keeps_fidelity(table: pd.DataFrame, setting: str, within: float) -> pd.DataFrame:
    """The server-side defences of one setting whose mean fidelity is within `within` of the undefended one,
    with their leak, sorted by leak (the candidates for "removes the leak, keeps the fidelity")."""
    summary = frontier_summary(server_side(table, setting))
    none = summary[summary.family == "none"].fidelity.iloc[0]
    kept = summary[(summary.fidelity >= none - within) & (summary.family != "none")]
    return kept.sort_values("leak")[["defence", "leak", "leak_sem", "fidelity", "fidelity_sem", "n"]]


def defence_claims(ch: Any, table: pd.DataFrame, *, margin_no_leak: Any, p_within: float) -> list[str]:
    """Record chapter 14's claims on `ch` (a `memkd.book.chapter.Chapter`) and return their sentences (Markdown).

    The top-1 probability alone leaks (MLP: held-out above the students' own fresh accuracy); label only leaks
    nothing (equivalence within `margin_no_leak`); the decimal at which exact linear recovery fails lies within
    one decimal of the precision argument's prediction for more than `p_within` of the teachers (exact test);
    label smoothing and weight decay lower the leak at equal fidelity (`frontier_excess`, per teacher); and in every
    setting the leak comes with the fidelity (a sign test on the teachers' rank correlations over the grid).
    """
    ch.rest_on(table)
    out: list[str] = []
    mlp = server_side(table, "mlp")
    if "top1" in set(mlp.defence):
        out.append(
            ch.claim(
                "top1_leaks",
                "The top-1 probability alone leaks: students of top-1 answers beat their own "
                "accuracy on fresh draws on the held-out memorized points.",
                mlp[mlp.defence == "top1"],
                value="test_acc",
                baseline="independent_acc",
                expect="above",
                unit="teacher_id",
                what="top-1 answers (MLP): held-out against own fresh accuracy",
            )
        )
        out.append(
            ch.claim(
                "top1_no_leak",
                f"The top-1 probability alone leaks nothing (within ±{margin_no_leak:g}).",
                mlp[mlp.defence == "top1"],
                value="test_acc",
                baseline="independent_acc",
                expect="equivalent",
                margin=margin_no_leak,
                unit="teacher_id",
                supports=f"{ch.name}:top1_leaks",
                what="top-1 answers (MLP): held-out against own fresh, for equivalence",
            )
        )
    out.append(
        ch.claim(
            "label_only_no_leak",
            f"Label-only answers leak nothing (within ±{margin_no_leak:g}).",
            mlp[mlp.defence == "label"],
            value="test_acc",
            baseline="independent_acc",
            expect="equivalent",
            margin=margin_no_leak,
            unit="teacher_id",
            what="label only (MLP): held-out against own fresh",
        )
    )
    check = decimals_check(table)
    if len(check):
        check = decimals_per_teacher(check)
        out.append(
            ch.claim_count(
                "rounding_fails_where_predicted",
                "Exact linear recovery fails at the number of "
                "decimals the precision argument predicts (10^-r / p against the smallest held-out "
                "margin), within one decimal at every server temperature.",
                int(check.within_one.sum()),
                len(check),
                p_within,
                expect="above",
                teachers=len(check),
                what="linear teachers whose failing decimal is within one of the prediction",
            )
        )
    for family, name in (("label smoothing", "label_smoothing"), ("weight decay", "weight_decay")):
        excess = frontier_excess(table, family)
        if len(excess):
            out.append(
                ch.claim(
                    f"{name}_below_server_frontier",
                    f"{family.capitalize()} at the teacher lowers the leak "
                    "at equal fidelity: below the lowest leak of any server-side defence that keeps at "
                    "least its fidelity.",
                    excess,
                    value="excess",
                    baseline=0.0,
                    expect="below",
                    unit="teacher_id",
                    what=f"{family}: leak minus the best server defence's at equal fidelity",
                )
            )
    for setting in dict.fromkeys(table.setting):
        corr = leak_fidelity_correlation(table, setting).dropna()
        if len(corr):  # a sign test: the correlations are ranks over a few defences, often all equal to 1
            out.append(
                ch.claim_count(
                    f"leak_comes_with_fidelity_{setting}",
                    f"Over the defences ({setting}), the leak "
                    "falls with the fidelity: more than half of the teachers have a rank correlation "
                    "above 0.",
                    int((corr.rank_correlation > 0).sum()),
                    len(corr),
                    0.5,
                    expect="above",
                    teachers=len(corr),
                    what=f"{setting.replace('_', ' ')}: teachers whose leak rises with fidelity",
                )
            )
    return out


def holm_block(ch: Any) -> pd.DataFrame:
    """The chapter's claims adjusted for multiplicity as one family (Holm), as the report does within a block."""
    from memkd.book.report import adjust_claims

    adjusted = adjust_claims(pd.DataFrame([asdict(c) for c in ch.claims]))
    adjusted["block"] = "defences (this chapter)"
    return adjusted[["claim", "measured", "baseline", "n", "p_value", "p_adjusted", "verdict", "verdict_adjusted"]]


def closing_lines(summary: pd.DataFrame, check: pd.DataFrame, verdict: dict[str, str]) -> list[str]:
    """Chapter 14's closing sentences (Markdown), chosen by the claims' verdicts (`verdict`: claim -> verdict,
    after Holm's adjustment) and filled from `frontier_summary` and `decimals_check`."""

    def say(claim: str, yes: str, no: str, unsure: str) -> str:
        return {"holds": yes, "does not hold": no}.get(verdict.get(claim, ""), unsure)

    mlp = summary[summary.setting == "mlp"]
    family, by_spec = mlp.set_index("family"), mlp[~mlp.family.isin(TEACHER_SIDE)].set_index("defence")
    per = decimals_per_teacher(check) if len(check) else check
    within = (
        f"{int(per.within_one.sum())} of {len(per)} teachers within one decimal at each of "
        f"{check.temperature.nunique()} server temperatures"
        if len(check)
        else "no teacher"
    )
    no_leak = verdict.get("top1_no_leak") == "holds"  # shown beside top1_leaks, not counted in the family
    lines = [
        say(
            "top1_leaks",
            "The top-1 probability alone **leaks** memorized points.",
            "The top-1 probability alone **does not leak** beyond the students' own fresh accuracy.",
            "The top-1 probability alone leaks **nothing measurable**: within the equivalence margin of the "
            "students' own fresh accuracy (a supporting claim, outside the family)."
            if no_leak
            else "Whether the top-1 probability alone leaks is **inconclusive** with these teachers.",
        ),
        f"Undefended (mlp): leak {family.leak['none']:.3f} at fidelity {family.fidelity['none']:.3f}; label only: "
        f"leak {family.leak['label only']:.3f} at fidelity {family.fidelity['label only']:.3f}.",
        say(
            "rounding_fails_where_predicted",
            f"Exact linear recovery fails where the precision argument predicts ({within}).",
            f"The precision argument misplaces the failing decimal ({within}).",
            f"Whether the precision argument places the failing decimal is inconclusive ({within}).",
        ),
    ]
    for knob in ("label smoothing", "weight decay"):
        lines.append(
            say(
                f"{knob.replace(' ', '_')}_below_server_frontier",
                f"{knob.capitalize()} at the teacher "
                "**lowers** the leak below what any server-side defence of equal fidelity leaves.",
                f"{knob.capitalize()} does **not** beat the server-side defences of equal fidelity.",
                f"Whether {knob} lowers the leak at equal fidelity is inconclusive.",
            )
        )
    together = [s for s in summary.setting.unique() if verdict.get(f"leak_comes_with_fidelity_{s}") == "holds"]
    lines.append(
        (
            f"The leak comes with the fidelity in {', '.join(together)}: there, the defences that take the leak "
            "away take the service with it."
            if together
            else "In no setting is the link between leak and fidelity established at this profile."
        )
        + f" ({len(together)} of {summary.setting.nunique()} settings.)"
    )
    if {"top5", "top5|logprob_round2"} <= set(by_spec.index):
        lines.append(
            f"How the student completes the withheld mass matters: top-5 alone leaks {by_spec.leak['top5']:.3f}, "
            f"top-5 log-probabilities to two decimals {by_spec.leak['top5|logprob_round2']:.3f} (rounding the "
            "top probability up to 1 leaves no mass to spread, so the withheld classes get none)."
        )
    return lines


def spread(values: pd.Series) -> str:
    """'mean ± SEM (n)' of per-teacher values."""
    v = values.dropna()
    return f"{v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else math.nan:.3f} (n = {len(v)})"


__all__ = [
    "FAMILY_ORDER",
    "TEACHER_SIDE",
    "closing_lines",
    "decimals_check",
    "decimals_per_teacher",
    "frontier_rows",
    "defence_claims",
    "frontier_figure",
    "frontier_summary",
    "frontier_excess",
    "holm_block",
    "keeps_fidelity",
    "leak_fidelity_correlation",
    "per_teacher",
    "predicted_failing_decimal",
    "server_side",
    "spread",
]


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 14's departures: its settings' sizes, who owns the temperature, the completion of
    withheld mass, the linear student and its baseline, and the recovery cell's split."""
    from memkd.experiments.defence_frontier import RECOVERY_CELL

    c = config_of(table)
    cell = RECOVERY_CELL.get(c.get("profile", "quick"), RECOVERY_CELL["quick"])
    spread = {
        "uniform": "uniformly over the withheld classes",
        "renormalize": "nowhere: the k returned entries are renormalized",
    }[c.get("withheld", "uniform")]
    return [
        departure_row(
            "14_defences",
            "settings",
            **c,
            cell_dim=cell["input_dim"],
            cell_classes=cell["classes"],
            cell_per_class=cell["per_class"],
            cell_teachers=cell["teachers"],
            cell_epochs=cell["epochs"],
            cell_lr=cell["lrs"][0],
        ),
        departure_row("14_defences", "server temperature", temperature=c["temperatures"][0]),
        departure_row("14_defences", "withheld mass", withheld=spread),
        departure_row(
            "14_defences",
            "linear student",
            linear_temperature=c["linear_temperature"],
            probes=", ".join(f"{t:g}" for t in c.get("linear_probe_temperatures", [])) or "none",
        ),
        departure_row("14_defences", "linear leak baseline"),
        departure_row("14_defences", "recovery cell split", cell_alpha=cell["alphas"][0]),
    ]
