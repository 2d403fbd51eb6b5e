"""Chapter 08 (the transformer on modular addition): its claims and outcome sentences, the teacher clock's
claims, and its departures.

The workshop setting (`memkd.experiments.modular_addition`: `transformer_distillation`, and its
statistics `transfer_by_temperature`, `teacher_summary`) gets its claim here (`fit_and_transfer_claim`,
with the margin `transformer_trivial` fixed before the run) and its sentences: where the budget leaves
the teachers (`teacher_budget_text`) and what the verdicts found (`transformer_outcomes`). The published
version's teacher clock (`memkd.experiments.teacher_clock`: one row per student with its teacher's state
at each stop, `stop_summary` per stop) gets its claims here (`clock_claims`, with the margin and the fewest
teachers fixed before the run) and its closing text (`clock_outcome`). `departures` lists how both depart from
appendix A.4 and from the released script of the published Figs 2 and 8 (`transformer_departures`,
`clock_departures`; their wording in departures.yml, groups 08_transformer and 08_teacher_clock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from memkd.book.plan import Margin
from memkd.book.departures import (
    Departure,
    config_of,
    config_values,
    departure_row,
    pairs,
    sizes_departure,
    temperature_departure,
)
from memkd.book.outcomes import outcome
from memkd.experiments.modular_addition import PAPER_FIG8, teacher_summary, transfer_by_temperature
from memkd.experiments.teacher_clock import GENERALIZED, PAPER_CLOCK, STATE_COLUMNS, STATES

if TYPE_CHECKING:  # the chapter layer's own class
    from memkd.book.chapter import Chapter

# Equivalence margin of "held-out memorized and unseen accuracies agree" (fixed in advance): five accuracy
# points, about one standard error of one student's accuracy on 100 held-out pairs (0.5 / sqrt(100)):
# smaller gaps are what drawing the pairs alone gives.
EQUIVALENCE_MARGIN = 0.05
# Fewest teachers in one state at one stop for a claim there (fixed in advance): with 2, the t interval has
# one degree of freedom and its one-sided 5% bound is 6.3 standard errors wide, so it decides nothing.
MIN_TEACHERS = 3


# --- margins fixed before the run (each with its reason; the power plans: plans.yml) ---------------------------


def transformer_trivial(chance: float) -> Margin:
    """Chapter 08: held-out accuracy against the students' own accuracy outside D."""
    return Margin(chance, "1/k: fewer than one extra correct answer in k held-out pairs counts as trivial")


