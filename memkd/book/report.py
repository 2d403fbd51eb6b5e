"""The reproduction report: what the chapters of a build wrote, gathered into tables.

The report page (book/report.ipynb) reads each chapter's claims.csv (`memkd.book.claims.CLAIM_COLUMNS`;
older files are filled in by `normalize_claims`), departures.csv and meta.json, and shows: the
headline count of the paper's claims (`headline`), the claims adjusted for multiplicity within
their block (`adjust_claims`, `claim_blocks`). `memkd.book.report_tables` shows them as tables and a figure.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

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
    return {
        Path(entry["file"]).name
        for part in toc.get("parts", []) or []
        if matches(str(part.get("caption", "")))
        for entry in part.get("chapters", []) or []
        if "file" in entry
    }


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


def normalize_claims(
    claims: pd.DataFrame, chapter: str = "", beyond_paper: bool = False, published_version: bool = False
) -> pd.DataFrame:
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
    out["published_version"] = (
        out["published_version"].map(_as_bool) if "published_version" in out.columns else published_version
    )
    for column, default in (
        ("claim", ""),
        ("paper", ""),
        ("detail", ""),
        ("expect", ""),
        ("value", ""),
        ("test", "t interval"),
        ("note", ""),
        ("supports", ""),
        ("margin_reason", ""),
        ("effect_reason", ""),
        ("sd_source", ""),
        ("baseline_reason", ""),
        ("kind", "claim"),
        ("experiment", ""),
    ):
        out[column] = (
            out[column].astype(object).where(out[column].notna(), default).astype(str)
            if column in out.columns
            else default
        )
    for column in CLAIM_COLUMNS:
        if column not in out.columns:
            out[column] = math.nan
    numeric = [
        "measured",
        "baseline",
        "difference",
        "sem",
        "ci_low",
        "ci_high",
        "margin",
        "level",
        "n",
        "students",
        "p_value",
        "assumed_effect",
        "planned_n",
        "teachers_run",
    ]
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


def adjust_claims(claims) -> pd.DataFrame:
    """The claims with their block, whether they count, and Holm's adjustment within each block.

    Adds the columns: block (BLOCKS), counted (False for a check, kind "check": a statement that cannot
    fail at this size, and where the claim `supports` another one: it tests an effect already tested;
    both are shown but not counted), p_adjusted (Holm's adjusted p over the counted claims of the block;
    a claim without a p counts as p = 1; NaN where not counted), verdict_adjusted (a claim that holds
    keeps "holds" only when its adjusted p is below the one family level memkd.metrics.FAMILY_ALPHA, else
    "inconclusive"; other verdicts are unchanged: a claim that does not hold or is inconclusive rejects
    nothing), and planned_n_holm: the n that gives 80% power for the claim's assumed effect at the level
    Holm's first step asks of it, FAMILY_ALPHA / m for a block of m counted claims (`holm_plan`).
    Each block's family-wise error rate for "holds" is at most FAMILY_ALPHA.
    """
    from memkd.metrics import FAMILY_ALPHA, holm

    out = normalize_claims(claims)
    out["block"] = [
        claim_block(b, pv, d) for b, pv, d in zip(out["beyond_paper"], out["published_version"], out["data"])
    ]
    out["counted"] = (out["supports"].astype(str).str.strip() == "") & (out["kind"].astype(str) != "check")
    out["p_adjusted"] = math.nan
    out["planned_n_holm"] = math.nan
    out["verdict_adjusted"] = out["verdict"]
    for _, part in out[out["counted"]].groupby("block", sort=False):
        adjusted = holm(part["p_value"].to_numpy())
        out.loc[part.index, "p_adjusted"] = adjusted
        lost = (part["verdict"] == "holds").to_numpy() & ~(adjusted < FAMILY_ALPHA)
        out.loc[part.index[lost], "verdict_adjusted"] = "inconclusive"
        out.loc[part.index, "planned_n_holm"] = [holm_plan(r, FAMILY_ALPHA / len(part)) for r in part.itertuples()]
    return out


PROFILE_ORDER = ("smoke", "quick", "paper")
TEACHER_KNOB = "teachers"  # the knob that counts a chapter's teachers (per setting), in every experiment


def teachers_by_profile(chapter: str, nbs: Path | None = None, experiment: str = "") -> dict[str, Any]:
    """How many teachers (the `teachers` knob) the chapter's experiments train at each profile, read from
    the configs of the experiments its notebook declares (metadata entry "memkd"), so that a claim short
    of teachers can name the profile that has enough. `experiment`: that experiment's counts ("" or an
    experiment the notebook does not declare: the largest over them).
    `nbs`: the folder of the chapters (default: `nbs/` of the book root, else of memkd's checkout).
    Returns {profile: count, ...}, or {} when the notebook or its configs cannot
    be read (an installed memkd without the book). Read once per notebook (the report asks per claim)."""
    import memkd

    folders = (
        [nbs] if nbs is not None else [f / "nbs" for f in (book_root(), Path(memkd.__file__).resolve().parents[1]) if f]
    )
    notebook = next((f / f"{chapter}.ipynb" for f in folders if (f / f"{chapter}.ipynb").is_file()), None)
    if notebook is None:
        return {}
    per_experiment = {name: dict(counts) for name, counts in _teacher_counts(str(notebook.resolve()))}
    if experiment in per_experiment:
        return per_experiment[experiment]
    largest: dict[str, Any] = {}
    for counts in per_experiment.values():
        for profile, count in counts.items():
            largest[profile] = max(largest.get(profile, 0), count)
    return {p: largest[p] for p in PROFILE_ORDER if p in largest}


@functools.lru_cache(maxsize=None)
def _teacher_counts(notebook: str) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    """Each declared experiment's ((profile, teachers), ...) of one notebook file (cached: the configs
    do not change in a build)."""
    import importlib

    from memkd.config import make_config

    try:
        experiments = json.loads(Path(notebook).read_text())["metadata"]["memkd"]["experiments"]
    except (ValueError, KeyError, TypeError):
        return ()
    out = []
    for name, target in experiments.items():
        try:
            module, cls = str(target).split(":")
            config_class = getattr(importlib.import_module(module), cls)
            counts = []
            for profile in PROFILE_ORDER:
                count = getattr(make_config(config_class, name, profile, {}), TEACHER_KNOB, None)
                if isinstance(count, int) and not isinstance(count, bool):
                    counts.append((profile, int(count)))
        except (ImportError, AttributeError, ValueError, TypeError):
            continue
        if counts:
            out.append((name, tuple(counts)))
    return tuple(out)


def teachers_needed(claim: Any, needed_n: float) -> float:
    """The `teachers` knob that gives a claim `needed_n` units (teachers, teachers in a state, outcomes),
    at the rate this run gave: teachers_run * needed_n / n (the claim's n grows in proportion to the
    knob: teachers that reach a state, eligible teachers over several sizes, outcomes per teacher). NaN
    when the run's knob or n is not known."""
    run, n = float(getattr(claim, "teachers_run", math.nan)), float(getattr(claim, "n", math.nan))
    if not (run > 0 and n > 0) or not needed_n == needed_n:
        return math.nan
    return math.inf if math.isinf(needed_n) else math.ceil(run * needed_n / n - 1e-9)


