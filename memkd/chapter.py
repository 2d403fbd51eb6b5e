"""What every chapter notebook does besides the science: resolve its parameters, keep its outputs.

A chapter's first code cells are: the Colab install cell, then a `parameters` cell of plain values
(papermill overrides them), then::

    ch = memkd.chapter.Chapter("02_logit_distillation", profile=profile, results_dir=results_dir,
                               device=device, seed=seed)

`ch.profile` is the resolved profile (an empty `profile` parameter means `$MEMKD_PROFILE`, else
"quick"), `ch.device` a `torch.device` (cuda, then mps, then cpu unless forced). Results go to
`ch.results_dir`, by default `<results root>/<chapter>` where the results root is `$MEMKD_RESULTS`
or `<book root>/results/<profile>` (the book root is the first parent folder holding `_config.yml`).

Files a chapter leaves there (the report page and the sweeps read them):
    table.csv      the tidy results, one row per trained student (`save_table`)
    <name>.png     each figure (`save_figure`)
    claims.csv     one row per claim of the paper with this build's verdict (`add_claim`)
    meta.json      chapter, profile, seed, elapsed seconds, and the build's provenance
                   (`memkd.provenance.collect`: versions, git commit, device name, threads, host)
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
CLAIM_COLUMNS = ["chapter", "claim", "paper", "measured", "sem", "n", "p_value", "holds", "detail"]


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
    """One claim of the paper with what this build measured (see `Chapter.add_claim`)."""

    chapter: str
    claim: str  # short id, e.g. "soft_beats_chance"
    paper: str  # the claim in our own words
    measured: float
    sem: float
    n: int
    p_value: float
    holds: bool
    detail: str = ""


@dataclass
class Chapter:
    """Resolved parameters and the output folder of one chapter run."""

    name: str
    profile: str = ""
    results_dir: str = ""
    device: str = "auto"
    seed: int = 0
    claims: list[Claim] = field(default_factory=list)

    def __post_init__(self) -> None:
        from memkd.device import resolve_device

        self.profile = resolve_profile(self.profile)
        self.device = resolve_device(self.device)
        path = Path(self.results_dir) if self.results_dir else results_root(self.profile) / self.name
        self.results_dir = str(path)
        path.mkdir(parents=True, exist_ok=True)
        self._started = time.perf_counter()

    @property
    def path(self) -> Path:
        return Path(self.results_dir)

    def save_table(self, table: pd.DataFrame, name: str = "table") -> Path:
        """Write a tidy table as CSV (atomically) and return its path."""
        target = self.path / f"{name}.csv"
        tmp = target.with_suffix(".csv.tmp")
        table.to_csv(tmp, index=False)
        tmp.replace(target)
        return target

    def save_figure(self, figure: Any, name: str) -> None:
        """Save a matplotlib figure as `<results_dir>/<name>.png` next to the tables.

        Returns None, so that a cell ending with this call shows the figure and no path.
        """
        figure.savefig(self.path / f"{name}.png", dpi=120, bbox_inches="tight")

    def add_claim(
        self,
        claim: str,
        paper: str,
        measured: float,
        sem: float,
        n: int,
        p_value: float,
        holds: bool,
        detail: str = "",
    ) -> Claim:
        """Record a verdict; `finish` writes all of them to claims.csv."""
        entry = Claim(self.name, claim, paper, float(measured), float(sem), int(n),
                      float(p_value) if p_value is not None else math.nan, bool(holds), detail)
        self.claims = [c for c in self.claims if c.claim != claim] + [entry]
        return entry

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

        expect_above=False states a claim that the values do *not* beat the baseline (hard labels).
        The returned sentence is Markdown, built from the numbers (display it with
        `IPython.display.Markdown`).
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
        self.add_claim(claim, paper, r["mean"], r["sem"], r["n"], r["p_value"], holds,
                       detail or f"baseline {baseline:.4f}")
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
        """Test mean(a - b) > 0 on matched pairs (one-sided paired t-test); record and return the verdict."""
        from memkd.metrics import compare_paired, format_p

        r = compare_paired(a, b)
        holds = r["p_value"] < level
        sentence = (
            f"**{what}**: {r['mean_a']:.3f} against {r['mean_b']:.3f}, difference {r['mean']:+.3f} ± "
            f"{r['sem']:.3f} (n = {r['n']} pairs), one-sided paired t-test {format_p(r['p_value'])}. "
            + ("The paper's claim holds in this build." if holds else "**The paper's claim does not hold in this build.**")
        )
        self.add_claim(claim, paper, r["mean"], r["sem"], r["n"], r["p_value"], holds, detail)
        return sentence

    def finish(self) -> pd.DataFrame:
        """Write claims.csv and meta.json; return the claims as a table.

        meta.json holds the chapter, profile, seed and wall time (elapsed_s) together with
        the build's provenance (`memkd.provenance.collect`: memkd version, git commit and
        cleanliness, Python and torch versions, device and its name, threads, platform, host).
        """
        from memkd.provenance import collect

        claims = pd.DataFrame([asdict(c) for c in self.claims], columns=CLAIM_COLUMNS)
        self.save_table(claims, "claims")
        meta = {
            "chapter": self.name,
            "profile": self.profile,
            "device": str(self.device),
            "seed": self.seed,
            "memkd_version": __version__,
            "elapsed_s": round(time.perf_counter() - self._started, 2),
        }
        meta.update({k: v for k, v in collect(self.device).items() if k not in meta})
        (self.path / "meta.json").write_text(json.dumps(meta, indent=2))
        return claims


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


def load_claims(root: Path) -> pd.DataFrame:
    """All chapters' claims.csv under `root` (one folder per chapter), in chapter order."""
    frames = [pd.read_csv(p) for p in sorted(Path(root).glob("*/claims.csv"))]
    if not frames:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    return pd.concat(frames, ignore_index=True)
