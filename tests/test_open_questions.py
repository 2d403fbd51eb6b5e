"""Chapter 09 (open questions): the five experiment functions at smoke, their validation, the overlap
statistics on constructed cases, the frozen-layer student, and the chapter under papermill."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from memkd.experiments import open_questions as oq
from memkd.models import EnsembleMLP

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "nbs" / "09_open_questions.ipynb"
METRICS = ["train_acc", "test_acc", "independent_acc", "chance"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------------------- the five functions
def test_overlap_returns_one_row_per_pair():
    table = oq.logit_vs_similarity_overlap("smoke", datasets=1, students=3)
    s = 3
    assert len(table) == s * (s - 1) // 2 * 2 + s * s  # soft-soft, similarity-similarity, soft-similarity
    assert set(table["pair"]) == {"soft-soft", "soft-similarity", "similarity-similarity"}
    for col in ["question", "dataset", "pair", "student_a", "student_b", "n", "acc_a", "acc_b", "both",
                "expected", "lift", "phi", "p_value", "group_p_value", "chance"]:
        assert col in table.columns, col
    assert (table["question"] == "overlap").all()
    assert np.allclose(table["expected"], table["n"] * table["acc_a"] * table["acc_b"])
    assert table["p_value"].between(0, 1).all() and table["group_p_value"].between(0, 1).all()


def test_teacher_regularization_rows_and_a_teacher_that_fails():
    table = oq.teacher_regularization("smoke", datasets=1, students=2, weight_decays=(0.0, 1e-3),
                                      extra_epochs_values=(0, 50))
    assert len(table) == 2 * 2 * 2
    for col in ["weight_decay", "extra_epochs", "teacher_memorized", "teacher_train_acc",
                "teacher_logit_norm", "teacher_top_prob", *METRICS]:
        assert col in table.columns, col
    assert table["teacher_memorized"].all()
    # training on after memorizing makes the logits larger (the soft labels more peaked)
    norms = table.groupby("extra_epochs")["teacher_logit_norm"].mean()
    assert norms[50] > norms[0]
    failed = oq.teacher_regularization("smoke", datasets=1, students=2, weight_decays=(0.0,),
                                       extra_epochs_values=(0,), teacher_epochs=3)
    assert len(failed) == 1 and not failed["teacher_memorized"].iloc[0]
    assert math.isnan(failed["test_acc"].iloc[0]) and failed["teacher_train_acc"].iloc[0] < 1


def test_architecture_parts_and_variants():
    table = oq.architecture("smoke", datasets=1, students=2)
    for col in ["part", "variant", "teacher_activation", "teacher_depth", "student_activation",
                "student_depth", "width", "teacher_memorized", *METRICS]:
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
    assert ref.groupby("student")["test_acc"].nunique().eq(1).all()


def test_temperature_convention_is_paired():
    table = oq.temperature_convention("smoke", datasets=1, students=2)
    for col in ["soften_student", "temperature", "student", *METRICS]:
        assert col in table.columns, col
    assert set(table["soften_student"]) == {False, True}
    wide = table.pivot_table(index=["temperature", "student"], columns="soften_student", values="test_acc")
    # at T = 1 both conventions are the same loss: same initialisation gives the same student
    assert np.allclose(wide.loc[1.0, False], wide.loc[1.0, True])


def test_random_features_probe_variants():
    table = oq.random_features_probe("smoke", datasets=1, students=2)
    for col in ["variant", "frozen_layers", "trainable", "student_depth", "student_activation", *METRICS]:
        assert col in table.columns, col
    trainable = table.groupby("variant")["trainable"].first()
    assert set(trainable.index) == {"trained", "frozen_first", "random_features", "linear"}
    assert trainable["frozen_first"] < trainable["trained"]
    assert table["teacher_linear_r2"].between(-1, 1).all() and (table["teacher_activation"] == "relu").all()


def test_linear_fit_r2_is_one_for_a_linear_teacher_only():
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(0)
    x, x_new = torch.rand(300, 20, generator=gen), torch.rand(200, 20, generator=gen)
    w = torch.randn(20, 5, generator=gen)
    linear = SimpleNamespace(x=x, logits=x @ w + 1.0, x_independent=x_new, logits_independent=x_new @ w + 1.0)
    assert oq.linear_fit_r2(linear) > 0.999
    noise = SimpleNamespace(x=x, logits=torch.randn(300, 5, generator=gen), x_independent=x_new,
                            logits_independent=torch.randn(200, 5, generator=gen))
    assert oq.linear_fit_r2(noise) < 0.1


def test_frozen_first_layer_never_moves():
    x = torch.rand(30, 8) * 2 - 1
    probs = torch.softmax(torch.randn(30, 4), -1)
    model = oq.train_probe_students(x, probs, classes=4, width=16, hidden_layers=2, activation="relu",
                                    frozen_layers=1, members=2, lr=1e-2, epochs=20, seed=3)
    fresh = EnsembleMLP(2, 8, 16, 4, 2, "relu", seed=3)
    assert torch.equal(model.weights[0], fresh.weights[0]) and torch.equal(model.biases[0], fresh.biases[0])
    assert not torch.equal(model.weights[1], fresh.weights[1])


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("fn", [oq.logit_vs_similarity_overlap, oq.teacher_regularization, oq.architecture,
                                oq.temperature_convention, oq.random_features_probe])
def test_unknown_knob_is_named(fn):
    with pytest.raises(ValueError, match="unknown parameter.*'tempreature'"):
        fn("smoke", tempreature=3.0)


@pytest.mark.parametrize("fn, knob, value", [
    (oq.teacher_regularization, "weight_decays", (-1e-3,)),
    (oq.teacher_regularization, "extra_epochs_values", (1.5,)),
    (oq.architecture, "activations", ("gelu",)),
    (oq.architecture, "depths", (0,)),
    (oq.logit_vs_similarity_overlap, "permutations", 10),
    (oq.random_features_probe, "feature_factor", 0),
    (oq.temperature_convention, "alphas", (0.4, 0.6)),
])
def test_bad_value_names_the_knob(fn, knob, value):
    with pytest.raises(ValueError, match=f"The '{knob}' parameter of {fn.__name__}"):
        fn("smoke", **{knob: value})


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_validates(profile):
    from memkd.config import make_config

    for cls in (oq.OverlapConfig, oq.RegularizationConfig, oq.ArchitectureConfig, oq.ConventionConfig, oq.ProbeConfig):
        cfg = make_config(cls, cls.__name__, profile, {})
        assert cfg.profile == profile and len(cfg.alphas) == 1 and len(cfg.student_widths) == 1


def test_mismatch_needs_a_layer_to_lose():
    with pytest.raises(ValueError, match="'hidden_layers' parameter of architecture"):
        oq.architecture("smoke", hidden_layers=1)
    with pytest.raises(ValueError, match="'profile' parameter"):
        oq.architecture("fast")


# ---------------------------------------------------------------------------- statistics
def test_overlap_test_identical_sets_are_significant():
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.3
    r = oq.overlap_test(a, a, permutations=999, seed=1)
    assert r["p_value"] <= 0.002 and r["lift"] > 2
    assert r["both"] == a.sum() and math.isclose(r["expected"], a.sum() ** 2 / 200)


def test_overlap_test_independent_sets_are_not():
    rng = np.random.default_rng(0)
    p = [oq.overlap_test(rng.random(200) < 0.3, rng.random(200) < 0.3, permutations=199, seed=k)["p_value"]
         for k in range(40)]
    assert np.mean(np.array(p) < 0.05) <= 0.15  # about 5% expected under independence
    assert 0.3 < np.median(p) < 0.7


def test_overlap_test_groups_and_disjoint_sets():
    a = np.zeros(100, bool); a[:30] = True
    b = np.zeros(100, bool); b[50:80] = True
    assert oq.overlap_test(a, b, permutations=199)["p_value"] > 0.99  # never both right: no overlap
    group_a = np.stack([a, a]); group_b = np.stack([a, a, b])
    r = oq.overlap_test(group_a, group_b, permutations=199)
    assert r["p_value"] < 0.01 and math.isclose(r["both"], 20.0)  # mean over the 6 pairs: (30*4 + 0*2)/6
    with pytest.raises(ValueError, match="overlap_test"):
        oq.overlap_test(a, b[:50])


def test_paired_difference_and_combine_p():
    r = oq.paired_difference([1.0, 2.0, 3.0, 4.0], [0.0, 1.1, 1.9, 3.0])
    assert r["n"] == 4 and r["mean"] > 0.9 and r["p_value"] < 0.01
    assert oq.paired_difference([1, 2, 3], [1, 2, 3])["p_value"] == 1.0
    assert oq.combine_p([0.01, 0.01, 0.01]) < 0.001 and oq.combine_p([0.9, 0.8]) > 0.5
    table = pd.DataFrame({"g": ["a", "a", "b"], "test_acc": [0.1, 0.3, float("nan")]})
    s = oq.summarize(table, "g")
    assert list(s["g"]) == ["a"] and math.isclose(s["mean"].iloc[0], 0.2) and s["n"].iloc[0] == 2


# ---------------------------------------------------------------------------- the chapter
@pytest.mark.slow
def test_chapter_executes_at_smoke(tmp_path):
    papermill = Path(sys.executable).parent / "papermill"
    out = tmp_path / "out.ipynb"
    results = tmp_path / "results"
    subprocess.run([str(papermill), str(NOTEBOOK), str(out), "-p", "profile", "smoke", "-p", "results_dir",
                    str(results), "--execution-timeout", "300", "-k", "python3"],
                   check=True, cwd=ROOT, timeout=900, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny nets: one thread per kernel
    table = pd.read_csv(results / "table.csv")
    assert set(table["question"]) == {"overlap", "regularization", "architecture", "convention", "probe"}
    claims = pd.read_csv(results / "claims.csv")
    assert len(claims) >= 5 and claims["claim"].str.startswith(("q1", "q2", "q3", "q4", "q5")).all()
    assert set(claims["claim"].str[:2]) == {"q1", "q2", "q3", "q4", "q5"}
    assert claims["verdict"].isin(["holds", "does not hold", "inconclusive"]).all()
    assert claims["p_value"].between(0, 1).all()
    assert (results / "meta.json").is_file() and len(list(results.glob("q*.png"))) == 5
