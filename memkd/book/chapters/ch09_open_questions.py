"""Chapter 09 (the open questions): which claim each question tests, against which margin, the sentences
the chapter prints, its figure helpers and its departures.

Teachers are the unit: every claim goes through `Chapter.claim` / `Chapter.claim_difference`,
which average each teacher's students first (n = teachers). Each `*_claims(ch, table)` function
records its question's claims on the chapter `ch` and returns Markdown sentences built from the
numbers. Claims of direction are tested as stated ("above"); claims of *no* change or of *as
close as* are equivalence claims (two one-sided tests) against a margin fixed here, before any run:

- `ACCURACY_MARGIN` (a fraction of chance 1/C): two held-out accuracies closer than a quarter of
  chance count as the same. At C = 20 that is 0.0125, half the 0.025 change that the authors'
  released code shows between the two teacher protocols (d = 200, C = 20, T = 20).
- `PHI_MARGIN`: two correlations φ of correct sets closer than 0.05 count as the same; φ between
  two logit students of one teacher is about 0.2-0.3 at the book's sizes, so 0.05 is a fifth of it.

An interval that straddles its margin gives the verdict "inconclusive". Shapes as in
`memkd.experiments.q1_overlap` ... `q6_teacher_protocol`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from memkd.experiments.q1_overlap import overlap_per_student
from memkd.book.departures import Departure, standard_departures
from memkd.book.plan import Margin
from memkd.metrics import choose_and_test_units, interval_test, mean_sem, per_unit_means

if TYPE_CHECKING:  # the chapter layer sits above the experiments
    from memkd.book.chapter import Chapter

ACCURACY_MARGIN = 0.25  # equivalence margin on held-out accuracy, as a fraction of chance 1/C
PHI_MARGIN = 0.05  # equivalence margin on the correlation of two students' correct sets
LEVEL = 0.01  # level of the directional claims (Chapter.claim's default for "above" / "below")
_SEVERITY = {"does not hold": 2, "inconclusive": 1, "holds": 0}
ACCURACY_REASON = (
    "a quarter of chance 1/C: half the change between the two teacher protocols in the authors' "
    "released code (0.025 at d = 200, C = 20, T = 20)"
)
PHI_REASON = "a fifth of the correlation φ between two logit students of one teacher (about 0.2-0.3 here)"


def open_question(where: str, question: str) -> str:
    """The `paper` text of a claim about a question the paper names but leaves open."""
    return f"Not a claim of the paper; it leaves open ({where}): {question}"


def own_question(question: str) -> str:
    """The `paper` text of a claim about a question of this book's own."""
    return f"Not a claim of the paper; this book asks: {question}"


def accuracy_margin(table: pd.DataFrame) -> float:
    """ACCURACY_MARGIN x chance, from the table's `chance` column (1/C)."""
    return ACCURACY_MARGIN * float(table["chance"].dropna().iloc[0])


def paired_change(a: pd.DataFrame, b: pd.DataFrame, value: str = "test_acc") -> dict[str, float]:
    """Per-teacher mean of `a` minus that of `b` on the teachers both have: mean, sem, n (no verdict)."""
    pa, pb = per_unit_means(a, value), per_unit_means(b, value)
    d = pa.merge(pb, on="dataset", suffixes=("_a", "_b"))
    mean, sem = mean_sem(d["value_a"] - d["value_b"])
    return {"mean": mean, "sem": sem, "n": len(d)}


def change_text(r: dict[str, float]) -> str:
    """'+0.012 ± 0.004 (5 teachers)' from `paired_change`."""
    sem = "" if math.isnan(r["sem"]) else f" ± {r['sem']:.3f}"
    return f"{r['mean']:+.3f}{sem} ({r['n']} teachers)"


# --- figures ---------------------------------------------------------------------------------------


def bars(
    ax,
    table: pd.DataFrame,
    by: str,
    value: str = "test_acc",
    *,
    chance: float | None = None,
    trivial: float | None = None,
    ylabel: str = "held-out accuracy",
) -> None:
    """Bars of `value` per group `by`: mean ± SEM over teachers (students averaged first), with the
    chance level and the students' accuracy on fresh data D' (`trivial`) as lines when given."""
    from memkd.book.plots import chance_line
    from memkd.tables import summarize

    s = summarize(table.dropna(subset=[value]), value, by=[by])
    order = list(dict.fromkeys(table[by]))
    s = s.set_index(by).reindex([o for o in order if o in set(s[by])]).reset_index()
    ax.bar(s[by].astype(str), s[value], yerr=s[f"{value}_sem"], capsize=3, color="tab:blue")
    if chance is not None:
        chance_line(ax, chance, "chance 1/C")
    if trivial is not None:
        ax.axhline(trivial, ls=":", c="tab:red", lw=1.5, label="same students on fresh D'")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)


