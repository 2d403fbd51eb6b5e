"""Chapter 14's experiment (defence_frontier), its analysis, claims and departures (memkd.book.chapters.ch14_defences)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from memkd import experiments as ex
from memkd.book.chapters import ch14_defences as frontier
from memkd.book.chapter import Chapter

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    return ex.defence_frontier("smoke", device="cpu")


def test_smoke_table_has_every_setting_defence_and_declared_column(table):
    assert set(table.setting) == {"mlp", "linear", "one_hidden_layer"}
    assert list(table.columns) == list(ex.defence_frontier.config.TABLE_COLUMNS)
    cfg = table.attrs["config"]
    mlp = table[table.setting == "mlp"]
    assert set(mlp.family) >= {
        "none",
        "top-k",
        "round",
        "logprob round",
        "noise",
        "combined",
        "label only",
        "label smoothing",
        "weight decay",
    }
    assert mlp.teacher_id.nunique() == cfg["teachers"]  # teacher-side variants are paired on the same datasets
    assert table.teacher_id.str.startswith("0:mlp/").sum() == len(mlp)
    per = table.groupby(["setting", "defence", "family"]).size()
    assert (per > 0).all()
    served = mlp[~mlp.family.isin(frontier.TEACHER_SIDE)]
    assert (served.leak == served.test_acc - served.independent_acc).all()
    lin = table[table.setting == "linear"]
    assert (lin.leak == lin.test_acc - 0.5).all() and lin.independent_acc.isna().all()
    assert lin.p_small.between(0, 0.5).all() and (lin.margin_small > 0).all()


def test_no_defence_in_the_linear_setting_recovers_and_label_only_removes_the_mlp_leak(table):
    lin = table[(table.setting == "linear") & table.teacher_memorized]
    assert (lin[lin.defence == "none"].test_acc == 1.0).all()  # above the line, the exact student recovers
    assert (lin[lin.defence == "round0"].test_acc < 1.0).all()  # probabilities rounded to 0 or 1 do not
    mlp = table[(table.setting == "mlp") & (table.family == "label only")]
    none = table[(table.setting == "mlp") & (table.family == "none")]
    assert none.leak.mean() > mlp.leak.mean()


def test_the_same_seed_gives_the_same_table():
    a = ex.defence_frontier("smoke", device="cpu", settings=("linear",))
    b = ex.defence_frontier("smoke", device="cpu", settings=("linear",))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(top_ks=(11,)), "top_ks"),
        (dict(top_ks=(0,)), "top_ks"),
        (dict(decimals=(-1,)), "decimals"),
        (dict(sigmas=(-0.5,)), "sigmas"),
        (dict(combined=("top3|blur",)), "combined"),
        (dict(linear_rho=0.3), "linear_rho"),
        (dict(settings=("cnn",)), "settings"),
        (dict(withheld="drop"), "withheld"),
    ],
)
def test_bad_knobs_are_refused_before_training(overrides, name):
    with pytest.raises(ValueError, match=rf"^The '{name}' parameter of defence_frontier"):
        ex.defence_frontier("smoke", **overrides)


def test_predicted_failing_decimal_follows_ten_to_minus_r_over_p():
    # p = 0.4, margin 0.2: 10^-r / 0.4 >= 0.2 holds up to r = 1 (0.25) and fails at r = 2 (0.025)
    assert frontier.predicted_failing_decimal(0.4, 0.2) == 1
    assert frontier.predicted_failing_decimal(0.02, 0.001) == 4  # 1e-4 / 0.02 >= 0.001 > 1e-5 / 0.02
    rows = [
        {
            "setting": "linear",
            "teacher_id": "0:linear/0",
            "family": "round",
            "strength": float(r),
            "defence": f"round{r}",
            "test_acc": 0.9 if r <= 3 else 1.0,
            "teacher_memorized": True,
            "p_small": 0.02,
            "margin_small": 0.001,
            "leak": 0.4,
            "fidelity": 0.9,
            "chance": 0.5,
            "temperature": 10.0,
        }
        for r in range(8)
    ]
    check = frontier.decimals_check(pd.DataFrame(rows))
    assert check.measured_decimal.tolist() == [3] and check.predicted_decimal.tolist() == [4]
    assert frontier.decimals_per_teacher(check).within_one.tolist() == [True]
    assert check.within_one.tolist() == [True] and check.recovers_at_grid_top.tolist() == [True]


def test_claims_figure_and_holm_block_from_the_smoke_table(table, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    ch = Chapter("14_defences", profile="smoke", results_dir=str(tmp_path), device="cpu", beyond_paper=True)
    sentences = frontier.defence_claims(ch, table, margin_no_leak=0.02, p_within=0.5)
    ids = [c.claim for c in ch.claims]
    assert len(sentences) == len(ids) and {
        "top1_leaks",
        "label_only_no_leak",
        "label_smoothing_below_server_frontier",
        "weight_decay_below_server_frontier",
        "leak_comes_with_fidelity_mlp",
    } <= set(ids)
    assert all(c.beyond_paper for c in ch.claims) and all(c.planned_n == c.planned_n for c in ch.claims)
    holm = frontier.holm_block(ch)
    counted = holm[holm.claim != "top1_no_leak"]  # a supporting claim: shown, not adjusted
    assert len(holm) == len(ids) and (counted.p_adjusted >= counted.p_value - 1e-12).all()
    assert holm.set_index("claim").p_adjusted.isna()["top1_no_leak"]
    fig = frontier.frontier_figure(table)
    assert len(fig.axes) == 3
    summary = frontier.frontier_summary(table)
    lines = frontier.closing_lines(
        summary, frontier.decimals_check(table), dict(zip(holm.claim, holm.verdict_adjusted))
    )
    assert len(lines) >= 6 and all(isinstance(line, str) and line for line in lines)
    ch.record_departures(table)
    topics = {d["topic"] for d in ch.departures}
    assert {"settings", "server temperature", "withheld mass", "linear student"} <= topics
    claims = ch.finish()
    assert (tmp_path / "claims.csv").is_file() and len(claims) == len(ids)


def test_the_chapter_is_in_the_toc_beyond_the_paper_after_chapter_10():
    from memkd.book.report import beyond_paper_chapters

    toc = (ROOT / "_toc.yml").read_text()
    assert toc.index("nbs/10_convolutions") < toc.index("nbs/14_defences") < toc.index("caption: What this build found")
    assert "14_defences" in beyond_paper_chapters(ROOT)


def test_the_anchors_are_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text()
    for key in ("tramer2016", "orekondy2020", "carlini2024", "papernot2017", "papernot2018"):
        assert f"{{{key}," in bib
    chapter = (ROOT / "nbs" / "14_defences.ipynb").read_text()
    assert all(key in chapter for key in ("tramer2016", "orekondy2020", "carlini2024", "papernot2017"))


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_profiles_validate(profile):
    from memkd.config import make_config
    from memkd.experiments.defence_frontier import DefenceConfig

    cfg = make_config(DefenceConfig, "defence_frontier", profile, {})
    assert (
        cfg.teachers >= 8 and cfg.linear_teachers >= 10 and set(cfg.settings) == {"mlp", "linear", "one_hidden_layer"}
    )


def test_chapter_executes_at_smoke(tmp_path):
    from conftest import execute_chapter_at_smoke

    results = execute_chapter_at_smoke(ROOT / "nbs" / "14_defences.ipynb", tmp_path)
    claims = pd.read_csv(results / "claims.csv")
    assert {"top1_leaks", "label_only_no_leak", "leak_comes_with_fidelity_mlp"} <= set(claims["claim"])
    assert claims["beyond_paper"].all()
    assert (results / "frontier.png").exists() and (results / "audit.csv").exists()


def test_frontier_excess_compares_with_the_best_server_defence_of_at_least_the_same_fidelity():
    def row(family, defence, leak, fidelity, teacher="0:mlp/0", strength=0.0):
        return {
            "setting": "mlp",
            "teacher_id": teacher,
            "family": family,
            "strength": strength,
            "defence": defence,
            "leak": leak,
            "fidelity": fidelity,
            "test_acc": 0.1,
            "chance": 0.05,
            "teacher_memorized": True,
        }

    table = pd.DataFrame(
        [
            row("none", "none", 0.14, 0.28),
            row("top-k", "top1", 0.01, 0.14),
            row("label only", "label", 0.00, 0.20),
            row("noise", "noise8", 0.03, 0.11),
            row("label smoothing", "none", 0.02, 0.12, strength=0.2),
            row("weight decay", "none", 0.12, 0.30, strength=0.003),
        ]
    )
    smooth = frontier.frontier_excess(table, "label smoothing")
    assert smooth.server_defence.tolist() == ["label"] and smooth.excess.round(6).tolist() == [0.02]
    decay = frontier.frontier_excess(table, "weight decay")  # no server defence keeps 0.30: the highest one
    assert decay.server_defence.tolist() == ["none"] and decay.excess.round(6).tolist() == [-0.02]
