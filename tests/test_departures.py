"""memkd.book.departures: every chapter's departures from the paper, built in one module and recorded
by the notebooks with one call (`Chapter.record_departures`), never by hand."""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path

import pandas as pd
import pytest
import yaml

from memkd.book import departures as dp
from memkd.book.chapters import (
    ch01_toy_2d,
    ch04_cifar10,
    ch08_transformer,
    ch10_convolutions,
    ch11_linear_recovery,
    ch12_temperature_window,
    ch13_one_hidden_layer,
)
from memkd.book.chapter import Chapter
from memkd.book.claims import DEPARTURE_COLUMNS
from memkd.config import make_config
from memkd import experiments as ex
from memkd.experiments.cifar import ImageShuffleConfig
from memkd.experiments.linear_recovery import RecoveryConfig
from memkd.experiments.modular_addition import TransformerConfig
from memkd.experiments.one_hidden_layer import OneHiddenLayerConfig
from memkd.experiments.teacher_clock import TeacherClockConfig
from memkd.experiments.temperature_window import WindowConfig
from memkd.tables import config_dict

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))


def config(cls, experiment: str, profile: str = "smoke", **overrides) -> dict:
    """An experiment's validated configuration as its table carries it (`table.attrs["config"]`)."""
    return config_dict(make_config(cls, experiment, profile, overrides))


def table_with(cfg: dict, **columns) -> pd.DataFrame:
    table = pd.DataFrame(columns)
    table.attrs["config"] = cfg
    return table


def topics(rows) -> list[str]:
    assert all(
        set(r) == {"topic", "paper", "book", "reason"} and all(isinstance(v, str) and v for v in r.values())
        for r in rows
    ), rows
    return [r["topic"] for r in rows]


# ---------------------------------------------------------------------------- the prose (departures.yml)


TEXTS = yaml.safe_load((ROOT / "memkd" / "book" / "departures.yml").read_text(encoding="utf-8"))


DEPARTURE_CODE = [
    ROOT / "memkd" / "book" / "departures.py",
    *sorted((ROOT / "memkd" / "book" / "chapters").glob("ch*.py")),
]


def constant_calls(name: str) -> set[tuple[str, ...]]:
    """The constant leading arguments of every call of `name` in memkd/book/departures.py and the chapter
    modules (memkd/book/chapters/), which build the rows."""
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in DEPARTURE_CODE]
    return {
        tuple(a.value for a in node.args)
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == name
        and node.args
        and all(isinstance(a, ast.Constant) for a in node.args)
    }


def test_every_yaml_row_has_its_text_and_named_placeholders():
    for group, rows in TEXTS.items():
        for topic, row in rows.items():
            assert set(row) - {"wordings"} == {"paper", "book", "reason"}, (group, topic)
            texts = [row["paper"], row["book"], row["reason"], *row.get("wordings", {}).values()]
            assert all(isinstance(t, str) and t.strip() for t in texts), (group, topic)
            fields = [f for t in texts for _, f, _, _ in string.Formatter().parse(t) if f is not None]
            assert all(re.fullmatch(r"[a-z_]+(\[\w+\])?", f) for f in fields), (group, topic, fields)


def test_every_yaml_row_and_wording_is_used_by_the_code():
    rows = {(group, topic) for group, topics in TEXTS.items() for topic in topics}
    assert constant_calls("departure_row") == rows
    wordings = {
        (g, t, name) for g, topics in TEXTS.items() for t, row in topics.items() for name in row.get("wordings", {})
    }
    assert constant_calls("wording") == wordings


def test_departure_row_fills_placeholders_and_rejects_what_it_cannot_fill():
    row = dp.departure_row("13_one_hidden_layer", "student optimizer budget", lr=0.01, epochs=300)
    assert row == {
        "topic": "student optimizer budget",
        "paper": "Adam lr 1e-4 for 10,000 full-batch epochs",
        "book": "Adam lr 0.01 for 300 epochs",
        "reason": TEXTS["13_one_hidden_layer"]["student optimizer budget"]["reason"],
    }
    with pytest.raises(
        ValueError,
        match=r"^The 'topic' parameter of departure_row must be a topic of the group "
        r"'shared' in departures\.yml, one of \[.*'grid'.*\]\. Got 'nowhere' instead\.$",
    ):
        dp.departure_row("shared", "nowhere")
    with pytest.raises(ValueError, match=r"^The 'group' parameter of departure_row must be a group of departures"):
        dp.departure_row("99_nowhere", "grid")
    with pytest.raises(
        ValueError,
        match=r"^The 'lr' parameter of departure_row must be among the keyword values, "
        r"as the book of 13_one_hidden_layer/student optimizer budget in "
        r"departures\.yml uses \{lr\}\. Got \['epochs'\] instead\.$",
    ):
        dp.departure_row("13_one_hidden_layer", "student optimizer budget", epochs=300)
    with pytest.raises(ValueError, match=r"^The 'name' parameter of wording must be a wording of shared/teacher"):
        dp.wording("shared", "teacher budget", "nowhere")
    assert dp.TEMPERATURE_PAPER == TEXTS["shared"]["temperature convention"]["paper"]
    assert dp.TEMPERATURE_REASON == TEXTS["shared"]["temperature convention"]["reason"]