# --- 1. overlap ------------------------------------------------------------------------------------


def overlap_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Q1: (a) a similarity student's correct set overlaps the logit students' more than independence
    predicts (lift > 1, above); (b) it is as close to a logit student as a second logit student is
    (φ difference within ±PHI_MARGIN, equivalence)."""
    ch.rest_on(table)
    lift = overlap_per_student(table, "soft-similarity", "lift")
    shared = ch.claim(
        "q1_shared_correct_set",
        open_question(
            "sec. 3.2", "do logit and similarity students of one teacher get the same held-out samples right?"
        ),
        lift,
        value="lift",
        baseline=1.0,
        expect="above",
        what="lift of the overlap of a similarity student's and the logit students' correct held-out sets over independence",
        detail="per similarity student, mean over the logit students of |A ∩ B| / (N acc_A acc_B); 1 = independent",
    )
    cross = overlap_per_student(table, "soft-similarity", "phi")
    logit = overlap_per_student(table, "soft-soft", "phi")
    close = ch.claim_difference(
        "q1_as_close_as_two_logit_students",
        open_question("sec. 3.2", "is a similarity student as close to a logit student as two logit students are?"),
        cross,
        logit,
        value="phi",
        expect="equivalent",
        margin=Margin(PHI_MARGIN, PHI_REASON),
        what=f"φ(logit, similarity) against φ(logit, logit), equivalence margin ±{PHI_MARGIN:g}",
        detail=f"φ: correlation of two students' 0/1 correct held-out sets; margin {PHI_MARGIN:g} fixed before the run",
    )
    return [shared, close]


# --- 2. weight decay -------------------------------------------------------------------------------


def regularization_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Q2: for every weight decay > 0, the students of its teachers beat their fresh-data accuracy
    (above). Also says how much the held-out accuracy moved against weight decay 0 (no claim)."""
    ch.rest_on(table)
    out = []
    ok = table[table["teacher_memorized"].astype(bool)]
    for wd in sorted(w for w in table["weight_decay"].unique() if w > 0):
        rows = table[table["weight_decay"] == wd]
        failed = int((~rows.drop_duplicates("dataset")["teacher_memorized"].astype(bool)).sum())
        out.append(
            ch.claim(
                f"q2_leak_with_weight_decay_{wd:g}",
                open_question("app. B", f"do teachers trained with weight decay {wd:g} still leak?"),
                rows,
                baseline="independent_acc",
                expect="above",
                what=f"held-out against fresh-data accuracy, teachers with weight decay {wd:g}",
                detail=f"{failed} of {rows['dataset'].nunique()} teachers did not memorize D and have no students",
            )
        )
        base = ok[ok["weight_decay"] == 0]
        if len(base):
            out.append(
                f"Against teachers without weight decay, the held-out accuracy changes by "
                f"{change_text(paired_change(ok[ok['weight_decay'] == wd], base))} (a description, not a claim)."
            )
    return out


# --- 3. architecture -------------------------------------------------------------------------------


def variant_tests(table: pd.DataFrame, by: Sequence[str] = ("part", "variant")) -> pd.DataFrame:
    """One row per variant: teachers, held-out and fresh-data accuracy (means over teachers), and the
    interval test of held-out minus fresh-data accuracy per teacher ("above", level LEVEL)."""
    rows = []
    for key, g in table.groupby(list(by), sort=False):
        means = per_unit_means(g, "test_acc", "independent_acc")
        r = interval_test(means["difference"], "above", 0.0, LEVEL)
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                "teachers": r["n"],
                "held-out": means["value"].mean(),
                "fresh D'": means["baseline"].mean(),
                "difference": r["mean"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "verdict": r["verdict"],
            }
        )
    return pd.DataFrame(rows)


def weakest_variant(tests: pd.DataFrame) -> int:
    """Index of the variant that decides an intersection-union test: the worst verdict, then the
    lowest lower bound (a NaN bound counts as the lowest)."""
    order = tests.assign(sev=tests["verdict"].map(_SEVERITY), low=tests["ci_low"].fillna(-math.inf))
    return int(order.sort_values(["sev", "low"], ascending=[False, True]).index[0])


