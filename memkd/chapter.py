"""What every chapter notebook does besides the science: resolve its parameters, keep its outputs.

A chapter's first code cells are: the Colab install cell, then a `parameters` cell of plain values
(papermill overrides them), then::

    ch = memkd.chapter.Chapter("02_logit_distillation", profile=profile, results_dir=results_dir,
                               device=device, seed=seed)

`ch.profile` is the resolved profile (an empty `profile` parameter means `$MEMKD_PROFILE`, else
"quick"), `ch.device` a `torch.device` (cuda, then mps, then cpu unless forced). Results go to
`ch.results_dir`, by default `<results root>/<chapter>` where the results root is `$MEMKD_RESULTS`
or `<book root>/results/<profile>` (the book root is the first parent folder holding `_config.yml`).
Chapters of "Beyond the paper" pass `beyond_paper=True`: their claims are the book's own questions.

Claims are tested with teachers as the unit of replication (`Chapter.claim`, `claim_difference`):
students are averaged within each teacher, and the per-teacher differences get one of three
verdicts from a confidence interval (`memkd.metrics.interval_test`).

Files a chapter leaves there (the report page and the sweeps read them):
    table.csv          the tidy results, one row per trained student (`save_table`)
    table.config.json  the experiment's validated configuration, when the table carries it
    <name>.png         each figure (`save_figure`)
    claims.csv         one row per claim with this build's verdict (CLAIM_COLUMNS; `claim`)
    departures.csv     how the chapter departs from the paper or its released code (`departure`)
    meta.json          chapter, profile, seed, teacher protocol, elapsed seconds and the build's
                       provenance (memkd.provenance.collect: version, git commit, device, ...)
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from memkd import __version__

PROFILES = ("smoke", "quick", "paper")
DATA_KINDS = ("paper", "stand-in")  # measured on the paper's kind of data, or on a stand-in for it
TEACHER_STOPS = ("budget", "first_perfect")
CLAIM_COLUMNS = ["chapter", "claim", "paper", "data", "beyond_paper", "expect", "value", "measured",
                 "baseline", "difference", "sem", "ci_low", "ci_high", "margin", "level", "n",
                 "students", "p_value", "verdict", "detail"]
DEPARTURE_COLUMNS = ["chapter", "topic", "paper", "book", "reason"]


def resolve_profile(profile: str | None = None) -> str:
    """Return `profile`, or `$MEMKD_PROFILE` when it is empty, or "quick"; checked against PROFILES."""
    resolved = profile or os.environ.get("MEMKD_PROFILE") or "quick"
    if resolved not in PROFILES:
        raise ValueError(
            f"The 'profile' parameter must be one of {PROFILES}. Got {resolved!r} instead."
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
class Claim:
    """One claim with what this build measured: a row of claims.csv (see `Chapter.claim`).

    Numbers are over teachers: `measured` and `baseline` are means of the per-teacher means,
    `difference` their mean difference with its `sem`, [ci_low, ci_high] its (1 - 2*level) interval,
    `n` the number of teachers and `students` the fewest students any teacher had. Claims recorded
    in the old form (`add_claim`, `claim_vs_baseline`, `claim_paired`) give n as the caller did.
    """

    chapter: str
    claim: str  # short id, e.g. "soft_beats_chance"
    paper: str  # the claim in our own words
    measured: float
    sem: float
    n: int
    p_value: float
    verdict: str  # one of memkd.metrics.VERDICTS
    detail: str = ""
    data: str = "paper"  # DATA_KINDS
    beyond_paper: bool = False
    expect: str = "above"  # above | below | equivalent
    value: str = ""  # the column measured, e.g. "test_acc"
    baseline: float = math.nan
    difference: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    margin: float = 0.0
    level: float = math.nan
    students: float = math.nan  # students per teacher (the minimum over teachers)


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def units_text(n: Any, students: Any = math.nan) -> str:
    """How many teachers and students a claim rests on: '5 teachers × 4 students', or 'n = 20'
    for a claim recorded in the old form (no students per teacher)."""
    try:
        n_ok = n is not None and not math.isnan(float(n))
        s_ok = students is not None and not math.isnan(float(students))
    except (TypeError, ValueError):
        return "–"
    if not n_ok:
        return "–"
    if not s_ok:
        return f"n = {int(float(n))}"
    return f"{_plural(int(float(n)), 'teacher')} × {_plural(int(float(students)), 'student')}"


def interval_text(r: dict, of: str = "difference") -> str:
    """'98% interval of the difference [0.050, 0.080] > 0' from an interval_test result (or a
    claims.csv row with ci_low, ci_high, expect, margin, level); '98% interval [...]' when `of` is
    empty; '' without an interval."""
    low, high, level = float(r["ci_low"]), float(r["ci_high"]), float(r["level"])
    if math.isnan(low) or math.isnan(high) or math.isnan(level):
        return ""
    margin = float(r["margin"]) if not math.isnan(float(r["margin"])) else 0.0
    criterion = {"above": f"> {margin:g}", "below": f"< {(-margin if margin else 0.0):g}",
                 "equivalent": f"within the equivalence margin ±{margin:g}"}.get(str(r["expect"]), "")
    where = f" of the {of}" if of else ""
    return f"{100 * (1 - 2 * level):.0f}% interval{where} [{low:.3f}, {high:.3f}] {criterion}".rstrip()


def _pm(mean: float, sem: float) -> str:
    """'0.085 ± 0.006', '0.085' without a SEM, 'n/a' without a mean."""
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if sem is None or math.isnan(sem) else f"{mean:.3f} ± {sem:.3f}"


def _verdict_reason(r: dict) -> str:
    if r["verdict"] != "inconclusive":
        return ""
    if r["n"] < 2:
        return f" ({_plural(r['n'], 'teacher')}: no interval)"
    return " (the interval straddles the bound)"


@dataclass
class Chapter:
    """Resolved parameters and the output folder of one chapter run."""

    name: str
    profile: str = ""
    results_dir: str = ""
    device: str = "auto"
    seed: int = 0
    beyond_paper: bool = False  # a chapter of "Beyond the paper": its claims are the book's own
    claims: list[Claim] = field(default_factory=list)
    departures: list[dict] = field(default_factory=list)
    teacher_stop: str = ""  # set by `protocol`

    def __post_init__(self) -> None:
        from memkd.device import resolve_device

        self.profile = resolve_profile(self.profile)
        self.device = resolve_device(self.device)
        self.beyond_paper = bool(self.beyond_paper)
        path = Path(self.results_dir) if self.results_dir else results_root(self.profile) / self.name
        self.results_dir = str(path)
        path.mkdir(parents=True, exist_ok=True)
        self._started = time.perf_counter()

    @property
    def path(self) -> Path:
        return Path(self.results_dir)

    # ------------------------------------------------------------------------ tables and figures

    def save_table(self, table: pd.DataFrame, name: str = "table") -> Path:
        """Write a tidy table as `<name>.csv` (atomically) and return its path.

        The same table goes to `<name>.parquet` with its column types (what `memkd sweep`
        aggregates: no type is guessed from text). When `table.attrs["config"]` holds a dict (an
        experiment's full validated configuration), it is also written beside the table as
        `<name>.config.json`.
        """
        target = self.path / f"{name}.csv"
        tmp = target.with_suffix(".csv.tmp")
        table.to_csv(tmp, index=False)
        tmp.replace(target)
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
        config = table.attrs.get("config")
        if config is not None:
            if not isinstance(config, dict):
                raise ValueError(f"save_table: table.attrs['config'] must be a dict. Got {type(config).__name__} instead.")
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

    def _check_claim_args(self, method: str, expect: str, margin: float, level: float | None, data: str) -> float:
        """Validate the common arguments of claim / claim_difference; return the level to use."""
        from memkd.metrics import EXPECTATIONS

        if expect not in EXPECTATIONS:
            raise ValueError(f"The 'expect' parameter of Chapter.{method} must be one of {EXPECTATIONS}. "
                             f"Got {expect!r} instead.")
        if data not in DATA_KINDS:
            raise ValueError(f"The 'data' parameter of Chapter.{method} must be one of {DATA_KINDS}. Got {data!r} instead.")
        if expect == "equivalent" and not (isinstance(margin, (int, float)) and margin > 0):
            raise ValueError(f"The 'margin' parameter of Chapter.{method} must be a float > 0 for "
                             f"expect='equivalent' (the equivalence margin). Got {margin!r} instead.")
        return (0.05 if expect == "equivalent" else 0.01) if level is None else level

    def claim(self, claim_id: str, paper_text: str, table: pd.DataFrame, value: str = "test_acc",
              baseline: str | float | None = None, *, expect: str = "above", margin: float = 0.0,
              level: float | None = None, unit: str = "dataset", what: str = "held-out accuracy",
              data: str = "paper", detail: str = "") -> str:
        """Test a claim on per-teacher means, record it, and return the verdict as a Markdown sentence.

        table : one row per student, with columns `unit`, `value` (and `baseline` if it is a name)
        baseline : a constant (e.g. the trivial accuracy), a column averaged over the same students
            (e.g. "independent_acc"), or None (the value itself is tested against the margin)
        expect, margin, level : see memkd.metrics.interval_test; `level` defaults to 0.01 for
            "above"/"below" and 0.05 for "equivalent", which needs a margin > 0
        data : "paper" (the paper's kind of data) or "stand-in" (never counted as the paper's claim)

        >>> ch.claim("soft_beats_trivial", "Soft labels beat the trivial accuracy.", table,   # doctest: +SKIP
        ...          baseline=trivial, expect="above")
        '**held-out accuracy**: 0.085 ± 0.006 against 0.020 (mean ± SEM over 5 teachers × 4 students), ...'
        """
        from memkd.metrics import interval_test, mean_sem, per_unit_means

        level = self._check_claim_args("claim", expect, margin, level, data)
        means = per_unit_means(table, value, baseline, unit)
        r = interval_test(means["difference"], expect, margin, level)
        measured, measured_sem = mean_sem(means["value"])
        base = float(means["baseline"].mean()) if len(means) and baseline is not None else math.nan
        students = int(means["students"].min()) if len(means) else math.nan
        against = ""
        if baseline is not None:
            against = " against " + (f"`{baseline}` " if isinstance(baseline, str) else "") + _pm(base, math.nan)
        self._record(claim_id, paper_text, r, value=value, measured=measured, baseline=base,
                     students=students, data=data, detail=detail)
        return self._sentence(what, f"{_pm(measured, measured_sem)}{against}", r, students,
                              "difference" if baseline is not None else "mean")

    def claim_difference(self, claim_id: str, paper_text: str, table_a: pd.DataFrame, table_b: pd.DataFrame,
                         value: str = "test_acc", *, expect: str = "above", margin: float = 0.0,
                         level: float | None = None, unit: str = "dataset", what: str = "difference",
                         data: str = "paper", detail: str = "") -> str:
        """Test the per-teacher mean of `table_a` minus that of `table_b`, paired on the teachers
        present in both; record the claim and return the verdict as a Markdown sentence.

        Raises ValueError when the two tables share no teacher (nothing to pair).
        """
        from memkd.metrics import interval_test, mean_sem, per_unit_means

        level = self._check_claim_args("claim_difference", expect, margin, level, data)
        a, b = per_unit_means(table_a, value, None, unit), per_unit_means(table_b, value, None, unit)
        paired = a[[unit, "value", "students"]].merge(b[[unit, "value", "students"]], on=unit, suffixes=("_a", "_b"))
        if paired.empty:
            raise ValueError(f"Chapter.claim_difference: table_a and table_b share no {unit!r} "
                             f"(table_a: {a[unit].tolist()}, table_b: {b[unit].tolist()}).")
        r = interval_test(paired["value_a"] - paired["value_b"], expect, margin, level)
        ma, sa = mean_sem(paired["value_a"])
        mb, sb = mean_sem(paired["value_b"])
        students = int(min(paired["students_a"].min(), paired["students_b"].min()))
        self._record(claim_id, paper_text, r, value=value, measured=ma, baseline=mb, students=students,
                     data=data, detail=detail)
        return self._sentence(what, f"{_pm(ma, sa)} against {_pm(mb, sb)}", r, students,
                              "difference", paired=True)

    def _record(self, claim_id: str, paper_text: str, r: dict, *, value: str, measured: float,
                baseline: float, students: float, data: str, detail: str) -> Claim:
        return self._keep(Claim(
            self.name, claim_id, paper_text, float(measured), float(r["sem"]), int(r["n"]),
            float(r["p_value"]), r["verdict"], detail, data=data, beyond_paper=self.beyond_paper,
            expect=r["expect"], value=value, baseline=float(baseline), difference=float(r["mean"]),
            ci_low=float(r["ci_low"]), ci_high=float(r["ci_high"]), margin=float(r["margin"]),
            level=float(r["level"]), students=students))

    @staticmethod
    def _sentence(what: str, numbers: str, r: dict, students: float, of: str, paired: bool = False) -> str:
        from memkd.metrics import format_p

        interval = interval_text(r, of)
        return (f"**{what}**: {numbers} (mean ± SEM over {units_text(r['n'], students)}"
                + (", paired on teachers" if paired else "") + ")"
                + (f", {interval} ({format_p(r['p_value'])})" if interval else "")
                + f": **{r['verdict']}**{_verdict_reason(r)}.")

    def _keep(self, entry: Claim) -> Claim:
        """Record `entry`, replacing an earlier claim with the same id (a cell run twice)."""
        self.claims = [c for c in self.claims if c.claim != entry.claim] + [entry]
        return entry

    # ------------------------------------------------------------------------ claims, old form

    def add_claim(self, claim: str, paper: str, measured: float, sem: float, n: int, p_value: float,
                  holds: bool, detail: str = "", *, data: str = "paper") -> Claim:
        """Record a verdict computed by the caller (holds -> "holds", else "does not hold").

        Old form, to be removed when every chapter uses claim(): n is what the caller gives.
        """
        if data not in DATA_KINDS:
            raise ValueError(f"The 'data' parameter of Chapter.add_claim must be one of {DATA_KINDS}. Got {data!r} instead.")
        return self._keep(Claim(self.name, claim, paper, float(measured), float(sem), int(n),
                                float(p_value) if p_value is not None else math.nan,
                                "holds" if bool(holds) else "does not hold", detail, data=data,
                                beyond_paper=self.beyond_paper))

    def claim_vs_baseline(
        self,
        claim: str,
        paper: str,
        values,
        baseline: float,
        expect_above: bool = True,
        level: float = 0.01,
        what: str = "held-out accuracy",
        detail: str = "",
    ) -> str:
        """Test mean(values) > baseline (one-sided t-test), record the claim, return the verdict.

        Old form, to be removed when every chapter uses claim(): every value counts as a unit.
        expect_above=False states a claim that the values do *not* beat the baseline (recorded with
        expect "not above"). The returned sentence is Markdown, built from the numbers.
        """
        from memkd.metrics import compare_to_chance, format_p

        r = compare_to_chance(values, baseline)
        above = r["p_value"] < level
        holds = above if expect_above else not above
        sentence = (
            f"**{what}**: {r['mean']:.3f} ± {r['sem']:.3f} (mean ± SEM, n = {r['n']}) against "
            f"{baseline:.3f}, {r['mean'] / baseline:.2f}×, one-sided t-test {format_p(r['p_value'])}: "
            + ("above it" if above else "not distinguishable from it") + f" at the {level:g} level. "
            + ("The paper's claim holds in this build." if holds else "**The paper's claim does not hold in this build.**")
        )
        entry = self.add_claim(claim, paper, r["mean"], r["sem"], r["n"], r["p_value"], holds,
                               detail or f"baseline {baseline:.4f}")
        entry.expect = "above" if expect_above else "not above"
        entry.baseline, entry.difference, entry.level = float(baseline), r["mean"] - float(baseline), float(level)
        return sentence

    def claim_paired(
        self,
        claim: str,
        paper: str,
        a,
        b,
        level: float = 0.01,
        what: str = "difference",
        detail: str = "",
    ) -> str:
        """Test mean(a - b) > 0 on matched pairs (one-sided paired t-test); record and return the verdict.

        Old form, to be removed when every chapter uses claim(): every pair counts as a unit.
        """
        from memkd.metrics import compare_paired, format_p

        r = compare_paired(a, b)
        holds = r["p_value"] < level
        sentence = (
            f"**{what}**: {r['mean_a']:.3f} against {r['mean_b']:.3f}, difference {r['mean']:+.3f} ± "
            f"{r['sem']:.3f} (n = {r['n']} pairs), one-sided paired t-test {format_p(r['p_value'])}. "
            + ("The paper's claim holds in this build." if holds else "**The paper's claim does not hold in this build.**")
        )
        entry = self.add_claim(claim, paper, r["mean_a"], r["sem"], r["n"], r["p_value"], holds, detail)
        entry.baseline, entry.difference, entry.level = r["mean_b"], r["mean"], float(level)
        return sentence

    # ------------------------------------------------------------------------ protocol

    def departure(self, topic: str, paper: str, book: str, reason: str) -> None:
        """Record one way this chapter departs from the paper's text or the authors' released code:
        a row of the report's protocol table (topic e.g. "teacher stop", "input distribution",
        "temperature convention", "epochs", "pixel shuffle", "profile sizes")."""
        row = {"topic": topic, "paper": paper, "book": book, "reason": reason}
        for key, text in row.items():
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"The '{key}' parameter of Chapter.departure must be a non-empty string. "
                                 f"Got {text!r} instead.")
        row = {"chapter": self.name, **{k: v.strip() for k, v in row.items()}}
        self.departures = [d for d in self.departures
                           if (d["topic"], d["paper"], d["book"]) != (row["topic"], row["paper"], row["book"])] + [row]

    def protocol(self, teacher_stop: str, reason: str = "") -> str:
        """Say (as a Markdown sentence) which teacher protocol this chapter runs; `meta.json` keeps it.

        "budget": the paper's and the released code's protocol, all `teacher_epochs` then 100%
        required. "first_perfect": stop at the first epoch at 100%, recorded as a departure
        (with `reason`, when given).
        """
        if teacher_stop not in TEACHER_STOPS:
            raise ValueError(f"The 'teacher_stop' parameter of Chapter.protocol must be one of {TEACHER_STOPS}. "
                             f"Got {teacher_stop!r} instead.")
        self.teacher_stop = teacher_stop
        if teacher_stop == "budget":
            return ("**Teacher protocol** (`teacher_stop=\"budget\"`): every teacher trains for its whole budget "
                    "of `teacher_epochs` epochs, as in the paper and the authors' released code, and must then "
                    "classify all of its training data correctly (else the run stops with `TeacherDidNotMemorize`).")
        self.departure("teacher stop", "train each teacher for a fixed budget of epochs, to 100% training accuracy",
                       "stop each teacher at the first epoch at which it reaches 100% training accuracy",
                       reason or "chosen by this chapter's `teacher_stop` parameter")
        return ("**Teacher protocol** (`teacher_stop=\"first_perfect\"`): every teacher stops at the first epoch "
                "at which it classifies all of its training data correctly. This is an early stop: the paper and "
                "the authors' released code train for a fixed budget of epochs.")

    # ------------------------------------------------------------------------ the end of a chapter

    def verdicts_markdown(self) -> str:
        """The claims recorded so far as a Markdown list, each with this build's verdict: what a
        chapter's closing text shows instead of stating an outcome the build did not compute."""
        if not self.claims:
            return "*No claim was tested in this run.*"
        return "\n".join(f"- {c.paper} **{c.verdict}** (n = {units_text(c.n, c.students)})" for c in self.claims)

    def finish(self) -> pd.DataFrame:
        """Write claims.csv, departures.csv and meta.json; return the claims as a table.

        The returned table also has a column `holds` (verdict == "holds"), which claims.csv does not:
        old form, to be removed when every chapter uses claim().
        """
        claims = pd.DataFrame([asdict(c) for c in self.claims], columns=CLAIM_COLUMNS)
        self.save_table(claims, "claims")
        self.save_table(pd.DataFrame(self.departures, columns=DEPARTURE_COLUMNS), "departures")
        meta = {
            "chapter": self.name,
            "profile": self.profile,
            "device": str(self.device),
            "seed": self.seed,
            "beyond_paper": self.beyond_paper,
            "teacher_stop": self.teacher_stop or None,
            "memkd_version": __version__,
            "elapsed_s": round(time.perf_counter() - self._started, 2),
        }
        meta.update(_provenance(self.device))
        (self.path / "meta.json").write_text(json.dumps(meta, indent=2, default=_jsonable))
        return claims.assign(holds=claims["verdict"] == "holds")


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


