"""Chapter's claim recording with teachers as the unit: claim, claim_difference, the old forms
(recorded in the new format), stand-in and beyond-the-paper flags, departures, the teacher protocol,
config.json beside a table, and what finish writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memkd.book.claims import CLAIM_COLUMNS, DEPARTURE_COLUMNS
from memkd.book.chapter import Chapter


@pytest.fixture
def ch(tmp_path):
    return Chapter("02_logit_distillation", profile="smoke", results_dir=str(tmp_path / "ch"), device="cpu")


def students(teachers=5, per_teacher=4, mean=0.08, spread=0.01, seed=0):
    """One row per student: dataset (teacher), test_acc and independent_acc."""
    rng = np.random.default_rng(seed)
    n = teachers * per_teacher
    return pd.DataFrame(
        {
            "dataset": np.repeat(np.arange(teachers), per_teacher),
            "test_acc": mean + spread * rng.standard_normal(n),
            "independent_acc": 0.02 + 0.002 * rng.standard_normal(n),
        }
    )


def test_claim_counts_teachers_and_records_the_interval(ch):
    table = students().iloc[:-1]  # the last teacher has 3 students
    text = ch.claim("soft_beats_trivial", "Soft labels beat the trivial accuracy.", table, baseline=0.02)
    assert "over 5 teachers × 3 students" in text  # students: the fewest any teacher had
    assert "90% interval of the difference [" in text and "] > 0" in text and text.endswith("**holds**.")
    c = ch.claims[-1]
    assert (c.n, c.students, c.verdict, c.expect, c.value, c.data) == (5, 3, "holds", "above", "test_acc", "paper")
    means = table.groupby("dataset")["test_acc"].mean()
    assert math.isclose(c.measured, means.mean()) and math.isclose(c.difference, means.mean() - 0.02)
    assert math.isclose(c.sem, means.std(ddof=1) / math.sqrt(5)) and c.ci_low < c.difference < c.ci_high
    assert c.baseline == 0.02 and c.level == 0.05 and not c.beyond_paper  # the one family level


def test_claim_against_a_baseline_column_and_below(ch):
    table = students(mean=0.01)
    ch.claim("below_fresh", "Below fresh data.", table, baseline="independent_acc", expect="below")
    c = ch.claims[-1]
    assert c.verdict == "holds" and c.ci_high < 0
    assert math.isclose(c.baseline, table.groupby("dataset")["independent_acc"].mean().mean())


def test_equivalence_needs_a_margin_prints_it_and_is_inconclusive_with_few_teachers(ch):
    with pytest.raises(ValueError, match="'margin' parameter of Chapter.claim"):
        ch.claim("hard_at_chance", "Hard labels stay at chance.", students(), baseline=0.02, expect="equivalent")
    few = students(teachers=3, mean=0.02, spread=0.03)
    text = ch.claim(
        "hard_at_chance",
        "Hard labels stay at chance.",
        few,
        baseline=0.02,
        expect="equivalent",
        margin=0.01,
        what="hard-label students",
    )
    assert "90% interval" in text and "within the equivalence margin ±0.01" in text and "**inconclusive**" in text
    assert ch.claims[-1].margin == 0.01 and ch.claims[-1].level == 0.05
    many = students(teachers=12, per_teacher=8, mean=0.02, spread=0.003)
    ch.claim("hard_at_chance", "Hard labels stay at chance.", many, baseline=0.02, expect="equivalent", margin=0.01)
    assert [c.verdict for c in ch.claims if c.claim == "hard_at_chance"] == ["holds"], "one row per claim id"


def test_one_teacher_is_inconclusive(ch):
    text = ch.claim("x", "X", students(teachers=1), baseline=0.02)
    assert "**inconclusive** (1 teacher: no interval)" in text and ch.claims[-1].n == 1


def test_claim_difference_pairs_on_shared_teachers(ch):
    a = students(teachers=5)
    b = students(teachers=6, seed=1).assign(test_acc=lambda t: t["test_acc"] - 0.03)
    text = ch.claim_difference("wider_more", "Wider students extract more.", a, b, what="wide minus narrow")
    c = ch.claims[-1]
    assert c.n == 5 and "paired on teachers" in text and c.verdict == "holds"
    diffs = a.groupby("dataset")["test_acc"].mean() - b.groupby("dataset")["test_acc"].mean().iloc[:5]
    assert math.isclose(c.difference, diffs.mean())
    with pytest.raises(ValueError, match="share no 'dataset'"):
        ch.claim_difference("none", "N", a, b.assign(dataset=b["dataset"] + 100))


def test_bad_arguments_name_the_parameter(ch):
    with pytest.raises(ValueError, match="'data' parameter of Chapter.claim"):
        ch.claim("x", "X", students(), data="digits")
    with pytest.raises(ValueError, match="'expect' parameter of Chapter.claim"):
        ch.claim("x", "X", students(), expect="greater")
    with pytest.raises(ValueError, match="'unit' parameter of per_unit_means must be a column .*Got 'teacher'"):
        ch.claim("x", "X", students(), unit="teacher")


def test_stand_in_and_beyond_paper_are_recorded(tmp_path):
    beyond = Chapter(
        "09_open_questions", profile="smoke", results_dir=str(tmp_path / "b"), device="cpu", beyond_paper=True
    )
    beyond.claim("q", "Q", students(), baseline=0.02, data="stand-in")
    claims = beyond.finish()
    assert claims["beyond_paper"].tolist() == [True] and claims["data"].tolist() == ["stand-in"]
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["beyond_paper"] is True


def test_protocol_and_departures_reach_departures_csv_and_meta(ch):
    assert "whole budget" in ch.protocol("budget") and not ch.departures
    text = ch.protocol("first_perfect", reason="compared in chapter 09")
    assert "first epoch" in text and ch.departures[-1]["topic"] == "teacher stop"
    with pytest.raises(ValueError, match="'teacher_stop' parameter of Chapter.protocol"):
        ch.protocol("early")
    ch.departure("epochs", "none given", "300 student epochs", "students converge by then")
    ch.departure("epochs", "none given", "300 student epochs", "students converge by then")  # a cell run twice
    with pytest.raises(ValueError, match="'reason' parameter of Chapter.departure"):
        ch.departure("epochs", "none", "300", "")
    ch.claim("x", "X", students(), baseline=0.02)
    claims = ch.finish()
    assert list(claims.columns) == CLAIM_COLUMNS and claims["verdict"].tolist() == ["holds"]
    on_disk = pd.read_csv(ch.path / "claims.csv")
    assert list(on_disk.columns) == CLAIM_COLUMNS and on_disk["verdict"].tolist() == ["holds"]
    departures = pd.read_csv(ch.path / "departures.csv")
    assert list(departures.columns) == DEPARTURE_COLUMNS and len(departures) == 2
    assert departures["reason"].tolist()[0] == "compared in chapter 09"
    meta = json.loads((ch.path / "meta.json").read_text())
    assert meta["teacher_stop"] == "first_perfect" and meta["profile"] == "smoke" and "elapsed_s" in meta


def test_finish_without_claims_or_departures_writes_headers(ch):
    ch.finish()
    assert list(pd.read_csv(ch.path / "claims.csv").columns) == CLAIM_COLUMNS
    assert list(pd.read_csv(ch.path / "departures.csv").columns) == DEPARTURE_COLUMNS


def test_save_table_writes_the_config_beside_the_table(ch):
    table = students()
    ch.save_table(table, "plain")
    assert (ch.path / "plain.csv").is_file() and not (ch.path / "plain.config.json").exists()
    table.attrs["config"] = {"d": 100, "alphas": (0.2, 0.6), "lr": np.float64(3e-3), "device": ch.device}
    ch.save_table(table)
    config = json.loads((ch.path / "table.config.json").read_text())
    assert config == {"d": 100, "alphas": [0.2, 0.6], "lr": 3e-3, "device": "cpu"}
    table.attrs["config"] = "d=100"
    with pytest.raises(ValueError, match=r"table.attrs\['config'\] must be a dict"):
        ch.save_table(table)


def test_supports_and_published_version_reach_claims_csv_and_meta(tmp_path):
    ch = Chapter("11_linear", profile="smoke", results_dir=str(tmp_path / "p"), device="cpu", published_version=True)
    ch.claim("beats_chance", "Beats chance.", students(), baseline=0.02)
    ch.claim(
        "beats_fresh", "Beats fresh data.", students(), baseline="independent_acc", supports="11_linear:beats_chance"
    )
    claims = ch.finish()
    assert claims["supports"].tolist() == ["", "11_linear:beats_chance"]
    assert claims["published_version"].tolist() == [True, True]
    assert json.loads((tmp_path / "p" / "meta.json").read_text())["published_version"] is True
    with pytest.raises(ValueError, match="'supports' parameter"):
        ch.claim("bad", "Bad.", students(), baseline=0.02, supports="beats_chance")


# ---------------------------------------------------------------------------- outcome sentences


def paired(teachers, shift, spread=0.01, seed=0, value="test_acc"):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"dataset": np.arange(teachers), value: 0.2 + shift + spread * rng.standard_normal(teachers)})


def test_outcome_sentences_follow_the_verdict_and_carry_the_numbers(ch):
    from memkd.book import outcomes

    ch.claim_difference("up", "Up.", paired(8, 0.1), paired(8, 0.0, seed=9), expect="above")
    ch.claim_difference("flat", "Flat.", paired(8, 0.0, seed=1), paired(8, 0.0, seed=2), expect="above")
    ch.claim_difference("down", "Down.", paired(8, -0.1), paired(8, 0.0, seed=9), expect="above")
    texts = dict(holds="H {difference:+.2f}", does_not_hold="N {interval}", inconclusive="I")
    assert outcomes.outcome(ch, "up", **texts) == "H +0.10"
    assert outcomes.outcome(ch, "down", **texts).startswith("N interval [-0.1")
    assert outcomes.outcome(ch, "flat", **texts) == "I"
    assert outcomes.outcome(ch, "absent", **texts, missing="not run") == "not run"
    against = outcomes.contradictions(ch)
    assert "- Down. This build: difference -0.09" in against and "Up." not in against


def test_contradictions_say_nowhere_when_none_fails_and_ignore_supporting_claims(ch):
    from memkd.book import outcomes

    ch.claim_difference("up", "Up.", paired(8, 0.1), paired(8, 0.0, seed=9), expect="above")
    ch.claim_difference(
        "again", "Again.", paired(8, -0.1), paired(8, 0.0, seed=9), expect="above", supports="02_logit_distillation:up"
    )
    assert outcomes.contradictions(ch).startswith("**Where this build disagrees with the paper:** nowhere among the 1 ")
    assert "tests an effect counted elsewhere" in ch.verdicts_markdown()


def test_chapter_07_says_when_dropping_the_class_lowers_its_accuracy(tmp_path):
    from memkd.book.chapters.ch07_logit_surgery import surgery_outcomes

    ch = Chapter("07_logit_surgery", profile="smoke", results_dir=str(tmp_path), device="cpu")
    ch.claim_difference(
        "drop_class_like_plain",
        "Kept.",
        paired(12, -0.1, value="test_acc_class"),
        paired(12, 0.0, seed=9, value="test_acc_class"),
        value="test_acc_class",
        expect="equivalent",
        margin=0.1,
    )
    ch.claim_count("zero_class_kills_class", "Zeroed.", 0, 120, 0.02, expect="below", teachers=12)
    text = surgery_outcomes(ch, 0)
    assert "leans against the paper here:** dropping class 0 lowers" in text and "(plain) to 0.1" in text
    assert "too few teachers to tell this from chance" in text
    ch2 = Chapter("07_logit_surgery", profile="smoke", results_dir=str(tmp_path / "b"), device="cpu")
    ch2.claim_difference(
        "drop_class_like_plain",
        "Kept.",
        paired(40, 0.0, seed=3, value="test_acc_class"),
        paired(40, 0.0, seed=4, value="test_acc_class"),
        value="test_acc_class",
        expect="equivalent",
        margin=0.1,
    )
    assert "keeps its held-out accuracy at plain distillation's" in surgery_outcomes(ch2, 0)


def test_chapter_05_compares_what_the_temperature_and_the_learning_rate_move(ch):
    from memkd.book.chapters.ch05_temperature_lr import temperature_lr_outcomes

    grid = pd.DataFrame([[0.05, 0.06], [0.20, 0.21]], index=[1.0, 20.0], columns=[0.001, 0.003])
    text = temperature_lr_outcomes(ch, grid)
    assert "by 0.150 on average" in text and "by 0.010" in text and "the temperature moves it more" in text


def test_chapter_10_names_the_settings_where_cnns_leak(tmp_path):
    from memkd.book.chapters.ch10_convolutions import convolution_outcomes

    ch = Chapter("10_convolutions", profile="smoke", results_dir=str(tmp_path), device="cpu", beyond_paper=True)
    leak = pd.DataFrame(
        {
            "dataset": np.arange(8),
            "test_acc": 0.3 + 0.01 * np.random.default_rng(0).standard_normal(8),
            "independent_acc": 0.2,
        }
    )
    none = leak.assign(test_acc=0.2 + 0.002 * np.random.default_rng(1).standard_normal(8))
    ch.claim("cnn_cnn_clean_no_leak", "C.", leak, baseline="independent_acc", expect="equivalent", margin=0.03)
    ch.claim("cnn_cnn_labels_no_leak", "L.", none, baseline="independent_acc", expect="equivalent", margin=0.03)
    text = convolution_outcomes(ch, ["clean", "labels"])
    assert "leak beyond the margin on clean (+0.10" in text and "do not leak (within the margin) on labels" in text
    mlp = leak.assign(leak=0.2 + 0.01 * np.random.default_rng(2).standard_normal(8))
    ch.claim_difference(
        "cnn_leaks_less_clean", "Less.", none.assign(leak=none.test_acc - 0.2), mlp, value="leak", expect="below"
    )
    ch.claim("probe_fixed_cnn_leaks", "Probe.", none, baseline="independent_acc", expect="above")
    text = convolution_outcomes(ch, ["clean", "labels"])
    assert "leak less than MLP students of an MLP teacher on clean (-0.2" in text
    assert "The probe (one pixel order shared by all images): the probe " in text and "probe_fixed_cnn_leaks" in text


def test_every_claim_of_chapters_01_to_08_has_a_stated_baseline_and_plan():
    """The claim ids the chapters record (as of this build), each matched by a baseline and a plan."""
    from memkd.book.plan import baseline_for, plan_for

    ids = {
        "01_toy_2d": ["toy_hard_at_chance", "toy_soft_T5_beats_chance"],
        "02_logit_distillation": [
            "logits_beat_chance",
            "logits_beat_trivial",
            "little_data_suffices",
            "wider_students_extract_more",
            "hard_labels_at_chance",
        ],
        "03_similarity_scores": ["similarity_beats_chance", "logits_beat_similarity"],
        "04_cifar10": ["clean_beats_trivial", "both_beats_trivial", "both_beats_labels"],
        "05_temperature_lr": ["high_temperature_helps", "temperature_grid_beats_trivial", "best_temperature_above_one"],
        "06_dataset_composition": ["composition_nontrivial_cells", "best_dimension_grows", "optimum_inside_grid"],
        "07_logit_surgery": [
            "drop_class_keeps_class",
            "drop_class_like_plain",
            "zero_class_kills_class",
            "zero_class_below_plain",
            "drop_class_overall_kept",
            "tail_carries_information",
        ],
        "08_transformer": ["no_fit_and_transfer"],
    }
    for chapter, claims in ids.items():
        for claim in claims:
            assert baseline_for(chapter, claim) and plan_for(chapter, claim) is not None, (chapter, claim)
    assert baseline_for("02_logit_distillation", "logits_beat_trivial").startswith("the same students on fresh")
    assert baseline_for("07_logit_surgery", "zero_class_kills_class").startswith("chance")


def test_plans_yml_names_real_chapters_and_leaves_no_placeholder():
    """memkd/book/plans.yml: every chapter it plans for is a notebook in nbs/, every {NAME} is filled."""
    from memkd.book.plan import BASELINES, PLANS

    chapters = {p.stem for p in (Path(__file__).resolve().parents[1] / "nbs").glob("*.ipynb")}
    for chapter, pattern in [*PLANS, *BASELINES]:
        assert chapter in chapters, f"plans.yml names {chapter}, which is not a chapter"
    texts = [p.reason for p in PLANS.values()] + list(BASELINES.values())
    assert all(t.strip() and "{" not in t for t in texts)
    assert PLANS[("01_toy_2d", "toy_soft*_beats_chance")].effect == 0.0667


@pytest.mark.slow
def test_chapter_07_at_smoke_tests_across_teachers_and_records_margins_and_plans(tmp_path):
    from pathlib import Path

    from conftest import execute_chapter_at_smoke

    notebook = Path(__file__).resolve().parents[1] / "nbs" / "07_logit_surgery.ipynb"
    claims = pd.read_csv(execute_chapter_at_smoke(notebook, tmp_path) / "claims.csv").set_index("claim")
    table = pd.read_csv(tmp_path / "results" / "table.csv")
    zeroed = table[table.variant == "zero_class"]
    assert claims.loc["zero_class_kills_class", "n"] == zeroed["dataset"].nunique()  # teachers, no pooled points
    assert claims.loc["drop_class_keeps_class", "n"] == zeroed["dataset"].nunique()
    assert not claims["test"].eq("exact binomial").any()  # no count pooled across teachers
    assert claims.loc["zero_class_below_plain", "kind"] == "check"
    assert not (claims["p_value"].notna() & claims["ci_low"].isna()).any(), "a p-value without an interval"
    equivalence = claims[claims["expect"] == "equivalent"]
    assert equivalence["margin_reason"].notna().all() and (equivalence["margin_reason"].str.len() > 10).all()
    chance = float(table["chance"].iloc[0])
    assert claims.loc["zero_class_overall_kept", "margin"] == pytest.approx(chance / 4)
    assert claims["planned_n"].notna().all() and claims["baseline_reason"].notna().all()


def test_chapter_08_says_when_students_pick_up_the_rule_and_beat_chance(tmp_path):
    from memkd.book.chapters.ch08_transformer import transformer_outcomes

    ch = Chapter("08_transformer", profile="smoke", results_dir=str(tmp_path), device="cpu")
    checks = pd.DataFrame(
        [
            {"check": "held_out_vs_chance", "temperature": 1.0, "mean": 0.3, "verdict": "holds"},
            {"check": "students_outside_D_vs_chance", "temperature": 1.0, "mean": 0.25, "verdict": "holds"},
            {"check": "held_out_vs_chance", "temperature": 10.0, "mean": 0.0, "verdict": "inconclusive"},
        ]
    )
    fits = pd.DataFrame({"temperature": [1.0, 10.0], "fits": [True, False]})
    text = transformer_outcomes(ch, checks, fits)
    assert "the students beat chance on the pairs outside D (by +0.250)" in text
    assert "at T = 1, students that fit their part of D reach held-out accuracy above chance" in text
    quiet = checks.assign(verdict="inconclusive")
    assert transformer_outcomes(ch, quiet, fits).startswith("At no temperature where the students fit")
