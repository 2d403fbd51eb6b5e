"""Chapter 09 (questions beyond the paper): the six experiment functions at smoke, their validation,
the shared teachers, the overlap statistics on constructed cases, the frozen-layer student, the
verdict logic on constructed tables (equivalence, inconclusive at a small n, intersection-union),
and the chapter under papermill."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import execute_chapter_at_smoke
import torch

from memkd.book.chapter import Chapter
from memkd.config import make_config
from memkd.distillation import TeacherDidNotMemorize
from memkd.experiments import open_questions as oq
from memkd.experiments import q1_overlap as q1, q2_regularization as q2, q3_architecture as q3
from memkd.experiments import q4_convention as q4, q5_probe as q5, q6_teacher_protocol as q6
from memkd.metrics import overlap_test
from memkd.book.chapters import ch09_open_questions as oc
from memkd.models.mlp import EnsembleMLP

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "nbs" / "09_open_questions.ipynb"
METRICS = ["train_acc", "test_acc", "independent_acc", "chance"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------------------- the six functions
def test_overlap_returns_one_row_per_pair_per_teacher():
    table = q1.logit_vs_similarity_overlap("smoke", teachers=2, students=3)
    s = 3
    assert len(table) == 2 * (s * (s - 1) // 2 * 2 + s * s)  # soft-soft, similarity-similarity, soft-similarity
    assert set(table["pair"]) == {"soft-soft", "soft-similarity", "similarity-similarity"}
    assert set(table["dataset"]) == {0, 1}
    for col in [
        "question",
        "dataset",
        "pair",
        "student_a",
        "student_b",
        "n",
        "acc_a",
        "acc_b",
        "both",
        "expected",
        "lift",
        "phi",
        "p_value",
        "group_p_value",
        "chance",
    ]:
        assert col in table.columns, col
    assert (table["question"] == "overlap").all() and table.attrs["config"]["teachers"] == 2
    assert np.allclose(table["expected"], table["n"] * table["acc_a"] * table["acc_b"])
    assert table["p_value"].between(0, 1).all() and table["group_p_value"].between(0, 1).all()
    per = q1.overlap_per_student(table, "soft-similarity", "phi")
    assert len(per) == 2 * s and list(per.columns) == ["dataset", "student", "phi"]


@pytest.mark.parametrize("kind", ["soft", "similarity"])
def test_correct_sets_agree_with_the_distilled_rows(kind):
    cfg = make_config(q1.OverlapConfig, "logit_vs_similarity_overlap", "smoke", {"teachers": 2, "students": 2})
    tasks = oq.teachers(cfg)
    splits = oq.splits_of(tasks, cfg)
    members = oq.soft_members(cfg) if kind == "soft" else oq.member_grid(lr=(3e-3,), student=range(2))
    sets, rows = oq.correct_sets(tasks, splits, cfg, kind, members, epochs=20)
    assert [s.shape for s in sets] == [(2, len(te)) for _, te in splits]
    got = [float(s.mean()) for per_task in sets for s in per_task]
    assert np.allclose(got, [r["test_acc"] for r in rows], atol=1e-6)


def test_teachers_are_trained_once_and_shared():
    cfg = make_config(q4.ConventionConfig, "temperature_convention", "smoke", {"teachers": 2})
    first = oq.teachers(cfg)
    assert oq.teachers(cfg) is first
    assert oq.teachers(cfg, activation=cfg.activation, weight_decay=0.0) is first  # the reference knobs
    assert oq.teachers(cfg, require=False, weight_decay=1e-2) is not first
    with pytest.raises(TeacherDidNotMemorize, match="did not reach 100%"):
        oq.teachers(
            make_config(q4.ConventionConfig, "temperature_convention", "smoke", {"teachers": 2, "teacher_epochs": 3})
        )


def test_teacher_regularization_rows_and_a_teacher_that_fails():
    table = q2.teacher_regularization("smoke", teachers=2, students=2, weight_decays=(0.0, 1e-2))
    assert len(table) == 2 * 2 * 2
    for col in [
        "weight_decay",
        "teacher_memorized",
        "teacher_train_acc",
        "teacher_logit_norm",
        "teacher_top_prob",
        "teacher_stop",
        *METRICS,
    ]:
        assert col in table.columns, col
    assert table["teacher_memorized"].all() and (table["teacher_stop"] == "budget").all()
    norms = table.groupby("weight_decay")["teacher_logit_norm"].mean()
    assert norms[1e-2] < norms[0.0]  # weight decay keeps the logits small
    failed = q2.teacher_regularization("smoke", teachers=2, students=2, weight_decays=(0.0,), teacher_epochs=3)
    assert len(failed) == 2 and not failed["teacher_memorized"].any()
    assert failed["test_acc"].isna().all() and (failed["teacher_train_acc"] < 1).all()


def test_architecture_parts_and_variants():
    table = q3.architecture("smoke", teachers=2, students=2)
    for col in [
        "part",
        "variant",
        "teacher_activation",
        "teacher_depth",
        "student_activation",
        "student_depth",
        "width",
        "teacher_memorized",
        *METRICS,
    ]:
        assert col in table.columns, col
    variants = table.groupby("part")["variant"].unique().map(set).to_dict()
    assert variants["activation"] == {"relu", "tanh"}
    assert variants["depth"] == {"1 hidden", "2 hidden", "3 hidden"}
    assert variants["mismatch"] == {"matched", "narrower", "wider", "shallower", "deeper", "tanh student"}
    mm = table[table["part"] == "mismatch"].groupby("variant")[["width", "student_depth"]].first()
    assert mm.loc["narrower", "width"] < mm.loc["matched", "width"] < mm.loc["wider", "width"]
    assert mm.loc["shallower", "student_depth"] < mm.loc["matched", "student_depth"] < mm.loc["deeper", "student_depth"]
    # the reference student is trained once and reported in every part: identical numbers
    ref = table[(table["variant"].isin(["relu", "2 hidden", "matched"]))]
    assert ref.groupby(["dataset", "student"])["test_acc"].nunique().eq(1).all()


def test_temperature_convention_is_paired():
    table = q4.temperature_convention("smoke", teachers=2, students=2)
    for col in ["soften_student", "temperature", "student", *METRICS]:
        assert col in table.columns, col
    assert set(table["soften_student"]) == {False, True}
    wide = table.pivot_table(index=["dataset", "temperature", "student"], columns="soften_student", values="test_acc")
    # at T = 1 both conventions are the same loss: same initialization gives the same student
    assert np.allclose(wide.xs(1.0, level="temperature")[False], wide.xs(1.0, level="temperature")[True])


def test_random_features_probe_variants():
    table = q5.random_features_probe("smoke", teachers=2, students=2)
    for col in ["variant", "frozen_layers", "trainable", "student_depth", "student_activation", *METRICS]:
        assert col in table.columns, col
    assert len(table) == 4 * 2 * 2 and not table[METRICS].isna().any().any()
    trainable = table.groupby("variant")["trainable"].first()
    assert set(trainable.index) == set(q5.PROBE_VARIANTS)
    assert trainable["frozen_first"] < trainable["trained"]
    assert table["teacher_linear_r2"].between(-1, 1).all() and (table["teacher_activation"] == "relu").all()


def test_teacher_protocol_pairs_the_two_stops():
    table = q6.teacher_protocol("smoke", teachers=2, students=2, temperatures=(2.0, 20.0), teacher_epochs=150)
    assert set(table["teacher_stop"]) == {"budget", "first_perfect"} and len(table) == 2 * 2 * 2 * 2
    per = table.groupby(["teacher_stop", "dataset"])[
        ["teacher_first_perfect", "teacher_epochs_run", "teacher_logit_norm", "independent_acc"]
    ].first()
    budget, early = per.loc["budget"], per.loc["first_perfect"]
    # same data, same initialization: both protocols reach 100% at the same epoch; only budget trains on
    assert (budget["teacher_first_perfect"] == early["teacher_first_perfect"]).all()
    assert (budget["teacher_epochs_run"] == 150).all() and (early["teacher_epochs_run"] < 150).all()
    assert (budget["teacher_logit_norm"] > early["teacher_logit_norm"]).all()
    effect = oc.temperature_effect(table)
    assert len(effect) == 2 * 2 * 2 and effect["temperature_effect"].notna().all()


def test_linear_fit_r2_is_one_for_a_linear_teacher_only():
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(0)
    x, x_new = torch.rand(300, 20, generator=gen), torch.rand(200, 20, generator=gen)
    w = torch.randn(20, 5, generator=gen)
    linear = SimpleNamespace(x=x, logits=x @ w + 1.0, x_independent=x_new, logits_independent=x_new @ w + 1.0)
    assert q5.linear_fit_r2(linear) > 0.999
    noise = SimpleNamespace(
        x=x,
        logits=torch.randn(300, 5, generator=gen),
        x_independent=x_new,
        logits_independent=torch.randn(200, 5, generator=gen),
    )
    assert q5.linear_fit_r2(noise) < 0.1


def test_frozen_first_layer_never_moves():
    x = torch.rand(2, 30, 8) * 2 - 1  # one input set per member
    logits = 3 * torch.randn(2, 30, 4)
    model = q5.train_probe_students(
        x,
        logits,
        temperature=2.0,
        classes=4,
        width=16,
        hidden_layers=2,
        activation="relu",
        frozen_layers=1,
        members=2,
        lr=1e-2,
        epochs=20,
        seed=[3, 4],
    )
    fresh = EnsembleMLP(2, 8, 16, 4, 2, "relu", seed=[3, 4])
    assert torch.equal(model.weights[0], fresh.weights[0]) and torch.equal(model.biases[0], fresh.biases[0])
    assert not torch.equal(model.weights[1], fresh.weights[1])


# ---------------------------------------------------------------------------- validation
FUNCTIONS = [
    q1.logit_vs_similarity_overlap,
    q2.teacher_regularization,
    q3.architecture,
    q4.temperature_convention,
    q5.random_features_probe,
    q6.teacher_protocol,
]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_unknown_knob_is_named(fn):
    with pytest.raises(ValueError, match="unknown parameter.*'tempreature'"):
        fn("smoke", tempreature=3.0)


@pytest.mark.parametrize(
    "fn, knob, value",
    [
        (q2.teacher_regularization, "weight_decays", (-1e-3,)),
        (q3.architecture, "activations", ("gelu",)),
        (q3.architecture, "depths", (0,)),
        (q1.logit_vs_similarity_overlap, "permutations", 10),
        (q5.random_features_probe, "feature_factor", 0),
        (q4.temperature_convention, "alphas", (0.4, 0.6)),
        (q6.teacher_protocol, "teacher_stops", ("early",)),
        (q6.teacher_protocol, "teacher_stop", "never"),
    ],
)
def test_bad_value_names_the_knob(fn, knob, value):
    with pytest.raises(ValueError, match=f"The '{knob}' parameter of {fn.__name__}"):
        fn("smoke", **{knob: value})


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("knob, value", [("alphas", (0.4, 0.6)), ("student_widths", (50, 100))])
def test_every_question_takes_one_alpha_and_one_width(fn, knob, value):
    with pytest.raises(ValueError, match=f"The '{knob}' parameter of {fn.__name__} must hold exactly one value"):
        fn("smoke", **{knob: value})
    assert fn.config.SINGLE_VALUED == ("alphas", "student_widths")


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_validates_with_enough_teachers(profile):
    for cls in (
        q1.OverlapConfig,
        q2.RegularizationConfig,
        q3.ArchitectureConfig,
        q4.ConventionConfig,
        q5.ProbeConfig,
        q6.ProtocolConfig,
    ):
        cfg = make_config(cls, cls.__name__, profile, {})
        assert cfg.profile == profile and len(cfg.alphas) == 1 and len(cfg.student_widths) == 1
        assert cfg.teachers >= (3 if profile == "smoke" else 5) and cfg.teacher_stop == "budget"


def test_mismatch_needs_a_layer_to_lose():
    with pytest.raises(ValueError, match="'hidden_layers' parameter of architecture"):
        q3.architecture("smoke", hidden_layers=1)
    with pytest.raises(ValueError, match="'profile' parameter"):
        q3.architecture("fast")


# ---------------------------------------------------------------------------- statistics
def test_overlap_test_identical_sets_are_significant():
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.3
    r = overlap_test(a, a, permutations=999, seed=1)
    assert r["p_value"] <= 0.002 and r["lift"] > 2
    assert r["both"] == a.sum() and math.isclose(r["expected"], a.sum() ** 2 / 200)


def test_overlap_test_independent_sets_are_not():
    rng = np.random.default_rng(0)
    p = [
        overlap_test(rng.random(200) < 0.3, rng.random(200) < 0.3, permutations=199, seed=k)["p_value"]
        for k in range(40)
    ]
    assert np.mean(np.array(p) < 0.05) <= 0.15  # about 5% expected under independence
    assert 0.3 < np.median(p) < 0.7


def test_overlap_test_groups_and_disjoint_sets():
    a = np.zeros(100, bool)
    a[:30] = True
    b = np.zeros(100, bool)
    b[50:80] = True
    assert overlap_test(a, b, permutations=199)["p_value"] > 0.99  # never both right: no overlap
    group_a = np.stack([a, a])
    group_b = np.stack([a, a, b])
    r = overlap_test(group_a, group_b, permutations=199)
    assert r["p_value"] < 0.01 and math.isclose(r["both"], 20.0)  # mean over the 6 pairs: (30*4 + 0*2)/6
    with pytest.raises(ValueError, match="overlap_test"):
        overlap_test(a, b[:50])


# ---------------------------------------------------------------------------- verdicts
def _chapter(tmp_path) -> Chapter:
    return Chapter("09_open_questions", profile="smoke", results_dir=str(tmp_path), device="cpu", beyond_paper=True)


def _protocol_table(teachers: int, shift: float, spread: float, seed: int = 0) -> pd.DataFrame:
    """Two students per teacher at T = 2 and 20 under both protocols; budget = first_perfect + shift + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(teachers):
        base = 0.2 + 0.05 * rng.random()
        for stop in ("first_perfect", "budget"):
            for t in (2.0, 20.0):
                for s in range(2):
                    acc = base + (shift + spread * rng.standard_normal() if stop == "budget" else 0.0)
                    rows.append(
                        {
                            "dataset": k,
                            "student": s,
                            "teacher_stop": stop,
                            "temperature": t,
                            "test_acc": acc,
                            "independent_acc": 0.05,
                            "chance": 0.05,
                        }
                    )
    return pd.DataFrame(rows)


