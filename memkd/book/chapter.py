"""What every chapter notebook does besides the science: resolve its parameters, keep its outputs.

A chapter's first code cells are: the Colab install cell, then a `parameters` cell of plain values
(papermill overrides them), then::

    ch = memkd.book.chapter.Chapter("02_logit_distillation", profile=profile, results_dir=results_dir,
                               device=device, seed=seed)

`ch.profile` is the resolved profile (an empty `profile` parameter means `$MEMKD_PROFILE`, else
"quick"), `ch.device` a `torch.device` (cuda, then mps, then cpu unless forced). Results go to
`ch.results_dir`, by default `<results root>/<chapter>` where the results root is `$MEMKD_RESULTS`
or `<book root>/results/<profile>` (the book root is the first parent folder holding `_config.yml`).
Chapters of "Beyond the paper" pass `beyond_paper=True`: their claims are the book's own questions.
Chapters of "The published version" pass `published_version=True`: their claims count in a headline
block of their own (the report also finds both parts from `_toc.yml`).

A claim that tests again an effect another claim already tests (the same students against a second
baseline, say) names that claim in `supports="<chapter>:<claim>"`: the report shows it but neither
counts it in the headline nor in the family adjusted for multiplicity.

Claims are tested with teachers as the unit of replication (`Chapter.claim`, `claim_difference`):
students are averaged within each teacher, and the per-teacher differences get one of three
verdicts from a confidence interval (`memkd.metrics.interval_test`); counts and outcomes without
spread get an exact binomial test (`claim_count`; the three live in `memkd.book.claim_tests`). Each
claim records its margin with the reason, its baseline, and its power plan (`memkd.book.plan`): the
planned n and the assumed effect.

Files a chapter leaves there (the report page and the sweeps read them):
    table.csv          the tidy results, one row per trained student (`save_table`)
    table.config.json  the experiment's validated configuration, when the table carries it
    <name>.png         each figure (`save_figure`)
    claims.csv         one row per claim with this build's verdict (CLAIM_COLUMNS; `claim`)
    departures.csv     how the chapter departs from the paper or its released code (`record_departures`,
                       from memkd.book.departures)
    meta.json          chapter, profile, seed, teacher protocol and clock, elapsed seconds and the build's
                       provenance (memkd.provenance.collect: version, git commit, device, ...)
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from memkd import __version__
from memkd.tables import write_csv
from memkd.book.claims import CLAIM_COLUMNS, DEPARTURE_COLUMNS, Claim, claim_units, power_status
from memkd.book.claim_tests import ClaimTests
from memkd.config import PROFILES, invalid, knob_overrides  # noqa: F401 (chapters call memkd.book.chapter.knob_overrides)


def resolve_profile(profile: str | None = None) -> str:
    """Return `profile`, or `$MEMKD_PROFILE` when it is empty, or "quick"; checked against PROFILES."""
    resolved = profile or os.environ.get("MEMKD_PROFILE") or "quick"
    if resolved not in PROFILES:
        raise invalid(
            "profile",
            "resolve_profile",
            f"one of {PROFILES} (an empty profile reads $MEMKD_PROFILE, else 'quick')",
            resolved,
        )
    return resolved


def book_root(start: Path | None = None) -> Path | None:
    """The first folder at or above `start` (default: the working directory) holding `_config.yml`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file():
            return folder
    return None


def results_root(profile: str) -> Path:
    """`$MEMKD_RESULTS`, else `<book root>/results/<profile>`, else `./results/<profile>`."""
    if os.environ.get("MEMKD_RESULTS"):
        return Path(os.environ["MEMKD_RESULTS"])
    root = book_root() or Path.cwd()
    return root / "results" / profile


