"""One module per chapter owns its claims: no notebook in nbs/ calls a chapter's claim methods itself
(`ch.claim`, `ch.claim_difference`, `ch.claim_count`); each calls a function of
`memkd.book.chapters.chNN_*` and displays the sentences it returns. The functions that took the notebooks'
claims over are fed small tables here: the ids, rows and margins they record."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memkd.book.chapter import Chapter
from memkd.book.claim_tests import ClaimTests

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "nbs").glob("*.ipynb"))
# The methods that record a claim on a chapter: claim, claim_count, claim_difference (and any added later)
CLAIM_METHODS = frozenset(
    name for name in dir(ClaimTests) if name.startswith("claim") and callable(getattr(ClaimTests, name))
)
MAGIC = re.compile(r"^(\s*)(%%?\w+)(\s+(.*))?$")  # an IPython line magic: `%time table = ...`, `%pip install ...`


def python_of(cell_source: str) -> str:
    """A code cell's source as plain Python: `%time <statement>` keeps its statement, any other magic
    (or shell escape) becomes `pass` at its indentation."""
    lines = []
    for line in cell_source.splitlines():
        magic = MAGIC.match(line)
        if magic and magic.group(2) in ("%time", "%timeit") and magic.group(4):
            lines.append(magic.group(1) + magic.group(4))
        elif magic or line.lstrip().startswith("!"):
            lines.append(magic.group(1) + "pass" if magic else line[: len(line) - len(line.lstrip())] + "pass")
        else:
            lines.append(line)
    return "\n".join(lines)


def notebook_claim_calls(path: Path) -> list[str]:
    """Every call of a chapter's claim methods (`CLAIM_METHODS`, on any object: `ch.claim(...)`,
    `chapter.claim_count(...)`) in the code cells of the notebook at `path`, as
    "<notebook>, cell <i>, line <l>: .<method>". A chapter module's function (`ch10.claim_settings`) is no
    claim method."""
    found = []
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "code":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for node in ast.walk(ast.parse(python_of(text), filename=f"{path.name}, cell {i}")):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLAIM_METHODS:
                found.append(f"{path.name}, cell {i}, line {node.lineno}: .{node.func.attr}")
    return found


def test_no_notebook_calls_a_claim_method():
    """What a chapter claims is read in its module (memkd/book/chapters/chNN_*.py), never in the notebook."""
    assert CHAPTERS, "no notebook found in nbs/"
    found = [hit for path in CHAPTERS for hit in notebook_claim_calls(path)]
    assert found == [], "notebooks that record claims themselves (move them to their chapter module):\n" + "\n".join(
        found
    )


def test_the_notebook_check_sees_a_planted_claim_call(tmp_path):
    planted = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["ch.claim('in prose', 'is no call')"]},
            {
                "cell_type": "code",
                "metadata": {},
                "outputs": [],
                "source": [
                    "%time table = ex.toy_2d(ch.profile)\n",
                    "%pip install -q memkd\n",
                    "display(Markdown(ch.claim('toy_hard_at_chance', 'At chance.', table, baseline=0.3)))\n",
                ],
            },
            {
                "cell_type": "code",
                "metadata": {},
                "outputs": [],
                "source": [
                    "for s in ch01.toy_claims(ch, table):  # a chapter module's function: fine\n",
                    "    display(Markdown(s))\n",
                    "settings = ch10.claim_settings(table)  # fine too: no claim method\n",
                    "claims = ch.claims  # the recorded list: fine\n",
                    "%time verdict = chapter.claim_count('id', 'text', 3, 4, 0.5)\n",
                ],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "99_planted.ipynb"
    path.write_text(json.dumps(planted))
    assert notebook_claim_calls(path) == [
        "99_planted.ipynb, cell 1, line 3: .claim",
        "99_planted.ipynb, cell 2, line 5: .claim_count",
    ]
    assert CLAIM_METHODS >= {"claim", "claim_count", "claim_difference"}


# --- the moved claims, fed small tables -------------------------------------------------------------------------


@pytest.fixture
def chapter(tmp_path):
    def make(name: str, **flags) -> Chapter:
        return Chapter(name, profile="smoke", results_dir=str(tmp_path / name), device="cpu", **flags)

    return make


def students(groups: dict[str, dict], teachers: int = 4, per_teacher: int = 2, seed: int = 0) -> pd.DataFrame:
    """One row per student: for each group (its columns in `groups[name]`), `teachers` x `per_teacher` rows
    with `dataset`, `student`, held-out accuracy `test_acc` around the group's `acc` and fresh accuracy
    `independent_acc` around 0.1 (and `leak`, their difference)."""
    rng = np.random.default_rng(seed)
    rows = []
    for columns in groups.values():
        acc = columns.pop("acc")
        for teacher in range(teachers):
            for student in range(per_teacher):
                fresh = 0.1 + 0.01 * rng.standard_normal()
                held = acc + 0.01 * rng.standard_normal()
                rows.append(
                    {
                        **columns,
                        "dataset": teacher,
                        "student": student,
                        "test_acc": held,
                        "independent_acc": fresh,
                        "teacher_independent_acc": fresh,
                        "leak": held - fresh,
                    }
                )
    return pd.DataFrame(rows)


def test_chapter_01_claims_hard_at_chance_and_each_soft_setting_above(chapter):
    from memkd.book.chapters.ch01_toy_2d import toy_at_chance, toy_claims

    table = students(
        {
            "hard": {"targets": "hard", "setting": "hard", "acc": 1 / 3},
            "T5": {"targets": "soft", "setting": "soft T=5", "acc": 0.5},
            "T20": {"targets": "soft", "setting": "soft T=20", "acc": 0.55},
        }
    ).assign(chance=1 / 3)
    ch = chapter("01_toy_2d")
    sentences = toy_claims(ch, table)
    assert [c.claim for c in ch.claims] == [
        "toy_hard_at_chance",
        "toy_soft_T20_beats_chance",
        "toy_soft_T5_beats_chance",
    ]
    assert len(sentences) == 3 and all(f"**{c.verdict}**" in s for s, c in zip(sentences, ch.claims))
    assert ch.claims[0].margin == toy_at_chance().value and ch.claims[0].expect == "equivalent"
    assert [c.verdict for c in ch.claims[1:]] == ["holds", "holds"]


def test_chapter_03_tests_similarity_students_at_the_alpha_fixed_in_advance(chapter):
    from memkd.book.chapters.ch03_similarity_scores import similarity_claims

    table = students(
        {
            f"{kind}{alpha}": {"kind": kind, "alpha": alpha, "acc": acc}
            for kind, base in [("similarity", 0.2), ("soft", 0.4)]
            for alpha, acc in [(0.2, base), (0.5, base + 0.05), (0.8, base + 0.1)]
        }
    ).assign(chance=0.1)
    ch = chapter("03_similarity_scores")
    sentences = similarity_claims(ch, table)
    first, second = ch.claims
    assert (first.claim, second.claim) == ("similarity_beats_chance", "logits_beat_similarity")
    assert "at alpha = 0.5**" in sentences[0] and first.measured == pytest.approx(
        table[(table.kind == "similarity") & (table.alpha == 0.5)].groupby("dataset").test_acc.mean().mean()
    )
    assert second.verdict == "holds"


def test_chapter_04_claims_per_setting_and_saves_the_fixed_permutation_check(chapter):
    from memkd.book.chapters.ch04_cifar10 import (
        FIXED_CHECK_MARGIN,
        fixed_permutation_check,
        setting_claims,
        shuffle_claims,
    )

    table = students(
        {
            f"{s}{a}": {"setting": s, "alpha": a, "acc": acc}
            for s, acc in [("clean", 0.5), ("labels", 0.2), ("both", 0.3), ("fixed", 0.5)]
            for a in (0.4, 0.8)
        }
    ).assign(images="digits")
    ch = chapter("04_cifar10")
    sentences = setting_claims(ch, table, "stand-in") + shuffle_claims(ch, table, "stand-in")
    assert [c.claim for c in ch.claims] == [
        "clean_beats_trivial",
        "labels_beats_trivial",
        "both_beats_trivial",
        "both_beats_labels",
    ]  # no pixels setting in this table: no claim
    assert all("(alpha = 0.8)**" in s for s in sentences[:3]) and {c.data for c in ch.claims} == {"stand-in"}
    text = fixed_permutation_check(ch, table)
    assert f"against the margin ±{FIXED_CHECK_MARGIN:g}" in text and len(ch.claims) == 4  # a check, not a claim
    assert pd.read_csv(ch.path / "checks.csv").check.tolist() == ["fixed_permutation_changes_nothing"]
    assert fixed_permutation_check(ch, table[table.setting != "fixed"]) == ""


def test_chapter_15_claims_the_released_leak_and_the_questions_in_their_blocks(chapter):
    from memkd.book.chapters.ch15_language_model import closing_note, leak_claim, question_claims, released_cell

    cells = ["number/1000", "number/100", "digits/1000"]
    groups = {
        f"{cell} {start}": {"cell": cell, "student_start": start, "rho": 0.8, "acc": acc}
        for cell in cells
        for start, acc in [("teacher_start", 0.4), ("independent", 0.3)]
    }
    table = students(groups)
    table.attrs["config"] = {
        "cells": cells,
        "student_starts": ["teacher_start", "independent"],
        "rhos": [0.8],
        "student_start_cells": ["number/100"],
    }
    assert released_cell(table.attrs["config"]) == "number/100"
    ch = chapter("15_language_model", published_version=True)
    sentences = [leak_claim(ch, table)] + question_claims(ch, table)
    assert [c.claim for c in ch.claims] == [
        "leak_beats_fresh",
        "shared_start_leaks_more_number100",
        "digits_leak_more_1000",
        "recurring_numbers_leak_more",
    ]
    assert "(number/100, teacher_start, rho = 0.8)**" in sentences[0] and len(sentences) == 4
    assert [c.beyond_paper for c in ch.claims] == [False, True, True, True] and not ch.beyond_paper
    note = closing_note(ch, table, ch.finish(), seconds=12.3)
    assert note.startswith(f"{len(table)} students of 4 teachers, run time 12 s on cpu.")
    assert "The released notebook's effect is there at this scale" in note  # leak_beats_fresh holds
    assert "- " + ch.claims[0].paper + " **holds** (n = 4 teachers" in note


def test_chapter_02_compares_widths_only_where_the_run_has_two(chapter):
    from memkd.book.chapters.ch02_logit_distillation import capacity_claim, main_alpha, soft_label_claims

    table = students(
        {
            f"{w}{a}": {"width": w, "alpha": a, "acc": 0.05 + w / 1000 + a / 10}
            for w in (16, 64)
            for a in (0.2, 0.5, 0.8)
        }
    ).assign(chance=0.01)
    assert main_alpha(table) == 0.5  # the grid's alpha closest to 0.6
    ch = chapter("02_logit_distillation")
    soft_label_claims(ch, table)
    sentence = capacity_claim(ch, table)
    assert [c.claim for c in ch.claims] == [
        "logits_beat_chance",
        "logits_beat_trivial",
        "little_data_suffices",
        "wider_students_extract_more",
    ]
    assert "**width 64 against width 16**" in sentence and ch.claims[-1].verdict == "holds"
    assert ch.claims[1].supports == "02_logit_distillation:logits_beat_chance"
    one = capacity_claim(ch, table[table.width == 64])
    assert one == "This profile trains one student width (64): no capacity comparison." and len(ch.claims) == 4


def test_chapter_10_verdict_table_names_each_claim_or_not_run():
    from memkd.book.chapters.ch10_convolutions import verdict_table

    claims = pd.DataFrame(
        [
            {
                "claim": "cnn_cnn_clean_no_leak",
                "difference": 0.012,
                "ci_low": -0.01,
                "ci_high": 0.034,
                "n": 3,
                "students": 2,
                "verdict": "inconclusive",
            }
        ]
    )
    text = verdict_table(claims, ["clean"], 0.03, "digits")
    assert "| clean | not run | +0.012 [-0.010, +0.034], 3 × 2: **inconclusive** | not run |" in text
    assert "CNN → CNN no leak (±0.03)" in text and "- probe_fixed_cnn_leaks: not run" in text
    assert text.endswith("Measured on digits, a stand-in for CIFAR-10.")
    assert not verdict_table(claims, ["clean"], 0.03, "cifar10").endswith("CIFAR-10.")
