"""Statistics behind the claims of chapters 05 to 07 that a plain per-teacher mean does not give.

Teachers are the unit of replication (column `dataset`: a dataset and the teacher that memorized
it). Students are averaged within a teacher before anything is chosen or tested, and a setting
(the best temperature, the best cell of a grid) is never chosen and tested on the same teachers:
the helpers below choose on one set of teachers and return per-teacher values on another.

Fig 6 (dataset composition): in its grid, teacher index k of one cell and teacher index k of
another cell are different datasets and teachers, but the K replicate indices are independent of
one another, so a statistic computed within replicate k across cells (the best input dimension of
a row, the slope of log(best d) on log(samples per class)) gives K independent values to test.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from memkd.config import invalid

GRID_KEYS = ("classes", "per_class", "input_dim")


def _need(table: pd.DataFrame, columns: Sequence[str], where: str, name: str = "table") -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise invalid(name, where, must=f"have the column(s) {missing}", shown=f"columns {list(table.columns)}")


def unit_cell_means(
    table: pd.DataFrame, keys: Sequence[str], value: str = "test_acc", unit: str = "dataset"
) -> pd.DataFrame:
    """Per teacher and cell, the mean of `value` over its students (NaN values dropped).

    table : one row per student with columns `unit`, *keys and `value`
    Returns a DataFrame with columns unit, *keys, value (the mean) and "students" (rows averaged).
    """
    keys = list(keys)
    _need(table, [unit, *keys, value], "unit_cell_means")
    rows = table[[unit, *keys]].copy()
    rows[value] = pd.to_numeric(table[value], errors="coerce")
    rows = rows[rows[value].notna()]
    grouped = rows.groupby([unit, *keys], sort=True)[value]
    out = grouped.mean().to_frame(value)
    out["students"] = grouped.size()
    return out.reset_index()


def cell_means(
    table: pd.DataFrame,
    keys: Sequence[str],
    value: str = "test_acc",
    unit: str = "dataset",
    units: Sequence | None = None,
) -> pd.Series:
    """The mean over teachers (restricted to `units` when given) of the per-teacher means of each
    cell: a Series indexed by `keys` (a MultiIndex for several keys)."""
    means = unit_cell_means(table, keys, value, unit)
    if units is not None:
        means = means[means[unit].isin(list(units))]
    if means.empty:
        raise invalid(
            "units" if units is not None else "table",
            "cell_means",
            must=f"leave at least one teacher with a value of {value!r}",
            shown=f"no teacher of {list(units) if units is not None else 'the table'} with one",
        )
    return means.groupby(list(keys), sort=True)[value].mean()


def cell_sems(table: pd.DataFrame, keys: Sequence[str], value: str = "test_acc", unit: str = "dataset") -> pd.Series:
    """The SEM over teachers of the per-teacher means of each cell (the spread behind `cell_means`): a
    Series indexed by `keys`; NaN for a cell with one teacher."""
    means = unit_cell_means(table, keys, value, unit)
    return means.groupby(list(keys), sort=True)[value].sem()


def best_cell(
    table: pd.DataFrame,
    keys: Sequence[str],
    value: str = "test_acc",
    unit: str = "dataset",
    units: Sequence | None = None,
) -> tuple:
    """The cell (a tuple of the `keys` values) with the largest mean over teachers (`units` only,
    e.g. the half chosen on) of the per-teacher means of `value`."""
    best = cell_means(table, keys, value, unit, units).idxmax()
    return best if isinstance(best, tuple) else (best,)


def select(table: pd.DataFrame, cell: dict, units: Sequence | None = None, unit: str = "dataset") -> pd.DataFrame:
    """The rows of `table` in `cell` ({column: value}) and, when given, of teachers `units`."""
    keep = pd.Series(True, index=table.index)
    for column, v in cell.items():
        _need(table, [column], "select")
        keep &= np.isclose(table[column], v) if isinstance(v, float) else table[column] == v
    if units is not None:
        keep &= table[unit].isin(list(units))
    return table[keep]


# ---------------------------------------------------------------------------- Fig 6: the best d


def best_dimension_per_unit(table: pd.DataFrame, value: str = "test_acc", unit: str = "dataset") -> pd.DataFrame:
    """For every teacher index and row (classes, per_class) of a composition grid, the input
    dimension with the largest mean of `value` over that cell's students. The default ranks by the
    held-out accuracy: within a row C is fixed, and on random labels the trivial accuracy has the
    expectation 1/C in every cell, so the ratio to it only divides by noise.

    table : one row per student (rows of failed teachers carry NaN and are ignored), columns
        unit, classes, per_class, input_dim and `value`
    Returns columns unit, classes, per_class, best_d, cells (memorized cells in the row; a row with
    fewer than 2 is left out: there is nothing to choose from) and students (the fewest students
    behind a cell of the row).
    """
    means = unit_cell_means(table, GRID_KEYS, value, unit)
    rows = []
    for (k, c, pc), row in means.groupby([unit, "classes", "per_class"], sort=True):
        if len(row) < 2:
            continue
        best = row.loc[row[value].idxmax()]
        rows.append(
            {
                unit: k,
                "classes": c,
                "per_class": pc,
                "best_d": int(best["input_dim"]),
                "cells": len(row),
                "students": int(row["students"].min()),
            }
        )
    return pd.DataFrame(rows, columns=[unit, "classes", "per_class", "best_d", "cells", "students"])


def log_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log(y) on log(x); NaN with fewer than two distinct x.

    >>> round(log_slope([5, 10, 20], [25, 50, 100]), 6)
    1.0
    """
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if len(lx) < 2 or np.ptp(lx) == 0:
        return math.nan
    return float(np.polyfit(lx, ly, 1)[0])


