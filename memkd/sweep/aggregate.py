"""The sweep's results: every finished run's typed table, gathered into one.

Owns: reading each run's `table.parquet` (written with its column types by the notebook, e.g.
`memkd.book.chapter.Chapter.save_table`), putting the run id and the run's parameters in front of its
rows, and writing the combined `results.parquet` plus a `results.csv` export; the same for every
other table the runs saved (`<name>.parquet`, e.g. the hard-label students' `table_hard` and the
verdicts `claims`) as `results.<name>.parquet` / `.csv` (`collect_tables`). Nothing is parsed
from text: a column's type is the type the notebook gave it (a hex token such as "97e398195100"
stays text; it once turned into infinity when types were guessed from CSV). A table with a
`dataset` column but no `teacher_id` gets one from the run's `seed` (`memkd.tables`), so teachers
stay distinct across the runs of a sweep. Beside the results: `columns.csv`, what each column
of each results file means (`write_columns`); and the summary of a finished sweep, mean +- SEM
over teachers per setting of the swept parameters (`summarize_sweep`, `memkd summarize`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import pandas as pd


def run_table_path(folder: Path, name: str = "table") -> Path | None:
    """The run's typed table `name`: `results/<name>.parquet`, else `<name>.parquet`; None when it has none."""
    return next((p for p in (folder / "results" / f"{name}.parquet", folder / f"{name}.parquet") if p.is_file()), None)


def table_names(sweep_dir: str | os.PathLike, runs: Iterable[str]) -> list[str]:
    """The names of the typed tables the runs saved besides `table` (e.g. ["claims", "table_hard"])."""
    names = set()
    for rid in runs:
        for sub in ("results", "."):
            names |= {p.stem for p in (Path(sweep_dir) / "runs" / rid / sub).glob("*.parquet")}
    return sorted(names - {"table"})


def _defaults(notebook: str, cache: dict) -> dict:
    """The notebook's parameter defaults (when the notebook is still there; else none)."""
    if notebook not in cache:
        from memkd.sweep.grid import notebook_parameters

        try:
            cache[notebook] = {n: p.default for n, p in notebook_parameters(notebook).items()}
        except Exception:  # noqa: BLE001 - a moved notebook: its runs keep the values they set
            cache[notebook] = {}
    return cache[notebook]


def aggregate(
    sweep_dir: str | os.PathLike,
    runs: Iterable[str] | None = None,
    columns: list[str] | None = None,
    name: str = "table",
):
    """One DataFrame of the finished runs' table `name` (all of `sweep_dir/runs` when `runs` is None).

    Each run's `table.parquet` gets the run id and its parameters as leading columns (`columns`,
    default: every parameter the runs set; the notebook's defaults fill the gaps). A parameter whose
    name the table already uses becomes `param_<name>`. A run without a table contributes one row
    of parameters (with a warning when it left only a `table.csv`, which is not read: its types
    would have to be guessed); for another `name`, a run without that table contributes nothing.
    """
    import pandas as pd

    from memkd.tables import add_teacher_id

    sweep_dir = Path(sweep_dir)
    ids = (
        list(runs)
        if runs is not None
        else sorted(p.name for p in (sweep_dir / "runs").iterdir() if (p / "run.json").is_file())
    )
    frames, defaults = [], {}
    for rid in ids:
        folder = sweep_dir / "runs" / rid
        record = json.loads((folder / "run.json").read_text())
        values = {**_defaults(record.get("notebook", ""), defaults), **record.get("parameters", {})}
        names = columns if columns is not None else list(record.get("parameters", {}))
        path = run_table_path(folder, name)
        if path is None and name != "table":
            continue
        if path is None and any((folder / sub / "table.csv").is_file() for sub in ("results", ".")):
            warnings.warn(
                f"aggregate: run {rid} wrote table.csv but no table.parquet; only its parameters "
                "are aggregated (write tables with memkd.book.chapter.Chapter.save_table).",
                stacklevel=2,
            )
        table = pd.read_parquet(path) if path else pd.DataFrame(index=[0])
        if isinstance(values.get("seed"), int):
            add_teacher_id(table, values["seed"])
        lead = {"run": rid}
        for param in names:
            lead[f"param_{param}" if param in table.columns or param == "run" else param] = values.get(param)
        for i, (column, value) in enumerate(lead.items()):
            table.insert(i, column, [value] * len(table))
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["run", *(columns or [])])
    return pd.concat(frames, ignore_index=True)


def write_results(table, sweep_dir: str | os.PathLike, name: str = "table") -> None:
    """`results.parquet` (the types kept) and its `results.csv` export, each written atomically
    (`results.<name>.*` for another table). The CSV prints float32 values without noise
    (`memkd.tables.csv_ready`); the Parquet file keeps every value as it is.

    A column whose runs disagree on its type (text in one run, numbers in another) is stored as
    text in the Parquet file, which holds one type per column.
    """
    from memkd.tables import write_csv

    sweep_dir = Path(sweep_dir)
    stem = "results" if name == "table" else f"results.{name}"
    tmp = sweep_dir / f".{stem}.parquet.tmp"
    try:
        table.to_parquet(tmp, index=False)
    except (TypeError, ValueError):  # pyarrow's ArrowTypeError / ArrowInvalid
        mixed = [c for c in table.columns if table[c].dtype == object]
        table.astype({c: str for c in mixed}).to_parquet(tmp, index=False)
    tmp.replace(sweep_dir / f"{stem}.parquet")
    write_csv(table, sweep_dir / f"{stem}.csv")


