"""The reproduction report on a fake results folder: chapters in the current format, in the old one
(no verdict, data or beyond_paper column), a stand-in, a chapter beyond the paper, a chapter that
stopped before writing claims and an empty claims file. The headline counts only the paper's
claims on the paper's kind of data; the protocol table and the "This build" box come from the
chapters' files; the notebook itself executes under papermill on that folder."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import memkd.book.report as mb
import memkd.book.report_tables as mt
from memkd.book.claims import CLAIM_COLUMNS, DEPARTURE_COLUMNS, Claim
from memkd.book.report import load_claims, load_departures

ROOT = Path(__file__).resolve().parents[1]
NAN = float("nan")


def claim_row(chapter, claim, verdict, data="paper", beyond=False, **extra):
    row = {
        "chapter": chapter,
        "claim": claim,
        "paper": f"Claim {claim} <of the paper>",
        "data": data,
        "beyond_paper": beyond,
        "expect": "above",
        "value": "test_acc",
        "measured": 0.08,
        "baseline": 0.02,
        "difference": 0.06,
        "sem": 0.005,
        "ci_low": 0.045,
        "ci_high": 0.075,
        "margin": 0.0,
        "level": 0.01,
        "n": 5,
        "students": 4,
        "p_value": 1e-4,
        "verdict": verdict,
        "detail": "",
    }
    return {**row, **extra}


def write(folder: Path, claims=None, departures=None, meta=None):
    folder.mkdir(parents=True, exist_ok=True)
    if claims is not None:
        pd.DataFrame(claims).to_csv(folder / "claims.csv", index=False)
    if departures is not None:
        pd.DataFrame(departures, columns=DEPARTURE_COLUMNS).to_csv(folder / "departures.csv", index=False)
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))


PROVENANCE = {
    "memkd_version": "0.1.0",
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "git_clean": True,
    "python": "3.11.7",
    "torch": "2.13.0+cpu",
    "device": "cpu",
    "device_name": "Test CPU",
    "threads": 2,
    "platform": "Linux",
    "hostname": "testhost",
}


@pytest.fixture
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    ch = "02_logit_distillation"
    write(
        root / ch,
        [
            claim_row(ch, "a", "holds"),
            claim_row(
                ch, "b", "inconclusive", expect="equivalent", margin=0.01, level=0.05, ci_low=-0.02, ci_high=0.005
            ),
            claim_row(ch, "c", "does not hold"),
        ],
        [
            {
                "chapter": ch,
                "topic": "teacher stop",
                "paper": "a fixed budget",
                "book": "the first perfect epoch",
                "reason": "compared in chapter 09",
            },
            {"chapter": ch, "topic": "epochs", "paper": "none given", "book": "300", "reason": "students converge"},
        ],
        {
            "chapter": ch,
            "profile": "smoke",
            "teacher_stop": "budget",
            "beyond_paper": False,
            "elapsed_s": 12.3,
            **PROVENANCE,
        },
    )
    ch = "03_similarity_scores"  # the old format: holds, no verdict / data / beyond_paper; old meta.json
    write(
        root / ch,
        [
            {
                "chapter": ch,
                "claim": "x",
                "paper": "Old holds",
                "measured": 0.1,
                "sem": 0.01,
                "n": 20,
                "p_value": 1e-5,
                "holds": True,
                "detail": "",
            },
            {
                "chapter": ch,
                "claim": "y",
                "paper": "Old fails",
                "measured": 0.02,
                "sem": 0.01,
                "n": 20,
                "p_value": 0.4,
                "holds": False,
                "detail": "",
            },
        ],
        meta={
            "chapter": ch,
            "profile": "smoke",
            "device": "cpu",
            "seed": 0,
            "memkd_version": "0.1.0",
            "elapsed_s": 3.0,
        },
    )
    ch = "04_cifar10"
    write(
        root / ch,
        [
            claim_row(ch, "s1", "holds", data="stand-in"),
            claim_row(ch, "s2", "inconclusive", data="stand-in"),
            claim_row(ch, "p1", "holds"),
        ],
        [
            {
                "chapter": ch,
                "topic": "pixel shuffle",
                "paper": "shuffled pixels",
                "book": "one permutation per image",
                "reason": "the paper's wording allows it",
            }
        ],
        {"chapter": ch, "profile": "smoke", "beyond_paper": False, **PROVENANCE, "device_name": "Other CPU"},
    )
    write(root / "05_temperature_lr", meta={"chapter": "05_temperature_lr", "profile": "smoke"})  # no claims
    (root / "06_dataset_composition").mkdir()
    (root / "06_dataset_composition" / "claims.csv").write_text("")  # a file left empty
    ch = "09_open_questions"
    write(
        root / ch,
        [claim_row(ch, "q1", "holds", beyond=True), claim_row(ch, "q2", "does not hold", beyond=True)],
        meta={"chapter": ch, "profile": "smoke", "beyond_paper": True},
    )
    ch = "10_later"  # old format beyond the paper, known from its meta.json
    write(
        root / ch,
        [
            {
                "chapter": ch,
                "claim": "z",
                "paper": "Later",
                "measured": 0.1,
                "sem": 0.01,
                "n": 3,
                "p_value": 0.01,
                "holds": True,
                "detail": "",
            }
        ],
        meta={"beyond_paper": True},
    )
    return root


def test_load_claims_fills_in_old_files(results):
    claims = load_claims(results)
    assert list(claims.columns) == CLAIM_COLUMNS
    old = claims[claims["chapter"] == "03_similarity_scores"]
    assert old["verdict"].tolist() == ["holds", "does not hold"] and (old["data"] == "paper").all()
    assert not old["beyond_paper"].any() and old["students"].isna().all()
    assert claims.loc[claims["chapter"] == "10_later", "beyond_paper"].all()
    assert "06_dataset_composition" not in set(claims["chapter"])


def test_a_chapter_under_beyond_the_paper_in_the_toc_is_beyond_whatever_it_wrote(tmp_path, monkeypatch):
    ch = "09_open_questions"
    write(
        tmp_path / "old" / ch,
        [
            {
                "chapter": ch,
                "claim": "q",
                "paper": "Q",
                "measured": 0.1,
                "sem": 0.01,
                "n": 3,
                "p_value": 0.01,
                "holds": True,
            }
        ],
    )  # no column, no meta.json
    write(tmp_path / "new" / ch, [claim_row(ch, "r", "holds")], meta={"beyond_paper": False})  # flag not set
    monkeypatch.chdir(ROOT)  # the toc of this book says which chapters are beyond the paper
    assert load_claims(tmp_path / "old")["beyond_paper"].all()
    assert load_claims(tmp_path / "new")["beyond_paper"].all()


def test_headline_counts_only_the_papers_claims_on_the_papers_data(results):
    claims = load_claims(results)
    paper, stand_in, beyond = mb.split_claims(claims)
    assert sorted(paper["claim"]) == ["a", "b", "c", "p1", "x", "y"]
    assert sorted(stand_in["claim"]) == ["s1", "s2"] and sorted(beyond["claim"]) == ["q1", "q2", "z"]
    text = mb.headline(claims)
    assert text.startswith("**3 of 6 claims of the paper hold in this build**, 1 inconclusive, 2 do not hold")
    assert "2 measured on a stand-in" in text and "3 findings beyond the paper" in text


def test_report_table_shows_teachers_times_students_and_the_margin(results):
    paper, _, _ = mb.split_claims(load_claims(results))
    table = mt.report_table(paper)
    assert list(table.columns) == [
        "Chapter",
        "Claim of the paper",
        "This build",
        "n",
        "Test",
        "p-value",
        "p (Holm)",
        "Verdict",
    ]
    first = table.iloc[0]
    assert first["n"] == "5 teachers × 4 students" and first["This build"] == "0.08 vs 0.02: +0.06 ± 0.005"
    assert first["Test"] == "98% interval [0.045, 0.075] &gt; 0" and first["p-value"] == "1.0e-04"
    assert "&lt;of the paper&gt;" in first["Claim of the paper"]
    equivalence = table.iloc[1]
    assert "within the equivalence margin ±0.01" in equivalence["Test"] and equivalence["Verdict"] == "inconclusive"
    old = table[table["Claim of the paper"] == "Old holds"].iloc[0]
    assert old["n"] == "n = 20" and "students counted as units" in old["Test"]
    assert table["Chapter"].str.contains("02_logit_distillation").sum() == 1, "a chapter's name on its first row only"
    assert 'href="../nbs/02_logit_distillation.html"' in table["Chapter"][0]


def test_holm_within_a_block_can_turn_a_claim_that_holds_into_inconclusive(tmp_path):
    ch = "02_logit_distillation"
    write(
        tmp_path / ch,
        [
            claim_row(ch, "strong", "holds", p_value=0.001),
            claim_row(ch, "weak", "holds", p_value=0.03),  # holds alone, not after Holm (x2)
            claim_row(ch, "nothing", "inconclusive", p_value=0.5),
        ],
    )
    ch = "09_open_questions"  # another block: its own family, so it does not weaken the paper's
    write(tmp_path / ch, [claim_row(ch, "q", "holds", beyond=True, p_value=0.03)])
    blocks = mb.claim_blocks(load_claims(tmp_path))
    paper = blocks["workshop"].set_index("claim")
    assert paper["p_adjusted"].round(4).to_dict() == {"strong": 0.003, "weak": 0.06, "nothing": 0.5}
    assert paper["verdict_adjusted"].to_dict() == {"strong": "holds", "weak": "inconclusive", "nothing": "inconclusive"}
    assert blocks["beyond"].loc[0, "verdict_adjusted"] == "holds"  # alone in its family
    text = mb.headline(load_claims(tmp_path))
    assert text.startswith(
        "**1 of 3 claims of the paper hold in this build**, 2 inconclusive, 0 do not hold, "
        "after Holm's adjustment within the block at the family level 0.05 (before it: 2 hold)"
    )
    table = mt.report_table(blocks["workshop"])
    assert table.loc[1, "Verdict"] == "inconclusive (before adjustment: holds)" and table.loc[1, "p (Holm)"] == "0.060"


def test_a_claim_that_tests_an_effect_again_is_shown_but_not_counted(tmp_path):
    ch = "02_logit_distillation"
    write(
        tmp_path / ch,
        [
            claim_row(ch, "logits_beat_chance", "holds", p_value=0.004),
            claim_row(
                ch, "logits_beat_trivial", "holds", p_value=0.001, supports="02_logit_distillation:logits_beat_chance"
            ),
        ],
    )
    block = mb.claim_blocks(load_claims(tmp_path))["workshop"].set_index("claim")
    assert block["counted"].to_dict() == {"logits_beat_chance": True, "logits_beat_trivial": False}
    assert block.loc["logits_beat_chance", "p_adjusted"] == pytest.approx(0.004)  # a family of one, not two
    assert math.isnan(block.loc["logits_beat_trivial", "p_adjusted"])
    text = mb.headline(load_claims(tmp_path))
    assert text.startswith("**1 of 1 claims of the paper hold") and "1 more shown but not counted" in text
    table = mt.report_table(mb.claim_blocks(load_claims(tmp_path))["workshop"])
    assert "not counted: tests the effect of 02_logit_distillation:logits_beat_chance again" in table.loc[1, "Verdict"]


def test_the_published_version_is_a_block_of_its_own_from_the_toc_or_the_meta(tmp_path, monkeypatch):
    book = tmp_path / "book"
    (book / "results").mkdir(parents=True)
    (book / "_config.yml").write_text("title: test\n")
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n"
        "  - caption: The paper, figure by figure\n    chapters:\n      - file: nbs/02_x\n"
        "  - caption: The published version\n    chapters:\n      - file: nbs/11_linear\n"
        "  - caption: Beyond the paper\n    chapters:\n      - file: nbs/09_q\n"
    )
    root = book / "results"
    write(root / "02_x", [claim_row("02_x", "a", "holds")])
    write(root / "11_linear", [claim_row("11_linear", "lin", "holds"), claim_row("11_linear", "lin2", "does not hold")])
    write(root / "12_window", [claim_row("12_window", "w", "inconclusive")], meta={"published_version": True})
    write(root / "09_q", [claim_row("09_q", "q", "holds")])
    monkeypatch.chdir(book)
    assert mb.published_version_chapters() == {"11_linear"}
    blocks = mb.claim_blocks(load_claims(root))
    assert sorted(blocks["published"]["claim"]) == ["lin", "lin2", "w"]
    assert blocks["workshop"]["claim"].tolist() == ["a"] and blocks["beyond"]["claim"].tolist() == ["q"]
    paper, stand_in, beyond = mb.split_claims(load_claims(root))
    assert paper["claim"].tolist() == ["a"]
    text = mb.headline(load_claims(root))
    assert "**1 of 1 claims of the paper hold" in text and "**1 of 3 claims of the published version hold" in text


def test_report_table_fills_in_a_bare_old_table():
    old = pd.DataFrame(
        [
            {
                "chapter": "02_x",
                "claim": "a",
                "paper": "P",
                "measured": 0.4321,
                "sem": 0.0123,
                "n": 20,
                "p_value": 3.2e-9,
                "holds": True,
                "detail": "",
            }
        ]
    )
    row = mt.report_table(old).iloc[0]
    assert row["This build"] == "0.432 ± 0.012" and row["n"] == "n = 20" and row["Verdict"] == "holds"
    assert row["p-value"] == "&lt; 1e-6"  # escaped for the HTML table


def test_protocol_table_comes_from_the_chapters_departures(results):
    departures = load_departures(results)
    assert list(departures.columns) == DEPARTURE_COLUMNS and len(departures) == 3
    table = mt.protocol_table(departures)
    assert table["Topic"].tolist() == ["teacher stop", "epochs", "pixel shuffle"]
    assert table["This book"][2] == "one permutation per image" and table["Chapter"][1] == ""
    assert mt.protocol_table(load_departures(results / "nothing")).empty


def test_chapter_summary_and_build_box(results):
    claims = load_claims(results)
    summary = mt.chapter_summary(claims, results, link=False).set_index("Chapter")
    assert summary.loc["02_logit_distillation", "Claims holding"] == "1 of 3 (1 inconclusive)"
    assert summary.loc["02_logit_distillation", "Teacher stop"] == "budget"
    assert summary.loc["05_temperature_lr", "Claims holding"] == "0 of 0"
    assert summary.loc["07_logit_surgery", "Claims holding"] == "no results"  # in the toc, no folder
    box = mt.build_info(results).set_index("Field")["Value"]
    assert box["Git commit"] == "0123456789ab" and box["Tracked files unchanged since that commit"] == "yes"
    assert box["Device name"] == "Test CPU, Other CPU" and box["Profile"] == "smoke"
    assert mt.build_info(results / "nothing")["Value"].eq("–").all()


@pytest.mark.slow
def test_report_notebook_executes_on_partial_and_old_results(results, tmp_path):
    out = tmp_path / "report.ipynb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "book" / "report.ipynb"),
            str(out),
            "-p",
            "results_root",
            str(results),
            "-k",
            "python3",
            "--execution-timeout",
            "120",
        ],
        check=True,
        cwd=ROOT / "book",
        timeout=300,
        capture_output=True,
    )
    nb = json.loads(out.read_text())
    text = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert "3 of 6 claims of the paper hold in this build" in text
    for css in (
        "memkd-claims",
        "memkd-stand-in",
        "memkd-new-results",
        "memkd-protocol",
        "memkd-chapters",
        "memkd-build",
    ):
        assert css in text, css
    assert '"output_type": "error"' not in text and '"name": "stderr"' not in text


@pytest.mark.slow
def test_report_notebook_executes_without_any_results(tmp_path):
    out = tmp_path / "report.ipynb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "book" / "report.ipynb"),
            str(out),
            "-p",
            "results_root",
            str(tmp_path / "nothing"),
            "-k",
            "python3",
            "--execution-timeout",
            "120",
        ],
        check=True,
        cwd=ROOT / "book",
        timeout=300,
        capture_output=True,
    )
    text = json.dumps([c.get("outputs", []) for c in json.loads(out.read_text())["cells"]])
    assert "No chapter has written a claim of the paper yet" in text
    assert '"output_type": "error"' not in text and '"name": "stderr"' not in text


def test_plan_table_shows_every_margin_reason_and_labels_the_underpowered(tmp_path):
    ch = "07_logit_surgery"
    write(
        tmp_path / ch,
        [
            claim_row(
                ch,
                "kept",
                "inconclusive",
                expect="equivalent",
                margin=0.005,
                level=0.05,
                margin_reason="a quarter of 1/C",
                assumed_effect=0.0,
                effect_reason="none",
                planned_n=30,
                sd_source="this build's",
            ),
            claim_row(ch, "bare", "holds", expect="equivalent", margin=0.02),
            claim_row(
                ch,
                "count",
                "inconclusive",
                test="exact binomial",
                n=120,
                students=12,
                planned_n=228,
                assumed_effect=0.02,
            ),
        ],
    )
    table = mt.plan_table(load_claims(tmp_path))
    assert table["Why this margin"].tolist()[:2] == ["a quarter of 1/C", "no reason recorded"]
    assert table["Power"].tolist() == ["underpowered", "not planned", "underpowered"]
    assert table.loc[2, "Planned n"] == "228 outcomes" and table.loc[0, "Planned n"] == "30 teachers"
    claims = mt.report_table(load_claims(tmp_path))
    assert claims.loc[0, "n"].startswith("5 teachers × 4 students (planned: 30; underpowered) (after Holm: needs ")
    assert claims.loc[2, "n"].startswith("120 outcomes of 12 teachers (planned: 228; underpowered) (after Holm: needs ")


def test_claims_figure_draws_one_row_per_claim(results):
    import matplotlib

    matplotlib.use("Agg")
    paper, _, _ = mb.split_claims(load_claims(results))
    fig = mt.claims_figure(paper)
    assert len(fig.axes[0].get_yticklabels()) == len(paper)
    assert mt.claims_figure(paper.iloc[:0]) is None


def test_the_teacher_clock_reaches_meta_and_the_chapter_summary(tmp_path):
    from memkd.book.chapter import Chapter
    from memkd.book.grid_analysis import teacher_clock

    table = pd.DataFrame(
        {"dataset": [0, 0, 1, 2], "teacher_first_perfect": [50, 50, 100, 80], "test_acc": 0.1, "teacher_stop": "budget"}
    )
    table.attrs["config"] = {"teacher_epochs": 200, "teacher_stop": "budget"}
    assert teacher_clock(table) == {"teachers": 3, "min": 2.0, "median": 2.5, "max": 4.0}
    early = table.copy()
    early.attrs["config"] = {"teacher_epochs": 200, "teacher_stop": "first_perfect"}
    assert teacher_clock(early)["max"] == 1.0
    assert teacher_clock(table.drop(columns="teacher_first_perfect")) is None
    ch = Chapter(
        "02_logit_distillation", profile="smoke", results_dir=str(tmp_path / "02_logit_distillation"), device="cpu"
    )
    ch.save_table(table)
    ch.finish()
    summary = mt.chapter_summary(load_claims(tmp_path), tmp_path, link=False).set_index("Chapter")
    assert summary.loc["02_logit_distillation", "Teachers train (× first 100%)"] == "2.5× (2-4, 3 teachers)"
    assert summary.loc["02_logit_distillation", "Teacher rule"] == "whole budget: 200 epochs"  # the chapter's one rule


def test_the_teacher_rule_follows_the_declared_protocol():
    from memkd.book.grid_analysis import teacher_rule

    config = {"teacher_stop": "budget", "teacher_epochs": 2000.0, "teacher_lr": 3e-2}
    assert teacher_rule(config) == "whole budget: 2,000 epochs at lr 0.03"
    assert teacher_rule(config, stop="first_perfect") == "first 100% (at most 2,000 epochs at lr 0.03)"
    assert teacher_rule({"teacher_steps": 10_000}) == "whole budget: 10,000 steps"
    assert teacher_rule({"epochs": 5}) is None and teacher_rule(None) is None


def test_a_claim_whose_verdict_moves_with_the_clock_says_so_in_its_sentence(tmp_path):
    from memkd.book.chapters import ch05_temperature_lr
    from memkd.book.chapter import Chapter

    ch = Chapter("05_temperature_lr", profile="smoke", results_dir=str(tmp_path / "05"), device="cpu")
    base = {"chapter": "05_temperature_lr", "measured": 0.3, "sem": 0.01, "n": 8, "p_value": 0.01}
    ch.claims.append(
        Claim(claim="high_temperature_helps", paper="High T helps.", verdict="holds", difference=0.16, **base)
    )
    ch.claims.append(
        Claim(claim="high_temperature_helps_second_clock", paper="Again.", verdict="holds", difference=0.05, **base)
    )
    assert ch05_temperature_lr.clock_note(ch) == ""  # the same verdict at both clocks: nothing to add
    ch.claims[1].verdict = "inconclusive"
    note = ch05_temperature_lr.clock_note(ch)
    assert "holds here, inconclusive with the teachers on the second clock, +0.050" in note
    ch.qualify("high_temperature_helps", note)
    ch.qualify("high_temperature_helps", note)  # once only
    assert ch.claims[0].paper == f"High T helps. {note}"
    assert ch05_temperature_lr.qualify_by_clock(ch) == note and ch.claims[0].paper == f"High T helps. {note}"
    with pytest.raises(
        ValueError, match="The 'claim' parameter of Chapter.qualify must name a claim this chapter recorded"
    ):
        ch.qualify("no_such_claim", note)


def test_checks_are_shown_apart_and_never_counted(tmp_path):
    ch = "11_linear_recovery"
    write(
        tmp_path / ch,
        [
            claim_row(ch, "real", "holds", p_value=0.01),
            claim_row(ch, "cannot_fail", "holds", p_value=1e-9, kind="check"),
        ],
    )
    claims = load_claims(tmp_path)
    adjusted = mb.adjust_claims(claims).set_index("claim")
    assert not adjusted.loc["cannot_fail", "counted"] and adjusted.loc["real", "counted"]
    assert adjusted.loc["real", "p_adjusted"] == pytest.approx(0.01)  # a family of one: the check is not in it
    assert "cannot_fail" not in set(mb.claim_blocks(claims)["workshop"].claim)
    assert mb.check_claims(claims).claim.tolist() == ["cannot_fail"]
    assert mt.check_table(claims)["Verdict"].tolist() == ["holds"]
    assert "**1 of 1 claims of the published version hold in this build**" in mb.headline(claims)
    assert mb.adjust_claims(claims).kind.tolist() == ["claim", "check"]  # an empty kind reads "claim"


def test_disagreements_list_contradictions_and_estimates_on_the_wrong_side(tmp_path):
    ch = "07_logit_surgery"
    write(
        tmp_path / ch,
        [
            claim_row(ch, "agrees", "holds", p_value=1e-4),
            claim_row(ch, "contradicted", "does not hold", p_value=0.9, difference=-0.05),
            claim_row(ch, "leaning", "inconclusive", p_value=0.6, difference=-0.01),
            claim_row(ch, "open", "inconclusive", p_value=0.2, difference=0.02),
            claim_row(ch, "eq_out", "inconclusive", expect="equivalent", margin=0.02, difference=0.03, p_value=0.4),
            claim_row(ch, "check_no", "does not hold", kind="check", p_value=0.9),
        ],
    )
    write(tmp_path / "09_open_questions", [claim_row("09_open_questions", "mine", "does not hold", beyond=True)])
    found = mb.disagreements(load_claims(tmp_path))
    assert found.claim.tolist() == ["contradicted", "leaning", "eq_out"]
    assert found.disagreement.tolist() == ["contradicts", "leans against", "leans against"]
    table = mt.disagreement_table(load_claims(tmp_path))
    assert table["Disagreement"].tolist()[0] == "contradicts (does not hold)"
    assert "&lt;of the paper&gt;" in table["The paper says"].iloc[0]


def test_holm_plan_asks_for_the_n_of_holms_strictest_step():
    from types import SimpleNamespace

    from memkd.metrics import sign_test_teachers
    from memkd.power import planned_teachers

    row = dict(assumed_effect=0.05, test="t interval", sem=0.01, n=9, expect="above", margin=0.0, baseline=0.1)
    assert mb.holm_plan(SimpleNamespace(**row), 0.05 / 10) == planned_teachers(0.05, 0.03, 0.005)
    assert mb.holm_plan(SimpleNamespace(**{**row, "test": "exact sign test"}), 0.005) == sign_test_teachers(0.005) == 8
    assert math.isnan(mb.holm_plan(SimpleNamespace(**{**row, "assumed_effect": NAN}), 0.005))


def test_the_not_reproduced_table_lists_each_absent_figure_with_its_estimates():
    table = mt.not_reproduced_table()
    assert list(table.columns) == mt.NOT_REPRODUCED_COLUMNS and len(table) >= 5
    assert {"Fig 4b", "App. Fig 7", "App. Fig 9", "App. Fig 11"} <= set(table["Figure"])
    assert (table["How estimated"].str.len() > 20).all() and (table["Estimated time at quick"] != "").all()


def test_a_claim_short_of_teachers_names_the_profile_that_has_enough(tmp_path):
    from memkd.experiments.toy import ToyConfig

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    notebook = {
        "cells": [],
        "metadata": {"memkd": {"experiments": {"toy_2d": "memkd.experiments.toy:ToyConfig"}}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (nbs / "01_toy_2d.ipynb").write_text(json.dumps(notebook))
    from memkd.config import make_config

    paper = make_config(ToyConfig, "toy_2d", "paper", {}).teachers
    counts = mb.teachers_by_profile("01_toy_2d", nbs)
    assert counts["paper"] == paper and mb.TEACHER_KNOB == "teachers" and counts["smoke"] < counts["quick"]
    assert mb.teachers_by_profile("01_toy_2d", nbs, experiment="toy_2d") == counts
    assert mb.profile_reaching("01_toy_2d", counts["quick"] + 1, nbs) == (
        f"the paper profile trains {paper}"
        if paper > counts["quick"]
        else f"no profile trains as many (paper: {paper}): run with teachers={counts['quick'] + 1}"
    )
    assert (
        mb.profile_reaching("01_toy_2d", 1000, nbs)
        == f"no profile trains as many (paper: {paper}): run with teachers=1000"
    )
    assert mb.profile_reaching("01_toy_2d", 2, nbs).startswith("the smoke profile trains")
    assert mb.teachers_by_profile("99_nowhere", nbs) == {} and mb.profile_reaching("99_nowhere", 5, nbs) == ""
    assert mb.profile_reaching("01_toy_2d", math.nan, nbs) == ""


def test_the_knob_a_claim_needs_scales_its_n_by_the_run_rate():
    """A claim on the teachers in one state (4 of a run's 10) that needs 11 needs teachers=28, not 11."""
    claim = SimpleNamespace(n=4, teachers_run=10.0)
    assert mb.teachers_needed(claim, 11) == 28
    assert mb.teachers_needed(SimpleNamespace(n=23, teachers_run=7.0), 53) == 17  # eligible teachers over sizes
    assert mb.teachers_needed(SimpleNamespace(n=10, teachers_run=10.0), 19) == 19  # n is the knob
    assert mb.teachers_needed(SimpleNamespace(n=5, teachers_run=5.0), math.inf) == math.inf
    assert math.isnan(mb.teachers_needed(SimpleNamespace(n=5, teachers_run=math.nan), 9))
    assert math.isnan(mb.teachers_needed(SimpleNamespace(n=5), 9))  # a claim recorded before the knob was kept


def test_a_claim_records_the_experiment_and_teachers_of_its_table(tmp_path):
    from memkd.book.chapter import Chapter

    ch = Chapter("00_example", profile="smoke", results_dir=str(tmp_path), device="cpu")
    table = pd.DataFrame({"dataset": [0, 1, 2, 3], "test_acc": [0.3, 0.4, 0.35, 0.45], "kind": ["soft"] * 4})
    table.attrs["config"] = {"experiment": "toy_2d", "teachers": 4}
    ch.claim("beats", "It beats 0.2.", table[table["kind"] == "soft"], baseline=0.2)  # a row selection keeps attrs
    ch.claim_count("counted", "Most are right.", 9, 10, 0.5, teachers=4, source=table)
    ch.claim("unknown", "It beats 0.2.", pd.DataFrame({"dataset": [0, 1], "test_acc": [0.3, 0.4]}), baseline=0.2)
    merged = pd.concat([table, table], ignore_index=True)  # two runs of one experiment: a dict of configs
    merged.attrs["config"] = {
        "relu": {"experiment": "probe", "teachers": 3},
        "tanh": {"experiment": "probe", "teachers": 3},
    }
    ch.claim("merged", "It beats 0.2.", merged, baseline=0.2)
    ch.rest_on(table)  # a summary without attrs rests on the table it came from
    ch.claim("summary", "It beats 0.2.", pd.DataFrame({"dataset": [0, 1], "test_acc": [0.3, 0.4]}), baseline=0.2)
    got = [(c.experiment, c.teachers_run) for c in ch.claims]
    assert got[:2] == [("toy_2d", 4.0), ("toy_2d", 4.0)]
    assert got[2][0] == "" and math.isnan(got[2][1])
    assert got[3:] == [("probe", 3.0), ("toy_2d", 4.0)]