# ---------------------------------------------------------------------------- the shared departures


def test_standard_departures_on_a_small_config_dict():
    small = {
        "soften_student": False,
        "teacher_epochs": 150,
        "teacher_stop": "budget",
        "input_dim": 100,
        "classes": 10,
        "per_class": 20,
        "teacher_width": 50,
    }
    rows = dp.standard_departures(small)
    assert topics(rows) == ["temperature convention", "teacher budget", "sizes"]
    assert rows[1]["book"] == "a fixed budget of 150 epochs, then 100% required"
    assert rows[1]["reason"].startswith("the teachers reach 100% well within it")  # no teacher_first_perfect column
    assert rows[2]["book"] == "input_dim=100, classes=10, per_class=20, teacher_width=50"
    # the paper's sizes, its convention and the released budget: nothing departs
    paper = {**small, "soften_student": True, "teacher_epochs": dp.RELEASED_TEACHER_EPOCHS, **dp.PAPER_SIZES}
    assert dp.standard_departures(paper) == []
    # an early stop is the protocol's departure, not the budget's
    assert "teacher budget" not in topics(dp.standard_departures({**small, "teacher_stop": "first_perfect"}))
    table = table_with(small, teacher_first_perfect=[30, 46])
    assert "within 46 epochs" in dp.standard_departures(table)[1]["reason"]
    assert topics(dp.standard_departures(small, paper_sizes={"teacher_width": 50})) == [
        "temperature convention",
        "teacher budget",
    ]


def test_sizes_and_temperature_departures():
    assert dp.sizes_departure({"d_model": 128}, {"d_model": 128}) is None
    d = dp.sizes_departure({"d_model": 32, "modulus": 113, "profile": "smoke"}, {"d_model": 128, "modulus": 113})
    assert d["paper"] == "d_model=128" and d["book"] == "d_model=32" and "smoke profile" in d["reason"]
    assert topics(dp.temperature_departure({})) == ["temperature convention"]
    assert dp.temperature_departure({"soften_student": True}) == []


def test_grid_departure():
    cfg = {"temperatures": [1.0, 20.0], "lrs": [0.003, 0.01], "epochs": 100}
    paper = {"temperatures": (1.0, 20.0), "lrs": (0.003, 0.01), "epochs": 100}
    assert dp.grid_departure(cfg, paper, ["temperatures", "lrs", "epochs"]) is None
    d = dp.grid_departure({**cfg, "epochs": 200}, paper, ["temperatures", "epochs"])
    assert d["topic"] == "grid" and "epochs = 200" in d["book"] and "epochs = 100" in d["paper"] and d["reason"]


def test_teacher_stop_departure():
    assert dp.teacher_stop_departure()["reason"] == "chosen by this chapter's `teacher_stop` parameter"
    assert dp.teacher_stop_departure("compared in chapter 09")["reason"] == "compared in chapter 09"


# ---------------------------------------------------------------------------- one function per chapter


def test_every_chapter_has_its_function():
    assert sorted(dp.CHAPTER_DEPARTURES) == [p.stem for p in NOTEBOOKS]
    with pytest.raises(ValueError, match="'name' parameter of for_chapter must be a chapter"):
        dp.for_chapter("99_nowhere", pd.DataFrame())


def test_a_chapter_with_its_own_module_keeps_its_departures_there():
    """Each module of memkd/book/chapters/ (chNN_<name>) has `departures`, and the registry sends chapter NN_<name>
    to it, not to a function of its own."""
    import importlib

    modules = sorted(p.stem for p in (ROOT / "memkd" / "book" / "chapters").glob("ch[0-9][0-9]_*.py"))
    assert modules, "no chapter module found"
    for module in modules:
        chapter = module[2:]
        assert chapter in dp.CHAPTER_DEPARTURES, module
        assert dp.CHAPTER_DEPARTURES[chapter].__name__ == f"{module}.departures"
        assert callable(importlib.import_module(f"memkd.book.chapters.{module}").departures)


