"""Every chapter's departures from the paper's text or the authors' released code, in one place.

A departure is a dict(topic, paper, book, reason): one row of a chapter's departures.csv and of the
report's protocol table (`memkd.book.report_tables.protocol_table`). A chapter records all of its own with
one call, `Chapter.record_departures(table, **context)`, which records `for_chapter(ch.name, table,
**context)`; `CHAPTER_DEPARTURES` maps each chapter to the function that builds its list from the
chapter's table (its `attrs["config"]` and columns) and the few values the chapter passes:

    02_logit_distillation (optional), 05_temperature_lr, 06_dataset_composition, 07_logit_surgery
                                                                  grid_keys (the grid the chapter shows)
    08_transformer                                                clock (the teacher-clock table), once run
    16_class_scaling                                              fig13 (the App. Fig 13 table), once run

The rows' prose lives in `memkd/book/departures.yml` (group: a chapter or "shared", then topic, then
paper / book / reason, with str.format placeholders for what depends on the run); `departure_row`
fills one row, and `wording` one of a row's alternative phrases. The functions here decide which rows
apply and compute the values; they hold no prose.

The paper's reference values stay beside their experiments (`memkd.pipeline.PAPER_SIZES`,
`memkd.experiments.cifar.PAPER_FIG4`, `modular_addition.PAPER_FIG8`, `teacher_clock.PAPER_CLOCK`,
`one_hidden_layer.RELEASED`, the configs' paper profiles). The teacher protocol's departure ("teacher
stop") is recorded by `Chapter.protocol` (`teacher_stop_departure`).
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any, Callable, Sequence

import pandas as pd
import yaml

from memkd.book.grid_analysis import knobs_text
from memkd.config import invalid
from memkd import experiments as ex
from memkd.experiments.cifar import PAPER_FIG4
from memkd.experiments.modular_addition import PAPER_FIG8
from memkd.experiments.one_hidden_layer import RELEASED
from memkd.experiments.teacher_clock import PAPER_CLOCK
from memkd.pipeline import PAPER_SIZES

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
        raise invalid("topic", owner, f"a topic of the group {group!r} in departures.yml, one of "
                      f"{sorted(texts[group])}", topic)
    return texts[group][topic]


def _fill(text: str, where: str, owner: str, values: dict[str, Any]) -> str:
    """`text.format(**values)`; a placeholder without a value raises ValueError naming it."""
    try:
        return text.format(**values)
    except KeyError as missing:
        raise invalid(str(missing.args[0]), owner, f"among the keyword values, as {where} in departures.yml "
                      f"uses {{{missing.args[0]}}}", sorted(values)) from None


def departure_row(group: str, topic: str, **values: Any) -> Departure:
    """The departure `topic` of `group` in departures.yml, its placeholders filled from `values`."""
    entry = _entry(group, topic, "departure_row")
    return {"topic": topic, **{f: _fill(entry[f], f"the {f} of {group}/{topic}", "departure_row", values)
                               for f in FIELDS}}


def wording(group: str, topic: str, name: str, **values: Any) -> str:
    """The alternative phrase `name` of a row's `wordings` in departures.yml (a value for one of its
    placeholders), filled from `values`."""
    wordings = _entry(group, topic, "wording").get("wordings", {})
    if name not in wordings:
        raise invalid("name", "wording", f"a wording of {group}/{topic}, one of {sorted(wordings)}", name)
    return _fill(wordings[name], f"the wording {name!r} of {group}/{topic}", "wording", values)


def _get(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    """`config.get(k)` for each key (None where it is missing), as placeholder values."""
    return {k: config.get(k) for k in keys}


def _pairs(values: dict[str, Any], spec: str = "") -> str:
    """"k=v, k=v" (each value formatted with `spec`), as the sizes and optimizer rows print them."""
    return ", ".join(f"{k}={v:{spec}}" for k, v in values.items())


RELEASED_TEACHER_EPOCHS = 2000  # the released code's teacher budget (random data, Figs 2-7)
PAPER_TOY_SIZES = {"input_dim": 2, "classes": 3, "per_class": 10}  # the toy of Fig 1
LINEAR_RELEASED = {"teacher_epochs": 10_000, "teacher_lr": 1e-3, "epochs": 10_000, "lr": 1e-4, "input_dim": 200}

TEMPERATURE_PAPER = _texts()["shared"]["temperature convention"]["paper"]
TEMPERATURE_REASON = _texts()["shared"]["temperature convention"]["reason"]


def _config(table: pd.DataFrame | dict[str, Any]) -> dict[str, Any]:
    """A table's `attrs["config"]` ({} without one), or the config dict itself."""
    return table if isinstance(table, dict) else table.attrs.get("config", {})