def dimension_slopes(best: pd.DataFrame, unit: str = "dataset") -> pd.DataFrame:
    """Per teacher index, the slope of log(best d) on log(samples per class), fitted within each
    number of classes (panel) and averaged over the panels that have at least two rows.

    best : the output of `best_dimension_per_unit`
    Returns columns unit, slope, panels (panels averaged) and students (the fewest students behind
    a cell). A slope of 1 is the paper's "doubling the samples per class doubles the best d"; 0
    means the best d does not move (e.g. the largest d wins in every row).
    """
    _need(best, [unit, "classes", "per_class", "best_d", "students"], "dimension_slopes", "best")
    rows = []
    for k, part in best.groupby(unit, sort=True):
        slopes = [log_slope(p["per_class"], p["best_d"]) for _, p in part.groupby("classes", sort=True)]
        slopes = [s for s in slopes if not math.isnan(s)]
        if slopes:
            rows.append(
                {
                    unit: k,
                    "slope": float(np.mean(slopes)),
                    "panels": len(slopes),
                    "students": int(part["students"].min()),
                }
            )
    return pd.DataFrame(rows, columns=[unit, "slope", "panels", "students"])


def interior_row(
    table: pd.DataFrame, value: str = "test_acc", unit: str = "dataset", units: Sequence | None = None
) -> dict:
    """Choose (on teachers `units`) the row (classes, per_class) of a composition grid where an
    interior input dimension most clearly beats both ends of the grid.

    For each row, with means over the chosen teachers of the per-teacher cell means: the interior d
    (neither the smallest nor the largest of the grid's input_dim values) with the largest mean,
    and its advantage = that mean - the larger of the means at the two ends. Rows where every
    interior cell or both end cells failed are skipped.
    Returns {"classes", "per_class", "input_dim" (the interior d), "advantage" (on the chosen
    teachers; it may be negative), "ends" (the smallest and largest d)}.
    """
    grid = sorted(pd.unique(table["input_dim"]))
    if len(grid) < 3:
        raise invalid(
            "table",
            "interior_row",
            must="hold at least 3 input dimensions (a grid needs them to have an interior)",
            shown=grid,
        )
    ends = (grid[0], grid[-1])
    means = cell_means(table, GRID_KEYS, value, unit, units)
    best: dict | None = None
    for (c, pc), row in means.groupby(level=["classes", "per_class"], sort=True):
        row = row.droplevel(["classes", "per_class"])
        inner = row[[d for d in row.index if d not in ends]]
        outer = row[[d for d in row.index if d in ends]]
        if inner.empty or outer.empty:
            continue
        advantage = float(inner.max() - outer.max())
        if best is None or advantage > best["advantage"]:
            best = {
                "classes": int(c),
                "per_class": int(pc),
                "input_dim": int(inner.idxmax()),
                "advantage": advantage,
                "ends": tuple(int(e) for e in ends),
            }
    if best is None:
        raise invalid(
            "table",
            "interior_row",
            must="have a row of the grid with both an interior and an end cell with a value",
            shown="no such row",
        )
    return best


