"""Accuracies and the statistics every claim is stated with.

Shape letters: see `memkd` (E members, N samples, C classes, Q embedding width).

Teachers (datasets) are the unit of replication: students trained on one teacher are averaged
first (`per_unit_means`), and a claim is tested on one difference per teacher (`interval_test`),
with three verdicts (VERDICTS); outcomes that are counts or have no spread get an exact test
(`binomial_test`). `holm` adjusts a family of p-values; `memkd.power` plans the n for 80% power.
`recovery_metrics` and `teacher_accuracy` measure the linear chapters' students and teachers.
`choose_and_test_units` splits teachers so that a setting is never chosen and tested on the same
runs. `overlap_test` asks whether two groups of students get the same held-out samples right.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor

from memkd.config import invalid
from memkd.losses import member_mean


@torch.no_grad()
def accuracy(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Fraction of argmax(logits) == labels per member. logits (E, N, C), labels (N,) or (E, N) -> (E,);
    with mask (E, N) bool, over each member's own samples (`memkd.losses.member_mean`).

    >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]])   # (E, N, C) = (1, 3, 2)
    >>> accuracy(logits, torch.tensor([0, 1, 1]))                       # (E,)
    tensor([0.6667])
    """
    return member_mean((logits.argmax(dim=-1) == labels).float(), mask)