# ---------------------------------------------------------------------------- shared by several chapters


def teacher_stop_departure(reason: str = "") -> Departure:
    """The departure of the early teacher stop (teacher_stop="first_perfect"), for `Chapter.protocol`;
    `reason` replaces the row's own (the chapter's `teacher_stop` parameter) when given."""
    row = departure_row("shared", "teacher stop")
    return {**row, "reason": reason or row["reason"]}


def standard_departures(table: pd.DataFrame | dict[str, Any],
                        paper_sizes: dict[str, Any] | None = None) -> list[Departure]:
    """The departures from the paper that a random-data table implies (its `attrs["config"]` and
    its `teacher_first_perfect` column): the temperature convention, the teacher's budget, and the
    sizes of D and of the teacher when they are not the paper's (`paper_sizes`, default the main
    setting of Fig 2, `memkd.pipeline.PAPER_SIZES`). A config dict works too.
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
        why = (wording("shared", "teacher budget", "measured", needed=int(needed)) if needed == needed
               else wording("shared", "teacher budget", "unmeasured"))
        out.append(departure_row("shared", "teacher budget", released=RELEASED_TEACHER_EPOCHS, budget=budget,
                                 why=why))
    sizes = paper_sizes or PAPER_SIZES
    if any(k in config and config[k] != v for k, v in sizes.items()):
        out.append(departure_row("shared", "sizes", paper_sizes=_pairs(sizes),
                                 sizes=_pairs({k: config[k] for k in sizes if k in config})))
    return out


def sizes_departure(config: dict, paper: dict) -> Departure | None:
    """The "profile sizes" departure when `config` differs from the paper's sizes `paper`, else None."""
    differ = [k for k, v in paper.items() if k in config and config[k] != v]
    if not differ:
        return None
    return departure_row("shared", "profile sizes", paper_sizes=_pairs({k: paper[k] for k in differ}),
                         sizes=_pairs({k: config[k] for k in differ}), profile=config.get("profile", "chosen"))


def temperature_departure(config: dict, name_the_knob: bool = False) -> list[Departure]:
    """The temperature convention's departure, as a list: empty when the config softens the student's
    logits too (a config without `soften_student` softens only the teacher's, the default).
    name_the_knob: end the book's side with "(soften_student=False)"."""
    if config.get("soften_student", False):
        return []
    knob = wording("shared", "temperature convention", "knob") if name_the_knob else ""
    return [departure_row("shared", "temperature convention", knob=knob)]


def grid_departure(config: dict, paper: dict, keys: Sequence[str], topic: str = "grid",
                   reason: str = "") -> Departure | None:
    """The departure of a run's grid from the paper profile's, or None when every knob in `keys`
    has the paper profile's value (compared as the chapters print them, `knobs_text`).

    config : the run's validated configuration (`table.attrs["config"]`)
    paper : the paper profile's values (e.g. `TemperatureLrConfig.PROFILE_VALUES["paper"]`)
    topic, reason : the row's topic and reason, when not the "grid" row's of departures.yml
    """
    differ = [k for k in keys if k in config and k in paper and knobs_text(config, [k]) != knobs_text(paper, [k])]
    if not differ:
        return None
    row = departure_row("shared", "grid", paper_grid=knobs_text(paper, keys).replace("`", ""),
                        grid=knobs_text(config, keys).replace("`", ""))
    return {**row, "topic": topic, "reason": reason or row["reason"]}


def _grid_departures(table: pd.DataFrame, paper: dict, keys: Sequence[str],
                     paper_sizes: dict[str, Any] | None = None) -> list[Departure]:
    """`standard_departures` then the grid's departure (chapters 05-07)."""
    grid = grid_departure(_config(table), paper, keys)
    return standard_departures(table, paper_sizes) + ([grid] if grid is not None else [])


# ---------------------------------------------------------------------------- one function per chapter


