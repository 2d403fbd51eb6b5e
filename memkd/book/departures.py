"""The chapters' departures from the paper's text or the authors' released code: the shared helpers
and the registry.

A departure is a dict(topic, paper, book, reason): one row of a chapter's departures.csv and of the
report's protocol table (`memkd.book.report_tables.protocol_table`). A chapter records all of its own with
one call, `Chapter.record_departures(table, **context)`, which records `for_chapter(ch.name, table,
**context)`; `CHAPTER_DEPARTURES` maps each chapter to the function that builds its list from the
chapter's table (its `attrs["config"]` and columns) and the few values the chapter passes. Every chapter
with departures of its own keeps that function in its module of `memkd.book.chapters`, as
`departures`, beside its claims and outcome sentences; here stay the helpers they share and the registry.

    02_logit_distillation (optional), 05_temperature_lr, 06_dataset_composition, 07_logit_surgery
                                                                  grid_keys (the grid the chapter shows)
    08_transformer                                                clock (the teacher-clock table), once run
    16_class_scaling                                              fig13 (the App. Fig 13 table), once run

The rows' prose lives in `memkd/book/departures.yml` (group: a chapter or "shared", then topic, then
paper / book / reason, with str.format placeholders for what depends on the run); `departure_row`
fills one row, and `wording` one of a row's alternative phrases (`config_of`, `config_values` and
`pairs` give the values the rows print). The functions decide which rows apply and compute the values;
they hold no prose.

The paper's reference values stay beside their experiments (`memkd.experiments.random_data.PAPER_SIZES`,
`memkd.experiments.cifar.PAPER_FIG4`, `modular_addition.PAPER_FIG8`, `teacher_clock.PAPER_CLOCK`,
`one_hidden_layer.RELEASED`, the configs' paper profiles); the released linear protocol of chapter 11 is
`memkd.book.chapters.ch11_linear_recovery.LINEAR_RELEASED`. The teacher protocol's departure ("teacher
stop") is recorded by `Chapter.protocol` (`teacher_stop_departure`).
"""

from __future__ import annotations

import functools
import importlib
import math
from importlib import resources
from typing import Any, Callable, Sequence

import pandas as pd
import yaml

from memkd.book.grid_analysis import knobs_text
from memkd.config import invalid
from memkd.experiments.random_data import PAPER_SIZES

Departure = dict[str, str]
FIELDS = ("paper", "book", "reason")  # a row's text in departures.yml, after its topic


# ---------------------------------------------------------------------------- the rows' prose (departures.yml)


@functools.lru_cache(maxsize=1)
def _texts() -> dict[str, dict[str, dict[str, Any]]]:
    """departures.yml as read (once): group -> topic -> {paper, book, reason[, wordings]}."""
    return yaml.safe_load(resources.files("memkd.book").joinpath("departures.yml").read_text(encoding="utf-8"))


def _entry(group: str, topic: str, owner: str) -> dict[str, Any]:
    """The YAML entry of `topic` in `group`; ValueError (memkd's one format) when either is unknown."""
    texts = _texts()
    if group not in texts:
        raise invalid("group", owner, f"a group of departures.yml, one of {sorted(texts)}", group)
    if topic not in texts[group]:
        raise invalid(
            "topic", owner, f"a topic of the group {group!r} in departures.yml, one of {sorted(texts[group])}", topic
        )
    return texts[group][topic]


def _fill(text: str, where: str, owner: str, values: dict[str, Any]) -> str:
    """`text.format(**values)`; a placeholder without a value raises ValueError naming it."""
    try:
        return text.format(**values)
    except KeyError as missing:
        raise invalid(
            str(missing.args[0]),
            owner,
            f"among the keyword values, as {where} in departures.yml uses {{{missing.args[0]}}}",
            sorted(values),
        ) from None


def departure_row(group: str, topic: str, **values: Any) -> Departure:
    """The departure `topic` of `group` in departures.yml, its placeholders filled from `values`."""
    entry = _entry(group, topic, "departure_row")
    return {
        "topic": topic,
        **{f: _fill(entry[f], f"the {f} of {group}/{topic}", "departure_row", values) for f in FIELDS},
    }


