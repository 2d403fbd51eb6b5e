"""The reproduction report's tables and figure: what `memkd.book.report` gathered, shown.

The report page (book/report.ipynb) shows the claims (`report_table`), their power plans
(`plan_table`), the protocol table (`protocol_table`), the chapters (`chapter_summary`), the build's
provenance (`build_info`) and a figure of every verdict (`claims_figure`).
"""

from __future__ import annotations

import html as htmllib
import json
import math
from pathlib import Path

import pandas as pd

from memkd.book.build import CHAPTER_DIR, toc_chapters
from memkd.book.chapter import book_root
from memkd.book.report import adjust_claims, normalize_claims, verdict_counts


BUILD_FIELDS = [  # meta.json key -> label of the report's "This build" box (memkd.provenance.collect)
    ("profile", "Profile"),
    ("memkd_version", "memkd version"),
    ("git_commit", "Git commit"),
    ("git_clean", "Tracked files unchanged since that commit"),
    ("python", "Python"),
    ("torch", "torch"),
    ("device", "Device"),
    ("device_name", "Device name"),
    ("threads", "torch threads"),
    ("platform", "Platform"),
    ("hostname", "Host"),
]


def format_measured(measured: float, sem: float, baseline: float = math.nan, difference: float = math.nan) -> str:
    """'0.432 ± 0.012' (the SEM over teachers), or with a baseline '0.085 vs 0.020: +0.065 ± 0.006'
    (the SEM is that of the difference); without the ± part when the SEM is missing."""

    def num(x) -> float:
        try:
            return float(x)
        except (TypeError, ValueError):
            return math.nan

    measured, sem, baseline, difference = num(measured), num(sem), num(baseline), num(difference)
    if math.isnan(measured):
        return "–"
    spread = "" if math.isnan(sem) else f" ± {sem:.2g}"
    if math.isnan(baseline):
        return f"{measured:.3g}{spread}"
    difference = measured - baseline if math.isnan(difference) else difference
    return f"{measured:.3g} vs {baseline:.3g}: {difference:+.3g}{spread}"


def _test_cell(row) -> str:
    """The test behind a verdict: '90% interval [0.047, 0.070] > 0', or the old per-student t-test."""
    from memkd.book.claims import interval_text

    record = row._asdict() if hasattr(row, "_asdict") else dict(row)
    test = record.get("test")
    text = interval_text(record, of="median" if test == "exact sign test" else "")
    if text:
        return {"exact binomial": "exact ", "exact sign test": "exact sign test, "}.get(test, "") + text
    if record.get("note"):
        return str(record["note"])
    if not math.isnan(float(row.students)):  # tested per teacher, but too few teachers
        return "no interval (fewer than 2 teachers)"
    if not math.isnan(float(row.p_value)):
        return "the chapter's own test, students counted as units"
    return "–"


def report_table(claims, link: bool = True, claim_header: str = "Claim of the paper"):
    """The claims as a display table: chapter, claim, this build's numbers, n (teachers × students),
    the test (its interval and bound; the margin of an equivalence claim), raw and Holm-adjusted
    p-value, and the verdict after the adjustment (with the verdict before it where they differ).

    claims : a table of claims (`load_claims`, or one block of `claim_blocks`; a table without the
    adjustment's columns is adjusted as it stands); link : chapter names as links to their pages
    (relative to a page in book/); claim_header : the title of the claims' column. A chapter's
    name shows on its first row only. A claim that `supports` another is marked "not counted".
    """

    from memkd.metrics import format_p

    if "verdict_adjusted" not in getattr(claims, "columns", []):
        claims = adjust_claims(claims)
    columns = ["Chapter", claim_header, "This build", "n", "Test", "p-value", "p (Holm)", "Verdict"]
    rows, previous = [], None
    for r in claims.itertuples(index=False):
        chapter = str(r.chapter)
        verdict = str(r.verdict_adjusted)
        if not r.counted:
            verdict += f" (not counted: tests the effect of {r.supports} again)"
        elif verdict != str(r.verdict):
            verdict += f" (before adjustment: {r.verdict})"
        rows.append(
            {
                "Chapter": _chapter_cell(chapter, link) if chapter != previous else "",
                claim_header: htmllib.escape(str(r.paper)),
                "This build": htmllib.escape(format_measured(r.measured, r.sem, r.baseline, r.difference)),
                "n": htmllib.escape(_n_cell(r)),
                "Test": htmllib.escape(_test_cell(r)),
                "p-value": htmllib.escape(format_p(float(r.p_value), label=False)),
                "p (Holm)": htmllib.escape(format_p(float(r.p_adjusted), label=False)),
                "Verdict": htmllib.escape(verdict),
            }
        )
        previous = chapter
    return pd.DataFrame(rows, columns=columns)


