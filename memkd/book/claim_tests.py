"""A chapter's claims, tested with teachers as the unit: the methods `Chapter` inherits.

`claim` tests per-teacher means against a baseline (a constant or a column), `claim_difference`
pairs two tables on their teachers, and `claim_count` gives counts and outcomes without spread an
exact binomial test. Each records a `memkd.book.claims.Claim` with its margin and the margin's
reason, its baseline, and its power plan (`memkd.book.plan`), and returns the verdict as a Markdown
sentence. The class holds no state of its own: it reads the chapter's `name`, `beyond_paper`,
`published_version` and `rests_on` and appends to its `claims`.
"""

from __future__ import annotations

import math

import pandas as pd

from memkd.book.claims import Claim, interval_text, plural, pm_text, power_text, units_text, verdict_reason
from memkd.book.plan import Margin, Plan, baseline_for, margin_of, plan_for
from memkd.config import invalid
from memkd.metrics import EXPECTATIONS, FAMILY_ALPHA

DATA_KINDS = ("paper", "stand-in")  # measured on the paper's kind of data, or on a stand-in for it


class ClaimTests:
    """The claim methods of `memkd.book.chapter.Chapter` (see there for the files a chapter writes)."""

    name: str
    beyond_paper: bool
    published_version: bool
    claims: list[Claim]
    rests_on: dict | None

    def rest_on(self, table: pd.DataFrame) -> None:
        """Say which experiment's table the claims recorded from now on rest on, for those whose own table
        no longer carries its configuration (a per-teacher summary, a count): its experiment and `teachers`
        knob are recorded with each claim (`Claim.experiment`, `teachers_run`), from which the report says
        what knob gives the n a claim needs. A claim whose table keeps `attrs["config"]` uses its own."""
        self.rests_on = run_of(table) or None

    # ------------------------------------------------------------------------ claims, teachers as unit

    def _check_claim_args(
        self, method: str, expect: str, margin: float | Margin, level: float | None, data: str
    ) -> tuple[float, float, str]:
        """Validate the common arguments of the claim methods; return (level, margin, margin reason)."""
        if expect not in EXPECTATIONS:
            raise invalid("expect", f"Chapter.{method}", f"one of {EXPECTATIONS}", expect)
        if data not in DATA_KINDS:
            raise invalid("data", f"Chapter.{method}", f"one of {DATA_KINDS}", data)
        margin, reason = margin_of(margin, expect)
        if expect == "equivalent" and not (isinstance(margin, (int, float)) and margin > 0):
            raise invalid(
                "margin", f"Chapter.{method}", "a float > 0 for expect='equivalent' (the equivalence margin)", margin
            )
        if level is not None and not (isinstance(level, (int, float)) and 0 < level <= FAMILY_ALPHA):
            raise invalid(
                "level",
                f"Chapter.{method}",
                f"None (the family level memkd.metrics.FAMILY_ALPHA = {FAMILY_ALPHA}, at "
                "which Holm's adjustment controls each block) or a stricter level in (0, "
                f"{FAMILY_ALPHA}] that the claim needs within itself (e.g. Bonferroni "
                "over its settings)",
                level,
            )
        return FAMILY_ALPHA if level is None else float(level), margin, reason

    def _plan(self, claim_id: str, plan: Plan | None, r: dict, chance: float, p0: float | None = None) -> dict:
        """The claim's power plan (memkd.book.plan): assumed effect, its reason, planned n, sd source."""
        from memkd.power import planned_teachers, planned_trials

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
        if r.get("test") == "exact sign test":
            from memkd.metrics import sign_test_teachers

            return {
                **out,
                "planned_n": sign_test_teachers(r["level"]),
                "sd_source": "exact sign test: every teacher on the claimed side, none needed",
            }
        if plan.sd is not None:
            sd, source = plan.sd, plan.sd_source or "assumed in memkd.book.plan"
        else:
            sd = r["sem"] * math.sqrt(r["n"]) if r["n"] >= 2 else math.nan
            source = "this build's per-teacher standard deviation (post hoc: not fixed before the run)"
        return {
            **out,
            "planned_n": planned_teachers(effect, sd, r["level"], expect=r["expect"], margin=r["margin"]),
            "sd_source": source,
        }

    def claim(
        self,
        claim_id: str,
        paper_text: str,
        table: pd.DataFrame,
        value: str = "test_acc",
        baseline: str | float | None = None,
        *,
        expect: str = "above",
        margin: float | Margin = 0.0,
        level: float | None = None,
        unit: str = "dataset",
        what: str = "held-out accuracy",
        data: str = "paper",
        detail: str = "",
        supports: str = "",
        plan: Plan | None = None,
        check: bool = False,
    ) -> str:
        """Test a claim on per-teacher means, record it, and return the verdict as a Markdown sentence.

        table : one row per student, with columns `unit`, `value` (and `baseline` if it is a name)
        baseline : a constant (e.g. the trivial accuracy), a column averaged over the same students
            (e.g. "independent_acc"), or None (the value itself is tested against the margin)
        expect, margin : see memkd.metrics.interval_test ("equivalent" needs a margin > 0); a margin
            given as a `memkd.book.plan.Margin` carries its reason (recorded as margin_reason)
        level : None (the default) tests at the one family level memkd.metrics.FAMILY_ALPHA (a t interval
            of the per-teacher values; without spread, the exact sign test across teachers); a stricter
            level is allowed where a claim corrects within itself (e.g. Bonferroni over its settings)
        plan : the claim's power plan; None looks it up in memkd.book.plan.PLANS (none: not planned).
            A plan's effect in units of chance uses the table's `chance` column
        data : "paper" (the paper's kind of data) or "stand-in" (never counted as the paper's claim)
        supports : "<chapter>:<claim>" when this claim tests an effect that claim already tests (shown
            in the report, not counted); "" (the default) counts it
        check : True for a statement that cannot fail at this size (e.g. a teacher failing far above its
            capacity): recorded with kind "check", shown apart from the claims and never counted

        >>> import tempfile, pandas as pd
        >>> from memkd.book.chapter import Chapter
        >>> ch = Chapter("00_example", profile="smoke", results_dir=tempfile.mkdtemp(), device="cpu")
        >>> table = pd.DataFrame({"dataset": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],    # 5 teachers x 2 students
        ...                       "test_acc": [0.08, 0.10, 0.09, 0.07, 0.11, 0.09, 0.08, 0.10, 0.09, 0.08]})
        >>> ch.claim("soft_beats_trivial", "Soft labels beat the trivial accuracy.", table,
        ...          baseline=0.02, expect="above")
        '**held-out accuracy**: 0.089 ± 0.003 against 0.020 (mean ± SEM over 5 teachers × 2 students), ...**holds**.'
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
        self._record(
            claim_id,
            paper_text,
            r,
            value=value,
            measured=measured,
            baseline=base,
            students=students,
            data=data,
            detail=detail,
            supports=supports,
            margin_reason=margin_reason,
            plan=self._plan(claim_id, plan, r, _chance(table)),
            check=check,
            source=table,
        )
        return self._sentence(
            what,
            f"{pm_text(measured, measured_sem)}{against}",
            r,
            students,
            "difference" if baseline is not None else "mean",
        ) + power_text(self.claims[-1])

    def claim_difference(
        self,
        claim_id: str,
        paper_text: str,
        table_a: pd.DataFrame,
        table_b: pd.DataFrame,
        value: str = "test_acc",
        *,
        expect: str = "above",
        margin: float | Margin = 0.0,
        level: float | None = None,
        unit: str = "dataset",
        what: str = "difference",
        data: str = "paper",
        detail: str = "",
        supports: str = "",
        plan: Plan | None = None,
        check: bool = False,
    ) -> str:
        """Test the per-teacher mean of `table_a` minus that of `table_b`, paired on the teachers
        present in both; record the claim and return the verdict as a Markdown sentence.

        Raises ValueError when the two tables share no teacher (nothing to pair).
        """
        from memkd.metrics import interval_test, mean_sem, per_unit_means

        level, margin, margin_reason = self._check_claim_args("claim_difference", expect, margin, level, data)
        a, b = per_unit_means(table_a, value, None, unit), per_unit_means(table_b, value, None, unit)
        paired = a[[unit, "value", "students"]].merge(b[[unit, "value", "students"]], on=unit, suffixes=("_a", "_b"))
        if paired.empty:
            raise invalid(
                "table_b",
                "Chapter.claim_difference",
                must=f"share at least one {unit!r} with table_a (the claim pairs the two tables on it)",
                shown=f"tables that share no {unit!r} (table_a: {a[unit].tolist()}, table_b: {b[unit].tolist()})",
            )
        r = interval_test(paired["value_a"] - paired["value_b"], expect, margin, level)
        ma, sa = mean_sem(paired["value_a"])
        mb, sb = mean_sem(paired["value_b"])
        students = int(min(paired["students_a"].min(), paired["students_b"].min()))
        self._record(
            claim_id,
            paper_text,
            r,
            value=value,
            measured=ma,
            baseline=mb,
            students=students,
            data=data,
            detail=detail,
            supports=supports,
            margin_reason=margin_reason,
            plan=self._plan(claim_id, plan, r, _chance(table_a)),
            check=check,
            source=table_a,
        )
        return self._sentence(
            what, f"{pm_text(ma, sa)} against {pm_text(mb, sb)}", r, students, "difference", paired=True
        ) + power_text(self.claims[-1])

    def claim_count(
        self,
        claim_id: str,
        paper_text: str,
        successes: int,
        trials: int,
        p0: float,
        *,
        expect: str = "above",
        margin: float | Margin = 0.0,
        level: float | None = None,
        teachers: int | float = math.nan,
        what: str = "proportion",
        data: str = "paper",
        detail: str = "",
        supports: str = "",
        plan: Plan | None = None,
        check: bool = False,
        source: pd.DataFrame | None = None,
    ) -> str:
        """Test a proportion with an exact binomial test, record it, and return the verdict as Markdown.

        For outcomes that are counts or have no spread, where a t interval over teachers would
        collapse: `successes` of `trials` independent outcomes (e.g. held-out points classified
        correctly, pooled over teachers; or perfect cells) against `p0` (e.g. 1/C, or 1.0).
        `teachers` is how many teachers the outcomes come from (shown beside the trials).
        `source` is the experiment's table the outcomes were counted from (or a part of it that keeps its
        `attrs`): its configuration names the experiment and its `teachers` knob, from which the report
        says what knob value gives the n a claim needs; None: not known.
        See memkd.metrics.binomial_test for the verdict rules; a plan's effect in units of chance
        takes `p0` as the chance level, and its planned n counts outcomes, like `trials`.

        >>> import tempfile
        >>> from memkd.book.chapter import Chapter
        >>> ch = Chapter("00_example", profile="smoke", results_dir=tempfile.mkdtemp(), device="cpu")
        >>> ch.claim_count("perfect_above_line", "Every cell above the line is perfect.",
        ...                successes=60, trials=60, p0=0.95, expect="above", teachers=5)
        '**proportion**: 60 of 60 from 5 teachers = 1.000 against 0.950, ... p = 0.046): **holds**.'
        """
        from memkd.metrics import binomial_test, format_p

        level, margin, margin_reason = self._check_claim_args("claim_count", expect, margin, level, data)
        r = binomial_test(successes, trials, p0, expect, margin, level)
        proportion = successes / trials if trials else math.nan
        self._record(
            claim_id,
            paper_text,
            r,
            value=what,
            measured=proportion,
            baseline=p0,
            students=math.nan,
            data=data,
            detail=detail,
            supports=supports,
            margin_reason=margin_reason,
            plan=self._plan(claim_id, plan, r, chance=p0, p0=p0),
            check=check,
            source=source,
        )
        self.claims[-1].students = float(teachers)  # shown as "of T teachers"
        interval = (
            f"exact {100 * (1 - 2 * r['level']):.0f}% interval of the proportion "
            f"[{r['ci_low'] + p0:.3f}, {r['ci_high'] + p0:.3f}]"
            if trials
            else ""
        )
        source = f" from {plural(int(teachers), 'teacher')}" if teachers == teachers else ""
        return (
            f"**{what}**: {successes} of {trials}{source} = {proportion:.3f} against {p0:.3f}"
            + (f", {interval} (exact binomial test, {format_p(r['p_value'])})" if interval else "")
            + f": **{r['verdict']}**{verdict_reason(r)}."
            + power_text(self.claims[-1])
        )

    def _record(
        self,
        claim_id: str,
        paper_text: str,
        r: dict,
        *,
        value: str,
        measured: float,
        baseline: float,
        students: float,
        data: str,
        detail: str,
        supports: str = "",
        margin_reason: str = "",
        plan: dict | None = None,
        check: bool = False,
        source: pd.DataFrame | None = None,
    ) -> Claim:
        if not isinstance(supports, str) or (supports and ":" not in supports):
            raise invalid("supports", "Chapter.claim", "'' or '<chapter>:<claim>'", supports)
        return self._keep(
            Claim(
                self.name,
                claim_id,
                paper_text,
                float(measured),
                float(r["sem"]),
                int(r["n"]),
                float(r["p_value"]),
                r["verdict"],
                detail,
                data=data,
                beyond_paper=self.beyond_paper,
                expect=r["expect"],
                value=value,
                baseline=float(baseline),
                difference=float(r["mean"]),
                ci_low=float(r["ci_low"]),
                ci_high=float(r["ci_high"]),
                margin=float(r["margin"]),
                level=float(r["level"]),
                students=students,
                test=str(r.get("test", "t interval")),
                note=str(r.get("note", "")),
                supports=supports,
                published_version=self.published_version,
                margin_reason=margin_reason,
                baseline_reason=baseline_for(self.name, claim_id),
                kind="check" if check else "claim",
                **(plan or {}),
                **(run_of(source) or self.rests_on or {}),
            )
        )

    @staticmethod
    def _sentence(what: str, numbers: str, r: dict, students: float, of: str, paired: bool = False) -> str:
        from memkd.metrics import format_p

        sign = r.get("test") == "exact sign test"
        interval = interval_text(r, f"median {of}" if sign else of)
        test = "exact sign test across teachers, " if sign else ""
        return (
            f"**{what}**: {numbers} (mean ± SEM over {units_text(r['n'], students)}"
            + (", paired on teachers" if paired else "")
            + ")"
            + (f", {interval} ({test}{format_p(r['p_value'])})" if interval else "")
            + f": **{r['verdict']}**{verdict_reason(r)}."
        )

    def _keep(self, entry: Claim) -> Claim:
        """Record `entry`, replacing an earlier claim with the same id (a cell run twice)."""
        self.claims = [c for c in self.claims if c.claim != entry.claim] + [entry]
        return entry


def run_of(table: pd.DataFrame | None) -> dict:
    """{"experiment": name, "teachers_run": its `teachers` knob} from the configuration an experiment's table
    carries (`table.attrs["config"]`, kept by pandas through row selections; for tables of several runs of
    one experiment, a dict of their configurations that agree on both); {} when the table has none."""
    config = getattr(table, "attrs", {}).get("config") if table is not None else None
    if isinstance(config, dict) and not config.get("experiment") and config:
        runs = {(c.get("experiment"), c.get("teachers")) for c in config.values() if isinstance(c, dict)}
        config = dict(zip(("experiment", "teachers"), runs.pop())) if len(runs) == 1 else None
    if not isinstance(config, dict) or not config.get("experiment"):
        return {}
    teachers = config.get("teachers")
    ok = isinstance(teachers, (int, float)) and not isinstance(teachers, bool) and teachers > 0
    return {"experiment": str(config["experiment"]), "teachers_run": float(teachers) if ok else math.nan}


def _chance(table: pd.DataFrame) -> float:
    """The chance level 1/C from a table's `chance` column, NaN without one."""
    if "chance" not in getattr(table, "columns", []):
        return math.nan
    values = pd.to_numeric(table["chance"], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else math.nan