def wording(group: str, topic: str, name: str, **values: Any) -> str:
    """The alternative phrase `name` of a row's `wordings` in departures.yml (a value for one of its
    placeholders), filled from `values`."""
    wordings = _entry(group, topic, "wording").get("wordings", {})
    if name not in wordings:
        raise invalid("name", "wording", f"a wording of {group}/{topic}, one of {sorted(wordings)}", name)
    return _fill(wordings[name], f"the wording {name!r} of {group}/{topic}", "wording", values)


def config_values(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    """`config.get(k)` for each key (None where it is missing), as placeholder values."""
    return {k: config.get(k) for k in keys}


def pairs(values: dict[str, Any], spec: str = "") -> str:
    """ "k=v, k=v" (each value formatted with `spec`), as the sizes and optimizer rows print them."""
    return ", ".join(f"{k}={v:{spec}}" for k, v in values.items())


RELEASED_TEACHER_EPOCHS = 2000  # the released code's teacher budget (random data, Figs 2-7)

TEMPERATURE_PAPER = _texts()["shared"]["temperature convention"]["paper"]
TEMPERATURE_REASON = _texts()["shared"]["temperature convention"]["reason"]


def config_of(table: pd.DataFrame | dict[str, Any]) -> dict[str, Any]:
    """A table's `attrs["config"]` ({} without one), or the config dict itself."""
    return table if isinstance(table, dict) else table.attrs.get("config", {})


# ---------------------------------------------------------------------------- shared by several chapters


def teacher_stop_departure(reason: str = "") -> Departure:
    """The departure of the early teacher stop (teacher_stop="first_perfect"), for `Chapter.protocol`;
    `reason` replaces the row's own (the chapter's `teacher_stop` parameter) when given."""
    row = departure_row("shared", "teacher stop")
    return {**row, "reason": reason or row["reason"]}


def standard_departures(
    table: pd.DataFrame | dict[str, Any], paper_sizes: dict[str, Any] | None = None
) -> list[Departure]:
    """The departures from the paper that a random-data table implies (its `attrs["config"]` and
    its `teacher_first_perfect` column): the temperature convention, the teacher's budget, and the
    sizes of D and of the teacher when they are not the paper's (`paper_sizes`, default the main
    setting of Fig 2, `memkd.experiments.random_data.PAPER_SIZES`). A config dict works too.
    """
    if isinstance(table, dict):
        table = pd.DataFrame().pipe(lambda t: (t.attrs.update(config=table), t)[1])
    config = table.attrs.get("config", {})
    out: list[Departure] = []
    if "soften_student" in config:
        out += temperature_departure(config, name_the_knob=True)
    budget = config.get("teacher_epochs")
    if budget not in (None, RELEASED_TEACHER_EPOCHS) and config.get("teacher_stop") == "budget":
        needed = table["teacher_first_perfect"].max() if "teacher_first_perfect" in table.columns else math.nan
        why = (
            wording("shared", "teacher budget", "measured", needed=int(needed))
            if needed == needed
            else wording("shared", "teacher budget", "unmeasured")
        )
        out.append(departure_row("shared", "teacher budget", released=RELEASED_TEACHER_EPOCHS, budget=budget, why=why))
    sizes = paper_sizes or PAPER_SIZES
    if any(k in config and config[k] != v for k, v in sizes.items()):
        out.append(
            departure_row(
                "shared", "sizes", paper_sizes=pairs(sizes), sizes=pairs({k: config[k] for k in sizes if k in config})
            )
        )
    return out


def sizes_departure(config: dict, paper: dict) -> Departure | None:
    """The "profile sizes" departure when `config` differs from the paper's sizes `paper`, else None."""
    differ = [k for k, v in paper.items() if k in config and config[k] != v]
    if not differ:
        return None
    return departure_row(
        "shared",
        "profile sizes",
        paper_sizes=pairs({k: paper[k] for k in differ}),
        sizes=pairs({k: config[k] for k in differ}),
        profile=config.get("profile", "chosen"),
    )


def temperature_departure(config: dict, name_the_knob: bool = False) -> list[Departure]:
    """The temperature convention's departure, as a list: empty when the config softens the student's
    logits too (a config without `soften_student` softens only the teacher's, the default).
    name_the_knob: end the book's side with "(soften_student=False)"."""
    if config.get("soften_student", False):
        return []
    knob = wording("shared", "temperature convention", "knob") if name_the_knob else ""
    return [departure_row("shared", "temperature convention", knob=knob)]


def grid_departure(
    config: dict, paper: dict, keys: Sequence[str], topic: str = "grid", reason: str = ""
) -> Departure | None:
    """The departure of a run's grid from the paper profile's, or None when every knob in `keys`
    has the paper profile's value (compared as the chapters print them, `knobs_text`).

    config : the run's validated configuration (`table.attrs["config"]`)
    paper : the paper profile's values (e.g. `TemperatureLrConfig.PROFILE_VALUES["paper"]`)
    topic, reason : the row's topic and reason, when not the "grid" row's of departures.yml
    """
    differ = [k for k in keys if k in config and k in paper and knobs_text(config, [k]) != knobs_text(paper, [k])]
    if not differ:
        return None
    row = departure_row(
        "shared",
        "grid",
        paper_grid=knobs_text(paper, keys).replace("`", ""),
        grid=knobs_text(config, keys).replace("`", ""),
    )
    return {**row, "topic": topic, "reason": reason or row["reason"]}


def grid_departures(
    table: pd.DataFrame, paper: dict, keys: Sequence[str], paper_sizes: dict[str, Any] | None = None
) -> list[Departure]:
    """`standard_departures` then the grid's departure (chapters 02, 05-07)."""
    grid = grid_departure(config_of(table), paper, keys)
    return standard_departures(table, paper_sizes) + ([grid] if grid is not None else [])


# ---------------------------------------------------------------------------- the entry point


def in_chapter_module(module: str) -> Callable[..., list[Departure]]:
    """The `departures` function of the chapter module `memkd.book.chapters.<module>`, imported when it is
    first called (the chapter modules import this one for its helpers)."""

    def departures(table: pd.DataFrame, **context: Any) -> list[Departure]:
        return importlib.import_module(f"memkd.book.chapters.{module}").departures(table, **context)

    departures.__qualname__ = departures.__name__ = f"{module}.departures"
    return departures


CHAPTER_DEPARTURES: dict[str, Callable[..., list[Departure]]] = {
    "01_toy_2d": in_chapter_module("ch01_toy_2d"),
    "02_logit_distillation": in_chapter_module("ch02_logit_distillation"),
    "03_similarity_scores": in_chapter_module("ch03_similarity_scores"),
    "04_cifar10": in_chapter_module("ch04_cifar10"),
    "05_temperature_lr": in_chapter_module("ch05_temperature_lr"),
    "06_dataset_composition": in_chapter_module("ch06_dataset_composition"),
    "07_logit_surgery": in_chapter_module("ch07_logit_surgery"),
    "08_transformer": in_chapter_module("ch08_transformer"),
    "09_open_questions": in_chapter_module("ch09_open_questions"),
    "10_convolutions": in_chapter_module("ch10_convolutions"),
    "11_linear_recovery": in_chapter_module("ch11_linear_recovery"),
    "12_temperature_window": in_chapter_module("ch12_temperature_window"),
    "13_one_hidden_layer": in_chapter_module("ch13_one_hidden_layer"),
    "16_class_scaling": in_chapter_module("ch16_class_scaling"),
    "14_defences": in_chapter_module("ch14_defences"),
    "15_language_model": in_chapter_module("ch15_language_model"),
}


def for_chapter(name: str, table: pd.DataFrame, **context: Any) -> list[Departure]:
    """The departures of chapter `name` (a key of `CHAPTER_DEPARTURES`, e.g. "05_temperature_lr"), built
    from its table and the `context` values that chapter's function takes (see the module's docstring)."""
    if name not in CHAPTER_DEPARTURES:
        raise invalid("name", "for_chapter", f"a chapter with departures, one of {sorted(CHAPTER_DEPARTURES)}", name)
    return CHAPTER_DEPARTURES[name](table, **context)


__all__ = [
    "CHAPTER_DEPARTURES",
    "RELEASED_TEACHER_EPOCHS",
    "TEMPERATURE_PAPER",
    "TEMPERATURE_REASON",
    "config_of",
    "config_values",
    "departure_row",
    "for_chapter",
    "grid_departure",
    "grid_departures",
    "in_chapter_module",
    "pairs",
    "sizes_departure",
    "standard_departures",
    "teacher_stop_departure",
    "temperature_departure",
    "wording",
]