SCALAR_TO_LIST = {"alpha": "alphas", "width": "student_widths", "temperature": "temperatures", "lr": "lrs"}


def knob_overrides(**values: Any) -> dict[str, Any]:
    """Experiment overrides from a chapter's sweepable parameters.

    A zero, None or empty value means "keep the profile's value" and is dropped. The scalar
    parameters alpha, width, temperature and lr become the one-element lists alphas,
    student_widths, temperatures and lrs; every other name passes through unchanged.

    >>> knob_overrides(alpha=0.4, width=0, epochs=300)
    {'alphas': (0.4,), 'epochs': 300}
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value in (None, 0, 0.0, "", [], ()):
            continue
        if name in SCALAR_TO_LIST:
            out[SCALAR_TO_LIST[name]] = (value,)
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def beyond_paper_chapters(root: Path | None = None) -> set[str]:
    """Chapter names the book's _toc.yml lists under a part captioned "Beyond the paper" (the
    book root is found from `root`, else from the working directory; empty without one)."""
    import yaml

    book = (book_root(Path(root)) if root else None) or book_root()
    if not book or not (book / "_toc.yml").is_file():
        return set()
    try:
        toc = yaml.safe_load((book / "_toc.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return set()
    return {Path(entry["file"]).name for part in toc.get("parts", []) or []
            if "beyond" in str(part.get("caption", "")).lower()
            for entry in part.get("chapters", []) or [] if "file" in entry}


def _read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV file, or None when it is empty or unreadable (a chapter that stopped half-way)."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def _meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def normalize_claims(claims: pd.DataFrame, chapter: str = "", beyond_paper: bool = False) -> pd.DataFrame:
    """Bring a claims table of any age to CLAIM_COLUMNS: a missing verdict comes from the old
    `holds` column, a missing data kind is "paper", a missing beyond_paper is `beyond_paper`,
    other missing columns are empty (NaN); unknown verdicts read "inconclusive"."""
    from memkd.metrics import VERDICTS

    out = claims.copy()
    if "chapter" not in out.columns or out["chapter"].isna().all():
        out["chapter"] = chapter
    if "verdict" not in out.columns:
        out["verdict"] = math.nan
    if "holds" in out.columns:  # the old format, perhaps mixed with the new one
        old = out["holds"].map(lambda h: "holds" if _as_bool(h) else "does not hold")
        out["verdict"] = out["verdict"].where(out["verdict"].notna() | out["holds"].isna(), old)
    out["verdict"] = out["verdict"].where(out["verdict"].isin(VERDICTS), "inconclusive")
    out["data"] = out["data"].fillna("paper") if "data" in out.columns else "paper"
    out["beyond_paper"] = out["beyond_paper"].map(_as_bool) if "beyond_paper" in out.columns else beyond_paper
    for column, default in (("claim", ""), ("paper", ""), ("detail", ""), ("expect", ""), ("value", "")):
        out[column] = (out[column].astype(object).where(out[column].notna(), default).astype(str)
                       if column in out.columns else default)
    for column in CLAIM_COLUMNS:
        if column not in out.columns:
            out[column] = math.nan
    numeric = ["measured", "baseline", "difference", "sem", "ci_low", "ci_high", "margin", "level", "n",
               "students", "p_value"]
    out[numeric] = out[numeric].apply(pd.to_numeric, errors="coerce")
    return out[CLAIM_COLUMNS].reset_index(drop=True)


def load_claims(root: Path) -> pd.DataFrame:
    """All chapters' claims.csv under `root` (one folder per chapter), in chapter order, in the
    format of CLAIM_COLUMNS whatever their age (see `normalize_claims`). A claim is beyond the paper
    when its row, its chapter's meta.json or the book's toc (a chapter under "Beyond the paper")
    says so. Unreadable files are skipped."""
    frames = []
    toc_beyond = beyond_paper_chapters(Path(root))
    for path in sorted(Path(root).glob("*/claims.csv")):
        frame = _read_csv(path)
        if frame is None:
            continue
        name = path.parent.name
        flag = _as_bool(_meta(path.parent).get("beyond_paper")) or name in toc_beyond
        frame = normalize_claims(frame, name, flag)
        frame["beyond_paper"] = frame["beyond_paper"] | flag  # the toc's part decides too
        frames.append(frame)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def load_departures(root: Path) -> pd.DataFrame:
    """All chapters' departures.csv under `root`, in chapter order (DEPARTURE_COLUMNS; missing
    columns empty, unreadable files skipped)."""
    frames = []
    for path in sorted(Path(root).glob("*/departures.csv")):
        frame = _read_csv(path)
        if frame is None or frame.empty:
            continue
        if "chapter" not in frame.columns:
            frame["chapter"] = path.parent.name
        for column in DEPARTURE_COLUMNS:
            frame[column] = frame[column].fillna("").astype(str) if column in frame.columns else ""
        frames.append(frame[DEPARTURE_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=DEPARTURE_COLUMNS)
    return pd.concat(frames, ignore_index=True)