def toy_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 01: `standard_departures` against the sizes of the toy of Fig 1."""
    return standard_departures(table, PAPER_TOY_SIZES)


def image_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 04: how a `cifar_shuffles` table departs from section 3.3."""
    config = _config(table)
    out = [departure_row("04_cifar10", "pixel shuffle")]
    if (table["images"] != "cifar10").any():
        out.append(departure_row("04_cifar10", "input data", n_memorized=int(table.n_memorized.iloc[0]),
                                 n_trivial=int(table.n_trivial.iloc[0])))
    out.append(departure_row("04_cifar10", "teachers", **_get(config, "teachers")))
    out.append(departure_row("04_cifar10", "epochs and learning rates",
                             first_perfect=int(table.teacher_first_perfect.max()),
                             **_get(config, "teacher_lr", "teacher_epochs", "lrs", "epochs")))
    return out + [d for d in [sizes_departure(config, PAPER_FIG4)] if d] + temperature_departure(config)


def logit_distillation_departures(table: pd.DataFrame, grid_keys: Sequence[str] = ()) -> list[Departure]:
    """Chapter 02: `standard_departures`, and with `grid_keys` (e.g. the student widths and alphas) the
    grid against the paper profile's."""
    if not grid_keys:
        return standard_departures(table)
    return _grid_departures(table, ex.logit_distillation.config.PROFILE_VALUES["paper"], grid_keys)


def temperature_lr_departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 05: `standard_departures`, the grid (`grid_keys`) against the paper profile's, one
    student budget for the whole grid."""
    return _grid_departures(table, ex.temperature_lr.config.PROFILE_VALUES["paper"], grid_keys) + [
        departure_row("05_temperature_lr", "student epochs", epochs=_config(table)["epochs"])]


def composition_departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 06: `standard_departures` (sizes: only the teacher's width, the grid sets the rest) and
    the grid (`grid_keys`) against the paper profile's."""
    paper = ex.dataset_composition.config.PROFILE_VALUES["paper"]
    return _grid_departures(table, paper, grid_keys, paper_sizes={"teacher_width": paper["teacher_width"]})


def surgery_departures(table: pd.DataFrame, grid_keys: Sequence[str]) -> list[Departure]:
    """Chapter 07: `standard_departures`, the grid (`grid_keys`) against the paper profile's, the tail cut."""
    return _grid_departures(table, ex.logit_surgery.config.PROFILE_VALUES["paper"], grid_keys) + [
        departure_row("07_logit_surgery", "tail cut")]


def transformer_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 08 (the workshop setting): how a `transformer_distillation` table departs from appendix A.4."""
    config = _config(table)
    out = [departure_row("08_transformer", "trivial baseline"),
           departure_row("08_transformer", "memorized set", **_get(config, "memorized_fraction")),
           departure_row("08_transformer", "teachers", **_get(config, "teachers")),
           departure_row("08_transformer", "epochs and learning rates",
                         **_get(config, "teacher_epochs", "epochs", "lrs", "alphas"))]
    return out + [d for d in [sizes_departure(config, PAPER_FIG8)] if d] + temperature_departure(config)


def clock_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 08 (the teacher clock): how a `teacher_clock` table departs from the released script of
    Figs 2 and 8; topics start with "teacher clock: "."""
    config = _config(table)
    out = [departure_row("08_teacher_clock", "teacher stops", last_stop=max(config.get("teacher_steps", [0])),
                         **_get(config, "teacher_steps")),
           departure_row("08_teacher_clock", "teachers", **_get(config, "teachers"))]
    optim = _get(config, "teacher_lr", "teacher_weight_decay", "lr", "weight_decay")
    released = {k: PAPER_CLOCK[k] for k in optim}
    if optim != released:
        out.append(departure_row("08_teacher_clock", "optimizer", released=_pairs(released, "g"),
                                 optimizer=_pairs(optim, "g")))
    steps = config.get("teacher_steps", [])
    if config.get("epochs") != PAPER_CLOCK["epochs"] or tuple(steps) != PAPER_CLOCK["teacher_steps"]:
        out.append(departure_row("08_teacher_clock", "steps", epochs=config.get("epochs"),
                                 teacher_steps=", ".join(str(s) for s in steps)))
    start = config.get("student_start", "own")
    out.append(departure_row("08_teacher_clock", "student start", student_start=(
        "each student its own initialization" if start == "own" else
        "each student from its teacher's initial weights (student_start='teacher'), teachers their own")))
    if tuple(config.get("rhos", ())) != (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9):
        rhos = ", ".join(f"{r:g}" for r in config.get("rhos", []))
        out.append(departure_row("08_teacher_clock", "rho", rhos=rhos))
    sizes = sizes_departure(config, {k: PAPER_CLOCK[k] for k in ("modulus", "memorized_fraction", "d_model", "d_mlp")})
    # topics carry the section's name: chapter 08 records the workshop setting's departures too
    return [{**d, "topic": f"teacher clock: {d['topic']}"} for d in out + ([sizes] if sizes else [])]


