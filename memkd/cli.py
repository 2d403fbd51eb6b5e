"""The `memkd` command (also `python -m memkd`): `memkd sweep`, `memkd summarize` and `memkd book`.

    memkd sweep nbs/02_logit_distillation.ipynb -p profile=smoke -p alpha=0.2,0.6 -p seed=0,1,2
    memkd sweep NOTEBOOK --grid grid.yaml -o sweeps/fig2 --dask-local 4
    memkd sweep NOTEBOOK --list-params
    memkd summarize sweeps/fig2 --by alpha --value test_acc,independent_acc
    memkd book --profile paper -o _build
    memkd --version

`-o/--out` is the output folder in every subcommand (relative to the working directory);
`--scheduler ADDRESS`, `--scheduler-file FILE` and `--dask-local N` run on Dask in both.
Exit status: 0 when every run is done, 1 when a run failed, 2 for a bad command line or grid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memkd.config import invalid


def _at_least(low: int):
    """An argparse type: an int >= `low` (else the command line is refused, exit status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}; got {value}")
        return value

    parse.__name__ = f"int >= {low}"
    return parse


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds > 0 (else the command line is refused, exit status 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0; got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0; got {text}")
    return value


_seconds.__name__ = "seconds > 0"


def _executor_options(p: argparse.ArgumentParser, workers_help: str) -> None:
    """The options that choose where runs execute (the same in every subcommand)."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("-w", "--workers", type=_at_least(1), help=workers_help)
    where.add_argument("--dask-local", type=_at_least(1), metavar="N", help="start a Dask LocalCluster of N workers")
    where.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786")
    where.add_argument(
        "--scheduler-file",
        metavar="FILE",
        help="Dask scheduler file (written by `dask scheduler --scheduler-file FILE`)",
    )
    p.add_argument(
        "--retries", type=_at_least(0), default=1, help="times Dask reruns a run whose process died (default 1)"
    )
    from memkd.sweep.run import CELL_TIMEOUT

    by_profile = ", ".join(f"{name} {seconds}" for name, seconds in CELL_TIMEOUT.items())
    p.add_argument("--timeout", type=_seconds, help=f"seconds per cell (default: by profile: {by_profile})")


# Each sub-command's one-line summary, its description and the help of its -o/--out folder.
COMMANDS = {
    "sweep": (
        "execute a notebook over a grid of parameters (resumable)",
        "Execute NOTEBOOK with papermill at every point of a grid; finished runs are skipped on the next "
        "invocation. Results: OUT/results.parquet and OUT/results.csv.",
        "output folder: the sweep directory (default: sweeps/<notebook name>)",
    ),
    "book": (
        "execute every chapter at a profile and render the book",
        "Execute every chapter (nbs/) at PROFILE, each in its own process, then render the site from the "
        "executed notebooks (memkd.book.build.build_book).",
        "output folder: results, executed notebooks and the site (default: _build in the book root)",
    ),
}


def _command_parser(sub, name: str) -> argparse.ArgumentParser:
    """The sub-command `name`'s parser (texts from COMMANDS), with the option every command has: -o/--out."""
    summary, description, out_help = COMMANDS[name]
    p = sub.add_parser(name, help=summary, description=description)
    p.add_argument("-o", "--out", "--output", dest="out", metavar="DIR", help=out_help)
    return p


def _sweep_parser(sub) -> None:
    p = _command_parser(sub, "sweep")
    p.add_argument("notebook", help="the notebook, e.g. nbs/02_logit_distillation.ipynb")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a parameter and its values, each read as YAML (repeat; the lists expand as a "
        "product): -p alpha=0.2,0.6  -p 'ids=[1, 2]'  -p \"title='a,b'\"",
    )
    p.add_argument(
        "-g",
        "--grid",
        metavar="FILE.yaml",
        help="YAML grid: name: value or [values], optional points: [{...}]; -p overrides",
    )
    _executor_options(p, "local worker processes (default 2)")
    p.add_argument("--retry-failed", action="store_true", help="rerun the runs whose last attempt failed")
    p.add_argument("--list-params", action="store_true", help="print the notebook's parameters and exit")
    p.add_argument("--dry-run", action="store_true", help="print the points and their status, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _names(text: str) -> list[str]:
    """An argparse type: comma-separated column names ("" for none)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _summarize_parser(sub) -> None:
    p = sub.add_parser(
        "summarize",
        help="mean +- SEM over teachers of a finished sweep, by the knobs swept",
        description="Read OUT/results.parquet of a sweep and print the mean +- SEM over teachers "
        "(teacher_id: students averaged within their teacher first) of each value, per setting of "
        "the parameters that take several values in the sweep (seed left out: seeds add teachers).",
    )
    p.add_argument("out", metavar="OUT", help="the sweep folder (memkd sweep's -o/--out)")
    p.add_argument(
        "--by",
        type=_names,
        metavar="NAME,NAME",
        help="the columns that define a setting (default: the swept parameters; '' for one row)",
    )
    p.add_argument("--value", type=_names, metavar="NAME,NAME", help="the columns to average (default test_acc)")
    p.add_argument(
        "--table",
        default="table",
        metavar="NAME",
        help="another table of the sweep, e.g. table_hard (results.table_hard.parquet)",
    )
    p.add_argument("--csv", metavar="FILE", help="also write the summary to FILE")


def _run_summarize_command(args) -> int:
    from memkd.sweep import summarize_sweep
    from memkd.tables import write_csv

    summary = summarize_sweep(args.out, by=args.by, values=args.value, name=args.table)
    values = [c for c in summary.columns if f"{c}_sem" in summary.columns]
    shown = summary.drop(columns=[f"{v}_sem" for v in values])
    for v in values:
        shown[v] = [f"{m:.4f} +- {e:.4f}" for m, e in zip(summary[v], summary[f"{v}_sem"])]
    print(f"mean +- SEM over teachers (n: teachers; students: per teacher) in {args.out}")
    print(shown.to_string(index=False))
    if args.csv:
        write_csv(summary, args.csv)
    return 0


def _book_parser(sub) -> None:
    p = _command_parser(sub, "book")
    p.add_argument(
        "--profile", default="quick", choices=("smoke", "quick", "paper"), help="smoke | quick | paper (default quick)"
    )
    _executor_options(p, "chapters executed at once (default 1)")


def _run_sweep_command(args) -> int:
    from memkd import sweep

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise invalid(
            "notebook",
            "memkd sweep",
            "the path of a notebook file",
            shown=f"{str(notebook)!r}, where there is no such file,",
        )
    if args.list_params:
        for param in sweep.notebook_parameters(notebook).values():
            print(param.describe())
        return 0
    if args.scheduler_file and not Path(args.scheduler_file).is_file():
        raise invalid(
            "--scheduler-file",
            "memkd sweep",
            must="name an existing file (written by `dask scheduler --scheduler-file FILE`)",
            got=args.scheduler_file,
        )
    grid = sweep.load_grid(args.grid) if args.grid else {}
    grid.update(sweep.parse_cli_grid(args.param))
    out = Path(args.out) if args.out else Path("sweeps") / notebook.stem
    if args.dry_run:
        here = args.scheduler is None and args.scheduler_file is None  # Dask workers may have other devices
        for rid, point, record in sweep.plan_sweep(notebook, grid, out, this_machine=here):
            print(rid, record["status"] if record else "pending", point)
        return 0
    result = sweep.run_sweep(
        notebook,
        grid,
        out,
        workers=2 if args.workers is None else args.workers,
        scheduler=args.scheduler,
        scheduler_file=args.scheduler_file,
        dask_local=args.dask_local,
        timeout=args.timeout,
        retries=args.retries,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
    )
    for record in result.records:
        if record["status"] == "failed":
            cell = record.get("cell_index")
            print(
                f"failed {record['run']} {record['parameters']}: {record['error']}"
                + (f" (cell {cell})" if cell is not None else ""),
                file=sys.stderr,
            )
    print(result.summary())
    return 0 if result.ok else 1


def _run_book_command(args) -> int:
    from memkd.book import build as book

    options = {
        "workers": args.workers,
        "scheduler": args.scheduler,
        "scheduler_file": args.scheduler_file,
        "dask_local": args.dask_local,
        "timeout": args.timeout,
        "output": str(Path(args.out).resolve()) if args.out else None,
    }
    book.build_book(profile=args.profile, retries=args.retries, **{k: v for k, v in options.items() if v is not None})
    return 0


def _version() -> str:
    import memkd

    return f"memkd {memkd.__version__}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `memkd` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="memkd", description="memkd: knowledge distillation for random data.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    _sweep_parser(sub)
    _summarize_parser(sub)
    _book_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["sweep", "summarize"] and not Path("summarize").exists():
        argv = argv[1:]  # `memkd sweep summarize OUT` is `memkd summarize OUT`
    args = parser.parse_args(argv)
    try:
        if args.command == "sweep":
            return _run_sweep_command(args)
        if args.command == "summarize":
            return _run_summarize_command(args)
        return _run_book_command(args)
    except ModuleNotFoundError as err:  # an optional dependency
        extra = "dist" if (err.name or "").split(".")[0] in ("dask", "distributed") else "book"
        print(f"error: {err.name} is not installed: pip install 'memkd[{extra}]'", file=sys.stderr)
        return 2
    except ValueError as err:  # a bad command line, grid or notebook: nothing ran
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # another sweep holds the folder; a chapter of the book failed
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
