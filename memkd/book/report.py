"""The reproduction report: what the chapters of a build wrote, gathered into tables.

The report page (book/report.ipynb) reads each chapter's claims.csv (`memkd.book.claims.CLAIM_COLUMNS`;
older files are filled in by `normalize_claims`), departures.csv and meta.json, and shows: the
headline count of the paper's claims (`headline`), the claims (`report_table`), the protocol table
(`protocol_table`), the chapters (`chapter_summary`) and the build's provenance (`build_info`).
"""

from __future__ import annotations

import html as htmllib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from memkd.book.build import CHAPTER_DIR, toc_chapters
from memkd.book.chapter import book_root
from memkd.book.claims import CLAIM_COLUMNS, DEPARTURE_COLUMNS


def toc_part_chapters(matches, root: Path | None = None) -> set[str]:
    """Chapter names the book's _toc.yml lists under the parts whose caption `matches(caption)`
    (the book root is found from `root`, else from the working directory; empty without one)."""
    import yaml

    book = (book_root(Path(root)) if root else None) or book_root()
    if not book or not (book / "_toc.yml").is_file():
        return set()
    try:
        toc = yaml.safe_load((book / "_toc.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return set()
    return {Path(entry["file"]).name for part in toc.get("parts", []) or []
            if matches(str(part.get("caption", "")))
            for entry in part.get("chapters", []) or [] if "file" in entry}


def beyond_paper_chapters(root: Path | None = None) -> set[str]:
    """Chapter names the book's _toc.yml lists under a part captioned "Beyond the paper"."""
    return toc_part_chapters(lambda caption: "beyond" in caption.lower(), root)


PUBLISHED_CAPTION = "The published version"


def published_version_chapters(root: Path | None = None) -> set[str]:
    """Chapter names the book's _toc.yml lists under the part captioned exactly "The published version"."""
    return toc_part_chapters(lambda caption: caption.strip() == PUBLISHED_CAPTION, root)


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


def normalize_claims(claims: pd.DataFrame, chapter: str = "", beyond_paper: bool = False,
                     published_version: bool = False) -> pd.DataFrame:
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
    out["published_version"] = (out["published_version"].map(_as_bool) if "published_version" in out.columns
                                else published_version)
    for column, default in (("claim", ""), ("paper", ""), ("detail", ""), ("expect", ""), ("value", ""),
                            ("test", "t interval"), ("note", ""), ("supports", ""), ("margin_reason", ""),
                            ("effect_reason", ""), ("sd_source", ""), ("baseline_reason", "")):
        out[column] = (out[column].astype(object).where(out[column].notna(), default).astype(str)
                       if column in out.columns else default)
    for column in CLAIM_COLUMNS:
        if column not in out.columns:
            out[column] = math.nan
    numeric = ["measured", "baseline", "difference", "sem", "ci_low", "ci_high", "margin", "level", "n",
               "students", "p_value", "assumed_effect", "planned_n"]
    out[numeric] = out[numeric].apply(pd.to_numeric, errors="coerce")
    return out[CLAIM_COLUMNS].reset_index(drop=True)


def load_claims(root: Path) -> pd.DataFrame:
    """All chapters' claims.csv under `root` (one folder per chapter), in chapter order, in the
    format of CLAIM_COLUMNS whatever their age (see `normalize_claims`). A claim is beyond the paper
    when its row, its chapter's meta.json or the book's toc (a chapter under "Beyond the paper")
    says so, and of the published version likewise (a chapter under "The published version").
    Unreadable files are skipped."""
    frames = []
    toc_beyond, toc_published = beyond_paper_chapters(Path(root)), published_version_chapters(Path(root))
    for path in sorted(Path(root).glob("*/claims.csv")):
        frame = _read_csv(path)
        if frame is None:
            continue
        name, meta = path.parent.name, _meta(path.parent)
        flag = _as_bool(meta.get("beyond_paper")) or name in toc_beyond
        published = _as_bool(meta.get("published_version")) or name in toc_published
        frame = normalize_claims(frame, name, flag, published)
        frame["beyond_paper"] = frame["beyond_paper"] | flag  # the toc's part decides too
        frame["published_version"] = frame["published_version"] | published
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


BUILD_FIELDS = [  # meta.json key -> label of the report's "This build" box (memkd.provenance.collect)
    ("profile", "Profile"), ("memkd_version", "memkd version"), ("git_commit", "Git commit"),
    ("git_clean", "Tracked files unchanged since that commit"), ("python", "Python"), ("torch", "torch"),
    ("device", "Device"), ("device_name", "Device name"), ("threads", "torch threads"),
    ("platform", "Platform"), ("hostname", "Host"),
]


BLOCKS = {  # block -> its title in the report; each block is one family for the multiplicity adjustment
    "workshop": "claims of the paper",
    "published": "claims of the published version",
    "stand-in": "measured on a stand-in",
    "beyond": "findings beyond the paper",
}


def claim_block(beyond_paper: bool, published_version: bool, data: str) -> str:
    """The report block of a claim (BLOCKS): beyond the paper, else a stand-in, else the published
    version's or the workshop paper's."""
    if beyond_paper:
        return "beyond"
    if str(data) != "paper":
        return "stand-in"
    return "published" if published_version else "workshop"


def _default_level(expect: str) -> float:
    return 0.05 if str(expect) == "equivalent" else 0.01


def adjust_claims(claims) -> pd.DataFrame:
    """The claims with their block, whether they count, and Holm's adjustment within each block.

    Adds the columns: block (BLOCKS), counted (False where the claim `supports` another one: it
    tests an effect already tested and is shown but not counted), p_adjusted (Holm's adjusted p
    over the counted claims of the block; a claim without a p counts as p = 1; NaN where not
    counted) and verdict_adjusted: a claim that holds keeps "holds" only when its adjusted p is
    below its level (else "inconclusive"); other verdicts are unchanged (a claim that does not
    hold or is inconclusive rejects nothing). Rejections are a subset of Holm's at the largest
    level of the block, so each block's family-wise error rate is at most that level.
    """
    from memkd.metrics import holm

    out = normalize_claims(claims)
    out["block"] = [claim_block(b, pv, d) for b, pv, d in
                    zip(out["beyond_paper"], out["published_version"], out["data"])]
    out["counted"] = out["supports"].astype(str).str.strip() == ""
    out["p_adjusted"] = math.nan
    out["verdict_adjusted"] = out["verdict"]
    for _, part in out[out["counted"]].groupby("block", sort=False):
        adjusted = holm(part["p_value"].to_numpy())
        out.loc[part.index, "p_adjusted"] = adjusted
        level = part["level"].where(part["level"].notna(), part["expect"].map(_default_level))
        lost = (part["verdict"] == "holds") & ~(adjusted < level.to_numpy())
        out.loc[part.index[lost.to_numpy()], "verdict_adjusted"] = "inconclusive"
    return out


def claim_blocks(claims) -> dict[str, pd.DataFrame]:
    """{block: its claims (with the columns of `adjust_claims`)} for every block of BLOCKS."""
    adjusted = adjust_claims(claims)
    return {block: adjusted[adjusted["block"] == block].reset_index(drop=True) for block in BLOCKS}


def split_claims(claims):
    """(paper, stand_in, beyond): the workshop paper's claims measured on its kind of data (the
    headline's), those measured on a stand-in, and the findings of chapters beyond the paper; the
    published version's claims are in none of them (see `claim_blocks`)."""
    blocks = claim_blocks(claims)
    return tuple(blocks[b][CLAIM_COLUMNS] for b in ("workshop", "stand-in", "beyond"))


def verdict_counts(claims, column: str = "verdict") -> dict[str, int]:
    """{verdict: count} over memkd.metrics.VERDICTS (zeros included) of `column`."""
    from memkd.metrics import VERDICTS

    counts = claims[column].astype(str).value_counts() if len(claims) else {}
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def block_headline(block: pd.DataFrame, title: str) -> str:
    """'**X of Y <title> hold in this build**, Z inconclusive, W do not hold, after Holm's adjustment
    within the block (before it: X0 hold) (N chapters; K more shown but not counted ...)'."""
    counted = block[block["counted"]] if "counted" in block.columns else block
    after, before = verdict_counts(counted, "verdict_adjusted"), verdict_counts(counted)
    extra = len(block) - len(counted)
    return (f"**{after['holds']} of {len(counted)} {title} hold in this build**, {after['inconclusive']} "
            f"inconclusive, {after['does not hold']} do not hold, after Holm's adjustment within the block "
            f"(before it: {before['holds']} hold) ({counted['chapter'].nunique()} chapters"
            + (f"; {extra} more shown but not counted: they test an effect counted already" if extra else "")
            + ").")


def headline(claims) -> str:
    """The report's headline: the workshop paper's block (claims on its kind of data, adjusted for
    multiplicity within the block, duplicates not counted), then the published version's block
    when it has claims, then what is not counted."""
    blocks = claim_blocks(claims)
    text = block_headline(blocks["workshop"], BLOCKS["workshop"])
    if len(blocks["published"]):
        text += " " + block_headline(blocks["published"], BLOCKS["published"])
    others = [f"{len(blocks[b])} {BLOCKS[b]}" for b in ("stand-in", "beyond") if len(blocks[b])]
    return text + (f" Not counted: {' and '.join(others)}." if others else "")


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
    """The test behind a verdict: '98% interval [0.047, 0.070] > 0', or the old per-student t-test."""
    from memkd.book.claims import interval_text

    record = row._asdict() if hasattr(row, "_asdict") else dict(row)
    text = interval_text(record, of="")
    if text:
        return ("exact " if record.get("test") == "exact binomial" else "") + text
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
    import pandas as pd

    from memkd.book.claims import units_text
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
        rows.append({
            "Chapter": _chapter_cell(chapter, link) if chapter != previous else "",
            claim_header: htmllib.escape(str(r.paper)),
            "This build": htmllib.escape(format_measured(r.measured, r.sem, r.baseline, r.difference)),
            "n": htmllib.escape(_n_cell(r)),
            "Test": htmllib.escape(_test_cell(r)),
            "p-value": htmllib.escape(format_p(float(r.p_value), label=False)),
            "p (Holm)": htmllib.escape(format_p(float(r.p_adjusted), label=False)),
            "Verdict": htmllib.escape(verdict),
        })
        previous = chapter
    return pd.DataFrame(rows, columns=columns)


def _n_cell(r) -> str:
    """'12 teachers × 1 student', '120 outcomes of 12 teachers' for an exact test, and the plan:
    '(planned: 21; underpowered)'."""
    from memkd.book.claims import claim_units, power_status

    text = claim_units(r)
    status = power_status(r.planned_n, r.n)
    if status in ("underpowered", "powered"):
        text += f" (planned: {r.planned_n:.0f}" + ("; underpowered)" if status == "underpowered" else ")")
    elif status == "not plannable":
        text += " (not plannable)"
    return text


def plan_table(claims, link: bool = True):
    """What every claim fixed before its run: the test, its baseline and margin with their reasons,
    the assumed effect with its source, the planned n (80% power at the claim's level) against this
    build's n.

    claims : a table of claims (`load_claims`); one row per claim, in chapter order.
    """
    import pandas as pd

    from memkd.book.claims import power_status

    columns = ["Chapter", "Claim", "Test", "Baseline", "Margin", "Why this margin", "Assumed effect",
               "Why this effect", "Planned n", "n", "Power"]
    rows, previous = [], None
    for r in normalize_claims(claims).itertuples(index=False):
        chapter = str(r.chapter)
        unit = "outcomes" if r.test == "exact binomial" else "teachers"
        planned = "–" if r.planned_n != r.planned_n else "∞" if math.isinf(r.planned_n) else f"{r.planned_n:.0f} {unit}"
        rows.append({
            "Chapter": _chapter_cell(chapter, link) if chapter != previous else "",
            "Claim": htmllib.escape(str(r.claim)),
            "Test": htmllib.escape(f"{r.expect}, {r.test}" + (f", level {r.level:g}" if r.level == r.level else "")),
            "Baseline": htmllib.escape(str(r.baseline_reason) or "–"),
            "Margin": "–" if r.margin != r.margin else f"{r.margin:.3g}",
            "Why this margin": htmllib.escape(str(r.margin_reason) or "no reason recorded"),
            "Assumed effect": "–" if r.assumed_effect != r.assumed_effect else f"{r.assumed_effect:.3g}",
            "Why this effect": htmllib.escape(str(r.effect_reason) or "–")
                               + (f" (spread: {htmllib.escape(str(r.sd_source))})" if r.sd_source else ""),
            "Planned n": planned,
            "n": "–" if r.n != r.n else f"{int(r.n)}",
            "Power": power_status(r.planned_n, r.n),
        })
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
    import pandas as pd


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
        rows.append({
            "Chapter": _chapter_cell(name, link),
            "Claims holding": (f"{c['holds']} of {len(mine)}" + (f" ({c['inconclusive']} inconclusive)"
                                                              if c["inconclusive"] else "")
                               if meta or len(mine) else "no results"),
            "Profile": str(meta.get("profile") or "–"),
            "Teacher stop": str(meta.get("teacher_stop") or "–"),
            "Teachers train (× first 100%)": _clock(meta.get("teacher_clock")),
            "Device": str(meta.get("device") or "–"),
            "Chapter time (s)": _seconds(meta.get("elapsed_s")),
            "Build time (s)": _seconds(seconds),
        })
    return pd.DataFrame(rows, columns=["Chapter", "Claims holding", "Profile", "Teacher stop",
                                       "Teachers train (× first 100%)", "Device", "Chapter time (s)",
                                       "Build time (s)"])


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
    the authors' released code, from the chapters' departures.csv (`memkd.book.chapter.load_departures`).
    A chapter's name shows on its first row only."""
    import pandas as pd

    columns = ["Chapter", "Topic", "The paper or its released code", "This book", "Why"]
    rows, previous = [], None
    for r in departures.itertuples(index=False):
        chapter = str(r.chapter)
        rows.append({"Chapter": _chapter_cell(chapter, link) if chapter != previous else "",
                     "Topic": htmllib.escape(str(r.topic)),
                     "The paper or its released code": htmllib.escape(str(r.paper)),
                     "This book": htmllib.escape(str(r.book)), "Why": htmllib.escape(str(r.reason))})
        previous = chapter
    return pd.DataFrame(rows, columns=columns)


def build_info(results: Path):
    """The report's "This build" box: one row per field of the chapters' meta.json (BUILD_FIELDS)
    with columns Field and Value (its distinct values over the chapters, "–" where none recorded it)."""
    import pandas as pd

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
    ax.set_xlabel("difference from the baseline (interval of the claim's test)")
    handles = [plt.Line2D([], [], color=c, lw=3, label=v) for v, c in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_ylim(-0.8, len(claims) - 0.2)
    ax.set_xlim(-1.05 * edge, 1.05 * edge)
    return fig