def architecture_claims(ch: "Chapter", table: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Q3: (a) the students of every variant beat their fresh-data accuracy: each variant is tested
    and the claim records the weakest (it holds only if every variant holds; intersection-union);
    (b) tanh teachers and students leak more than ReLU ones (activation part, above).
    Returns the sentences and the table of per-variant tests."""
    ch.rest_on(table)
    ok = table[table["teacher_memorized"].astype(bool)]
    tests = variant_tests(ok)
    worst = tests.loc[weakest_variant(tests)]
    rows = ok[(ok["part"] == worst["part"]) & (ok["variant"] == worst["variant"])]
    out = [
        ch.claim(
            "q3_effect_survives_architecture",
            "Preliminary in the paper (app. B): activation, depth and teacher/student mismatch leave the leak intact.",
            rows,
            baseline="independent_acc",
            expect="above",
            what=f"held-out against fresh-data accuracy, weakest of {len(tests)} variants ({worst['part']} / {worst['variant']})",
            detail=f"every variant tested at level {LEVEL:g}; the claim holds only if all do (intersection-union test): "
            + ", ".join(f"{p}/{v} {d}" for p, v, d in zip(tests["part"], tests["variant"], tests["verdict"])),
        )
    ]
    acts = ok[ok["part"] == "activation"]
    if {"tanh", "relu"} <= set(acts["variant"]):
        out.append(
            ch.claim_difference(
                "q3_tanh_leaks_more",
                open_question(
                    "app. B", "does the activation change how much leaks? Tested: tanh leaks more than ReLU."
                ),
                acts[acts["variant"] == "tanh"],
                acts[acts["variant"] == "relu"],
                expect="above",
                what="held-out accuracy, tanh against ReLU (teacher and student alike)",
                detail="the hypothesis came from earlier builds on these seeds: the blind test is "
                "q3_tanh_leaks_more_fresh_seeds",
                supports="09_open_questions:q3_tanh_leaks_more_fresh_seeds",
            )
        )
    return out, tests


BLIND_SEED_OFFSET = 7919  # added to the chapter's seed: datasets, teachers and students no earlier build drew


def blind_seed(seed: int) -> int:
    """The base seed of a blind re-test: the chapter's seed + BLIND_SEED_OFFSET (every seed of the
    book derives from its base seed, so these runs share no dataset, teacher or student with it)."""
    return int(seed) + BLIND_SEED_OFFSET


def blind_activation_claim(ch: "Chapter", table: pd.DataFrame, seed: int) -> str:
    """Q3 (b) on fresh seeds: tanh teachers and students leak more than ReLU ones.
    `table`: `architecture(..., parts=("activation",), seed=seed)` with seed = `blind_seed(ch.seed)`."""
    ch.rest_on(table)
    ok = table[table["teacher_memorized"].astype(bool)]
    acts = ok[ok["part"] == "activation"]
    return ch.claim_difference(
        "q3_tanh_leaks_more_fresh_seeds",
        open_question(
            "app. B", "does the activation change how much leaks? Tested on fresh seeds: tanh leaks more than ReLU."
        ),
        acts[acts["variant"] == "tanh"],
        acts[acts["variant"] == "relu"],
        expect="above",
        what="held-out accuracy on fresh seeds, tanh against ReLU (teacher and student alike)",
        detail=f"base seed {seed}: datasets, teachers and students that no earlier build drew (the hypothesis "
        "came from those builds)",
    )


# --- 4. temperature convention ---------------------------------------------------------------------


def convention_claims(ch: "Chapter", table: pd.DataFrame, seed: int = 0) -> list[str]:
    """Q4: (a) at the largest T of the grid (fixed in advance) the text's convention transfers more
    than the code's (above); (b) under each convention the students beat their fresh-data accuracy
    at a T chosen on half of the teachers and tested on the other half (above)."""
    ch.rest_on(table)
    t_max = float(table["temperature"].max())
    code, text = table[~table["soften_student"].astype(bool)], table[table["soften_student"].astype(bool)]
    out = [
        ch.claim_difference(
            "q4_text_transfers_more_at_large_T",
            own_question(
                "does softening the student's logits too (the paper's text) transfer more than the released "
                "code's loss at a large temperature?"
            ),
            text[text["temperature"] == t_max],
            code[code["temperature"] == t_max],
            expect="above",
            what=f"held-out accuracy at T = {t_max:g}, the text's convention against the code's",
            detail="T fixed in advance: the largest of the grid",
        )
    ]
    choose, test = choose_and_test_units(table["dataset"], seed)
    for name, g in (("code", code), ("text", text)):
        best = float(g[g["dataset"].isin(choose)].groupby("temperature")["test_acc"].mean().idxmax())
        out.append(
            ch.claim(
                f"q4_{name}_convention_beats_fresh_data",
                own_question(f"do students beat their fresh-data accuracy under the {name}'s temperature convention?"),
                g[g["dataset"].isin(test) & (g["temperature"] == best)],
                baseline="independent_acc",
                expect="above",
                what=f"held-out against fresh-data accuracy, the {name}'s convention at T = {best:g}",
                detail=f"T chosen on teachers {choose}, tested on teachers {test}",
            )
        )
    return out


# --- 5. the probe ----------------------------------------------------------------------------------


def probe_claims(ch: "Chapter", table: pd.DataFrame, reference: str = "relu") -> list[str]:
    """Q5: on `reference` teachers, (a) random-feature and (b) linear students beat their fresh-data
    accuracy (above). With tanh teachers too: (c) a linear fit explains more of a tanh teacher's
    logits on fresh data than of a ReLU teacher's (above); (d) on tanh teachers a linear student
    recovers as much as the trained tanh student (equivalence within ACCURACY_MARGIN)."""
    ch.rest_on(table)
    ref = table[table["teacher_activation"] == reference]
    out = [
        ch.claim(
            f"q5_{v}_student_leaks",
            own_question(f"does a {v.replace('_', ' ')} student recover held-out memorized labels?"),
            ref[ref["variant"] == v],
            baseline="independent_acc",
            expect="above",
            what=f"{v.replace('_', ' ')} students, held-out against fresh-data accuracy ({reference} teachers)",
        )
        for v in ("random_features", "linear")
    ]
    tanh = table[table["teacher_activation"] == "tanh"]
    if len(tanh) and reference != "tanh":
        out.append(
            ch.claim_difference(
                "q5_tanh_teachers_more_linear",
                own_question(
                    "does a linear map fitted on D explain more of a tanh teacher's logits on fresh data than "
                    "of a ReLU teacher's?"
                ),
                tanh[tanh["variant"] == "trained"],
                ref[ref["variant"] == "trained"],
                value="teacher_linear_r2",
                expect="above",
                what=f"out-of-sample R² of a linear fit to the teacher's logits, tanh against {reference}",
            )
        )
        margin = accuracy_margin(tanh)
        out.append(
            ch.claim_difference(
                "q5_linear_student_as_good_on_tanh_teachers",
                own_question("on tanh teachers, does a linear student recover as much as the tanh student?"),
                tanh[tanh["variant"] == "linear"],
                tanh[tanh["variant"] == "trained"],
                expect="equivalent",
                margin=Margin(margin, ACCURACY_REASON),
                what=f"held-out accuracy on tanh teachers, linear against tanh students, margin ±{margin:.4f} (chance / 4)",
            )
        )
    return out


# --- 6. teacher protocol ---------------------------------------------------------------------------


def protocol_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per temperature: held-out accuracy under each protocol (mean ± SEM over teachers), the paired
    per-teacher difference budget - first_perfect, and each temperature's rank within its protocol."""
    rows = []
    for t, g in table.groupby("temperature"):
        row: dict[str, Any] = {"T": t}
        for stop in ("first_perfect", "budget"):
            m, s = mean_sem(per_unit_means(g[g["teacher_stop"] == stop], "test_acc")["value"])
            row[stop] = f"{m:.3f} ± {s:.3f}"
        d = paired_change(g[g["teacher_stop"] == "budget"], g[g["teacher_stop"] == "first_perfect"])
        row["budget - first_perfect"] = change_text(d)
        rows.append(row)
    out = pd.DataFrame(rows)
    for stop, order in temperature_ranking(table).items():
        out[f"rank ({stop})"] = out["T"].map({t: i + 1 for i, t in enumerate(order)})
    return out