def test_toy_departures_use_the_toy_sizes():
    cfg = {"soften_student": False, "teacher_epochs": 3000, "teacher_stop": "budget", **ch01_toy_2d.PAPER_TOY_SIZES}
    assert topics(dp.for_chapter("01_toy_2d", table_with(cfg, teacher_first_perfect=[499]))) == [
        "temperature convention",
        "teacher budget",
    ]


@pytest.mark.parametrize(
    "chapter, cls, experiment, extra",
    [
        ("02_logit_distillation", ex.logit_distillation.config, "logit_distillation", []),
        ("05_temperature_lr", ex.temperature_lr.config, "temperature_lr", ["student epochs"]),
        ("06_dataset_composition", ex.dataset_composition.config, "dataset_composition", []),
        ("07_logit_surgery", ex.logit_surgery.config, "logit_surgery", ["tail cut"]),
    ],
)
def test_grid_chapters(chapter, cls, experiment, extra):
    keys = ["epochs", "students", "teachers"]
    table = table_with(config(cls, experiment), teacher_first_perfect=[46])
    rows = dp.for_chapter(chapter, table, grid_keys=keys)
    assert topics(rows) == ["temperature convention", "teacher budget", "sizes", "grid", *extra]
    paper = table_with(config(cls, experiment, "paper"), teacher_first_perfect=[46])
    assert "grid" not in topics(dp.for_chapter(chapter, paper, grid_keys=keys))
    if chapter == "06_dataset_composition":  # sizes: only the teacher's width, the grid sets the rest
        assert rows[2]["paper"] == "teacher_width=500"


def test_image_departures():
    table = table_with(
        config(ImageShuffleConfig, "cifar_shuffles"),
        images=["digits"],
        n_memorized=[300],
        n_trivial=[70],
        teacher_first_perfect=[57],
    )
    assert topics(dp.for_chapter("04_cifar10", table)) == [
        "pixel shuffle",
        "input data",
        "teachers",
        "epochs and learning rates",
        "profile sizes",
        "temperature convention",
    ]
    assert "input data" not in topics(ch04_cifar10.departures(table.assign(images="cifar10")))


def test_transformer_chapter_records_the_clock_once_it_is_there():
    table = table_with(config(TransformerConfig, "transformer_distillation"))
    clock = table_with(config(TeacherClockConfig, "teacher_clock", epochs=20))
    workshop = [
        "trivial baseline",
        "memorized set",
        "teachers",
        "epochs and learning rates",
        "profile sizes",
        "temperature convention",
    ]
    assert topics(dp.for_chapter("08_transformer", table)) == workshop
    both = topics(dp.for_chapter("08_transformer", table, clock=clock))
    assert both[: len(workshop)] == workshop and both[len(workshop) :] == topics(
        ch08_transformer.clock_departures(clock)
    )


def test_clock_departures_follow_the_config():
    clock = table_with(config(TeacherClockConfig, "teacher_clock", epochs=20))
    assert {
        f"teacher clock: {t}" for t in ("teacher stops", "teachers", "optimizer", "steps", "rho", "profile sizes")
    } <= set(topics(ch08_transformer.clock_departures(clock)))
    paper = table_with(config(TeacherClockConfig, "teacher_clock", "paper"))
    assert topics(ch08_transformer.clock_departures(paper)) == [
        "teacher clock: teacher stops",
        "teacher clock: teachers",
        "teacher clock: student start",
    ]
    shared = table_with(config(TeacherClockConfig, "teacher_clock", "paper", student_start="teacher"))
    row = [r for r in ch08_transformer.clock_departures(shared) if r["topic"] == "teacher clock: student start"][0]
    assert "from its teacher's initial weights" in row["book"] and "seed + 23" in row["paper"]


def test_convolution_departures():
    cfg = {"soften_student": False}
    rows = dp.for_chapter("10_convolutions", table_with(cfg, images=["digits"], n_memorized=[100]))
    assert topics(rows) == [
        "architecture",
        "trivial accuracy",
        "pixel shuffle",
        "temperature convention",
        "profile sizes",
    ]
    assert rows[-1]["book"] == "scikit-learn's 8x8 digits, 100 images in D"
    paper = ch10_convolutions.departures(table_with({"soften_student": True}, images=["cifar10"], n_memorized=[4000]))
    assert topics(paper) == ["architecture", "trivial accuracy", "pixel shuffle"]