def fit_and_transfer_claim(ch: "Chapter", table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Record the workshop setting's claim on `ch` (a `memkd.book.chapter.Chapter`): no temperature gives
    students that both fit their part and transfer, and return the per-temperature tests with the sentences
    the chapter shows (Markdown: the claim's verdict, then the temperature and level it is recorded at).

    `table`: one row per student of `transformer_distillation`. At every temperature where the students fit,
    the per-teacher mean of held-out minus own accuracy outside D (`independent_acc`) is tested for
    equivalence within `transformer_trivial(1/k)` (`transfer_by_temperature`: an intersection-union test,
    Bonferroni for "does not hold"); the claim is recorded at the decisive temperature and level.
    Returns (per_t, sentences): per_t one row per temperature (see `transfer_by_temperature`).
    """
    ch.rest_on(table)
    margin = float(table.chance.iloc[0])  # 1/k, fixed in advance (transformer_trivial)
    per_t, decisive, level = transfer_by_temperature(table, margin=margin)
    tested = ", ".join(f"{t:g}" for t in per_t[per_t.fits].temperature) or "none fit: all"
    sentence = ch.claim(
        "no_fit_and_transfer",
        "No temperature gives students both 100% train accuracy and "
        f"non-trivial held-out accuracy (equivalence margin ±1/k = ±{margin:.3f} against the students' own accuracy "
        "outside D).",
        table[table.temperature == decisive],
        baseline="independent_acc",
        expect="equivalent",
        margin=transformer_trivial(margin),
        level=level,
        what=f"held out against own accuracy outside D, decisive T = {decisive:g}",
        detail=f"k = {int(table.modulus.iloc[0])}; temperatures tested: {tested}",
    )
    recorded = f"Recorded at T = {decisive:g} with level {level:.3g}: a {100 * (1 - 2 * level):.0f}% interval."
    return per_t, [sentence, recorded]


def clock_equivalent(value: float) -> Margin:
    """Chapter 08, the teacher clock: held-out memorized and unseen accuracies 'agree'."""
    return Margin(
        value,
        f"{value:g} in accuracy: about one standard error of one student's accuracy on 100 "
        "pairs (0.5 / sqrt(100)); smaller gaps are what drawing the pairs alone gives",
    )


def clock_claims(
    ch: "Chapter", table: pd.DataFrame, margin: Any = EQUIVALENCE_MARGIN, min_teachers: int = MIN_TEACHERS
) -> pd.DataFrame:
    """Test, at every teacher stop and temperature, what the clock says the students should show.

    The teachers at a stop are grouped by `teacher_state`. Where at least `min_teachers` teachers have
    memorized but not generalized: "the leak exists", held-out memorized accuracy above the students' own unseen
    accuracy (per-teacher means, expect "above", margin 0). Where at least `min_teachers` have generalized:
    "the leak vanishes into generalization", the two equivalent within +-`margin` (TOST). Both at the one
    family level (memkd.metrics.FAMILY_ALPHA), teachers as the unit: a t interval of the per-teacher
    differences, or the exact sign test across teachers where they have no spread. A "vanishes" statement
    at a temperature where no earlier stop showed the leak has nothing to vanish: it is recorded as a check
    (shown apart, never counted). Teachers that have not memorized get no claim.
    `ch` is a `memkd.book.chapter.Chapter`; claims are recorded there with ids
    clock_leak_<step>_T<T> and clock_vanishes_<step>_T<T>, in the report's block of the published
    version (`ch.section(published_version=True)`). `margin` may be a `memkd.book.plan.Margin`
    (the value with its reason) or a bare number.
    Returns one row per claim: teacher_step, temperature, state, claim, teachers, heldout_acc,
    unseen_acc, verdict, sentence (the Markdown that `ch` returned).
    """
    with ch.section(published_version=True):
        return _clock_claims(ch, table, margin, min_teachers)


def _clock_claims(ch: "Chapter", table: pd.DataFrame, margin: Any, min_teachers: int) -> pd.DataFrame:
    ch.rest_on(table)
    out = []
    leaked: set[float] = set()  # temperatures where an earlier stop showed the leak
    for (step, temp), part in table.sort_values("teacher_step").groupby(["teacher_step", "temperature"]):
        for state, group in part.groupby("teacher_state"):
            teachers = group.dataset.nunique()
            if state == STATES[0] or teachers < min_teachers:
                continue
            leak = state == STATES[1]
            claim_id = f"clock_{'leak' if leak else 'vanishes'}_{step}_T{temp:g}"
            if leak:
                text = (
                    f"Teacher stopped at step {step}, memorized but not generalized (T = {temp:g}): students' "
                    "held-out memorized accuracy lies above their own accuracy on the pairs nobody saw."
                )
                kw = dict(expect="above", margin=0.0)
            else:
                text = (
                    f"Teacher stopped at step {step}, generalized (T = {temp:g}): students' held-out memorized "
                    f"accuracy and their accuracy on the pairs nobody saw agree within ±{margin:g}."
                )
                kw = dict(expect="equivalent", margin=margin, check=float(temp) not in leaked)
            detail = (
                f"k = {int(group.modulus.iloc[0])}, rho {sorted(set(group.rho))}, teachers in state "
                f"'{state}' at this stop: {teachers}"
                + (
                    ""
                    if leak or float(temp) in leaked
                    else "; a check: no earlier stop showed a leak at this temperature, so there is none to vanish"
                )
            )
            what = f"step {step}, T = {temp:g}, teachers {state}: held-out memorized against own unseen accuracy"
            sentence = ch.claim(
                claim_id, text, group, value="heldout_acc", baseline="trivial_acc", what=what, detail=detail, **kw
            )
            verdict = ch.claims[-1].verdict
            if leak and verdict == "holds":
                leaked.add(float(temp))
            out.append(
                {
                    "teacher_step": step,
                    "temperature": temp,
                    "state": state,
                    "claim": claim_id,
                    "teachers": teachers,
                    "heldout_acc": group.heldout_acc.mean(),
                    "unseen_acc": group.unseen_acc.mean(),
                    "verdict": verdict,
                    "sentence": sentence,
                }
            )
    return pd.DataFrame(
        out,
        columns=[
            "teacher_step",
            "temperature",
            "state",
            "claim",
            "teachers",
            "heldout_acc",
            "unseen_acc",
            "verdict",
            "sentence",
        ],
    )


def _list(values) -> str:
    values = [f"{v:g}" for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def clock_outcome(
    summary: pd.DataFrame, claims: pd.DataFrame, margin: float = EQUIVALENCE_MARGIN, min_teachers: int = MIN_TEACHERS
) -> str:
    """The section's closing Markdown, chosen by the clock (`stop_summary`) and the verdicts (`clock_claims`).

    An equivalence after generalizing is called "the leak has vanished" only at a temperature where the
    leak held at an earlier stop; elsewhere there was no leak shown to vanish, and the text says so.
    """
    leaked = claims[(claims.state == STATES[1]) & (claims.verdict == "holds")]
    lines = []
    for _, s in summary.iterrows():
        states = "; ".join(f"{int(s[STATE_COLUMNS[st]])} {st}" for st in STATES if s[STATE_COLUMNS[st]])
        lines.append(
            f"- **Step {int(s.teacher_step)}**: the teachers stand at {s.teacher_unseen_acc:.2f} on the "
            f"pairs nobody saw (from {s.teacher_unseen_acc_min:.2f} to {s.teacher_unseen_acc_max:.2f}; {states})."
        )
        mine = claims[claims.teacher_step == s.teacher_step]
        for state, part in mine.groupby("state"):
            by = {v: sorted(part[part.verdict == v].temperature) for v in ("holds", "does not hold", "inconclusive")}
            leak = state == STATES[1]
            said = []
            if by["holds"] and leak:
                said.append(
                    f"at T = {_list(by['holds'])} the students' held-out memorized accuracy is above "
                    "their own unseen accuracy: **the leak exists**"
                )
            elif by["holds"]:
                before = set(leaked[leaked.teacher_step < s.teacher_step].temperature)
                gone, never = [t for t in by["holds"] if t in before], [t for t in by["holds"] if t not in before]
                if gone:
                    said.append(
                        f"at T = {_list(gone)}, where an earlier stop showed the leak, held-out memorized "
                        f"and unseen accuracy are equivalent within ±{margin:g}: **the leak has vanished "
                        "into generalization**"
                    )
                if never:
                    said.append(
                        f"at T = {_list(never)} the two are equivalent within ±{margin:g}, but no earlier "
                        "stop showed a leak at this temperature: **nothing to vanish**"
                    )
            if by["does not hold"]:
                said.append(
                    f"at T = {_list(by['does not hold'])} "
                    + (
                        "held-out memorized accuracy is not above the unseen accuracy: **no leak**"
                        if leak
                        else f"the two differ by more than ±{margin:g}: **the leak has not vanished**"
                    )
                )
            if by["inconclusive"]:
                said.append(f"at T = {_list(by['inconclusive'])} the test is **inconclusive**")
            lines.append(f"  Teachers {state}: " + "; ".join(said) + ".")
        for st in STATES[1:]:
            if 0 < s[STATE_COLUMNS[st]] < min_teachers:
                lines.append(
                    f"  Teachers {st}: {int(s[STATE_COLUMNS[st]])}, too few for a claim (fewer than {min_teachers})."
                )
        if mine.empty:
            lines.append(
                f"  No claim is tested at this stop (fewer than {min_teachers} memorized teachers in one state)."
            )
    if not (summary[STATE_COLUMNS[STATES[2]]] >= min_teachers).any():
        best = summary.loc[summary.teacher_unseen_acc.idxmax()]
        lines.append(
            f"\nAt no stop had {min_teachers} or more teachers generalized (at least {GENERALIZED:.0%} on the pairs "
            f"nobody saw; the best mean was {best.teacher_unseen_acc:.2f} at step {int(best.teacher_step)}): "
            "this build cannot test whether the leak vanishes into generalization."
        )
    if not (summary[STATE_COLUMNS[STATES[1]]] >= min_teachers).any():
        lines.append(
            f"\nAt no stop had {min_teachers} or more teachers memorized without generalizing: this build cannot test "
            "where the leak exists."
        )
    return "\n".join(lines)


# --- the workshop setting's sentences -------------------------------------------------------


def teacher_budget_text(table: pd.DataFrame) -> str:
    """Where their budget leaves the teachers of a `transformer_distillation` table (Markdown): how long the
    budget is against the time they needed to memorize D, and how far their accuracy outside D has moved
    from chance towards 1 (grokking), from `modular_addition.teacher_summary`."""
    per = teacher_summary(table)
    chance, run = float(table.chance.iloc[0]), int(per.teacher_epochs_run.max())
    first_lo, first_hi = int(per.teacher_first_perfect.min()), int(per.teacher_first_perfect.max())
    acc, lo, hi = (
        per.teacher_independent_acc.mean(),
        per.teacher_independent_acc.min(),
        per.teacher_independent_acc.max(),
    )
    where = (
        "they have generalized the rule: they grokked within their budget"
        if lo >= 0.95
        else "they have not started to generalize the rule"
        if hi <= 2 * chance
        else "they are part of the way from memorizing D to grokking the rule"
    )
    text = (
        f"The {len(per)} teachers trained for {run} full-batch steps (`teacher_stop="
        f'"{table.teacher_stop.iloc[0]}"`) and first classified all of their D at steps {first_lo}-{first_hi}, '
        f"so the budget is {run / max(first_hi, 1):.1f}× the time they needed to memorize. On the pairs outside D "
        f"they reach {acc:.3f} on average (from {lo:.3f} to {hi:.3f}; chance 1/k = {chance:.3f}): {where}."
    )
    return text


def transformer_outcomes(ch: "Chapter", checks: pd.DataFrame, fits: pd.DataFrame) -> str:
    """Chapter 08: held-out accuracy against chance at the temperatures where students fit (the
    paper's reading of 'non-trivial'), then against the students' own accuracy outside D."""
    fit_t = set(fits.loc[fits["fits"], "temperature"]) if len(fits) else set()
    outside = checks[(checks["check"] == "students_outside_D_vs_chance") & (checks["verdict"] == "holds")]
    rule = ""
    if len(outside):
        ts = ", ".join(f"{t:g}" for t in outside["temperature"])
        rule = (
            "**This build departs from the paper's picture here:** at T = " + ts + " the students beat chance "
            "on the pairs outside D (by " + ", ".join(f"{m:+.3f}" for m in outside["mean"]) + "): they pick "
            "up part of the rule of modular addition from the teacher's logits, which is why the baseline "
            "below is their own accuracy outside D. "
        )
    vs_chance = checks[(checks["check"] == "held_out_vs_chance") & checks["temperature"].isin(fit_t)]
    above = vs_chance[vs_chance["verdict"] == "holds"]
    if len(above):
        ts = ", ".join(f"{t:g}" for t in above["temperature"])
        text = (
            f"**This build contradicts the paper's reading here:** at T = {ts}, students that fit their part "
            "of D reach held-out accuracy above chance 1/k, which the paper did not find. "
        )
    elif fit_t:
        text = "At no temperature where the students fit is their held-out accuracy shown to beat chance 1/k. "
    else:
        text = "At no temperature do the students fit their part of D. "
    return (
        rule
        + text
        + outcome(
            ch,
            "no_fit_and_transfer",
            "Against their own accuracy outside D, the held-out accuracy is within ±1/k at every temperature that "
            "fits ({difference:+.3f} at the decisive one): what they get right, they get right from the rule, not "
            "from memorized pairs.",
            "Against their own accuracy outside D, the held-out accuracy is higher by more than 1/k at the decisive "
            "temperature ({difference:+.3f}, {interval}): memorized pairs pass through the logits.",
            "Against their own accuracy outside D, the difference at the decisive temperature ({difference:+.3f}, "
            "{interval}) is neither inside nor outside the margin ±1/k.",
        )
    )


# --- departures -------------------------------------------------------------------------------------


def transformer_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 08 (the workshop setting): how a `transformer_distillation` table departs from appendix A.4."""
    config = config_of(table)
    out = [
        departure_row("08_transformer", "trivial baseline"),
        departure_row("08_transformer", "memorized set", **config_values(config, "memorized_fraction")),
        departure_row("08_transformer", "teachers", **config_values(config, "teachers")),
        departure_row(
            "08_transformer",
            "epochs and learning rates",
            **config_values(config, "teacher_epochs", "epochs", "lrs", "alphas"),
        ),
    ]
    return out + [d for d in [sizes_departure(config, PAPER_FIG8)] if d] + temperature_departure(config)


def clock_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 08 (the teacher clock): how a `teacher_clock` table departs from the released script of
    Figs 2 and 8; topics start with "teacher clock: "."""
    config = config_of(table)
    out = [
        departure_row(
            "08_teacher_clock",
            "teacher stops",
            last_stop=max(config.get("teacher_steps", [0])),
            **config_values(config, "teacher_steps"),
        ),
        departure_row("08_teacher_clock", "teachers", **config_values(config, "teachers")),
    ]
    optim = config_values(config, "teacher_lr", "teacher_weight_decay", "lr", "weight_decay")
    released = {k: PAPER_CLOCK[k] for k in optim}
    if optim != released:
        out.append(
            departure_row("08_teacher_clock", "optimizer", released=pairs(released, "g"), optimizer=pairs(optim, "g"))
        )
    steps = config.get("teacher_steps", [])
    if config.get("epochs") != PAPER_CLOCK["epochs"] or tuple(steps) != PAPER_CLOCK["teacher_steps"]:
        out.append(
            departure_row(
                "08_teacher_clock", "steps", epochs=config.get("epochs"), teacher_steps=", ".join(str(s) for s in steps)
            )
        )
    start = config.get("student_start", "own")
    out.append(
        departure_row(
            "08_teacher_clock",
            "student start",
            student_start=(
                "each student its own initialization"
                if start == "own"
                else "each student from its teacher's initial weights (student_start='teacher'), teachers their own"
            ),
        )
    )
    if tuple(config.get("rhos", ())) != (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9):
        rhos = ", ".join(f"{r:g}" for r in config.get("rhos", []))
        out.append(departure_row("08_teacher_clock", "rho", rhos=rhos))
    sizes = sizes_departure(config, {k: PAPER_CLOCK[k] for k in ("modulus", "memorized_fraction", "d_model", "d_mlp")})
    # topics carry the section's name: chapter 08 records the workshop setting's departures too
    return [{**d, "topic": f"teacher clock: {d['topic']}"} for d in out + ([sizes] if sizes else [])]


def departures(table: pd.DataFrame, clock: pd.DataFrame | None = None) -> list[Departure]:
    """Chapter 08: the workshop setting's departures (`transformer_departures`), then the teacher
    clock's (`clock_departures`) once its table `clock` is there."""
    return transformer_departures(table) + (clock_departures(clock) if clock is not None else [])