def temperature_ranking(table: pd.DataFrame) -> dict[str, list[float]]:
    """Temperatures from best to worst mean held-out accuracy over teachers, per protocol."""
    out = {}
    for stop, g in table.groupby("teacher_stop"):
        means = g.groupby(["temperature", "dataset"])["test_acc"].mean().groupby("temperature").mean()
        out[stop] = [float(t) for t in means.sort_values(ascending=False).index]
    return out


def temperature_effect(table: pd.DataFrame) -> pd.DataFrame:
    """Per (teacher_stop, dataset, student): held-out accuracy at the largest T minus at the smallest.
    Students with the same index share their initialization across temperatures, so this is paired."""
    lo, hi = table["temperature"].min(), table["temperature"].max()
    wide = table.pivot_table(index=["teacher_stop", "dataset", "student"], columns="temperature", values="test_acc")
    return (wide[hi] - wide[lo]).rename("temperature_effect").reset_index()


def protocol_claims(ch: "Chapter", table: pd.DataFrame) -> list[str]:
    """Q6: (a) training the teacher on after it has memorized (budget) instead of stopping at its first
    100% changes the students' held-out accuracy at the largest T by less than ACCURACY_MARGIN
    (equivalence); (b) it leaves the effect of the temperature (largest minus smallest T) unchanged
    within ACCURACY_MARGIN (equivalence). Plus the ranking of temperatures under each protocol."""
    ch.rest_on(table)
    margin = accuracy_margin(table)
    t_max, t_min = float(table["temperature"].max()), float(table["temperature"].min())
    budget, early = table[table["teacher_stop"] == "budget"], table[table["teacher_stop"] == "first_perfect"]
    out = [
        ch.claim_difference(
            "q6_training_on_after_memorizing_changes_nothing",
            own_question(
                "does training each teacher for its whole budget, on after it has memorized D, leave its "
                "students' held-out accuracy unchanged against stopping it at its first 100%?"
            ),
            budget[budget["temperature"] == t_max],
            early[early["temperature"] == t_max],
            expect="equivalent",
            margin=Margin(margin, ACCURACY_REASON),
            what=f"held-out accuracy at T = {t_max:g}, budget against first-perfect teachers, margin ±{margin:.4f} (chance / 4)",
            detail="claim tested: no change (equivalence); T fixed in advance: the largest of the grid",
        )
    ]
    effect = temperature_effect(table)
    out.append(
        ch.claim_difference(
            "q6_temperature_effect_unchanged",
            own_question(
                "does the teacher protocol leave the effect of the temperature on held-out accuracy unchanged?"
            ),
            effect[effect["teacher_stop"] == "budget"],
            effect[effect["teacher_stop"] == "first_perfect"],
            value="temperature_effect",
            expect="equivalent",
            margin=Margin(margin, ACCURACY_REASON),
            what=f"held-out accuracy at T = {t_max:g} minus at T = {t_min:g}, budget against first-perfect teachers, "
            f"margin ±{margin:.4f}",
            detail="claim tested: no change of the temperature effect (equivalence)",
        )
    )
    ranks = temperature_ranking(table)
    same = len({tuple(v) for v in ranks.values()}) == 1
    out.append(
        "Temperatures from best to worst (mean over teachers): "
        + "; ".join(f"{stop}: " + " > ".join(f"T = {t:g}" for t in order) for stop, order in ranks.items())
        + (
            ". The order is the same under both protocols."
            if same
            else ". **The order differs between the protocols** (how much that means is what the second claim tests)."
        )
    )
    return out