def _n_cell(r) -> str:
    """'12 teachers × 1 student', '120 outcomes of 12 teachers' for an exact test, and the plan:
    '(planned: 21; underpowered)'."""
    from memkd.book.claims import claim_units, power_status
    from memkd.book.report import TEACHER_KNOB, profile_reaching, teachers_needed

    text = claim_units(r)
    status = power_status(r.planned_n, r.n)
    if status in ("underpowered", "powered"):
        text += f" (planned: {r.planned_n:.0f}" + ("; underpowered)" if status == "underpowered" else ")")
    elif status == "not plannable":
        text += " (not plannable)"
    holm_n = float(getattr(r, "planned_n_holm", math.nan))
    if getattr(r, "counted", False) and holm_n == holm_n and str(getattr(r, "verdict_adjusted", "")) == "inconclusive":
        knob = teachers_needed(r, holm_n)
        reach = profile_reaching(str(getattr(r, "chapter", "")), knob, experiment=str(getattr(r, "experiment", "")))
        other_units = knob == knob and not math.isinf(knob) and knob != math.ceil(holm_n)  # n is not the knob
        text += (
            " (after Holm: "
            + ("no n suffices" if math.isinf(holm_n) else f"needs {holm_n:.0f}")
            + (f", from {TEACHER_KNOB}={knob:.0f} at this run's rate" if other_units else "")
            + (f"; {reach}" if reach else "")
            + ")"
        )
    return text


