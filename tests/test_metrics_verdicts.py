"""Verdicts with teachers as the unit: per_unit_means, interval_test's three verdicts (with the
inconclusive cases a small n must give), choose_and_test_units and format_p."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from memkd.metrics import VERDICTS, choose_and_test_units, format_p, interval_test, per_unit_means


# ---------------------------------------------------------------------------- per_unit_means


def test_students_are_averaged_within_each_teacher():
    table = pd.DataFrame(
        {
            "dataset": [0, 0, 0, 1, 1, 2, 2, 2, 2],
            "test_acc": [0.1, 0.2, 0.3, 0.5, 0.7, 0.0, 0.4, 0.4, 0.4],
            "independent_acc": [0.1] * 9,
        }
    )
    means = per_unit_means(table, "test_acc", "independent_acc")
    assert means["dataset"].tolist() == [0, 1, 2], "one row per teacher: n counts teachers"
    assert np.allclose(means["value"], [0.2, 0.6, 0.3]) and np.allclose(means["test_acc"], means["value"])
    assert means["students"].tolist() == [3, 2, 4]
    assert np.allclose(means["difference"], [0.1, 0.5, 0.2])
    assert np.allclose(per_unit_means(table, "test_acc", 0.2)["difference"], [0.0, 0.4, 0.1])
    alone = per_unit_means(table, "test_acc")  # no baseline: the value itself is tested
    assert alone["baseline"].isna().all() and np.allclose(alone["difference"], alone["value"])


def test_nan_rows_are_dropped_before_averaging():
    table = pd.DataFrame(
        {"teacher": ["a", "a", "b", "c"], "v": [0.2, np.nan, 0.4, np.nan], "b": [0.1, 0.1, np.nan, 0.0]}
    )
    means = per_unit_means(table, "v", "b", unit="teacher")
    assert means["teacher"].tolist() == ["a"] and means["students"].tolist() == [1]
    assert per_unit_means(table, "v", unit="teacher")["teacher"].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"value": "nope"}, r"'value' parameter of per_unit_means must be a column of the table .*Got 'nope'"),
        ({"value": "v", "unit": "seed"}, r"'unit' parameter of per_unit_means must be a column .*Got 'seed'"),
        ({"value": "v", "baseline": "nope"}, r"'baseline' parameter of per_unit_means must be a column .*Got 'nope'"),
        ({"value": "v", "baseline": float("nan")}, "'baseline'"),
    ],
)
def test_per_unit_means_names_a_bad_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        per_unit_means(pd.DataFrame({"dataset": [0], "v": [0.1]}), **kwargs)


# ---------------------------------------------------------------------------- interval_test


def test_interval_is_the_two_one_sided_bounds_of_a_t_interval():
    d = [0.05, 0.09, 0.02, 0.07, 0.04]
    r = interval_test(d, "above", level=0.01)
    low, high = stats.t.interval(0.98, len(d) - 1, loc=np.mean(d), scale=stats.sem(d))
    assert math.isclose(r["ci_low"], low) and math.isclose(r["ci_high"], high)
    assert r["n"] == 5 and math.isclose(r["mean"], np.mean(d)) and math.isclose(r["sem"], stats.sem(d))
    assert math.isclose(r["p_value"], stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    assert set(r) >= {"mean", "sem", "n", "ci_low", "ci_high", "p_value", "expect", "margin", "level", "verdict"}


@pytest.mark.parametrize(
    "differences, expect, margin, verdict",
    [
        # above: the whole interval above the margin / the whole interval at or below it / across it
        ([0.10, 0.12, 0.11, 0.13, 0.09], "above", 0.0, "holds"),
        ([-0.10, -0.12, -0.11, -0.13, -0.09], "above", 0.0, "does not hold"),
        ([0.04, 0.06, 0.05, 0.05, 0.07], "above", 0.05, "inconclusive"),
        ([0.2, -0.1, 0.05], "above", 0.0, "inconclusive"),  # n = 3, wide spread around 0
        # below: mirror images
        ([-0.10, -0.12, -0.11, -0.13, -0.09], "below", 0.0, "holds"),
        ([0.10, 0.12, 0.11, 0.13, 0.09], "below", 0.0, "does not hold"),
        ([-0.2, 0.1, -0.05], "below", 0.0, "inconclusive"),
        ([-0.10, -0.12, -0.11], "below", 0.2, "does not hold"),  # below 0, but not below -margin
        # equivalent: inside the margin / outside it / an interval straddling it
        ([0.001, -0.002, 0.0015, 0.0, -0.001], "equivalent", 0.02, "holds"),
        ([0.10, 0.12, 0.11, 0.13, 0.09], "equivalent", 0.02, "does not hold"),
        ([-0.10, -0.12, -0.11, -0.13, -0.09], "equivalent", 0.02, "does not hold"),
        ([0.03, -0.02, 0.04], "equivalent", 0.02, "inconclusive"),  # n = 3, wide spread around the margin
        ([0.015, -0.015, 0.01], "equivalent", 0.02, "inconclusive"),  # mean well inside, yet too few teachers
    ],
)
def test_three_verdicts(differences, expect, margin, verdict):
    r = interval_test(differences, expect, margin=margin, level=0.05 if expect == "equivalent" else 0.01)
    assert r["verdict"] == verdict, r
    assert r["verdict"] in VERDICTS


@pytest.mark.parametrize("expect", ["above", "below", "equivalent"])
def test_holds_exactly_when_p_is_below_the_level(expect):
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        d = rng.normal(rng.normal(0, 0.05), rng.uniform(0.001, 0.1), size=n)
        r = interval_test(d, expect, margin=0.03, level=0.05)
        assert (r["verdict"] == "holds") == (r["p_value"] < 0.05), r


def test_more_teachers_turn_an_inconclusive_equivalence_into_a_verdict():
    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 0.04, size=60)
    assert interval_test(d[:3], "equivalent", margin=0.02)["verdict"] == "inconclusive"
    assert interval_test(d, "equivalent", margin=0.02)["verdict"] == "holds"


def test_fewer_than_two_teachers_are_inconclusive():
    for d in ([], [0.5], [0.5, np.nan]):
        r = interval_test(d, "above")
        assert r["verdict"] == "inconclusive" and math.isnan(r["ci_low"]) and math.isnan(r["p_value"])
    assert interval_test([0.5], "above")["n"] == 1


def test_no_spread_is_decided_by_the_exact_sign_test_across_teachers():
    # chapter 07's case: 12 teachers, every one at exactly 0 correct held-out class-c points. A t interval
    # cannot be formed; the sign test counts each teacher once (no points pooled across teachers).
    r = interval_test([-0.1] * 12, "below", margin=0.0)
    assert r["test"] == "exact sign test" and r["verdict"] == "holds" and r["p_value"] == pytest.approx(0.5**12)
    r = interval_test([0.0] * 12, "below", margin=0.0)  # all at the bound: none below it
    assert r["verdict"] == "does not hold" and r["p_value"] == 1.0 and r["test"] == "exact sign test"
    r = interval_test([0.0] * 4, "below", margin=0.0)  # 4 teachers cannot reach 0.05 (0.5**4 = 0.0625)
    assert r["verdict"] == "inconclusive" and "5" in r["note"]
    for expect, margin in (("above", 0.0), ("below", 0.0), ("equivalent", 0.02)):
        for value in (0.1, 0.01, -0.3):
            r = interval_test([value] * 5, expect, margin=margin)
            inside = {"above": value > margin, "below": value < -margin, "equivalent": abs(value) < margin}[expect]
            assert r["verdict"] == ("holds" if inside else "does not hold"), (expect, value)
            assert r["p_value"] == pytest.approx(0.5**5 if inside else 1.0), (expect, value)
    assert interval_test([0.1, 0.1 + 1e-3, 0.1], "above")["test"] == "t interval"  # a little spread: a t interval
    assert "no test" in interval_test([0.5], "above")["note"] or "no interval" in interval_test([0.5], "above")["note"]


def test_a_claim_without_spread_says_it_was_decided_by_the_sign_test(tmp_path):
    import pandas as pd

    from memkd.book.chapter import Chapter

    ch = Chapter("flat", profile="smoke", results_dir=str(tmp_path), device="cpu")
    table = pd.DataFrame({"dataset": range(6), "test_acc_class": [0.0] * 6})
    text = ch.claim("zero", "All at zero.", table, value="test_acc_class", baseline=0.02, expect="below")
    assert "**holds**" in text and "exact sign test" in text and "p = 0.016" in text
    row = ch.finish().iloc[0]
    assert row["test"] == "exact sign test" and row["p_value"] == pytest.approx(0.5**6) and row["n"] == 6


def test_few_points_per_teacher_are_tested_across_teachers_not_pooled():
    # chapter 07's case: 12 teachers, 10 held-out class-c points each, all at 0 correct. Pooled, 0 of 120
    # points against 1/C = 0.02 looked like 120 outcomes; across teachers it is 12 teachers, all below chance.
    r = interval_test([0.0 - 0.02] * 12, "below")
    assert r["test"] == "exact sign test" and r["n"] == 12 and r["p_value"] == pytest.approx(0.5**12)
    assert r["verdict"] == "holds"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"expect": "greater"}, "'expect' parameter of interval_test"),
        ({"expect": "above", "margin": -0.1}, "'margin' parameter"),
        ({"expect": "equivalent", "margin": 0.0}, "must be > 0 for expect='equivalent'"),
        ({"expect": "above", "level": 0.5}, "'level' parameter"),
    ],
)
def test_interval_test_names_a_bad_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        interval_test([0.1, 0.2], **kwargs)


# ---------------------------------------------------------------------------- choose and test


def test_choose_and_test_halves_are_disjoint_deterministic_and_cover_the_teachers():
    units = [3, 3, 1, 0, 2, 4, 4]
    choose, test = choose_and_test_units(units, seed=5)
    assert set(choose).isdisjoint(test) and sorted(choose + test) == [0, 1, 2, 3, 4]
    assert len(choose) == 2 and len(test) == 3
    assert choose_and_test_units(units, seed=5) == (choose, test)
    splits = {tuple(choose_and_test_units(range(10), seed=s)[0]) for s in range(10)}
    assert len(splits) > 1, "the seed changes the split"
    assert choose_and_test_units(["a", "b"]) in ((["a"], ["b"]), (["b"], ["a"]))
    with pytest.raises(ValueError, match="at least 2 distinct units"):
        choose_and_test_units([7, 7])


def test_format_p():
    assert format_p(0.2) == "p = 0.200" and format_p(2e-4) == "p = 2.0e-04" and format_p(1e-9) == "p < 1e-6"
    assert format_p(float("nan")) == "p = n/a" and format_p(None) == "p = n/a"
    assert format_p(0.2, label=False) == "0.200" and format_p(1e-9, label=False) == "< 1e-6"
    assert format_p(float("nan"), label=False) == "–"


def test_binomial_test_is_exact_where_a_t_interval_would_collapse():
    from memkd.metrics import binomial_test

    # 0 of 24 held-out points against chance 0.1: p = 0.9**24 = 0.080, not 0 (a collapsed interval's answer)
    r = binomial_test(0, 24, 0.1, "below")
    assert abs(r["p_value"] - 0.9**24) < 1e-12 and r["verdict"] == "inconclusive" and r["test"] == "exact binomial"
    assert binomial_test(0, 120, 0.1, "below")["verdict"] == "holds"
    # every one of 25 cells perfect: "above 0.95" has p = 0.95**25 and is inconclusive at level 0.05; 60 of 60 holds
    assert abs(binomial_test(25, 25, 0.95, "above", level=0.05)["p_value"] - 0.95**25) < 1e-12
    assert binomial_test(25, 25, 0.95, "above", level=0.05)["verdict"] == "inconclusive"
    assert binomial_test(60, 60, 0.95, "above", level=0.05)["verdict"] == "holds"
    assert binomial_test(30, 60, 0.95, "above", level=0.05)["verdict"] == "does not hold"
    with pytest.raises(ValueError, match="'successes'"):
        binomial_test(5, 4, 0.5, "above")


def test_claim_count_records_an_exact_test(tmp_path):
    from memkd.book.chapter import Chapter

    ch = Chapter("count", profile="smoke", results_dir=str(tmp_path), device="cpu")
    text = ch.claim_count(
        "perfect",
        "Cells above the line are perfect.",
        60,
        60,
        0.95,
        expect="above",
        level=0.05,
        teachers=5,
        what="perfect cells",
    )
    assert "60 of 60 from 5 teachers" in text and "**holds**" in text and "exact binomial" in text
    claims = ch.finish()
    assert claims.loc[0, "test"] == "exact binomial" and claims.loc[0, "n"] == 60


# ---------------------------------------------------------------------------- multiplicity and power


def test_holm_matches_a_hand_worked_family():
    from memkd.metrics import holm

    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.04, 0.01, 0.03]).tolist() == pytest.approx([0.06, 0.03, 0.06])
    assert holm([np.nan, 0.004]).tolist() == pytest.approx([1.0, 0.008])  # a test without p still counts in m
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_planned_teachers_reaches_the_power_it_promises_and_not_one_teacher_less():
    from memkd.power import planned_teachers, t_test_power

    rng = np.random.default_rng(1)
    n = planned_teachers(0.05, 0.08, level=0.01)
    assert t_test_power(n, 0.05, 0.08, 0.01) >= 0.8 > t_test_power(n - 1, 0.05, 0.08, 0.01)
    # simulated: interval_test with n teachers at that effect holds about 80% of the time
    held = np.mean(
        [interval_test(rng.normal(0.05, 0.08, int(n)), "above", level=0.01)["verdict"] == "holds" for _ in range(600)]
    )
    assert 0.74 < held < 0.87
    assert planned_teachers(0.1, 0.08, margin=0.1) == math.inf  # an effect that does not clear its margin
    assert math.isnan(planned_teachers(0.1, math.nan))
    m = planned_teachers(0.0, 0.05, level=0.05, expect="equivalent", margin=0.05)
    held = np.mean(
        [
            interval_test(rng.normal(0.0, 0.05, int(m)), "equivalent", margin=0.05, level=0.05)["verdict"] == "holds"
            for _ in range(600)
        ]
    )
    assert held >= 0.77  # the plan uses a lower bound of the TOST power


def test_planned_trials_is_exact():
    from memkd.power import binomial_power, planned_trials

    assert planned_trials(0.02, 0.0, expect="below") == 228  # 0.98**228 < 0.01 <= 0.98**227
    assert 0.98**228 < 0.01 <= 0.98**227
    n = planned_trials(0.5, 0.9, level=0.01)  # a sign test planned for 9 teachers in 10
    assert binomial_power(n, 0.5, 0.9, 0.01) >= 0.8 > binomial_power(n - 1, 0.5, 0.9, 0.01)
    assert planned_trials(0.5, 0.4, expect="above") == math.inf


def test_margins_carry_their_reason_and_plans_are_found_by_pattern():
    from memkd.book.chapters.ch01_toy_2d import toy_at_chance
    from memkd.book.chapters.ch07_logit_surgery import surgery_overall_kept
    from memkd.book.plan import DIRECTION_REASON, Margin, margin_of, plan_for

    assert toy_at_chance().value == pytest.approx(0.0333, abs=1e-4) and "Fig 1" in toy_at_chance().reason
    assert surgery_overall_kept(0.02).value == pytest.approx(0.005)  # no longer 1/C, which could not fail
    assert margin_of(Margin(0.1, "why"), "equivalent") == (0.1, "why")
    assert margin_of(0.0, "above") == (0.0, DIRECTION_REASON) and margin_of(0.03, "equivalent") == (0.03, "")
    with pytest.raises(ValueError, match="'reason' parameter of Margin"):
        Margin(0.1, " ")
    assert plan_for("01_toy_2d", "toy_soft_T5_beats_chance").effect == pytest.approx(0.0667)  # 40% against chance 1/3
    assert plan_for("07_logit_surgery", "zero_class_overall_kept").effect == 0.0
    assert plan_for("11_new", "anything") is None


def test_a_claim_records_its_margin_reason_and_plan_and_says_when_it_is_underpowered(tmp_path):
    import pandas as pd

    from memkd.book.chapter import Chapter
    from memkd.book.plan import Margin, Plan
    from memkd.power import planned_teachers

    ch = Chapter("01_toy_2d", profile="smoke", results_dir=str(tmp_path), device="cpu")
    table = pd.DataFrame({"dataset": range(6), "test_acc": [0.1, 0.6, 0.2, 0.5, 0.3, 0.4], "chance": 1 / 3})
    text = ch.claim("toy_soft_T5_beats_chance", "Soft beats chance.", table, baseline=1 / 3)
    assert "*Underpowered: 80% power for the assumed effect (0.0667;" in text and "this build has 6.*" in text
    ch.claim(
        "mine",
        "Mine.",
        table,
        baseline=1 / 3,
        expect="equivalent",
        margin=Margin(0.05, "my reason"),
        plan=Plan(0.0, "none", sd=0.01),
    )
    claims = ch.finish().set_index("claim")
    sd = np.std(table["test_acc"], ddof=1)
    # the plan fixes its spread from a pilot on other seeds (memkd/book/plans.yml), not this build's
    assert (
        claims.loc["toy_soft_T5_beats_chance", "planned_n"]
        == planned_teachers(0.0667, 0.116, 0.05)
        != planned_teachers(0.1, sd, 0.05)
    )
    assert claims.loc["toy_soft_T5_beats_chance", "sd_source"].startswith("pilot")
    assert claims.loc["toy_soft_T5_beats_chance", "margin_reason"].startswith("a direction")
    assert claims.loc["mine", "margin_reason"] == "my reason" and claims.loc["mine", "sd_source"].startswith("assumed")
    assert claims.loc["mine", "planned_n"] == planned_teachers(0.0, 0.01, 0.05, expect="equivalent", margin=0.05)
    surgery = Chapter("07_logit_surgery", profile="smoke", results_dir=str(tmp_path / "07"), device="cpu")
    count = surgery.claim_count("zero_class_kills_class", "Zeroed.", 0, 120, 0.02, expect="below", teachers=12)
    assert "needs 149 outcomes; this build has 120" in count  # 0.98**149 < 0.05