# --- the chapter's summary and protocol ------------------------------------------------------------


def summary_markdown(claims: pd.DataFrame) -> str:
    """A Markdown table of every recorded claim: the question, what was measured, and the verdict with
    its teachers x students, built from `Chapter.finish()`'s table (nothing typed in by hand)."""
    from memkd.book.claims import units_text

    lines = ["| claim | question | verdict | teachers × students |", "|---|---|---|---|"]
    for _, c in claims.iterrows():
        question = str(c["paper"]).split(": ", 1)[-1]
        margin = f" (margin ±{c['margin']:.3g})" if c["expect"] == "equivalent" else ""
        lines.append(
            f"| `{c['claim']}` | {question} | **{c['verdict']}**{margin} | {units_text(c['n'], c['students'])} |"
        )
    counts = claims["verdict"].value_counts()
    head = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in ("holds", "inconclusive", "does not hold"))
    return f"Of {len(claims)} claims in this build: {head}.\n\n" + "\n".join(lines)


__all__ = [
    "ACCURACY_MARGIN",
    "PHI_MARGIN",
    "LEVEL",
    "accuracy_margin",
    "bars",
    "overlap_claims",
    "regularization_claims",
    "architecture_claims",
    "variant_tests",
    "weakest_variant",
    "convention_claims",
    "probe_claims",
    "protocol_summary",
    "temperature_ranking",
    "temperature_effect",
    "protocol_claims",
    "summary_markdown",
    "paired_change",
    "change_text",
    "open_question",
    "own_question",
]


def departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 09: `standard_departures` of the teacher-regularization table (Q2), the one random-data table
    whose protocol the chapter sets against the paper's."""
    return standard_departures(table)