def test_protocol_claims_equivalent_inconclusive_and_different(tmp_path):
    ch = _chapter(tmp_path)
    oc.protocol_claims(ch, _protocol_table(teachers=8, shift=0.0, spread=0.001))
    assert {c.claim: c.verdict for c in ch.claims}["q6_training_on_after_memorizing_changes_nothing"] == "holds"
    margin = oc.ACCURACY_MARGIN * 0.05
    assert all(math.isclose(c.margin, margin) for c in ch.claims) and all(c.expect == "equivalent" for c in ch.claims)
    ch = _chapter(tmp_path)  # a small n with noise about as large as the margin: no verdict either way
    oc.protocol_claims(ch, _protocol_table(teachers=3, shift=0.0, spread=0.02, seed=1))
    assert ch.claims[0].verdict == "inconclusive" and ch.claims[0].n == 3 and ch.claims[0].students == 2
    ch = _chapter(tmp_path)  # a clear shift far outside the margin
    oc.protocol_claims(ch, _protocol_table(teachers=6, shift=0.1, spread=0.001))
    assert ch.claims[0].verdict == "does not hold"


def test_temperature_ranking_and_summary(tmp_path):
    table = _protocol_table(teachers=4, shift=0.0, spread=0.0)
    table.loc[(table.teacher_stop == "budget") & (table.temperature == 20.0), "test_acc"] += 0.05
    ranks = oc.temperature_ranking(table)
    assert ranks["budget"] == [20.0, 2.0] and set(ranks["first_perfect"]) == {2.0, 20.0}
    summary = oc.protocol_summary(table)
    assert list(summary["T"]) == [2.0, 20.0] and summary["rank (budget)"].tolist() == [2, 1]
    ch = _chapter(tmp_path)
    sentences = oc.protocol_claims(ch, table)
    assert "budget: T = 20 > T = 2" in sentences[-1]
    text = oc.summary_markdown(ch.finish())
    assert "Of 2 claims in this build" in text and "`q6_temperature_effect_unchanged`" in text
    assert "4 teachers × 2 students" in text