def collect_tables(sweep_dir: str | os.PathLike, runs: Iterable[str], columns: list[str] | None = None) -> dict:
    """Aggregate and write every table the runs saved besides `table` (`results.<name>.parquet`
    and `.csv`, e.g. `results.claims.csv`: each run's verdicts with its parameters); {name: table}."""
    runs = list(runs)
    out = {}
    for name in table_names(sweep_dir, runs):
        out[name] = aggregate(sweep_dir, runs, columns, name=name)
        write_results(out[name], sweep_dir, name)
    return out


# --------------------------------------------------------------------------- the column dictionary
COLUMNS_FILE = "columns.csv"


def column_meanings(tables: dict, parameters: dict[str, str]) -> "pd.DataFrame":
    """One row per column of each results file: file, column, dtype, meaning.

    tables: {file name: DataFrame}, e.g. {"results.parquet": table}; parameters: {notebook
    parameter: its help}. A column's meaning comes from the parameter's help (a swept or filled-in
    parameter), else from `memkd/columns.yml` (`memkd.declare.COLUMNS`); "" where neither says.
    """
    import pandas as pd

    from memkd.declare import COLUMNS

    rows = []
    for file, table in tables.items():
        for column in table.columns:
            name = column.removeprefix("param_") if column.startswith("param_") else column
            if column == "run":
                meaning = "the run: its folder under runs/ (one execution of the notebook)"
            elif column.startswith("param_") and name in parameters:
                meaning = f"the notebook's parameter '{name}' (the table has its own '{name}'): {parameters[name]}"
            elif column in parameters and column not in COLUMNS:
                meaning = f"the notebook's parameter: {parameters[column]}"
            else:
                meaning = COLUMNS.get(column, "")
            rows.append({"file": file, "column": column, "dtype": str(table[column].dtype), "meaning": meaning})
    return pd.DataFrame(rows, columns=["file", "column", "dtype", "meaning"])


def write_columns(sweep_dir: str | os.PathLike, tables: dict, parameters: dict[str, str]) -> Path:
    """`columns.csv` beside the results: what every column of every results file means
    (`column_meanings`), so a results.csv read without memkd can still be understood."""
    from memkd.tables import write_csv

    return write_csv(column_meanings(tables, parameters), Path(sweep_dir) / COLUMNS_FILE)


# --------------------------------------------------------------------------- the summary
def swept_parameters(sweep_dir: str | os.PathLike, table=None) -> list[str]:
    """The parameters that take more than one value across the folder's finished runs, as columns
    of `results.parquet`, `seed` left out (seeds give more teachers, not another setting). Where
    the table has its own column of the parameter's name (a chapter's rows copy its knobs, e.g.
    `alpha`), that column is used: it holds the value the run used, where the parameter
    (`param_alpha`) may hold 0 for "the profile's value"."""
    import pandas as pd

    table = pd.read_parquet(Path(sweep_dir) / "results.parquet") if table is None else table
    names = []
    for rid in table["run"].unique() if "run" in table.columns else []:
        path = Path(sweep_dir) / "runs" / str(rid) / "run.json"
        if path.is_file():
            names += [n for n in json.loads(path.read_text()).get("parameters", {}) if n not in names]
    columns = [n for n in names if n != "seed"]  # param_<n> is the parameter; <n> the table's own column
    return [c for c in columns if c in table.columns and table[c].nunique(dropna=False) > 1]


def summarize_sweep(
    sweep_dir: str | os.PathLike, by: list[str] | None = None, values: list[str] | None = None, name: str = "table"
):
    """Mean +- SEM over teachers of `values` (default: test_acc) per setting of `by` (default: the
    swept parameters, `swept_parameters`) in a finished sweep's `results.parquet` (or
    `results.<name>.parquet`): `memkd.summarize` with the teacher (`teacher_id`) as the unit."""
    import pandas as pd

    from memkd.config import invalid
    from memkd.tables import summarize

    stem = "results" if name == "table" else f"results.{name}"
    path = Path(sweep_dir) / f"{stem}.parquet"
    if not path.is_file():
        raise invalid(
            "out", "memkd summarize", f"a sweep folder holding {stem}.parquet (run memkd sweep first)", str(sweep_dir)
        )
    table = pd.read_parquet(path)
    if "teacher_id" not in table.columns:
        raise invalid(
            "out",
            "memkd summarize",
            f"a sweep whose {path.name} names each row's teacher (teacher_id, "
            "the unit of the mean +- SEM); this notebook's table has none",
            str(sweep_dir),
        )
    by = swept_parameters(sweep_dir, table) if by is None else list(by)
    values = list(values) if values else ["test_acc"]
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    for option, asked in (("by", by), ("value", values)):
        missing = [c for c in asked if c not in table.columns]
        if missing:
            raise invalid(
                option,
                "memkd summarize",
                f"columns of {path.name} (its numeric columns: {numeric}; the "
                f"others: {[c for c in table.columns if c not in numeric]})",
                missing,
            )
    return summarize(table, values, by=by)