def transformer_chapter_departures(table: pd.DataFrame, clock: pd.DataFrame | None = None) -> list[Departure]:
    """Chapter 08: the workshop setting's departures (`transformer_departures`), then the teacher
    clock's (`clock_departures`) once its table `clock` is there."""
    return transformer_departures(table) + (clock_departures(clock) if clock is not None else [])


def convolution_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 10: how a `convolutional_distillation` table departs from the paper's remark on CNNs."""
    out = [departure_row("10_convolutions", "architecture"), departure_row("10_convolutions", "trivial accuracy"),
           departure_row("10_convolutions", "pixel shuffle")]
    out += temperature_departure(_config(table), name_the_knob=True)
    if table.images.iloc[0] != "cifar10":  # the chapter's data_kind "stand-in"
        out.append(departure_row("10_convolutions", "profile sizes", n_memorized=table.n_memorized.iloc[0]))
    return out


def linear_recovery_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 11: how a `linear_recovery` table departs from the released Fig 3 (`LINEAR_RELEASED`)."""
    cfg, released, out = _config(table), LINEAR_RELEASED, []
    if (cfg["teacher_epochs"], cfg["teacher_lr"]) != (released["teacher_epochs"], released["teacher_lr"]):
        out.append(departure_row("11_linear_recovery", "teacher budget", **cfg))
    out.append(departure_row("11_linear_recovery", "soft-label student", **cfg))
    if cfg["input_dim"] != released["input_dim"] or len(cfg["n_over_d"]) != 50:
        out.append(departure_row("11_linear_recovery", "profile sizes", n_sizes=len(cfg["n_over_d"]),
                                 smallest=min(cfg["n_over_d"]), largest=max(cfg["n_over_d"]),
                                 n_rhos=len(cfg["rhos"]), **cfg))
    if cfg.get("shuffle", True):
        out.append(departure_row("11_linear_recovery", "shuffle kind"))
    return out + [departure_row("11_linear_recovery", "functional recovery")]


def temperature_window_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 12: how a `temperature_window` table departs from the released Fig 4a and App. Fig 13."""
    cfg, out = _config(table), []
    temps = sorted(table.temperature.unique())
    dtypes = [d for d in ("float64", "float32", "bfloat16") if d in set(table.dtype)]
    if (cfg["epochs"], cfg["lr"]) != (10_000, 1e-4):
        out.append(departure_row("12_temperature_window", "student budget", **cfg))
    if (cfg["teacher_epochs"], cfg["teacher_lr"]) != (10_000, 1e-3):
        out.append(departure_row("12_temperature_window", "teacher budget", **cfg))
    if cfg["input_dim"] != 1000 or len(cfg["n_over_d"]) != 20 or len(temps) != 40:
        out.append(departure_row("12_temperature_window", "profile sizes", n_sizes=len(cfg["n_over_d"]),
                                 n_temperatures=len(temps), lowest=temps[0], highest=temps[-1], **cfg))
    out.append(departure_row("12_temperature_window", "temperatures for C = 10"))
    out.append(departure_row("12_temperature_window", "inputs"))
    out.append(departure_row("12_temperature_window", "shuffle kind"))  # the exact solve's control always runs
    out.append(departure_row("12_temperature_window", "precision and solver", dtypes=", ".join(dtypes)))
    if "bfloat16" in dtypes:
        out.append(departure_row("12_temperature_window", "bfloat16 training"))
    return out + [departure_row("12_temperature_window", "shuffled control",
                                shuffle_dtypes=", ".join(cfg["shuffle_adam_dtypes"]))]