def test_architecture_claim_records_the_weakest_variant(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for variant, lift in (("relu", 0.2), ("tanh", 0.3), ("1 hidden", 0.0)):
        for k in range(5):
            for s in range(2):
                rows.append(
                    {
                        "part": "activation" if variant in ("relu", "tanh") else "depth",
                        "variant": variant,
                        "dataset": k,
                        "student": s,
                        "teacher_memorized": True,
                        "chance": 0.05,
                        "independent_acc": 0.05,
                        "test_acc": 0.05 + lift + 0.01 * rng.standard_normal(),
                    }
                )
    ch = _chapter(tmp_path)
    sentences, tests = oc.architecture_claims(ch, pd.DataFrame(rows))
    verdicts = tests.set_index("variant")["verdict"]
    assert verdicts["relu"] == verdicts["tanh"] == "holds" and verdicts["1 hidden"] != "holds"
    claims = {c.claim: c for c in ch.claims}
    assert claims["q3_effect_survives_architecture"].verdict != "holds"  # one variant fails: the claim does not hold
    assert "1 hidden" in sentences[0] and claims["q3_tanh_leaks_more"].verdict == "holds"


def test_overlap_claims_use_the_phi_margin(tmp_path):
    rows = []
    for k in range(6):
        for pair, phi_value in (("soft-soft", 0.30), ("soft-similarity", 0.30), ("similarity-similarity", 0.2)):
            for i in range(3):
                for j in range(3):
                    if pair != "soft-similarity" and j <= i:
                        continue
                    rows.append(
                        {
                            "dataset": k,
                            "pair": pair,
                            "student_a": i,
                            "student_b": j,
                            "lift": 2.0 + 0.01 * k,
                            "phi": phi_value
                            + 0.001 * ((k + i + j) % 3)
                            + (0.002 * k if pair == "soft-similarity" else 0.0),
                        }
                    )  # spread over teachers
    ch = _chapter(tmp_path)
    oc.overlap_claims(ch, pd.DataFrame(rows))
    claims = {c.claim: c for c in ch.claims}
    assert claims["q1_shared_correct_set"].verdict == "holds" and claims["q1_shared_correct_set"].students == 3
    close = claims["q1_as_close_as_two_logit_students"]
    assert close.expect == "equivalent" and close.margin == oc.PHI_MARGIN and close.verdict == "holds"


# ---------------------------------------------------------------------------- the chapter
@pytest.mark.slow
def test_chapter_executes_at_smoke(tmp_path):
    results = execute_chapter_at_smoke(NOTEBOOK, tmp_path)
    table = pd.read_csv(results / "table.csv")
    assert set(table["question"]) == {"overlap", "regularization", "architecture", "convention", "probe", "protocol"}
    claims = pd.read_csv(results / "claims.csv")
    assert set(claims["claim"].str[:2]) == {"q1", "q2", "q3", "q4", "q5", "q6"}
    assert claims["verdict"].isin(["holds", "does not hold", "inconclusive"]).all()
    assert claims["beyond_paper"].all() and (claims["n"] >= 2).all() and claims["students"].notna().all()
    equivalent = claims[claims["expect"] == "equivalent"]
    assert len(equivalent) >= 4 and (equivalent["margin"] > 0).all()
    assert (results / "meta.json").is_file() and len(list(results.glob("q*.png"))) == 6
    assert (results / "q6_protocol.config.json").is_file() and (results / "departures.csv").is_file()