def test_linear_recovery_departures():
    rows = dp.for_chapter("11_linear_recovery", table_with(config(RecoveryConfig, "linear_recovery")))
    assert topics(rows) == [
        "teacher budget",
        "soft-label student",
        "profile sizes",
        "shuffle kind",
        "functional recovery",
    ]
    paper = ch11_linear_recovery.departures(table_with(config(RecoveryConfig, "linear_recovery", "paper")))
    assert topics(paper) == ["soft-label student", "shuffle kind", "functional recovery"]


def test_temperature_window_departures():
    cfg = config(WindowConfig, "temperature_window")
    table = table_with(cfg, temperature=[1.0, 30.0, 1.0], dtype=["float64", "bfloat16", "float64"])
    rows = dp.for_chapter("12_temperature_window", table)
    assert topics(rows) == [
        "student budget",
        "teacher budget",
        "profile sizes",
        "temperatures for C = 10",
        "inputs",
        "shuffle kind",
        "precision and solver",
        "bfloat16 training",
        "shuffled control",
    ]
    assert "2 temperatures 1 .. 30" in rows[2]["book"] and "float64, bfloat16" in rows[6]["book"]
    assert "bfloat16 training" not in topics(ch12_temperature_window.departures(table.assign(dtype="float64")))


def test_one_hidden_layer_departures_follow_the_config():
    smoke = config(OneHiddenLayerConfig, "one_hidden_layer")
    found = set(topics(dp.for_chapter("13_one_hidden_layer", table_with(smoke))))
    assert {"profile sizes", "student optimizer budget", "teacher budget", "shuffle control"} <= found
    paper = dict(smoke, lr=1e-4, epochs=10_000, teacher_lr=1e-3, teacher_epochs=2000)
    assert "student optimizer budget" not in set(topics(ch13_one_hidden_layer.departures(paper)))
    assert "teacher budget" not in set(topics(ch13_one_hidden_layer.departures(paper)))
    widths = [r for r in ch13_one_hidden_layer.departures(smoke) if r["topic"] == "width variants"]
    assert len(widths) == 1 and f"width {list(smoke['equal_widths'])}" in widths[0]["book"]
    assert f"on {smoke['variant_teachers']} teachers per size" in widths[0]["book"]
    plain = dict(smoke, variant_widths=[], equal_widths=[])
    assert "width variants" not in set(topics(ch13_one_hidden_layer.departures(plain)))


# ---------------------------------------------------------------------------- the chapters' one call


def test_record_departures_writes_the_chapters_rows_once(tmp_path):
    ch = Chapter("10_convolutions", profile="smoke", results_dir=str(tmp_path), device="cpu")
    table = table_with({"soften_student": False}, images=["digits"], n_memorized=[100])
    assert ch.record_departures(table) is None
    ch.record_departures(table)  # a cell run twice
    ch.finish()
    written = pd.read_csv(tmp_path / "departures.csv")
    assert list(written.columns) == DEPARTURE_COLUMNS and set(written.chapter) == {"10_convolutions"}
    assert written.topic.tolist() == topics(ch10_convolutions.departures(table))


def code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


# a departure recorded or built in a notebook instead of in memkd.book.departures
BY_HAND = {
    "a call of Chapter.departure": re.compile(r"\.departure\s*\("),
    "a departure dict": re.compile(r"\btopic\s*=|[\"']topic[\"']\s*:"),
    "a departures function": re.compile(r"\b(?!record_departures\b)\w*departures?\s*\("),
    "record_departures on another object": re.compile(r"(?<!\bch\.)\brecord_departures\s*\("),
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_record_departures_with_one_call_and_never_by_hand(path):
    cells = code_cells(path)
    found = [
        f"{what}: {line.strip()}"
        for source in cells
        for line in source.splitlines()
        for what, pattern in BY_HAND.items()
        if pattern.search(line)
    ]
    assert found == [], (
        f"{path.name} builds departures by hand (put them in memkd/book/departures.py or the "
        f"chapter's module in memkd/book/chapters/): {found}"
    )
    assert any("ch.record_departures(" in source for source in cells), f"{path.name} records no departures"


def test_the_notebook_check_sees_departures_by_hand():
    lines = [
        'ch.departure("epochs", "none", "300", "converged")',
        "rows = [dict(topic='x', paper='y')]",
        "for row in ex.standard_departures(table):",
        "oc.record_departures(ch, q2)",
    ]
    assert [any(p.search(line) for p in BY_HAND.values()) for line in lines] == [True] * 4
    assert not any(p.search("ch.record_departures(table, grid_keys=grid_keys)") for p in BY_HAND.values())
