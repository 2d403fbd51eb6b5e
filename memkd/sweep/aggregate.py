"""The sweep's results: every finished run's typed table, gathered into one.

Owns: reading each run's `table.parquet` (written with its column types by the notebook, e.g.
`memkd.book.chapter.Chapter.save_table`), putting the run id and the run's parameters in front of its
rows, and writing the combined `results.parquet` plus a `results.csv` export. Nothing is parsed
from text: a column's type is the type the notebook gave it (a hex token such as "97e398195100"
stays text; it once turned into infinity when types were guessed from CSV).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable

TABLE = "table.parquet"


def run_table_path(folder: Path) -> Path | None:
    """The run's typed table: `results/table.parquet`, else `table.parquet`; None when it has none."""
    return next((p for p in (folder / "results" / TABLE, folder / TABLE) if p.is_file()), None)


def _defaults(notebook: str, cache: dict) -> dict:
    """The notebook's parameter defaults (when the notebook is still there; else none)."""
    if notebook not in cache:
        from memkd.sweep.grid import notebook_parameters

        try:
            cache[notebook] = {n: p.default for n, p in notebook_parameters(notebook).items()}
        except Exception:  # noqa: BLE001 - a moved notebook: its runs keep the values they set
            cache[notebook] = {}
    return cache[notebook]


def aggregate(sweep_dir: str | os.PathLike, runs: Iterable[str] | None = None, columns: list[str] | None = None):
    """One DataFrame of the finished runs (all of `sweep_dir/runs` when `runs` is None).

    Each run's `table.parquet` gets the run id and its parameters as leading columns (`columns`,
    default: every parameter the runs set; the notebook's defaults fill the gaps). A parameter whose
    name the table already uses becomes `param_<name>`. A run without a table contributes one row
    of parameters (with a warning when it left only a `table.csv`, which is not read: its types
    would have to be guessed).
    """
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    ids = list(runs) if runs is not None else sorted(p.name for p in (sweep_dir / "runs").iterdir()
                                                       if (p / "run.json").is_file())
    frames, defaults = [], {}
    for rid in ids:
        folder = sweep_dir / "runs" / rid
        record = json.loads((folder / "run.json").read_text())
        values = {**_defaults(record.get("notebook", ""), defaults), **record.get("parameters", {})}
        names = columns if columns is not None else list(record.get("parameters", {}))
        path = run_table_path(folder)
        if path is None and any((folder / sub / "table.csv").is_file() for sub in ("results", ".")):
            warnings.warn(f"aggregate: run {rid} wrote table.csv but no table.parquet; only its parameters "
                          "are aggregated (write tables with memkd.book.chapter.Chapter.save_table).", stacklevel=2)
        table = pd.read_parquet(path) if path else pd.DataFrame(index=[0])
        lead = {"run": rid}
        for name in names:
            lead[f"param_{name}" if name in table.columns or name == "run" else name] = values.get(name)
        for i, (name, value) in enumerate(lead.items()):
            table.insert(i, name, [value] * len(table))
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["run", *(columns or [])])
    return pd.concat(frames, ignore_index=True)


def write_results(table, sweep_dir: str | os.PathLike) -> None:
    """`results.parquet` (the types kept) and its `results.csv` export, each written atomically.

    A column whose runs disagree on its type (text in one run, numbers in another) is stored as
    text in the Parquet file, which holds one type per column.
    """
    sweep_dir = Path(sweep_dir)
    tmp = sweep_dir / ".results.parquet.tmp"
    try:
        table.to_parquet(tmp, index=False)
    except (TypeError, ValueError):  # pyarrow's ArrowTypeError / ArrowInvalid
        mixed = [c for c in table.columns if table[c].dtype == object]
        table.astype({c: str for c in mixed}).to_parquet(tmp, index=False)
    tmp.replace(sweep_dir / "results.parquet")
    tmp = sweep_dir / ".results.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(sweep_dir / "results.csv")