def interior_advantage(
    table: pd.DataFrame, row: dict, value: str = "test_acc", unit: str = "dataset", units: Sequence | None = None
) -> pd.DataFrame:
    """Per teacher (of `units` when given) in the row chosen by `interior_row`: the mean of `value`
    at the chosen interior d minus the larger of the means at the grid's two ends (an end cell whose
    teacher failed is left out of that maximum; a teacher without the interior cell or both ends is
    dropped).

    Returns columns unit, advantage, students (the fewest students behind the three cells).
    """
    part = select(table, {"classes": row["classes"], "per_class": row["per_class"]}, units, unit)
    means = unit_cell_means(part, ["input_dim"], value, unit)
    rows = []
    for k, m in means.groupby(unit, sort=True):
        m = m.set_index("input_dim")
        outer = m.loc[[d for d in row["ends"] if d in m.index]]
        if row["input_dim"] not in m.index or outer.empty:
            continue
        rows.append(
            {
                unit: k,
                "advantage": float(m.loc[row["input_dim"], value] - outer[value].max()),
                "students": int(min(m.loc[row["input_dim"], "students"], outer["students"].min())),
            }
        )
    return pd.DataFrame(rows, columns=[unit, "advantage", "students"])


def student_rows(per_unit: pd.DataFrame, value: str, unit: str = "dataset") -> pd.DataFrame:
    """Repeat each teacher's `value` once per student behind it (column "students"), so that
    `Chapter.claim` (which averages rows within a teacher) tests the same per-teacher values and
    reports how many students stand behind each: the mean per teacher is unchanged.

    per_unit : one row per teacher with columns unit, `value`, students
    """
    _need(per_unit, [unit, value, "students"], "student_rows", "per_unit")
    counts = per_unit["students"].astype(int).clip(lower=1)
    out = per_unit.loc[per_unit.index.repeat(counts), [unit, value]].reset_index(drop=True)
    return out


def failed_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a composition table whose teacher did not memorize: columns classes, per_class,
    input_dim, dataset, teacher_train_acc (empty when every teacher reached 100%)."""
    _need(table, ["teacher_memorized"], "failed_cells")
    columns = [*GRID_KEYS, "dataset", "teacher_train_acc"]
    bad = table[~table["teacher_memorized"].astype(bool)]
    return bad[[c for c in columns if c in bad.columns]].drop_duplicates().reset_index(drop=True)


# ---------------------------------------------------------------------------- knobs as text
# (the chapters print their grids with it; memkd.book.departures.grid_departure compares them with it)


def _text(v) -> str:
    """A knob's value as the chapters print it: 0.001 -> '0.001', (1.0, 20.0) -> '(1, 20)'."""
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_text(i) for i in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


def knobs_text(values: dict, keys: Sequence[str]) -> str:
    """'`temperatures` = (1, 20), `lrs` = (0.003, 0.01)' for the `keys` present in `values`.

    >>> knobs_text({"lrs": [0.001, 0.01], "epochs": 200}, ["lrs", "epochs"])
    '`lrs` = (0.001, 0.01), `epochs` = 200'
    """
    return ", ".join(f"`{k}` = {_text(values[k])}" for k in keys if k in values)


