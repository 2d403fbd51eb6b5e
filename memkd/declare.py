"""How an experiment is declared: `@experiment(Config)` on its function.

Owns: `COLUMNS` (what every column of an experiment's table means, written once for all
experiments), the docstring every experiment shows in `help()` (its own summary, then every knob
with its allowed values and its default in each profile, then its table's columns: built from the
config dataclass and its `TABLE_COLUMNS`, so nothing is written twice), the `teacher_id` column
(`memkd.tables`) added to every table, and `EXPERIMENTS` (every declared experiment by name).

    >>> from memkd import experiments as ex
    >>> "student_widths" in ex.logit_distillation.__doc__ and "teacher_id" in ex.logit_distillation.__doc__
    True
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import MISSING, fields
from importlib import resources
from typing import Any, Callable

import yaml

from memkd.config import PROFILES, ExperimentConfig, invalid
from memkd.tables import TEACHER_ID, add_teacher_id
from memkd.threads import apply_thread_policy

EXPERIMENTS: dict[str, Callable] = {}
# The columns of a row of `memkd.students.distill` (with alpha), which most random-data tables share.
DISTILL_COLUMNS = (
    "dataset",
    "alpha",
    "width",
    "kind",
    "temperature",
    "lr",
    "student",
    "train_acc",
    "test_acc",
    "memorized_acc",
    "test_acc_class",
    "independent_acc",
    "teacher_agreement_independent",
    "test_count_class",
    "teacher_independent_acc",
    "chance",
    "teacher_memorized",
    "teacher_stop",
    "teacher_first_perfect",
)

# What each column of an experiment's table means (one row per trained student unless said):
# memkd/columns.yml, a table of prose kept beside the code that reads it.
COLUMNS: dict[str, str] = yaml.safe_load(resources.files("memkd").joinpath("columns.yml").read_text(encoding="utf-8"))


def _defaults(config: type[ExperimentConfig]) -> dict[str, dict[str, Any]]:
    """{knob: {profile: default}} from the dataclass defaults and the profiles."""
    out = {}
    for f in fields(config):
        if "constraint" not in f.metadata:
            continue
        base = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = {p: config.PROFILE_VALUES.get(p, {}).get(f.name, base) for p in PROFILES}
    return out


def _value(v: Any) -> str:
    return repr(list(v) if isinstance(v, tuple) else v)


def experiment_doc(summary: str | None, config: type[ExperimentConfig], table: bool = True) -> str:
    """The docstring of an experiment: `summary`, its knobs (help, allowed values, profile
    defaults) and, when it returns a table, the columns of `config.TABLE_COLUMNS`."""
    lines = [
        inspect.cleandoc(summary or ""),
        "",
        "Parameters",
        "----------",
        f"profile : one of {PROFILES} (default 'quick'): the sizes below; keyword overrides change any knob.",
    ]
    for name, by_profile in _defaults(config).items():
        f = config.__dataclass_fields__[name]
        values = {_value(v) for v in by_profile.values()}
        default = (
            f"default {values.pop()}"
            if len(values) == 1
            else "defaults " + ", ".join(f"{p} {_value(v)}" for p, v in by_profile.items())
        )
        lines.append(f"{name} : {f.metadata['help']}; {f.metadata['constraint'].allowed}; {default}")
    if table:
        lines += ["", "Returns", "-------", "pandas.DataFrame, one row per trained student unless said, columns:"]
        notes = getattr(config, "COLUMN_NOTES", {})  # what a column holds in this experiment's rows
        lines += [f"    {c} : {notes.get(c, COLUMNS[c])}" for c in table_columns(config)]
        lines.append('    (table.attrs["config"]: the validated configuration)')
    return "\n".join(lines)


def table_columns(config: type[ExperimentConfig]) -> tuple[str, ...]:
    """The columns an experiment's table may hold: teacher_id, then `config.TABLE_COLUMNS`."""
    return (TEACHER_ID, *[c for c in getattr(config, "TABLE_COLUMNS", ()) if c != TEACHER_ID])


class UndeclaredColumnWarning(UserWarning):
    """An experiment returned a column its config's TABLE_COLUMNS does not list."""


def experiment(config: type[ExperimentConfig], table: bool = True) -> Callable[[Callable], Callable]:
    """Declare `fn(profile, **overrides)` an experiment of `config`: its docstring is built by
    `experiment_doc`, its table gets `teacher_id` (from the run's seed), and a column missing from
    `config.TABLE_COLUMNS` warns (UndeclaredColumnWarning; the tests make it an error)."""
    missing = [c for c in getattr(config, "TABLE_COLUMNS", ()) if c not in COLUMNS]
    if missing:
        raise invalid(
            "config",
            "experiment",
            must="list in TABLE_COLUMNS only columns that COLUMNS in memkd/declare.py explains",
            shown=f"{config.__name__}.TABLE_COLUMNS naming {missing}, which COLUMNS does not explain,",
        )

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(profile: str = "quick", *args: Any, **overrides: Any) -> Any:
            apply_thread_policy()  # MEMKD_THREADS: N threads, or the free cores with auto (memkd.threads)
            out = fn(profile, *args, **overrides)
            if table:
                seed = (out.attrs.get("config") or {}).get("seed")
                if seed is None:
                    seed = overrides.get("seed", _defaults(config)["seed"].get(profile, 0))
                add_teacher_id(out, seed)
                extra = [c for c in out.columns if c not in table_columns(config)]
                if extra:
                    warnings.warn(
                        f"{fn.__name__}: columns {extra} are not in {config.__name__}.TABLE_COLUMNS "
                        "(add them there, and their meaning to declare.COLUMNS)",
                        UndeclaredColumnWarning,
                        stacklevel=2,
                    )
            return out

        run.__doc__ = experiment_doc(fn.__doc__, config, table)
        run.config, run.returns_table = config, table  # type: ignore[attr-defined]
        EXPERIMENTS[fn.__name__] = run
        return run

    return wrap


__all__ = [
    "COLUMNS",
    "DISTILL_COLUMNS",
    "EXPERIMENTS",
    "experiment",
    "experiment_doc",
    "table_columns",
    "UndeclaredColumnWarning",
]