def profile_reaching(chapter: str, knob: float, nbs: Path | None = None, experiment: str = "") -> str:
    """Words for the profile whose `teachers` knob reaches `knob` (`teachers_needed`) for `experiment` of the
    chapter, e.g. "the paper profile trains 32", or "no profile trains as many (paper: 5): run with
    teachers=28"; "" when the counts are unknown."""
    counts = teachers_by_profile(chapter, nbs, experiment)
    profiles = [p for p in PROFILE_ORDER if p in counts]
    if not profiles or not knob == knob or math.isinf(knob):
        return ""
    reaching = [p for p in profiles if counts[p] >= knob]
    if reaching:
        return f"the {reaching[0]} profile trains {counts[reaching[0]]}"
    return f"no profile trains as many (paper: {counts.get('paper', '?')}): run with {TEACHER_KNOB}={math.ceil(knob)}"


def holm_plan(claim: Any, level: float) -> float:
    """The n a claim needs for 80% power at `level` (Holm's strictest step: the family level over the
    block's size): teachers for a t interval (the spread its plan fixed in advance, else the one this build
    measured, SEM x sqrt(n)) or an exact
    sign test (every teacher on the claimed side), outcomes for an exact binomial test; NaN when the
    claim has no assumed effect or no spread to plan with."""
    from memkd.metrics import sign_test_teachers
    from memkd.power import planned_teachers, planned_trials

    effect, test = float(claim.assumed_effect), str(claim.test)
    if test == "exact sign test":
        return float(sign_test_teachers(level))
    if math.isnan(effect):
        return math.nan
    if test == "exact binomial":
        p0 = float(claim.baseline)
        if math.isnan(p0) or claim.expect == "equivalent":
            return math.nan
        p1 = min(1.0, max(0.0, p0 + effect if claim.expect == "above" else p0 - effect))
        return planned_trials(p0, p1, level, expect=str(claim.expect), margin=float(claim.margin or 0.0))
    from memkd.book.plan import plan_for

    fixed = plan_for(str(getattr(claim, "chapter", "")), str(getattr(claim, "claim", "")))
    if fixed is not None and fixed.sd is not None:
        sd = float(fixed.sd)  # fixed before the run (a pilot on other seeds)
    else:
        sd = float(claim.sem) * math.sqrt(float(claim.n)) if float(claim.n) >= 2 else math.nan
    if math.isnan(sd) or sd <= 0:
        return math.nan
    margin = 0.0 if math.isnan(float(claim.margin)) else float(claim.margin)
    return planned_teachers(effect, sd, level, expect=str(claim.expect), margin=margin)


