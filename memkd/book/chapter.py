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
spread get an exact binomial test (`claim_count`). Each claim records its margin with the reason,
its baseline, and its power plan (`memkd.book.plan`): the planned n and the assumed effect.

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
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from memkd import __version__
from memkd.tables import write_csv
from memkd.book.claims import (CLAIM_COLUMNS, DEPARTURE_COLUMNS, Claim, plural, pm_text, verdict_reason, interval_text,
                               claim_units, power_status, power_text, units_text)
from memkd.book.plan import Margin, Plan, baseline_for, margin_of, plan_for
from memkd.config import PROFILES, SCALAR_TO_LIST, knob_overrides  # noqa: F401 (chapters call memkd.book.chapter.knob_overrides)

DATA_KINDS = ("paper", "stand-in")  # measured on the paper's kind of data, or on a stand-in for it
def resolve_profile(profile: str | None = None) -> str:
    """Return `profile`, or `$MEMKD_PROFILE` when it is empty, or "quick"; checked against PROFILES."""
    resolved = profile or os.environ.get("MEMKD_PROFILE") or "quick"
    if resolved not in PROFILES:
        raise ValueError(
            f"The 'profile' parameter of resolve_profile must be one of {PROFILES} (an empty profile reads "
            f"$MEMKD_PROFILE, else 'quick'). Got {resolved!r} instead."
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
class Chapter:
    """Resolved parameters and the output folder of one chapter run."""

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

    def __post_init__(self) -> None:
        from memkd.device import resolve_device

        self.profile = resolve_profile(self.profile)
        self.device = resolve_device(self.device)
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
            return str(Path(*path.parts[len(path.parts) - 1 - path.parts[::-1].index("results"):]))
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
        many times their first epoch at 100% the teachers trained (meta.json, the report).
        """
        target = write_csv(table, self.path / f"{name}.csv")  # float32 values without noise
        typed = self.path / f"{name}.parquet"
        frame = table.copy(deep=False)
        frame.attrs = {}  # the config goes to its own JSON file below
        try:
            frame.to_parquet(typed.with_suffix(".parquet.tmp"), index=False)
        except (TypeError, ValueError):  # pyarrow: a column mixing types (tables concatenated): as text
            mixed = {c: frame[c].map(lambda v: v if v is None or v != v else str(v))
                     for c in frame.columns if frame[c].dtype == object}
            frame.assign(**mixed).to_parquet(typed.with_suffix(".parquet.tmp"), index=False)
        typed.with_suffix(".parquet.tmp").replace(typed)
        if name == "table" and self.teacher_clock is None:
            from memkd.book.grid_analysis import teacher_clock

            self.teacher_clock = teacher_clock(table)
        config = table.attrs.get("config")
        if config is not None:
            if not isinstance(config, dict):
                raise ValueError(f"The 'table' parameter of Chapter.save_table carries a config it cannot save: "
                                 f"table.attrs['config'] must be a dict. Got {type(config).__name__} instead.")
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

    # ------------------------------------------------------------------------ claims, teachers as unit

    def _check_claim_args(self, method: str, expect: str, margin: float | Margin, level: float | None,
                          data: str) -> tuple[float, float, str]:
        """Validate the common arguments of the claim methods; return (level, margin, margin reason)."""
        from memkd.metrics import EXPECTATIONS

        if expect not in EXPECTATIONS:
            raise ValueError(f"The 'expect' parameter of Chapter.{method} must be one of {EXPECTATIONS}. "
                             f"Got {expect!r} instead.")
        if data not in DATA_KINDS:
            raise ValueError(f"The 'data' parameter of Chapter.{method} must be one of {DATA_KINDS}. Got {data!r} instead.")
        margin, reason = margin_of(margin, expect)
        if expect == "equivalent" and not (isinstance(margin, (int, float)) and margin > 0):
            raise ValueError(f"The 'margin' parameter of Chapter.{method} must be a float > 0 for "
                             f"expect='equivalent' (the equivalence margin). Got {margin!r} instead.")
        level = (0.05 if expect == "equivalent" else 0.01) if level is None else level
        return level, margin, reason

    def _plan(self, claim_id: str, plan: Plan | None, r: dict, chance: float, p0: float | None = None) -> dict:
        """The claim's power plan (memkd.book.plan): assumed effect, its reason, planned n, sd source."""
        from memkd.metrics import planned_teachers, planned_trials

        plan = plan or plan_for(self.name, claim_id)
        if plan is None:
            return {}
        effect = plan.effect_at(chance)
        out = {"assumed_effect": effect, "effect_reason": plan.reason}
        if math.isnan(effect):
            return {**out, "sd_source": "no chance level in the table: not planned"}
        if r.get("test") == "exact binomial":
            p1 = p0 + effect if r["expect"] == "above" else p0 - effect
            planned = planned_trials(p0, min(1.0, max(0.0, p1)), r["level"], expect=r["expect"], margin=r["margin"])
            return {**out, "planned_n": planned, "sd_source": "exact binomial: none needed"}
        if plan.sd is not None:
            sd, source = plan.sd, "assumed in memkd.book.plan"
        else:
            sd = r["sem"] * math.sqrt(r["n"]) if r["n"] >= 2 else math.nan
            source = "this build's per-teacher standard deviation"
        return {**out, "planned_n": planned_teachers(effect, sd, r["level"], expect=r["expect"], margin=r["margin"]),
                "sd_source": source}

    def claim(self, claim_id: str, paper_text: str, table: pd.DataFrame, value: str = "test_acc",
              baseline: str | float | None = None, *, expect: str = "above", margin: float | Margin = 0.0,
              level: float | None = None, unit: str = "dataset", what: str = "held-out accuracy",
              data: str = "paper", detail: str = "", supports: str = "", plan: Plan | None = None) -> str:
        """Test a claim on per-teacher means, record it, and return the verdict as a Markdown sentence.

        table : one row per student, with columns `unit`, `value` (and `baseline` if it is a name)
        baseline : a constant (e.g. the trivial accuracy), a column averaged over the same students
            (e.g. "independent_acc"), or None (the value itself is tested against the margin)
        expect, margin, level : see memkd.metrics.interval_test; `level` defaults to 0.01 for
            "above"/"below" and 0.05 for "equivalent", which needs a margin > 0; a margin given as a
            `memkd.book.plan.Margin` carries its reason (recorded as margin_reason)
        plan : the claim's power plan; None looks it up in memkd.book.plan.PLANS (none: not planned).
            A plan's effect in units of chance uses the table's `chance` column
        data : "paper" (the paper's kind of data) or "stand-in" (never counted as the paper's claim)
        supports : "<chapter>:<claim>" when this claim tests an effect that claim already tests (shown
            in the report, not counted); "" (the default) counts it

        >>> ch.claim("soft_beats_trivial", "Soft labels beat the trivial accuracy.", table,   # doctest: +SKIP
        ...          baseline=trivial, expect="above")
        '**held-out accuracy**: 0.085 ± 0.006 against 0.020 (mean ± SEM over 5 teachers × 4 students), ...'
        """
        from memkd.metrics import interval_test, mean_sem, per_unit_means

        level, margin, margin_reason = self._check_claim_args("claim", expect, margin, level, data)
        means = per_unit_means(table, value, baseline, unit)
        r = interval_test(means["difference"], expect, margin, level)
        measured, measured_sem = mean_sem(means["value"])
        base = float(means["baseline"].mean()) if len(means) and baseline is not None else math.nan
        students = int(means["students"].min()) if len(means) else math.nan
        against = ""
        if baseline is not None:
            against = " against " + (f"`{baseline}` " if isinstance(baseline, str) else "") + pm_text(base, math.nan)
        self._record(claim_id, paper_text, r, value=value, measured=measured, baseline=base,
                     students=students, data=data, detail=detail, supports=supports, margin_reason=margin_reason,
                     plan=self._plan(claim_id, plan, r, _chance(table)))
        return self._sentence(what, f"{pm_text(measured, measured_sem)}{against}", r, students,
                              "difference" if baseline is not None else "mean") + power_text(self.claims[-1])

    def claim_difference(self, claim_id: str, paper_text: str, table_a: pd.DataFrame, table_b: pd.DataFrame,
                         value: str = "test_acc", *, expect: str = "above", margin: float | Margin = 0.0,
                         level: float | None = None, unit: str = "dataset", what: str = "difference",
                         data: str = "paper", detail: str = "", supports: str = "", plan: Plan | None = None) -> str:
        """Test the per-teacher mean of `table_a` minus that of `table_b`, paired on the teachers
        present in both; record the claim and return the verdict as a Markdown sentence.

        Raises ValueError when the two tables share no teacher (nothing to pair).
        """
        from memkd.metrics import interval_test, mean_sem, per_unit_means

        level, margin, margin_reason = self._check_claim_args("claim_difference", expect, margin, level, data)
        a, b = per_unit_means(table_a, value, None, unit), per_unit_means(table_b, value, None, unit)
        paired = a[[unit, "value", "students"]].merge(b[[unit, "value", "students"]], on=unit, suffixes=("_a", "_b"))
        if paired.empty:
            raise ValueError(f"The 'table_b' parameter of Chapter.claim_difference must share at least one {unit!r} "
                             f"with table_a (the claim pairs the two tables on it). Got tables that share no {unit!r} "
                             f"(table_a: {a[unit].tolist()}, table_b: {b[unit].tolist()}) instead.")
        r = interval_test(paired["value_a"] - paired["value_b"], expect, margin, level)
        ma, sa = mean_sem(paired["value_a"])
        mb, sb = mean_sem(paired["value_b"])
        students = int(min(paired["students_a"].min(), paired["students_b"].min()))
        self._record(claim_id, paper_text, r, value=value, measured=ma, baseline=mb, students=students,
                     data=data, detail=detail, supports=supports, margin_reason=margin_reason,
                     plan=self._plan(claim_id, plan, r, _chance(table_a)))
        return self._sentence(what, f"{pm_text(ma, sa)} against {pm_text(mb, sb)}", r, students,
                              "difference", paired=True) + power_text(self.claims[-1])

    def claim_count(self, claim_id: str, paper_text: str, successes: int, trials: int, p0: float, *,
                    expect: str = "above", margin: float | Margin = 0.0, level: float | None = None,
                    teachers: int | float = math.nan, what: str = "proportion", data: str = "paper",
                    detail: str = "", supports: str = "", plan: Plan | None = None) -> str:
        """Test a proportion with an exact binomial test, record it, and return the verdict as Markdown.

        For outcomes that are counts or have no spread, where a t interval over teachers would
        collapse: `successes` of `trials` independent outcomes (e.g. held-out points classified
        correctly, pooled over teachers; or perfect cells) against `p0` (e.g. 1/C, or 1.0).
        `teachers` is how many teachers the outcomes come from (shown beside the trials).
        See memkd.metrics.binomial_test for the verdict rules; a plan's effect in units of chance
        takes `p0` as the chance level, and its planned n counts outcomes, like `trials`.

        >>> ch.claim_count("perfect_above_line", "Every cell above the line is perfect.",  # doctest: +SKIP
        ...                successes=60, trials=60, p0=0.95, expect="above", teachers=5)
        """
        from memkd.metrics import binomial_test, format_p

        level, margin, margin_reason = self._check_claim_args("claim_count", expect, margin, level, data)
        r = binomial_test(successes, trials, p0, expect, margin, level)
        proportion = successes / trials if trials else math.nan
        self._record(claim_id, paper_text, r, value=what, measured=proportion, baseline=p0,
                     students=math.nan, data=data, detail=detail, supports=supports, margin_reason=margin_reason,
                     plan=self._plan(claim_id, plan, r, chance=p0, p0=p0))
        self.claims[-1].students = float(teachers)  # shown as "of T teachers"
        interval = (f"exact {100 * (1 - 2 * r['level']):.0f}% interval of the proportion "
                    f"[{r['ci_low'] + p0:.3f}, {r['ci_high'] + p0:.3f}]" if trials else "")
        source = f" from {plural(int(teachers), 'teacher')}" if teachers == teachers else ""
        return (f"**{what}**: {successes} of {trials}{source} = {proportion:.3f} against {p0:.3f}"
                + (f", {interval} (exact binomial test, {format_p(r['p_value'])})" if interval else "")
                + f": **{r['verdict']}**{verdict_reason(r)}." + power_text(self.claims[-1]))

    def _record(self, claim_id: str, paper_text: str, r: dict, *, value: str, measured: float,
                baseline: float, students: float, data: str, detail: str, supports: str = "",
                margin_reason: str = "", plan: dict | None = None) -> Claim:
        if not isinstance(supports, str) or (supports and ":" not in supports):
            raise ValueError("The 'supports' parameter of Chapter.claim must be '' or '<chapter>:<claim>'. "
                             f"Got {supports!r} instead.")
        return self._keep(Claim(
            self.name, claim_id, paper_text, float(measured), float(r["sem"]), int(r["n"]),
            float(r["p_value"]), r["verdict"], detail, data=data, beyond_paper=self.beyond_paper,
            expect=r["expect"], value=value, baseline=float(baseline), difference=float(r["mean"]),
            ci_low=float(r["ci_low"]), ci_high=float(r["ci_high"]), margin=float(r["margin"]),
            level=float(r["level"]), students=students, test=str(r.get("test", "t interval")),
            note=str(r.get("note", "")), supports=supports, published_version=self.published_version,
            margin_reason=margin_reason, baseline_reason=baseline_for(self.name, claim_id), **(plan or {})))

    @staticmethod
    def _sentence(what: str, numbers: str, r: dict, students: float, of: str, paired: bool = False) -> str:
        from memkd.metrics import format_p

        interval = interval_text(r, of)
        return (f"**{what}**: {numbers} (mean ± SEM over {units_text(r['n'], students)}"
                + (", paired on teachers" if paired else "") + ")"
                + (f", {interval} ({format_p(r['p_value'])})" if interval else "")
                + f": **{r['verdict']}**{verdict_reason(r)}.")

    def _keep(self, entry: Claim) -> Claim:
        """Record `entry`, replacing an earlier claim with the same id (a cell run twice)."""
        self.claims = [c for c in self.claims if c.claim != entry.claim] + [entry]
        return entry

    # ------------------------------------------------------------------------ protocol

    @contextmanager
    def section(self, *, published_version: bool | None = None, beyond_paper: bool | None = None) -> Iterator["Chapter"]:
        """Claims recorded inside the `with` block go to another block of the report: e.g. chapter 08's
        teacher clock (published_version=True) or a chapter's finding beyond the published version
        (beyond_paper=True). The chapter's own flags (and meta.json's) are restored on leaving.

        >>> with ch.section(published_version=True):   # doctest: +SKIP
        ...     ch.claim("clock_leak", ...)
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

    def departure(self, topic: str, paper: str, book: str, reason: str) -> None:
        """Record one way this chapter departs from the paper's text or the authors' released code:
        a row of the report's protocol table (topic e.g. "teacher stop", "input distribution",
        "temperature convention", "epochs", "pixel shuffle", "profile sizes"). Chapters do not call it
        themselves: `record_departures` records theirs, built in `memkd.book.departures`."""
        row = {"topic": topic, "paper": paper, "book": book, "reason": reason}
        for key, text in row.items():
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"The '{key}' parameter of Chapter.departure must be a non-empty string. "
                                 f"Got {text!r} instead.")
        row = {"chapter": self.name, **{k: v.strip() for k, v in row.items()}}
        self.departures = [d for d in self.departures
                           if (d["topic"], d["paper"], d["book"]) != (row["topic"], row["paper"], row["book"])] + [row]

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
            return ("**Teacher protocol** (`teacher_stop=\"budget\"`): every teacher trains for its whole budget "
                    "of `teacher_epochs` epochs, as in the paper and the authors' released code, and must then "
                    "classify all of its training data correctly (else the run stops with `TeacherDidNotMemorize`).")
        from memkd.book.departures import teacher_stop_departure

        self.departure(**teacher_stop_departure(reason))
        return ("**Teacher protocol** (`teacher_stop=\"first_perfect\"`): every teacher stops at the first epoch "
                "at which it classifies all of its training data correctly. This is an early stop: the paper and "
                "the authors' released code train for a fixed budget of epochs.")

    # ------------------------------------------------------------------------ the end of a chapter

    def verdicts_markdown(self) -> str:
        """The claims recorded so far as a Markdown list, each with this build's verdict (and whether it
        is underpowered), then where the build contradicts the paper (`memkd.book.outcomes.contradictions`):
        what a chapter's closing text shows instead of stating an outcome the build did not compute."""
        from memkd.book.outcomes import contradictions

        if not self.claims:
            return "*No claim was tested in this run.*"
        lines = "\n".join(f"- {c.paper} **{c.verdict}** (n = {claim_units(c)})"
                          + (" *(tests an effect counted elsewhere)*" if c.supports else "")
                          + (" *(underpowered)*" if power_status(c.planned_n, c.n) == "underpowered" else "")
                          for c in self.claims)
        against = contradictions(self)
        return (lines + ("\n\n" + against if against else "")
                + "\n\n*These are the chapter's own verdicts; the report adjusts each block of claims for "
                  "multiplicity (Holm).*")

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
            "memkd_version": __version__,
            "elapsed_s": round(time.perf_counter() - self._started, 2),
        }
        meta.update(_provenance(self.device))
        (self.path / "meta.json").write_text(json.dumps(meta, indent=2, default=_jsonable))
        return claims


def _chance(table: pd.DataFrame) -> float:
    """The chance level 1/C from a table's `chance` column, NaN without one."""
    if "chance" not in getattr(table, "columns", []):
        return math.nan
    values = pd.to_numeric(table["chance"], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else math.nan


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