def disagreement_table(claims, link: bool = True):
    """The report's "Where this build disagrees with the paper": one row per claim of the paper (workshop or
    published version) that contradicts it or leans against it (`memkd.book.report.disagreements`), with
    the paper's statement, this build's numbers, the test and the verdict after Holm's adjustment."""
    from memkd.book.report import disagreements
    from memkd.metrics import format_p

    columns = ["Chapter", "The paper says", "This build", "n", "Test", "p (Holm)", "Disagreement"]
    rows = []
    for r in disagreements(claims).itertuples(index=False):
        rows.append(
            {
                "Chapter": _chapter_cell(str(r.chapter), link),
                "The paper says": htmllib.escape(str(r.paper)),
                "This build": htmllib.escape(format_measured(r.measured, r.sem, r.baseline, r.difference)),
                "n": htmllib.escape(_n_cell(r)),
                "Test": htmllib.escape(_test_cell(r)),
                "p (Holm)": htmllib.escape(format_p(float(r.p_adjusted), label=False)),
                "Disagreement": htmllib.escape(
                    f"{r.disagreement} ({r.verdict_adjusted}"
                    + ("; estimate on the other side of the bound)" if r.disagreement == "leans against" else ")")
                ),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def check_table(claims, link: bool = True):
    """The checks (`memkd.book.report.check_claims`): statements that cannot fail at this size, with their
    numbers and verdicts, kept apart from the claims and never counted."""
    from memkd.book.report import check_claims

    columns = ["Chapter", "Check", "This build", "n", "Test", "Verdict"]
    rows = [
        {
            "Chapter": _chapter_cell(str(r.chapter), link),
            "Check": htmllib.escape(str(r.paper)),
            "This build": htmllib.escape(format_measured(r.measured, r.sem, r.baseline, r.difference)),
            "n": htmllib.escape(_n_cell(r)),
            "Test": htmllib.escape(_test_cell(r)),
            "Verdict": htmllib.escape(str(r.verdict)),
        }
        for r in check_claims(claims).itertuples(index=False)
    ]
    return pd.DataFrame(rows, columns=columns)


NOT_REPRODUCED_COLUMNS = [
    "Figure",
    "What it shows",
    "Released setting",
    "Why not here",
    "Estimated time at quick",
    "Estimated time at paper",
    "How estimated",
]


def not_reproduced_table():
    """The report's "Not reproduced, and what it would cost": one row per figure of the published version the
    book does not draw, read from memkd/book/not_reproduced.yml (every time an estimate, with its basis)."""
    import yaml

    entries = yaml.safe_load((Path(__file__).with_name("not_reproduced.yml")).read_text())["figures"]
    keys = ["figure", "shows", "setting", "why", "quick", "paper", "basis"]
    return pd.DataFrame(
        [{column: htmllib.escape(str(e[key])) for column, key in zip(NOT_REPRODUCED_COLUMNS, keys)} for e in entries],
        columns=NOT_REPRODUCED_COLUMNS,
    )


def plan_table(claims, link: bool = True):
    """What every claim fixed before its run: the test, its baseline and margin with their reasons,
    the assumed effect with its source, the planned n (80% power at the claim's level) against this
    build's n.

    claims : a table of claims (`load_claims`); one row per claim, in chapter order.
    """

    from memkd.book.claims import power_status

    columns = [
        "Chapter",
        "Claim",
        "Test",
        "Baseline",
        "Margin",
        "Why this margin",
        "Assumed effect",
        "Why this effect",
        "Planned n",
        "n",
        "Power",
    ]
    rows, previous = [], None
    for r in normalize_claims(claims).itertuples(index=False):
        chapter = str(r.chapter)
        unit = "outcomes" if r.test == "exact binomial" else "teachers"
        planned = "–" if r.planned_n != r.planned_n else "∞" if math.isinf(r.planned_n) else f"{r.planned_n:.0f} {unit}"
        rows.append(
            {
                "Chapter": _chapter_cell(chapter, link) if chapter != previous else "",
                "Claim": htmllib.escape(str(r.claim)),
                "Test": htmllib.escape(
                    f"{r.expect}, {r.test}" + (f", level {r.level:g}" if r.level == r.level else "")
                ),
                "Baseline": htmllib.escape(str(r.baseline_reason) or "–"),
                "Margin": "–" if r.margin != r.margin else f"{r.margin:.3g}",
                "Why this margin": htmllib.escape(str(r.margin_reason) or "no reason recorded"),
                "Assumed effect": "–" if r.assumed_effect != r.assumed_effect else f"{r.assumed_effect:.3g}",
                "Why this effect": htmllib.escape(str(r.effect_reason) or "–")
                + (f" (spread: {htmllib.escape(str(r.sd_source))})" if r.sd_source else ""),
                "Planned n": planned,
                "n": "–" if r.n != r.n else f"{int(r.n)}",
                "Power": power_status(r.planned_n, r.n),
            }
        )
        previous = chapter
    return pd.DataFrame(rows, columns=columns)


def _chapter_cell(name: str, link: bool = True) -> str:
    return f'<a href="../{CHAPTER_DIR}/{name}.html">{htmllib.escape(name)}</a>' if link else htmllib.escape(name)


def load_meta(results: Path) -> dict[str, dict]:
    """{chapter: the contents of its meta.json} for every chapter folder under `results`
    (unreadable files are skipped)."""
    out = {}
    for path in sorted(Path(results).glob("*/meta.json")):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            out[path.parent.name] = meta
    return out


def chapter_summary(claims, results: Path, link: bool = True):
    """One row per chapter: its verdicts (counted claims, after the adjustment within their block),
    profile, teacher protocol, device, its own time, build time.

    Chapters come from the toc (when a book root is found), the results folders and `claims`; a
    chapter without results shows "no results".
    """

    claims = adjust_claims(claims)
    results = Path(results)
    metas = load_meta(results)
    root = book_root()
    names = [Path(c).name for c in toc_chapters(root)] if root and (root / "_toc.yml").is_file() else []
    names += [c for c in dict.fromkeys([*metas, *claims["chapter"].astype(str)]) if c not in names]
    times_file = results / "build_times.json"
    try:
        wall = json.loads(times_file.read_text()) if times_file.is_file() else {}
    except ValueError:
        wall = {}
    rows = []
    for name in names:
        mine = claims[claims["chapter"].astype(str) == name]
        meta = metas.get(name, {})
        seconds = wall.get(f"{CHAPTER_DIR}/{name}") if isinstance(wall, dict) else None
        mine = mine[mine["counted"]]
        c = verdict_counts(mine, "verdict_adjusted")
        rows.append(
            {
                "Chapter": _chapter_cell(name, link),
                "Claims holding": (
                    f"{c['holds']} of {len(mine)}"
                    + (f" ({c['inconclusive']} inconclusive)" if c["inconclusive"] else "")
                    if meta or len(mine)
                    else "no results"
                ),
                "Profile": str(meta.get("profile") or "–"),
                "Teacher stop": str(meta.get("teacher_stop") or "–"),
                "Teacher rule": str(meta.get("teacher_rule") or "–"),
                "Teachers train (× first 100%)": _clock(meta.get("teacher_clock")),
                "Device": str(meta.get("device") or "–"),
                "Chapter time (s)": _seconds(meta.get("elapsed_s")),
                "Build time (s)": _seconds(seconds),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "Chapter",
            "Claims holding",
            "Profile",
            "Teacher stop",
            "Teacher rule",
            "Teachers train (× first 100%)",
            "Device",
            "Chapter time (s)",
            "Build time (s)",
        ],
    )


def _clock(clock) -> str:
    """'3.2× (2.9-3.6, 12 teachers)' from meta.json's teacher_clock (median, range), '–' without it."""
    if not isinstance(clock, dict) or "median" not in clock:
        return "–"
    spread = "" if clock.get("min") == clock.get("max") else f"{clock['min']:g}-{clock['max']:g}, "
    return f"{clock['median']:g}× ({spread}{clock.get('teachers', '?')} teachers)"


def _seconds(value) -> str:
    try:
        return f"{float(value):.0f}"
    except (TypeError, ValueError):
        return "–"


def protocol_table(departures, link: bool = True):
    """The report's protocol table: one row per way a chapter departs from the paper's text or
    the authors' released code, from the chapters' departures.csv (`memkd.book.report.load_departures`).
    A chapter's name shows on its first row only."""

    columns = ["Chapter", "Topic", "The paper or its released code", "This book", "Why"]
    rows, previous = [], None
    for r in departures.itertuples(index=False):
        chapter = str(r.chapter)
        rows.append(
            {
                "Chapter": _chapter_cell(chapter, link) if chapter != previous else "",
                "Topic": htmllib.escape(str(r.topic)),
                "The paper or its released code": htmllib.escape(str(r.paper)),
                "This book": htmllib.escape(str(r.book)),
                "Why": htmllib.escape(str(r.reason)),
            }
        )
        previous = chapter
    return pd.DataFrame(rows, columns=columns)


def build_info(results: Path):
    """The report's "This build" box: one row per field of the chapters' meta.json (BUILD_FIELDS)
    with columns Field and Value (its distinct values over the chapters, "–" where none recorded it)."""

    metas = list(load_meta(results).values())
    rows = []
    for key, label in BUILD_FIELDS:
        values = []
        for meta in metas:
            value = meta.get(key)
            if value is None or value == "":
                continue
            if key == "git_commit":
                value = str(value)[:12]
            elif key == "git_clean":
                value = "yes" if value is True else "no" if value is False else str(value)
            if str(value) not in values:
                values.append(str(value))
        rows.append({"Field": label, "Value": htmllib.escape(", ".join(values)) if values else "–"})
    return pd.DataFrame(rows, columns=["Field", "Value"])


VERDICT_COLOURS = {"holds": "tab:green", "does not hold": "tab:red", "inconclusive": "tab:gray"}


def claims_figure(claims, title: str = ""):
    """Every claim's interval against its bound: one row per claim, the interval of its difference
    (for an exact test: of the proportion minus p0) as a bar with its mean as a dot, coloured by the
    verdict after the adjustment; the bound as a tick ("above": +margin, "below": -margin) or, for
    an equivalence claim, the band (-margin, margin) in grey. Claims without an interval show their
    mean only (an open circle); an interval wider than the axis (twice the largest difference or
    margin, at most 1) ends in an arrow; claims not counted are pale. Returns the matplotlib figure
    (None without claims)."""
    import matplotlib.pyplot as plt

    if "verdict_adjusted" not in getattr(claims, "columns", []):
        claims = adjust_claims(claims)
    if not len(claims):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(claims) + 1.0))
    import numpy as np

    scale = np.nanmax(np.abs(np.r_[claims["difference"].to_numpy(float), claims["margin"].to_numpy(float), 0.05]))
    edge = float(min(1.0, 2.0 * scale))  # intervals wider than this are cut at the edge, with an arrow
    labels = []
    for i, r in enumerate(claims.itertuples(index=False)):
        y = len(claims) - 1 - i
        colour = VERDICT_COLOURS.get(str(r.verdict_adjusted), "tab:gray")
        margin = 0.0 if r.margin != r.margin else float(r.margin)
        if r.expect == "equivalent":
            ax.fill_betweenx([y - 0.4, y + 0.4], -margin, margin, color="0.88", lw=0)
        else:
            bound = margin if r.expect == "above" else -margin
            ax.plot([bound, bound], [y - 0.4, y + 0.4], color="k", lw=1.2)
        if r.ci_low == r.ci_low and r.ci_high == r.ci_high:
            low, high = max(r.ci_low, -edge), min(r.ci_high, edge)
            ax.plot([low, high], [y, y], color=colour, lw=3, solid_capstyle="butt", alpha=1.0 if r.counted else 0.45)
            ax.plot([r.difference], [y], "o", color=colour, ms=4)
            for cut, end, marker in ((r.ci_low < -edge, -edge, "<"), (r.ci_high > edge, edge, ">")):
                if cut:
                    ax.plot([end], [y], marker, color=colour, ms=5)
        elif r.difference == r.difference:
            ax.plot([r.difference], [y], "o", mfc="none", color=colour, ms=5)
        labels.append(f"{str(r.chapter)[:2]} {r.claim}" + ("" if r.counted else " (not counted)"))
    ax.set_yticks(range(len(claims)), labels[::-1], fontsize=7)
    ax.axvline(0, color="k", lw=0.5, ls=":")
    ax.set_xlabel("difference from the baseline (the claim's raw interval at 0.05; colour: verdict after Holm)")
    handles = [plt.Line2D([], [], color=c, lw=3, label=v) for v, c in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_ylim(-0.8, len(claims) - 0.2)
    ax.set_xlim(-1.05 * edge, 1.05 * edge)
    return fig