@dataclass
class Chapter(ClaimTests):
    """Resolved parameters and the output folder of one chapter run; its claims are tested with
    the methods of `memkd.book.claim_tests.ClaimTests` (`claim`, `claim_difference`, `claim_count`)."""

    name: str
    profile: str = ""
    results_dir: str = ""
    device: str = "auto"
    seed: int = 0
    beyond_paper: bool = False  # a chapter of "Beyond the paper": its claims are the book's own
    published_version: bool = False  # a chapter of "The published version": its own headline block
    claims: list[Claim] = field(default_factory=list)
    departures: list[dict] = field(default_factory=list)
    teacher_stop: str = ""  # set by `protocol`
    teacher_clock: dict | None = None  # teachers' training as a multiple of their first 100% (save_table)
    teacher_rule: str | None = None  # what ends the teachers' training, in words (save_table)
    rests_on: dict | None = None  # the run the next claims rest on when their table has lost its config (`rest_on`)

    def __post_init__(self) -> None:
        from memkd.device import resolve_device

        self.profile = resolve_profile(self.profile)
        self.device = resolve_device(self.device, f"chapter {self.name}")
        self.beyond_paper = bool(self.beyond_paper)
        self.published_version = bool(self.published_version)
        path = Path(self.results_dir) if self.results_dir else results_root(self.profile) / self.name
        self.results_dir = str(path)
        path.mkdir(parents=True, exist_ok=True)
        self._started = time.perf_counter()

    @property
    def path(self) -> Path:
        return Path(self.results_dir)

    @property
    def results_shown(self) -> str:
        """`results_dir` as a page may show it, without the build machine's absolute path: from its
        `results` folder on (e.g. "results/smoke/02_logit_distillation"), else relative to the
        working directory when below it, else the folder's name."""
        path = self.path
        if "results" in path.parts:
            return str(Path(*path.parts[len(path.parts) - 1 - path.parts[::-1].index("results") :]))
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return path.name

    # ------------------------------------------------------------------------ tables and figures

    def save_table(self, table: pd.DataFrame, name: str = "table") -> Path:
        """Write a tidy table as `<name>.csv` (atomically; float32 values as float32, e.g. 0.2375) and
        return its path.

        The same table goes to `<name>.parquet` with its column types (what `memkd sweep`
        aggregates: no type is guessed from text). When `table.attrs["config"]` holds a dict (an
        experiment's full validated configuration), it is also written beside the table as
        `<name>.config.json`. The chapter's main table ("table") also gives the teacher clock: how
        many times their first epoch at 100% the teachers trained, and the rule that ended their
        training (`grid_analysis.teacher_rule`; meta.json, the report's chapter table).
        """
        target = write_csv(table, self.path / f"{name}.csv")  # float32 values without noise
        typed = self.path / f"{name}.parquet"
        frame = table.copy(deep=False)
        frame.attrs = {}  # the config goes to its own JSON file below
        try:
            frame.to_parquet(typed.with_suffix(".parquet.tmp"), index=False)
        except (TypeError, ValueError):  # pyarrow: a column mixing types (tables concatenated): as text
            mixed = {
                c: frame[c].map(lambda v: v if v is None or v != v else str(v))
                for c in frame.columns
                if frame[c].dtype == object
            }
            frame.assign(**mixed).to_parquet(typed.with_suffix(".parquet.tmp"), index=False)
        typed.with_suffix(".parquet.tmp").replace(typed)
        if name == "table" and self.teacher_clock is None:
            from memkd.book.grid_analysis import teacher_clock, teacher_rule

            self.teacher_clock = teacher_clock(table)
            config = table.attrs.get("config")
            self.teacher_rule = teacher_rule(config if isinstance(config, dict) else None, self.teacher_stop)
        config = table.attrs.get("config")
        if config is not None:
            if not isinstance(config, dict):
                raise invalid(
                    "table",
                    "Chapter.save_table",
                    says="carries a config it cannot save: table.attrs['config'] must be a dict. "
                    f"Got {type(config).__name__} instead.",
                )
            side = self.path / f"{name}.config.json"
            tmp = side.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(config, indent=2, default=_jsonable))
            tmp.replace(side)
        return target

    def save_figure(self, figure: Any, name: str) -> None:
        """Save a matplotlib figure as `<results_dir>/<name>.png` next to the tables.

        Returns None, so that a cell ending with this call shows the figure and no path.
        """
        figure.savefig(self.path / f"{name}.png", dpi=120, bbox_inches="tight")

    # ------------------------------------------------------------------------ protocol

    @contextmanager
    def section(
        self, *, published_version: bool | None = None, beyond_paper: bool | None = None
    ) -> Iterator["Chapter"]:
        """Claims recorded inside the `with` block go to another block of the report: e.g. chapter 08's
        teacher clock (published_version=True) or a chapter's finding beyond the published version
        (beyond_paper=True). The chapter's own flags (and meta.json's) are restored on leaving.

        >>> import tempfile
        >>> ch = Chapter("00_example", profile="smoke", results_dir=tempfile.mkdtemp(), device="cpu")
        >>> with ch.section(published_version=True):
        ...     _ = ch.claim_count("clock_leak", "Students of a memorizing teacher leak.", successes=9, trials=10,
        ...                        p0=0.1, expect="above", teachers=10)
        >>> ch.claims[-1].published_version, ch.published_version    # recorded in the block; restored after
        (True, False)
        """
        before = (self.published_version, self.beyond_paper)
        if published_version is not None:
            self.published_version = bool(published_version)
        if beyond_paper is not None:
            self.beyond_paper = bool(beyond_paper)
        try:
            yield self
        finally:
            self.published_version, self.beyond_paper = before

    def qualify(self, claim: str, note: str) -> None:
        """Add `note` to the sentence of the recorded claim `claim` (its `paper` text, as the report shows it),
        e.g. that its verdict moves with the teachers' clock; a note already there is not added twice.

        Raises ValueError when no claim of that id was recorded.
        """
        mine = [c for c in self.claims if c.claim == claim]
        if not mine:
            known = ", ".join(c.claim for c in self.claims) or "none yet"
            raise invalid("claim", "Chapter.qualify", must=f"name a claim this chapter recorded ({known})", got=claim)
        for c in mine:
            if note not in c.paper:
                c.paper = f"{c.paper.rstrip()} {note}"

    def departure(self, topic: str, paper: str, book: str, reason: str) -> None:
        """Record one way this chapter departs from the paper's text or the authors' released code:
        a row of the report's protocol table (topic e.g. "teacher stop", "input distribution",
        "temperature convention", "epochs", "pixel shuffle", "profile sizes"). Chapters do not call it
        themselves: `record_departures` records theirs, built in `memkd.book.departures`."""
        row = {"topic": topic, "paper": paper, "book": book, "reason": reason}
        for key, text in row.items():
            if not isinstance(text, str) or not text.strip():
                raise invalid(key, "Chapter.departure", "a non-empty string", text)
        row = {"chapter": self.name, **{k: v.strip() for k, v in row.items()}}
        self.departures = [
            d
            for d in self.departures
            if (d["topic"], d["paper"], d["book"]) != (row["topic"], row["paper"], row["book"])
        ] + [row]

    def record_departures(self, table: pd.DataFrame, **context: Any) -> None:
        """Record all of this chapter's departures that its `table` (and `context`, e.g. `grid_keys`)
        implies: `memkd.book.departures.for_chapter(self.name, table, **context)`. Recording one again
        (a cell run twice, or a second call with more context) keeps a single row."""
        from memkd.book.departures import for_chapter  # imported late: it imports the experiments (torch)

        for row in for_chapter(self.name, table, **context):
            self.departure(**row)

    def protocol(self, teacher_stop: str, reason: str = "") -> str:
        """Say (as a Markdown sentence) which teacher protocol this chapter runs; `meta.json` keeps it.

        "budget": the paper's and the released code's protocol, all `teacher_epochs` then 100%
        required. "first_perfect": stop at the first epoch at 100%, recorded as a departure
        (with `reason`, when given).
        """
        from memkd.distillation import check_teacher_stop  # the stop rules' one home (imported late: torch)

        check_teacher_stop(teacher_stop, "Chapter.protocol", name="teacher_stop")
        self.teacher_stop = teacher_stop
        if teacher_stop == "budget":
            return (
                '**Teacher protocol** (`teacher_stop="budget"`): every teacher trains for its whole budget '
                "of `teacher_epochs` epochs, as in the paper and the authors' released code, and must then "
                "classify all of its training data correctly (else the run stops with `TeacherDidNotMemorize`)."
            )
        from memkd.book.departures import teacher_stop_departure

        self.departure(**teacher_stop_departure(reason))
        return (
            '**Teacher protocol** (`teacher_stop="first_perfect"`): every teacher stops at the first epoch '
            "at which it classifies all of its training data correctly. This is an early stop: the paper and "
            "the authors' released code train for a fixed budget of epochs."
        )

    # ------------------------------------------------------------------------ the end of a chapter

    def verdicts_markdown(self) -> str:
        """The claims recorded so far as a Markdown list, each with this build's verdict (and whether it
        is underpowered), then where the build contradicts the paper (`memkd.book.outcomes.contradictions`):
        what a chapter's closing text shows instead of stating an outcome the build did not compute."""
        from memkd.book.outcomes import contradictions

        if not self.claims:
            return "*No claim was tested in this run.*"
        lines = "\n".join(
            f"- {c.paper} **{c.verdict}** (n = {claim_units(c)})"
            + (" *(tests an effect counted elsewhere)*" if c.supports else "")
            + (" *(a check: it cannot fail at this size; not counted)*" if c.kind == "check" else "")
            + (" *(underpowered)*" if power_status(c.planned_n, c.n) == "underpowered" else "")
            for c in self.claims
        )
        against = contradictions(self)
        return (
            lines
            + ("\n\n" + against if against else "")
            + "\n\n*These are the chapter's own verdicts; the report adjusts each block of claims for "
            "multiplicity (Holm).*"
        )

    def finish(self) -> pd.DataFrame:
        """Write claims.csv, departures.csv and meta.json; return the claims as a table."""
        claims = pd.DataFrame([asdict(c) for c in self.claims], columns=CLAIM_COLUMNS)
        self.save_table(claims, "claims")
        self.save_table(pd.DataFrame(self.departures, columns=DEPARTURE_COLUMNS), "departures")
        meta = {
            "chapter": self.name,
            "profile": self.profile,
            "device": str(self.device),
            "seed": self.seed,
            "beyond_paper": self.beyond_paper,
            "published_version": self.published_version,
            "teacher_stop": self.teacher_stop or None,
            "teacher_clock": self.teacher_clock,
            "teacher_rule": self.teacher_rule,
            "memkd_version": __version__,
            "elapsed_s": round(time.perf_counter() - self._started, 2),
        }
        meta.update(_provenance(self.device))
        (self.path / "meta.json").write_text(json.dumps(meta, indent=2, default=_jsonable))
        return claims


def _provenance(device: Any) -> dict:
    """memkd.provenance.collect(device), or {} where that module is not available."""
    try:
        from memkd.provenance import collect
    except ImportError:
        return {}
    return collect(device)


def _jsonable(obj: Any) -> Any:
    """What json.dumps cannot write itself: numpy scalars and arrays, paths, devices, sets."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)