def class_scaling_departures(table: pd.DataFrame, fig13: pd.DataFrame | None = None) -> list[Departure]:
    """Chapter 16: how a `class_scaling` table departs from the released Fig 4b, and, once its table `fig13`
    (a `temperature_window` run at C = 10) is there, how that run departs from App. Fig 13."""
    cfg, out = _config(table), []
    if (cfg["teacher_epochs"], cfg["teacher_lr"]) != (5_000, 1e-3):
        out.append(departure_row("16_class_scaling", "teacher budget", **cfg))
    if (cfg["epochs"], cfg["lr"]) != (10_000, 1e-4):
        out.append(departure_row("16_class_scaling", "student budget", **cfg))
    released = ex.class_scaling.config.PROFILE_VALUES["paper"]
    if any(tuple(cfg[k]) != tuple(released[k]) for k in ("a_log_c", "a_sqrt_c")) or cfg["input_dim"] != 100 \
            or tuple(cfg["class_counts"]) != (2, 10, 20, 30, 40, 50):
        grid = {k: ", ".join(f"{a:g}" for a in cfg[k]) or "none" for k in ("a_log_c", "a_sqrt_c", "a_c")}
        out.append(departure_row("16_class_scaling", "profile sizes", **{**cfg, **grid},
                                 class_list=", ".join(map(str, cfg["class_counts"]))))
    if cfg["a_c"] and cfg["input_dim"] != 1000:
        out.append(departure_row("16_class_scaling", "a d / C design", **cfg))
    if sum(bool(cfg[k]) for k in ("a_log_c", "a_sqrt_c", "a_c")) > 1:
        out.append(departure_row("16_class_scaling", "pooled designs"))
    out.append(departure_row("16_class_scaling", "inputs"))
    if cfg.get("shuffle", True):
        out.append(departure_row("16_class_scaling", "shuffle kind", smallest_n=int(table["n_per_class"].min())))
    if "exact" in cfg["solvers"]:
        out.append(departure_row("16_class_scaling", "exact solver"))
    if fig13 is not None:
        f = _config(fig13)
        temps = sorted(fig13["temperature"].unique())
        out.append(departure_row("16_class_scaling", "App. Fig 13 grid", **{**f, "rho": ", ".join(map(str, f["rhos"]))},
                                 n_sizes=len(f["n_over_d"]), n_temperatures=len(temps), lowest=temps[0],
                                 highest=temps[-1]))
    return out


def one_hidden_layer_departures(config: dict) -> list[Departure]:
    """Chapter 13: the departures from the released scripts (`one_hidden_layer.RELEASED`) that a run's
    config (`table.attrs["config"]`) implies."""
    r, c = RELEASED, config
    grid = {**c, "per_class_values": list(c["per_class_values"]), "rhos": list(c["rhos"])}
    out = [departure_row("13_one_hidden_layer", "profile sizes", released=r, released_sizes=len(r["per_class_values"]),
                         released_rhos=len(r["rhos"]), **grid)]
    if (c["lr"], c["epochs"]) != (r["lr"], r["epochs"]):
        out.append(departure_row("13_one_hidden_layer", "student optimizer budget", **c))
    if c["teacher_epochs"] != r["teacher_epochs"] or c["teacher_lr"] != r["teacher_lr"]:
        out.append(departure_row("13_one_hidden_layer", "teacher budget", **c))
    if c.get("variant_widths") or c.get("equal_widths"):
        out.append(departure_row("13_one_hidden_layer", "width variants", variant_widths=list(c["variant_widths"]),
                                 equal_widths=list(c.get("equal_widths", ())),
                                 variant_teachers=c.get("variant_datasets") or c["datasets"]))
    return out + [departure_row("13_one_hidden_layer", "fresh inputs"),
                  departure_row("13_one_hidden_layer", "shuffle control"),
                  departure_row("13_one_hidden_layer", "failed teachers"),
                  departure_row("13_one_hidden_layer", "tail cut"),
                  departure_row("13_one_hidden_layer", "surgery and shuffle cells", variant_rho=c["variant_rho"])]


def defence_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 14's departures: its settings' sizes, who owns the temperature, the completion of
    withheld mass, the linear student and its baseline, and the recovery cell's split."""
    from memkd.experiments.defence_frontier import RECOVERY_CELL

    c = _config(table)
    cell = RECOVERY_CELL.get(c.get("profile", "quick"), RECOVERY_CELL["quick"])
    spread = {"uniform": "uniformly over the withheld classes", "renormalize": "nowhere: the k returned entries are "
              "renormalized"}[c.get("withheld", "uniform")]
    return [departure_row("14_defences", "settings", **c, cell_dim=cell["input_dim"], cell_classes=cell["classes"],
                          cell_per_class=cell["per_class"], cell_teachers=cell["datasets"], cell_epochs=cell["epochs"],
                          cell_lr=cell["lrs"][0]),
            departure_row("14_defences", "server temperature", temperature=c["temperatures"][0]),
            departure_row("14_defences", "withheld mass", withheld=spread),
            departure_row("14_defences", "linear student", linear_temperature=c["linear_temperature"],
                          probes=", ".join(f"{t:g}" for t in c.get("linear_probe_temperatures", [])) or "none"),
            departure_row("14_defences", "linear leak baseline"),
            departure_row("14_defences", "recovery cell split", cell_alpha=cell["alphas"][0])]
