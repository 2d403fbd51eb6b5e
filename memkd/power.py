"""Power plans: how many teachers (t interval) or outcomes (exact test) a claim needs.

`t_test_power` and `binomial_power` give the power of `memkd.metrics.interval_test` and
`memkd.metrics.binomial_test` for an assumed true effect; `planned_teachers` and `planned_trials`
the fewest units that reach POWER. `memkd.book.plan` states each claim's assumed effect and reason.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from memkd.metrics import check_test_args

POWER = 0.8  # the power every claim is planned for


def t_test_power(
    n, effect: float, sd: float, level: float = 0.01, expect: str = "above", margin: float = 0.0
) -> np.ndarray:
    """Power of `interval_test` with n teachers (an int or an array of them) when the true mean
    difference is `effect` in the stated direction (for "equivalent": the true difference, |effect|
    < margin) and the per-teacher standard deviation is `sd` (noncentral t).

    "above" / "below": P(the one-sided level-`level` bound clears `margin`). "equivalent": the
    lower bound P(lower test) + P(upper test) - 1 of the power of the two one-sided tests.
    """
    n = np.asarray(n, dtype=float)
    df = n - 1
    crit = stats.t.ppf(1 - level, df)
    root = np.sqrt(n) / sd
    if expect in ("above", "below"):
        return stats.nct.sf(crit, df, (abs(effect) - margin) * root)
    low = stats.nct.sf(crit, df, (effect + margin) * root)
    high = stats.nct.cdf(-crit, df, (effect - margin) * root)
    return np.clip(low + high - 1.0, 0.0, 1.0)


def planned_teachers(
    effect: float,
    sd: float,
    level: float = 0.01,
    power: float = POWER,
    expect: str = "above",
    margin: float = 0.0,
    most: int = 5000,
) -> float:
    """The fewest teachers (>= 2) for which `interval_test` reaches `power` (see `t_test_power`).

    effect : the assumed true difference in the claim's direction ("above" / "below": its size;
        "equivalent": the true difference, usually 0)
    Returns the number of teachers as a float; inf when no number up to `most` suffices (e.g. an
    effect no larger than the margin), NaN when `sd` is not a number. sd = 0: 2.

    >>> planned_teachers(0.5, 1.0, level=0.025)   # a one-sample t test, d = 0.5: 34 (textbook value)
    34.0
    """
    check_test_args(expect, margin, level, "planned_teachers")
    if not (isinstance(sd, (int, float, np.floating)) and math.isfinite(sd) and sd >= 0):
        return math.nan
    if expect == "equivalent" and abs(effect) >= margin:
        return math.inf
    if expect != "equivalent" and abs(effect) <= margin:
        return math.inf
    if sd == 0:
        return 2.0
    n = np.arange(2, most + 1)
    ok = np.nonzero(t_test_power(n, effect, sd, level, expect, margin) >= power)[0]
    return float(n[ok[0]]) if len(ok) else math.inf


def binomial_power(
    trials, p0: float, p1: float, level: float = 0.01, expect: str = "above", margin: float = 0.0
) -> np.ndarray:
    """Power of `binomial_test` with `trials` outcomes (an int or an array) when the true
    proportion is `p1` ("above" / "below" only)."""
    n = np.asarray(trials, dtype=int)
    if expect == "below":
        bound = p0 - margin  # holds <=> P(X <= k | bound) < level
        k = stats.binom.ppf(level, n, bound) - 1  # the largest k with cdf(k) < level
        k = np.where(stats.binom.cdf(k + 1, n, bound) < level, k + 1, k)
        return np.where(k >= 0, stats.binom.cdf(k, n, p1), 0.0)
    bound = p0 + margin  # holds <=> P(X >= k | bound) < level
    k = stats.binom.isf(level, n, bound)  # about the smallest k with sf(k) <= level
    k = np.where(stats.binom.sf(k, n, bound) >= level, k + 1, k)
    k = np.where(stats.binom.sf(k - 1, n, bound) < level, k - 1, k)
    return np.where(k < n, stats.binom.sf(k, n, p1), 0.0)  # P(X >= k + 1)


def planned_trials(
    p0: float,
    p1: float,
    level: float = 0.01,
    power: float = POWER,
    expect: str = "above",
    margin: float = 0.0,
    most: int = 20000,
) -> float:
    """The fewest outcomes for which `binomial_test` reaches `power` when the true proportion is p1.

    Returns a float; inf when none up to `most` suffices (p1 not beyond the bound), NaN for
    "equivalent" (not planned here).

    >>> planned_trials(0.02, 0.0, expect="below")   # none right, against 1/C = 0.02: 0.98**n < 0.01
    228.0
    """
    check_test_args(expect, margin, level, "planned_trials")
    if expect == "equivalent":
        return math.nan
    if (expect == "above" and p1 <= p0 + margin) or (expect == "below" and p1 >= p0 - margin):
        return math.inf
    n = np.arange(1, most + 1)
    ok = np.nonzero(binomial_power(n, p0, p1, level, expect, margin) >= power)[0]
    return float(n[ok[0]]) if len(ok) else math.inf
