"""The tidy tables every experiment returns: the teacher id, mean +- SEM over teachers, CSV export.

Owns: `tidy` (an experiment's rows -> its table, knob columns first, with the config in its attrs:
`config_dict`), `teacher_id` (the column that names each row's teacher uniquely across the seeds of a
notebook and the runs of a sweep), `summarize` (the statistics entry point, `memkd.summarize`:
students averaged within their teacher, then mean, SEM and n over teachers) and `csv_ready` /
`write_csv` (CSV without float32 noise). Left out: plotting (`memkd.book.plots`) and tests of
claims (`memkd.metrics`, `memkd.book.chapter`).

Why a teacher id: `dataset` is the teacher's index within one run and restarts at 0 in every run,
so over a two-seed sweep a mean +- SEM per `dataset` would count half the teachers and pair
unrelated ones. `teacher_id = "{seed}:{dataset}"` names the draw (the base seed and the index;
every dataset and teacher seed derives from both). Rows of different settings (columns such as
`setting`, `teacher`, `teacher_stop`, `classes`) may share a teacher id while holding different
teachers trained on related draws: keep those columns in `by`.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from memkd.config import ExperimentConfig, invalid

TEACHER_ID = "teacher_id"


def tidy(rows: list[dict], ratio_to_trivial: bool = False, cfg: ExperimentConfig | None = None) -> pd.DataFrame:
    """Rows -> DataFrame with the knob columns first and the metrics after.

    ratio_to_trivial: add `ratio` = test_acc / teacher_independent_acc, how many times the
    teacher's accuracy on fresh data D' the student reaches on held-out memorized data.
    cfg: the validated configuration, kept as `table.attrs["config"]` (a chapter saves it as
    <table>.config.json beside the table).
    """
    table = pd.DataFrame(rows)
    first = [
        c
        for c in (
            "dataset",
            "classes",
            "per_class",
            "input_dim",
            "alpha",
            "width",
            "kind",
            "targets",
            "variant",
            "tail_fraction",
            "temperature",
            "lr",
            "student",
        )
        if c in table.columns
    ]
    table = table[first + [c for c in table.columns if c not in first]]
    if ratio_to_trivial:
        table["ratio"] = table["test_acc"] / table["teacher_independent_acc"]
    if cfg is not None:
        table.attrs["config"] = config_dict(cfg)
    return table


def config_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """A validated configuration as plain JSON-ready values (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(i) for i in v]
        return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)

    return {"experiment": type(cfg).__name__, **{k: plain(v) for k, v in asdict(cfg).items()}}


def teacher_ids(seed: int, dataset: Sequence[int] | pd.Series) -> pd.Series:
    """The teacher id of each row: f"{seed}:{dataset}" (text), e.g. "0:3"."""
    index = dataset.index if isinstance(dataset, pd.Series) else None
    return pd.Series([f"{int(seed)}:{int(k)}" for k in dataset], index=index, dtype=object, name=TEACHER_ID)


def add_teacher_id(table: pd.DataFrame, seed: int | None) -> pd.DataFrame:
    """Put `teacher_id` first in a table with a `dataset` column (in place; returned).

    Leaves a table without `dataset`, with a `teacher_id` already, or without a seed unchanged.
    """
    if seed is None or "dataset" not in table.columns or TEACHER_ID in table.columns:
        return table
    table.insert(0, TEACHER_ID, teacher_ids(seed, table["dataset"]))
    return table


def summarize(
    table: pd.DataFrame,
    value: str | Sequence[str] = "test_acc",
    by: str | Sequence[str] = (),
    unit: str | None = TEACHER_ID,
) -> pd.DataFrame:
    """Mean +- SEM over teachers of each `value`, per group of `by`.

    table : one row per trained student (any memkd experiment's table, or a sweep's results)
    value : a column, or several, e.g. "test_acc" or ["test_acc", "independent_acc"]
    by    : the columns that define a setting, e.g. ["alpha", "width"]; () for one row
    unit  : the column naming the independent unit, the teacher ("teacher_id"; "dataset" within
            one run); the students of each unit are averaged first. None treats rows as units.
    Returns one row per group: the `by` columns, `<value>` (mean over units), `<value>_sem`
    (standard error over units; NaN for one unit), `n` (units, i.e. teachers) and `students`
    (the fewest rows averaged into one unit).

    >>> t = pd.DataFrame({"teacher_id": ["0:0", "0:0", "0:1", "1:0"], "test_acc": [0.2, 0.4, 0.5, 0.6]})
    >>> s = summarize(t, "test_acc")  # teachers 0.3, 0.5, 0.6 (students pooled would give 0.425)
    >>> s[["test_acc", "n", "students"]].round(3).values.tolist()
    [[0.467, 3.0, 1.0]]
    """
    from memkd.metrics import mean_sem

    if not isinstance(table, pd.DataFrame):
        raise invalid("table", "summarize", "a pandas DataFrame", shown=type(table).__name__)
    values = [value] if isinstance(value, str) else list(value)
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*values, *by, *([unit] if unit else [])] if c not in table.columns]
    if missing:
        hint = (
            " (a table from one run can use unit='dataset')" if unit in missing and "dataset" in table.columns else ""
        )
        raise invalid(
            "table", "summarize", must=f"have the column(s) {missing}{hint}", shown=f"columns {list(table.columns)}"
        )
    if unit is None:
        units = table[by + values].assign(_rows=1)
    else:
        keys = by + [unit]
        grouped = table.groupby(keys, dropna=False, sort=True)
        units = grouped[values].mean().join(grouped.size().rename("_rows")).reset_index()
    rows = []
    for key, group in units.groupby(by, dropna=False, sort=True) if by else [((), units)]:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        for v in values:
            row[v], row[f"{v}_sem"] = mean_sem(group[v])
        row["n"], row["students"] = len(group), int(group["_rows"].min())
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *[c for v in values for c in (v, f"{v}_sem")], "n", "students"])


def csv_ready(table: pd.DataFrame) -> pd.DataFrame:
    """A copy for CSV in which every float column whose values are all float32 numbers (the
    metrics, computed in float32) is float32, so it prints as 0.2375, not 0.23749999701976776.
    Nothing is rounded: each such value is read back as the same float32."""
    out = table.copy(deep=False)
    for name in out.columns:
        column = out[name]
        if column.dtype == np.float64:
            v = column.to_numpy()
            with np.errstate(over="ignore", invalid="ignore"):
                if np.array_equal(v.astype(np.float32).astype(np.float64), v, equal_nan=True):
                    out[name] = column.astype(np.float32)
    return out


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write `csv_ready(table)` to `path` atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    csv_ready(table).to_csv(tmp, index=False)
    tmp.replace(path)
    return path


__all__ = ["TEACHER_ID", "teacher_ids", "add_teacher_id", "summarize", "csv_ready", "write_csv"]