def check_claims(claims) -> pd.DataFrame:
    """The checks (kind "check"): statements that cannot fail at this size, shown apart from the claims."""
    adjusted = adjust_claims(claims)
    return adjusted[adjusted["kind"].astype(str) == "check"].reset_index(drop=True)


def disagreements(claims) -> pd.DataFrame:
    """Where this build disagrees with the paper, generated from the claims of the two paper blocks
    (workshop and published version; counted claims and the ones that test an effect again, not checks).

    A claim **contradicts** the paper when its verdict after Holm is "does not hold"; it **leans
    against** the paper when it is inconclusive and its estimate lies on the wrong side of its bound
    (for "above": at or below +margin; for "below": at or above -margin; for "equivalent": outside the
    margin). Returns those claims with a column `disagreement` ("contradicts" or "leans against"),
    contradictions first, in chapter order.
    """
    from memkd.book.claims import disagreement

    adjusted = adjust_claims(claims)
    paper = adjusted[adjusted["block"].isin(["workshop", "published"]) & (adjusted["kind"].astype(str) != "check")]
    kind = [
        disagreement(str(r.verdict_adjusted), str(r.expect), float(r.difference), float(r.margin))
        for r in paper.itertuples()
    ]
    out = paper.assign(disagreement=kind)
    out = out[out["disagreement"] != ""]
    order = out["disagreement"].map({"contradicts": 0, "leans against": 1})
    return out.assign(_order=order).sort_values(["_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


def claim_blocks(claims) -> dict[str, pd.DataFrame]:
    """{block: its claims (with the columns of `adjust_claims`)} for every block of BLOCKS; checks
    (kind "check") are in none of them (see `check_claims`)."""
    adjusted = adjust_claims(claims)
    adjusted = adjusted[adjusted["kind"].astype(str) != "check"]
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
    within the block at the family level 0.05 (before it: X0 hold) (N chapters; K more shown but not
    counted ...)'."""
    from memkd.metrics import FAMILY_ALPHA

    counted = block[block["counted"]] if "counted" in block.columns else block
    after, before = verdict_counts(counted, "verdict_adjusted"), verdict_counts(counted)
    extra = len(block) - len(counted)
    return (
        f"**{after['holds']} of {len(counted)} {title} hold in this build**, {after['inconclusive']} "
        f"inconclusive, {after['does not hold']} do not hold, after Holm's adjustment within the block at "
        f"the family level {FAMILY_ALPHA:g} (before it: {before['holds']} hold) ({counted['chapter'].nunique()} chapters"
        + (f"; {extra} more shown but not counted: they test an effect counted already" if extra else "")
        + ")."
    )


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