def language_model_departures(table: pd.DataFrame) -> list[Departure]:
    """Chapter 15: the departures from the released GPT-2 notebook (`language_model.RELEASED`) that a
    run's config implies."""
    from memkd.experiments.language_model import RELEASED as GPT2_RELEASED

    r, c = GPT2_RELEASED, _config(table)
    out = [departure_row("15_language_model", "teachers and split", datasets=c["datasets"])]
    if c["checkpoint"] != r["checkpoint"]:
        out.append(departure_row("15_language_model", "model from scratch", **{**c, "cells": ", ".join(c["cells"]),
                                 "widths": ", ".join(map(str, c["widths"]))}))
    if (c["triples"], c["classes"], c["balanced"]) != (r["triples"], r["classes"], r["balanced"]):
        out.append(departure_row("15_language_model", "task sizes", **c))
    if (c["teacher_lr"], c["teacher_epochs"]) != (r["teacher_lr"], r["teacher_epochs"]):
        out.append(departure_row("15_language_model", "teacher budget", **c))
    if (c["lr"], c["epochs"]) != (r["lr"], r["epochs"]) or tuple(c["rhos"]) != r["rhos"]:
        out.append(departure_row("15_language_model", "student budget", rho_list=", ".join(map(str, c["rhos"])), **c))
    return out + [departure_row("15_language_model", "teacher bar", **c),
                  departure_row("15_language_model", "fresh triples"),
                  departure_row("15_language_model", "shared batches")]


# ---------------------------------------------------------------------------- the entry point


CHAPTER_DEPARTURES: dict[str, Callable[..., list[Departure]]] = {
    "01_toy_2d": toy_departures,
    "02_logit_distillation": logit_distillation_departures,
    "03_similarity_scores": standard_departures,
    "04_cifar10": image_departures,
    "05_temperature_lr": temperature_lr_departures,
    "06_dataset_composition": composition_departures,
    "07_logit_surgery": surgery_departures,
    "08_transformer": transformer_chapter_departures,
    "09_open_questions": standard_departures,  # the teacher-regularization table (Q2)
    "10_convolutions": convolution_departures,
    "11_linear_recovery": linear_recovery_departures,
    "12_temperature_window": temperature_window_departures,
    "13_one_hidden_layer": lambda table: one_hidden_layer_departures(_config(table)),
    "16_class_scaling": class_scaling_departures,
    "14_defences": defence_departures,
    "15_language_model": language_model_departures,
}


def for_chapter(name: str, table: pd.DataFrame, **context: Any) -> list[Departure]:
    """The departures of chapter `name` (a key of `CHAPTER_DEPARTURES`, e.g. "05_temperature_lr"), built
    from its table and the `context` values that chapter's function takes (see the module's docstring)."""
    if name not in CHAPTER_DEPARTURES:
        raise invalid("name", "for_chapter", f"a chapter with departures, one of {sorted(CHAPTER_DEPARTURES)}", name)
    return CHAPTER_DEPARTURES[name](table, **context)


__all__ = [
    "CHAPTER_DEPARTURES", "LINEAR_RELEASED", "PAPER_TOY_SIZES", "RELEASED_TEACHER_EPOCHS", "TEMPERATURE_PAPER",
    "TEMPERATURE_REASON", "class_scaling_departures", "clock_departures", "composition_departures", "convolution_departures",
    "defence_departures", "departure_row", "for_chapter", "grid_departure", "image_departures", "language_model_departures",
    "linear_recovery_departures", "logit_distillation_departures", "one_hidden_layer_departures",
    "sizes_departure", "standard_departures", "surgery_departures", "teacher_stop_departure", "temperature_departure",
    "temperature_lr_departures",
    "temperature_window_departures", "toy_departures", "transformer_chapter_departures",
    "transformer_departures", "wording",
]