def axis_range(values: Sequence[float], relative_to: float | None = None) -> str:
    """One axis of a grid in words: how many values, from where to where, and the span.

    relative_to: also give the range as multiples of this value (e.g. the teacher's width).

    >>> axis_range([3e-5, 3e-4, 3e-3, 3e-2])
    '4 values, 3e-05 to 0.03 (1000×)'
    >>> axis_range([16, 32, 64, 125, 250], relative_to=125)
    '5 values, 16 to 250 (15.6×; 0.128× to 2× of 125)'
    >>> axis_range([20.0])
    '1 value, 20'
    """
    vals = sorted(float(v) for v in values)
    if not vals:
        return "no values"
    lo, hi = vals[0], vals[-1]
    if len(vals) == 1:
        text = f"1 value, {lo:g}"
        notes = [f"{_three_digits(lo / relative_to)}× of {relative_to:g}"] if relative_to else []
    else:
        text = f"{len(vals)} values, {lo:g} to {hi:g}"
        notes = [f"{_three_digits(hi / lo)}×"] if lo > 0 else []
        if relative_to:
            notes.append(f"{_three_digits(lo / relative_to)}× to {_three_digits(hi / relative_to)}× of {relative_to:g}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _three_digits(x: float) -> str:
    """x to three significant digits, without an exponent below a million (1000, 15.6, 0.128)."""
    return f"{float(f'{x:.3g}'):,g}".replace(",", "") if abs(x) < 1e6 else f"{x:.3g}"


def axes_table(run: dict, paper: dict, keys: Sequence[str], relative_to: dict[str, str] | None = None) -> str:
    """A markdown table of a grid's axes, this run's against the paper profile's (`axis_range`).

    run, paper: configuration values (a saved table's `attrs["config"]`, a profile's values);
    keys: the axes (knobs holding a list of values) present in both;
    relative_to: {axis: knob}: also give that axis in multiples of the knob's value (each side its own).
    """
    relative_to = relative_to or {}
    rows = ["| axis | this run | the paper profile (the paper's figure) |", "|---|---|---|"]
    for k in keys:
        if k in run and k in paper:
            ref = relative_to.get(k)
            rows.append(
                f"| `{k}` | {axis_range(run[k], run[ref] if ref else None)} "
                f"| {axis_range(paper[k], paper[ref] if ref else None)} |"
            )
    return "\n".join(rows)


def sign_counts(values: Sequence[float]) -> dict[str, int]:
    """How many per-teacher values are above 0, for an exact sign test (`binomial_test` against 1/2).

    For a per-teacher statistic that takes few values (the slope of log(best d) on a grid of a few
    d's is often exactly 0 or 1 for every teacher): a t interval has no spread to work with, a
    sign test does. Ties at 0 (within 1e-9: float noise) count against the claim. NaN values are dropped.
    Returns {"successes": values > 0, "trials": values, "teachers": values}.

    >>> sign_counts([1.0, 0.0, 0.5, float("nan")])
    {'successes': 2, 'trials': 3, 'teachers': 3}
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return {"successes": int((v > 1e-9).sum()), "trials": int(len(v)), "teachers": int(len(v))}  # float noise is a tie


def teacher_rule(config: dict | None, stop: str = "") -> str | None:
    """The rule that ends a chapter's teacher training, in words, from an experiment's config.

    config : `table.attrs["config"]` of the chapter's main table (teacher_stop, teacher_epochs or
        teacher_steps, teacher_lr where the experiment has them); `stop` overrides its teacher_stop
        (the protocol the chapter declared). None when the config names no teacher budget.

    >>> teacher_rule({"teacher_stop": "budget", "teacher_epochs": 3000, "teacher_lr": 0.001})
    'whole budget: 3,000 epochs at lr 0.001'
    >>> teacher_rule({"teacher_stop": "first_perfect", "teacher_epochs": 500})
    'first 100% (at most 500 epochs)'
    """
    config = config or {}
    budget, unit = next(
        (
            (config[k], k.split("_")[1])
            for k in ("teacher_epochs", "teacher_steps")
            if isinstance(config.get(k), (int, float)) and not isinstance(config.get(k), bool)
        ),
        (None, ""),
    )
    if budget is None:
        return None
    if isinstance(budget, float) and budget.is_integer():
        budget = int(budget)
    lr = config.get("teacher_lr")
    at = f" at lr {lr:g}" if isinstance(lr, (int, float)) and not isinstance(lr, bool) else ""
    if (stop or config.get("teacher_stop", "budget")) == "first_perfect":
        return f"first 100% (at most {budget:,} {unit}{at})"
    return f"whole budget: {budget:,} {unit}{at}"


def teacher_clock(table: pd.DataFrame, unit: str = "dataset") -> dict | None:
    """How long a table's teachers trained, as a multiple of their first epoch at 100% on D.

    table : one row per student with the column "teacher_first_perfect" (the teacher's first epoch,
        or step, at 100%) and either "teacher_epochs_run" (what it ran) or, in `table.attrs["config"]`,
        "teacher_epochs" (the budget) with teacher_stop "budget" (under "first_perfect" a teacher
        runs until its first 100%: a multiple of 1). Teachers that did not memorize are left out.
    Returns {"teachers", "min", "median", "max"} of the per-teacher multiples, or None when the
    table does not say (no such columns, or a setting column that repeats teacher indices: pass
    one setting's rows).
    """
    if "teacher_first_perfect" not in table.columns or unit not in table.columns:
        return None
    rows = table
    if "teacher_memorized" in rows.columns:
        rows = rows[rows["teacher_memorized"].astype(bool)]
    keys = [unit] + [k for k in ("setting", *GRID_KEYS) if k in rows.columns]
    first = pd.to_numeric(rows["teacher_first_perfect"], errors="coerce")
    first = first.where(first > 0)  # -1: never at 100%
    if "teacher_epochs_run" in rows.columns:
        run = pd.to_numeric(rows["teacher_epochs_run"], errors="coerce")
    else:
        config = table.attrs.get("config", {}) or {}
        stop = config.get(
            "teacher_stop", rows["teacher_stop"].iloc[0] if "teacher_stop" in rows.columns and len(rows) else ""
        )
        if stop == "first_perfect":
            run = first
        elif config.get("teacher_epochs"):
            run = pd.Series(float(config["teacher_epochs"]), index=rows.index)
        else:
            return None
    multiple = (run / first).groupby([rows[k] for k in keys]).first().dropna()
    multiple = multiple[np.isfinite(multiple)]
    if multiple.empty:
        return None
    return {
        "teachers": int(len(multiple)),
        "min": round(float(multiple.min()), 2),
        "median": round(float(multiple.median()), 2),
        "max": round(float(multiple.max()), 2),
    }