@torch.no_grad()
def agreement(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Fraction of samples where both argmaxes agree. (E, N, C) and (E or 1, N, C) -> (E,).

    >>> a = torch.randn(4, 6, 3)
    >>> agreement(a, a).tolist(), agreement(a, a[:1]).shape            # (E, N, C) and (1, N, C) -> (E,)
    ([1.0, 1.0, 1.0, 1.0], torch.Size([4]))
    """
    return (logits_a.argmax(dim=-1) == logits_b.argmax(dim=-1)).float().mean(dim=-1)


@torch.no_grad()
def nearest_neighbour_predictions(reference: Tensor, reference_labels: Tensor, queries: Tensor) -> Tensor:
    """Label of each query's nearest reference embedding by cosine similarity.

    reference (E, R, Q), reference_labels (R,) or (E, R), queries (E, N, Q) -> labels (E, N) (R references).
    """
    ref = torch.nn.functional.normalize(reference, dim=-1)
    qry = torch.nn.functional.normalize(queries, dim=-1)
    nearest = (qry @ ref.transpose(-1, -2)).argmax(dim=-1)  # (E, Q)
    labels = reference_labels.expand(reference.shape[0], -1)
    return torch.gather(labels, 1, nearest)


def nearest_neighbour_accuracy(
    reference: Tensor, reference_labels: Tensor, queries: Tensor, query_labels: Tensor
) -> Tensor:
    """Accuracy of the nearest-neighbour labels of `queries` (see above). -> (E,).

    >>> ref = torch.eye(3).expand(2, 3, 3)                      # (E, R, Q): one embedding per class
    >>> nearest_neighbour_accuracy(ref, torch.arange(3), ref + 0.1, torch.arange(3))   # queries (E, N, Q)
    tensor([1., 1.])
    """
    pred = nearest_neighbour_predictions(reference, reference_labels, queries)
    return (pred == query_labels).float().mean(dim=-1)


@torch.no_grad()
def teacher_accuracy(logits: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
    """Each teacher's training accuracy on its own points. logits (K, N, C), labels (K, N) (padding
    may hold -1), valid (K, N) bool -> (K,), in the logits' precision.

    >>> teacher_accuracy(torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[0, 1, -1]]),
    ...                  torch.tensor([[True, True, False]]))                  # (K, N, C) -> (K,)
    tensor([0.5000])
    """
    return member_mean((logits.argmax(-1) == labels).to(logits.dtype), valid)


@torch.no_grad()
def recovery_metrics(
    student: Tensor,
    student_fresh: Tensor,
    teacher_fresh: Tensor,
    labels: Tensor,
    valid: Tensor,
    mask: Tensor,
    targets: Tensor | None = None,
    scale: Tensor | float = 1.0,
) -> dict[str, Tensor]:
    """What every student (K, M) of the linear chapters recovers of its teacher, in float64.

    student (K, M, N, C): its logits on its teacher's points; student_fresh (K, M, N', C) and
    teacher_fresh (K, 1, N', C): logits on fresh inputs (`memkd.models.linear.linear_logits`);
    labels (K, N) (padding -1) and valid (K, N) the teacher's dataset; mask (K, M, N) the student's
    points; targets (K, M, N, C) the soft labels it learned (their argmax is what "fits its points"
    means; None: the labels); scale (K, M) or float: the teacher-logit scale the student is asked to
    match (1/T for the released convention, 1 for least squares and the text's).
    Returns (K, M) each: train_acc (on its own pairs), test_acc (held-out memorized points against
    their labels), agreement_fresh (with the teacher on fresh inputs) and logit_error (relative L2
    error of the class-centered logits on fresh inputs, against scale * teacher logits).
    """
    held = valid.unsqueeze(1) & ~mask
    y = labels.unsqueeze(1).expand_as(held)
    label = y if targets is None else targets.argmax(-1)
    hit = (student.argmax(-1) == label).to(torch.float64)
    s = torch.as_tensor(scale, dtype=torch.float64, device=student.device)
    s = s.view(*s.shape, 1, 1) if s.dim() == 2 else s
    centered = lambda z: z - z.mean(-1, keepdim=True)
    fs, ft = student_fresh, teacher_fresh
    err = (centered(fs) - s * centered(ft)).norm(dim=(-1, -2)) / (s * centered(ft)).norm(dim=(-1, -2))
    return {
        "train_acc": member_mean(hit, mask),
        "test_acc": member_mean((student.argmax(-1) == y).to(torch.float64), held),
        "agreement_fresh": (fs.argmax(-1) == ft.argmax(-1)).to(torch.float64).mean(-1),
        "logit_error": err,
    }


def mean_sem(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN SEM for fewer than two values)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan
    sem = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return float(v.mean()), sem


def format_p(p: float | None, label: bool = True) -> str:
    """p-values as people read them: 'p = 0.030', 'p = 2.1e-04', 'p < 1e-6', 'p = n/a'.

    label=False drops the 'p = ' for a table column: '0.030', '2.1e-04', '< 1e-6', '–'.
    """
    if p is None or (isinstance(p, (float, np.floating)) and math.isnan(p)):
        return "p = n/a" if label else "–"
    p = float(p)
    if p < 1e-6:
        text = "< 1e-6"
    elif p < 1e-3:
        text = f"{p:.1e}"
    else:
        text = f"{p:.3f}"
    if not label:
        return text
    return f"p {text}" if text.startswith("<") else f"p = {text}"


# ---------------------------------------------------------------------------- verdicts per teacher

VERDICTS = ("holds", "does not hold", "inconclusive")
EXPECTATIONS = ("above", "below", "equivalent")
FAMILY_ALPHA = 0.05
"""The one level of every claim: each one-sided test (and each of the two tests of an equivalence) is
run at it, and Holm's adjustment keeps each block's family-wise error rate at it (`memkd.book.report`)."""


def per_unit_means(
    table: pd.DataFrame, value: str, baseline: str | float | None = None, unit: str = "dataset"
) -> pd.DataFrame:
    """Average the students of each unit (teacher / dataset): one row per unit.

    table : one row per trained student, with columns `unit`, `value` and (when `baseline` is a
        column name) `baseline`
    baseline : a column name (averaged over the same students), a constant, or None (no baseline:
        the difference is the value itself)
    Returns a DataFrame of U rows (units in sorted order) with columns: `unit` (under its own name,
    e.g. "dataset"), "value" (the mean of `value` over the unit's students; also under the name
    `value`, e.g. "test_acc"), "baseline" (NaN when None), "difference" (value - baseline, or value
    without a baseline) and "students" (rows averaged). Rows whose value (or baseline column) is
    NaN are dropped before averaging; a unit left without rows is dropped.

    >>> t = pd.DataFrame({"dataset": [0, 0, 1], "test_acc": [0.3, 0.5, 0.2]})
    >>> per_unit_means(t, "test_acc", 0.1)["difference"].round(3).tolist()
    [0.3, 0.1]
    """
    if not isinstance(table, pd.DataFrame):
        raise invalid("table", "per_unit_means", "a pandas DataFrame", shown=type(table).__name__)
    for name, column in (("unit", unit), ("value", value)):
        if column not in table.columns:
            raise invalid(name, "per_unit_means", f"a column of the table {list(table.columns)}", column)
    rows = pd.DataFrame({"unit": table[unit], "value": pd.to_numeric(table[value], errors="coerce")})
    if isinstance(baseline, str):
        if baseline not in table.columns:
            raise invalid(
                "baseline",
                "per_unit_means",
                f"a column of the table {list(table.columns)} (or a finite number, or None)",
                baseline,
            )
        rows["baseline"] = pd.to_numeric(table[baseline], errors="coerce")
    elif baseline is None:
        rows["baseline"] = math.nan
    else:
        if not (isinstance(baseline, (int, float, np.number)) and math.isfinite(float(baseline))):
            raise invalid("baseline", "per_unit_means", "a column name, a finite number or None", baseline)
        rows["baseline"] = float(baseline)
    keep = rows["value"].notna() & (rows["baseline"].notna() if isinstance(baseline, str) else True)
    grouped = rows[keep].groupby("unit", sort=True)
    out = grouped[["value", "baseline"]].mean()
    out["students"] = grouped.size()
    out["difference"] = out["value"] - (0.0 if baseline is None else out["baseline"])
    out = out.reset_index().rename(columns={"unit": unit})
    out = out[[unit, "value", "baseline", "difference", "students"]]
    if value not in out.columns:
        out[value] = out["value"]
    return out


def check_test_args(expect: str, margin: float, level: float, owner: str = "interval_test") -> None:
    """Raise a ValueError naming the bad argument of a test or a power plan: `expect` one of
    EXPECTATIONS, `margin` a finite float >= 0, `level` in (0, 0.5)."""
    if expect not in EXPECTATIONS:
        raise invalid("expect", owner, f"one of {EXPECTATIONS}", expect)
    if not (isinstance(margin, (int, float, np.floating)) and math.isfinite(margin) and margin >= 0):
        raise invalid("margin", owner, "a finite float >= 0", margin)
    if expect == "equivalent" and margin <= 0:
        raise invalid("margin", owner, "> 0 for expect='equivalent' (the equivalence margin)", margin)
    if not (isinstance(level, (int, float, np.floating)) and 0 < level < 0.5):
        raise invalid("level", owner, "a float in the open interval (0, 0.5)", level)


def _decide(expect: str, margin: float, low: float, high: float) -> str:
    """The verdict of an interval [low, high] of the mean difference (see interval_test)."""
    if expect == "above":
        return "holds" if low > margin else "does not hold" if high <= margin else "inconclusive"
    if expect == "below":
        return "holds" if high < -margin else "does not hold" if low >= -margin else "inconclusive"
    if -margin < low and high < margin:
        return "holds"
    return "does not hold" if low >= margin or high <= -margin else "inconclusive"


def interval_test(differences, expect: str, margin: float = 0.0, level: float = FAMILY_ALPHA) -> dict:
    """Three-way verdict for one-sample `differences` (one per teacher), from a t interval.

    differences : sequence of U floats (NaN dropped), e.g. per_unit_means(...)["difference"]
    expect : "above" (the mean difference exceeds `margin`), "below" (it lies under -`margin`) or
        "equivalent" (it lies within (-margin, margin); two one-sided tests, TOST)
    margin : >= 0; > 0 for "equivalent"
    level : each one-sided test's level; the interval [ci_low, ci_high] is the two-sided
        (1 - 2*level) t interval of the mean, i.e. the two one-sided level-`level` bounds.

    above:      holds if ci_low > margin;  does not hold if ci_high <= margin;  else inconclusive
    below:      holds if ci_high < -margin; does not hold if ci_low >= -margin; else inconclusive
    equivalent: holds if -margin < ci_low and ci_high < margin;
                does not hold if ci_low >= margin or ci_high <= -margin;    else inconclusive
    Fewer than 2 values: inconclusive (NaN interval and p). Values without spread (every teacher
    gave the same number, e.g. 0 correct, or two settings identical on every teacher): a t interval
    cannot be formed (its width would be 0), so the verdict comes from the exact sign test across
    teachers (`sign_test`), which needs no spread; "test" says which test decided.

    Returns a dict: mean, sem, n, ci_low, ci_high, p_value (the one-sided p of the stated direction
    against the margin; for "equivalent" the larger of the two TOST p-values, so holds <=> p < level),
    expect, margin, level, verdict, test ("t interval") and note (why there is no interval, else "").

    >>> interval_test([0.10, 0.12, 0.11, 0.13, 0.09], "above")["verdict"]
    'holds'
    """
    check_test_args(expect, margin, level)
    margin, level = float(margin), float(level)
    v = np.asarray(differences, dtype=float).ravel()
    v = v[~np.isnan(v)]
    n = len(v)
    mean, sem = mean_sem(v)
    out = {
        "mean": mean,
        "sem": sem,
        "n": n,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "expect": expect,
        "margin": margin,
        "level": level,
        "verdict": "inconclusive",
        "test": "t interval",
        "note": "",
    }
    if n < 2:
        out["note"] = f"{n} teacher{'' if n == 1 else 's'}: no interval"
        return out
    if v.std() <= 1e-9 * max(1.0, abs(mean)):  # no spread (float noise only): no t interval exists
        return sign_test(v, expect, margin, level)
    half = float(stats.t.ppf(1 - level, n - 1)) * sem
    low, high = mean - half, mean + half
    out["verdict"] = _decide(expect, margin, low, high)

    def p_above(bound: float) -> float:  # one-sided p of "mean > bound"
        return float(stats.t.sf((mean - bound) / sem, n - 1))

    def p_below(bound: float) -> float:
        return float(stats.t.cdf((mean - bound) / sem, n - 1))

    if expect == "above":
        p = p_above(margin)
    elif expect == "below":
        p = p_below(-margin)
    else:
        p = max(p_above(-margin), p_below(margin))
    out.update(sem=float(sem), ci_low=float(low), ci_high=float(high), p_value=float(p))
    return out


def sign_test(differences, expect: str, margin: float = 0.0, level: float = FAMILY_ALPHA) -> dict:
    """Three-way verdict from the exact sign test across teachers: is the typical (median) teacher's
    difference beyond the margin?

    differences : U floats, one per teacher (NaN dropped). Each teacher counts once, whatever its
    number of students or points, so no count is pooled across teachers. Under the null hypothesis
    that the median difference sits on the bound, a teacher lands strictly on the claimed side with
    probability at most 1/2, so the one-sided p of s of U teachers on that side is P(Bin(U, 1/2) >= s).
    expect : "above" (median > margin), "below" (median < -margin), "equivalent" (median within
        (-margin, margin): two one-sided sign tests, the larger p decides)
    The verdict "does not hold" is the same test in the other direction (e.g. for "above": teachers at
    or below the margin). The interval [ci_low, ci_high] is the exact order-statistic interval of the
    median at the same level (each side at `level`); with every teacher equal it is that one value.
    Used by `interval_test` for values without spread: 11 of 11 teachers on the claimed side give
    p = 0.5**11 = 0.0005. Returns the keys of `interval_test`, with test "exact sign test".

    >>> sign_test([0.0] * 12, "below", margin=0.0)["verdict"]    # all 12 at 0, none below it
    'does not hold'
    >>> round(sign_test([-0.1] * 12, "below")["p_value"], 6)     # 12 of 12 below: 0.5**12
    0.000244
    >>> sign_test([0.0] * 11, "equivalent", margin=0.01)["verdict"]
    'holds'
    """
    check_test_args(expect, margin, level, "sign_test")
    margin, level = float(margin), float(level)
    v = np.asarray(differences, dtype=float).ravel()
    v = v[~np.isnan(v)]
    n = len(v)
    mean, sem = mean_sem(v)
    out = {
        "mean": mean,
        "sem": 0.0 if n and np.ptp(v) <= 1e-9 * max(1.0, abs(mean)) else sem,
        "n": n,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "expect": expect,
        "margin": margin,
        "level": level,
        "verdict": "inconclusive",
        "test": "exact sign test",
        "note": "",
    }
    if n < 2:
        out["note"] = f"{n} teacher{'' if n == 1 else 's'}: no test"
        return out

    def p_side(count: int) -> float:  # P(Bin(n, 1/2) >= count): `count` of n teachers on one side
        return float(stats.binom.sf(count - 1, n, 0.5))

    def above(bound: float) -> float:  # one-sided p of "median > bound"
        return p_side(int((v > bound).sum()))

    def below(bound: float) -> float:  # one-sided p of "median < bound"
        return p_side(int((v < bound).sum()))

    if expect == "above":
        p, p_against = above(margin), p_side(int((v <= margin).sum()))
    elif expect == "below":
        p, p_against = below(-margin), p_side(int((v >= -margin).sum()))
    else:
        p = max(above(-margin), below(margin))
        p_against = min(p_side(int((v >= margin).sum())), p_side(int((v <= -margin).sum())))
    low, high = _median_interval(v, level)
    verdict = "holds" if p < level else "does not hold" if p_against < level else "inconclusive"
    if verdict == "inconclusive":
        on_side = {
            "above": int((v > margin).sum()),
            "below": int((v < -margin).sum()),
            "equivalent": int(((v > -margin) & (v < margin)).sum()),
        }[expect]
        out["note"] = (
            f"exact sign test: {on_side} of {n} teachers on the claimed side; "
            f"{n} teachers cannot reach p < {level:g} unless about {sign_test_teachers(level)} agree"
        )
    out.update(ci_low=low, ci_high=high, p_value=float(min(1.0, p)), verdict=verdict)
    return out


def sign_test_teachers(level: float = FAMILY_ALPHA) -> int:
    """The fewest teachers that, all on the claimed side, give a sign-test p below `level`.

    >>> sign_test_teachers(0.05), sign_test_teachers(0.05 / 40)
    (5, 10)
    """
    return int(math.floor(math.log(level) / math.log(0.5))) + 1


def _median_interval(v: np.ndarray, level: float) -> tuple[float, float]:
    """The exact order-statistic interval of the median of v: each bound holds at one-sided `level`
    (the widest, min and max, when too few values)."""
    s = np.sort(v)
    n = len(s)
    k = int(stats.binom.ppf(level, n, 0.5))  # order statistics k+1 .. n-k (1-based) bound the median
    k = max(0, k - 1) if stats.binom.cdf(k, n, 0.5) > level else k
    return float(s[min(k, n - 1)]), float(s[max(n - 1 - k, 0)])


def _clopper_pearson(successes: int, trials: int, level: float) -> tuple[float, float]:
    """The one-sided level-`level` exact bounds of a binomial proportion: (lower, upper)."""
    low = 0.0 if successes == 0 else float(stats.beta.ppf(level, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - level, successes + 1, trials - successes))
    return low, high


def binomial_test(
    successes: int, trials: int, p0: float, expect: str, margin: float = 0.0, level: float = FAMILY_ALPHA
) -> dict:
    """Three-way verdict on a proportion from an exact binomial test (Clopper-Pearson bounds).

    For outcomes that are counts or have no spread (every teacher at exactly 0 or 1), where a t
    interval would collapse: `successes` of `trials` independent outcomes against the proportion
    `p0` (e.g. 1/C for chance, 1.0 for "perfect").
    expect : "above" (proportion > p0 + margin), "below" (< p0 - margin) or "equivalent"
        (within (p0 - margin, p0 + margin)); the verdict rules are those of `interval_test` applied
        to the exact bounds of (proportion - p0).
    Returns the keys of `interval_test` (mean is the observed proportion minus p0, sem is NaN,
    n the number of trials, test "exact binomial") plus "successes".

    >>> binomial_test(0, 120, 0.1, "below")["verdict"]   # 0 of 120 against 1/C = 0.1
    'holds'
    >>> round(binomial_test(0, 24, 0.1, "below")["p_value"], 3)   # 0.9**24
    0.08
    """
    for name, value in (("successes", successes), ("trials", trials)):
        if not (isinstance(value, (int, np.integer)) and value >= 0):
            raise invalid(name, "binomial_test", "an int >= 0", value)
    if successes > trials:
        raise invalid("successes", "binomial_test", f"<= trials ({trials})", successes)
    if not (isinstance(p0, (int, float, np.floating)) and 0.0 <= p0 <= 1.0):
        raise invalid("p0", "binomial_test", "a float in [0, 1]", p0)
    check_test_args(expect, margin, level, "binomial_test")
    successes, trials, p0, margin, level = int(successes), int(trials), float(p0), float(margin), float(level)
    out = {
        "mean": math.nan,
        "sem": math.nan,
        "n": trials,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "expect": expect,
        "margin": margin,
        "level": level,
        "verdict": "inconclusive",
        "test": "exact binomial",
        "successes": successes,
        "note": "",
    }
    if trials == 0:
        out["note"] = "no trials"
        return out
    low, high = _clopper_pearson(successes, trials, level)

    def p_above(bound: float) -> float:  # one-sided exact p of "proportion > bound"
        return 0.0 if bound < 0 else 1.0 if bound >= 1 else float(stats.binom.sf(successes - 1, trials, bound))

    def p_below(bound: float) -> float:  # one-sided exact p of "proportion < bound"
        return 0.0 if bound > 1 else 1.0 if bound <= 0 else float(stats.binom.cdf(successes, trials, bound))

    if expect == "above":
        p = p_above(p0 + margin)
    elif expect == "below":
        p = p_below(p0 - margin)
    else:
        p = max(p_above(p0 - margin), p_below(p0 + margin))
    out.update(
        mean=successes / trials - p0,
        ci_low=low - p0,
        ci_high=high - p0,
        p_value=float(min(1.0, p)),
        verdict=_decide(expect, margin, low - p0, high - p0),
    )
    return out


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values of a family of m tests (Holm 1979).

    p_values : m raw p-values; NaN (a test that gave no p, e.g. too few teachers) counts as a
        test of the family that rejects nothing (p = 1), so that it still counts in m.
    Returns m adjusted p-values in the input order: sorted ascending, p_(i) is multiplied by
    m - i + 1 (i from 1), made monotone by a running maximum, and capped at 1. Rejecting where
    the adjusted p is below alpha keeps the family-wise error rate at alpha.

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float).ravel()
    p = np.where(np.isnan(p), 1.0, p)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = scaled
    return out


def choose_and_test_units(units: Sequence, seed: int = 0) -> tuple[list, list]:
    """Split the distinct units (teachers) into a half to choose a setting on and a half to test it on.

    units : the units, repeats allowed (e.g. table["dataset"]); at least 2 distinct ones
    Returns (choose, test): disjoint lists, each sorted, together all distinct units; `choose` gets
    floor(U/2) of the U units and `test` the rest. The same seed gives the same split.

    >>> choose_and_test_units([0, 0, 1, 2, 3], seed=0)[0].__len__()
    2
    """
    distinct = sorted(pd.unique(pd.Series(list(units))).tolist())
    if len(distinct) < 2:
        raise invalid(
            "units",
            "choose_and_test_units",
            must="hold at least 2 distinct units (one to choose on, one to test on)",
            got=distinct,
        )
    order = np.random.default_rng(seed).permutation(len(distinct))
    k = len(distinct) // 2
    choose = sorted(distinct[i] for i in order[:k])
    test = sorted(distinct[i] for i in order[k:])
    return choose, test


# --- overlap of two groups' correct sets (chapter 09's first question) ------------------------------


def overlap_test(correct_a, correct_b, permutations: int = 2000, seed: int = 0, perms=None) -> dict:
    """Do two groups of students get the *same* samples right more often than by chance?

    correct_a : bool array (A, N) or (N,), correct_b : (B, N) or (N,): who is right on each of N
    held-out samples. Statistic: the mean over all (a, b) pairs of |correct_a & correct_b|.
    Null (independence): the samples of group b are relabelled by one random permutation for all of
    its members at once, which keeps every student's accuracy and the agreement within each group.
    Returns n, acc_a, acc_b (mean accuracies), both (observed statistic), expected (its null
    mean, N * acc_a * acc_b), lift = both / expected, and the one-sided permutation p-value
    (1 + #{permuted >= observed}) / (1 + permutations). `perms` (P, N) reuses permutations
    drawn once (many tests on the same N samples); otherwise they are drawn from `seed`.
    """
    a = np.atleast_2d(np.asarray(correct_a, dtype=float))  # (A, N)
    b = np.atleast_2d(np.asarray(correct_b, dtype=float))  # (B, N)
    if a.shape[1] != b.shape[1]:
        raise invalid(
            "correct_b",
            "overlap_test",
            must=f"cover the same {a.shape[1]} samples as correct_a (both groups need the same samples)",
            shown=f"{b.shape[1]} samples",
        )
    n = a.shape[1]
    ma, mb = a.mean(0), b.mean(0)  # (N,) per-sample fraction of each group that is right
    observed = float(ma @ mb)
    if perms is None:
        perms = permutation_matrix(n, permutations, seed)
    null = mb[perms] @ ma  # (P,)
    expected = float(ma.sum() * mb.sum() / n)
    return {
        "n": n,
        "acc_a": float(ma.mean()),
        "acc_b": float(mb.mean()),
        "both": observed,
        "expected": expected,
        "lift": observed / expected if expected > 0 else math.nan,
        "p_value": float((1 + (null >= observed - 1e-9).sum()) / (1 + len(perms))),
    }


def permutation_matrix(n: int, permutations: int, seed: int = 0) -> np.ndarray:
    """(P, N) int array: `permutations` independent random permutations of range(n)."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((permutations, n)), axis=1)


def phi(a, b) -> float:
    """Pearson correlation of two 0/1 vectors (NaN if one of them is constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])
