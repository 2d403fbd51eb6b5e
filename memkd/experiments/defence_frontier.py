"""Defences against the leak and what they cost (chapter 14): every server-side defence of
`memkd.defences` over a grid of strengths, and the teacher-side knobs, in three settings.

    mlp                the random-data MLP of chapter 02 (two hidden layers, per-class alpha split);
                       also teachers trained with label smoothing or weight decay (same datasets)
    linear             chapter 11's bias-free binary linear teachers above the line rho N >= d; the
                       student is the exact minimizer of the soft-label loss (`solve_soft_labels`)
    one_hidden_layer   chapter 13's recovery cell (one hidden layer, many classes, Gaussian inputs)

Two numbers per student: the **leak**, its accuracy on the held-out memorized points minus its own
accuracy on fresh draws (D' with random labels; the linear setting's fresh inputs carry no labels, so
there the baseline is chance 1/2), and the **fidelity**, its agreement with the teacher's class on
fresh inputs. One row per student; the teacher (dataset) is the unit, `teacher_id` names it per setting.

The student's temperature is the setting's T, applied to what the server returns
(`memkd.defences.Answer.targets`); with no defence that is the book's sigma_T of the teacher's logits.
The linear server answers at chapter 11's T (its logits divided by T before any defence), and its
exact student reads the completed answer at T = 1 (the solve recovers z / T).

Shape letters: see `memkd`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import pandas as pd
import torch

from memkd.config import (
    POS_INT,
    Constraint,
    int_range,
    knob,
    list_of,
    make_config,
    real_interval,
    settings_knob,
    weight_decays_knob,
)
from memkd.defences import withheld_knob
from memkd.declare import experiment
from memkd.defences import parse
from memkd.device import resolve_device
from memkd.data.linear import make_linear_data, student_mask
from memkd.metrics import recovery_metrics, teacher_accuracy
from memkd.experiments.linear_recovery import train_teachers
from memkd.models.linear import linear_logits, solve_soft_labels
from memkd.experiments.random_data import PAPER_PROFILE, QUICK_PROFILE, SMOKE_PROFILE, RandomDataConfig
from memkd.memorization import memorization_tasks, split
from memkd.students import distill, member_grid
from memkd.seeds import derive_seed
from memkd.tables import TEACHER_ID, config_dict

SETTINGS = ("mlp", "linear", "one_hidden_layer")
DECIMALS = list_of(int_range(0))
SIGMAS = list_of(real_interval(0, math.inf, "left"))


def _spec_ok(value: Any) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return isinstance(value, str)


SPECS = Constraint(
    lambda v: isinstance(v, (list, tuple)) and all(_spec_ok(s) for s in v),
    "a list of defences as memkd.defences.parse reads them (e.g. 'top5|logprob_round2')",
    tuple,
)

# chapter 13's recovery cell at each profile (its quick profile recovers at n = 10 from rho = 0.6 on):
# d, C, P, n per class, the student's fraction, budgets and learning rates, the teachers. At quick the cell
# keeps chapter 13's C = 100, P = 50, n = 10 at d = 20 (chapter 13 runs d = 50), and 4 teachers: measured beside other jobs
# (2026-12-07, 2 shared cores), 4 teachers x 4 defences took 50 s, and held-out accuracy without a defence
# was 0.92 to 1.00 (fidelity 0.76 to 0.99): at or near recovery.
RECOVERY_CELL = {
    "smoke": dict(
        input_dim=10,
        classes=30,
        teacher_width=40,
        per_class=6,
        alphas=(0.67,),
        teacher_epochs=800,
        teacher_lr=3e-3,
        student_widths=(40,),
        epochs=400,
        lrs=(1e-2,),
        teachers=3,
    ),
    "quick": dict(
        input_dim=20,
        classes=100,
        teacher_width=50,
        per_class=10,
        alphas=(0.7,),
        teacher_epochs=1500,
        teacher_lr=1e-3,
        student_widths=(50,),
        epochs=1000,
        lrs=(2e-3,),
        teachers=4,
    ),
    "paper": dict(
        input_dim=50,
        classes=100,
        teacher_width=50,
        per_class=10,
        alphas=(0.7,),
        teacher_epochs=2000,
        teacher_lr=1e-3,
        student_widths=(50,),
        epochs=10_000,
        lrs=(1e-4,),
        teachers=6,
    ),
}

COLUMNS = (
    "setting",
    "dataset",
    "classes",
    "input_dim",
    "family",
    "strength",
    "defence",
    "student",
    "temperature",
    "train_acc",
    "test_acc",
    "independent_acc",
    "leak",
    "fidelity",
    "leak_baseline",
    "chance",
    "teacher_memorized",
    "p_small",
    "margin_small",
    "probe",
)


@dataclass(frozen=True)
class DefenceConfig(RandomDataConfig):
    """The MLP setting's sizes (RandomDataConfig's knobs), the defences' grids, and the other settings."""

    settings: tuple = settings_knob(SETTINGS, "the MLP, linear and one-hidden-layer teachers")
    top_ks: tuple = knob((1, 2, 5), list_of(int_range(1)), "k of the top-k defence (each <= C)")
    decimals: tuple = knob((0, 1, 2, 3), DECIMALS, "decimals of the rounded probabilities")
    logprob_decimals: tuple = knob((0, 1), DECIMALS, "decimals of the rounded log-probabilities")
    sigmas: tuple = knob((0.5, 2.0, 8.0), SIGMAS, "standard deviations of the Gaussian noise on the logits")
    combined: tuple = knob(("top5|logprob_round2", "temp0.25|round2"), SPECS, "further defences, one line each")
    label_smoothings: tuple = knob((0.2,), list_of(real_interval(0, 1, "left")), "teachers' label smoothing")
    weight_decays: tuple = weight_decays_knob((3e-3,))
    withheld: str = withheld_knob()
    recovery_defences: tuple = knob(
        ("none", "top5", "round2", "label"), SPECS, "the defences of the one-hidden-layer recovery cell"
    )
    linear_dim: int = knob(50, int_range(2), "d of the linear teachers")
    linear_n_over_d: float = knob(1.4, real_interval(0, 2), "N / d of the linear teachers (below capacity 2)")
    linear_rho: float = knob(0.8, real_interval(0, 1), "the linear student's fraction (rho N >= d required)")
    linear_temperature: float = knob(10.0, real_interval(0, math.inf), "T of the linear soft labels (chapter 11)")
    linear_probe_temperatures: tuple = knob(
        (1.0, 3.0),
        list_of(real_interval(0, math.inf)),
        "further server temperatures at which only rounding is probed (the failing decimal moves with p)",
    )
    linear_teachers: int = knob(12, POS_INT, "linear teachers")
    linear_teacher_epochs: int = knob(500, POS_INT, "linear teachers' full-batch Adam epochs")
    linear_decimals: tuple = knob(
        tuple(range(0, 11)), DECIMALS, "decimals of the linear setting's rounded probabilities"
    )
    linear_sigmas: tuple = knob((1e-4, 1e-3, 1e-2, 1e-1), SIGMAS, "noise on the linear teacher's scaled logit")

    TABLE_COLUMNS = (TEACHER_ID, *COLUMNS)
    RENAMED = {"linear_datasets": "use 'linear_teachers' (the linear teachers, named as the knob 'teachers')"}
    PROFILE_VALUES = {
        "smoke": dict(
            SMOKE_PROFILE,
            teachers=3,
            students=1,
            top_ks=(1, 2, 5),
            decimals=(1, 2),
            logprob_decimals=(0,),
            sigmas=(2.0,),
            combined=("top5|logprob_round2",),
            linear_dim=20,
            linear_teachers=4,
            linear_decimals=(0, 2, 4, 6),
            linear_sigmas=(1e-2,),
            linear_teacher_epochs=300,
            linear_probe_temperatures=(1.0,),
        ),
        # d = 200, C = 20, 20 per class, width 100: the released code's leak at T = 20 is 0.17 (chance 0.05)
        "quick": dict(
            QUICK_PROFILE,
            input_dim=200,
            classes=20,
            per_class=20,
            teacher_width=100,
            teacher_epochs=300,
            student_widths=(100,),
            temperatures=(20.0,),
            lrs=(1e-2,),
            epochs=150,
            students=1,
            teachers=8,
        ),
        "paper": dict(
            PAPER_PROFILE,
            teachers=10,
            top_ks=(1, 5, 20),
            decimals=(0, 1, 2, 3, 4),
            logprob_decimals=(0, 1, 2),
            linear_dim=200,
            linear_teachers=10,
            linear_teacher_epochs=10_000,
        ),
    }

    def check(self) -> None:
        super().check()
        for k in self.top_ks:
            if k > self.classes:
                self.fail("top_ks", f"must hold ks in [1, C = {self.classes}]. Got {self.top_ks!r} instead.")
        n = 2 * round(self.linear_n_over_d * self.linear_dim / 2)
        if math.floor(self.linear_rho * n / 2 + 1e-9) * 2 < self.linear_dim:
            self.fail(
                "linear_rho",
                f"must put the linear student above the line (rho N >= d = {self.linear_dim}, "
                f"N = {n}). Got {self.linear_rho!r} instead.",
            )


def defence_grid(cfg: DefenceConfig) -> list[tuple[str, float, str]]:
    """(family, strength, one-line defence) of every server-side defence of the MLP setting."""
    grid = [("none", 0.0, "none")]
    grid += [("top-k", float(k), f"top{k}") for k in cfg.top_ks]
    grid += [("round", float(r), f"round{r}") for r in cfg.decimals]
    grid += [("logprob round", float(r), f"logprob_round{r}") for r in cfg.logprob_decimals]
    grid += [("noise", float(s), f"noise{s:g}") for s in cfg.sigmas]
    grid += [("combined", float(i), s) for i, s in enumerate(cfg.combined)]
    return grid + [("label only", 0.0, "label")]


def _mlp_rows(
    cfg: RandomDataConfig,
    grid: Sequence[tuple[str, float, str]],
    setting: str,
    teacher_overrides: dict | None = None,
    family: str = "",
    strength: float = 0.0,
) -> list[dict]:
    """Teachers of `cfg` (with `teacher_overrides`), then one student per (teacher, defence, seed)."""
    tasks = memorization_tasks(cfg, require_memorization=False, teacher_overrides=teacher_overrides)
    alpha, width, temperature = cfg.alphas[0], cfg.student_widths[0], cfg.temperatures[0]
    splits = [split(t, alpha, cfg) for t in tasks]
    members = [
        {**m, "family": f, "strength": s, "defence": spec}
        for (f, s, spec) in grid
        for m in member_grid(temperature=(temperature,), lr=cfg.lrs, student=range(cfg.students))
    ]
    targets = [
        torch.stack(
            [
                parse(m["defence"]).targets(
                    t.logits[tr], temperature, seed=derive_seed(cfg.seed, "probe", t.dataset, i), withheld=cfg.withheld
                )
                for i, m in enumerate(members)
            ]
        ).to(torch.float32)
        for t, (tr, _) in zip(tasks, splits)
    ]
    rows = distill(
        tasks, splits, cfg=cfg, kind="soft", width=width, members=members, targets=targets, setting=(setting,)
    )  # one initialization per student index: paired across defences and teachers
    for r in rows:
        if family:  # a teacher-side defence: the teacher differs, the server answers plainly
            r.update(family=family, strength=strength)
        r.update(
            setting=setting,
            classes=cfg.classes,
            input_dim=cfg.input_dim,
            probe=False,
            fidelity=r["teacher_agreement_independent"],
            leak=r["test_acc"] - r["independent_acc"],
            leak_baseline="own fresh accuracy",
        )
    return rows


def _linear_rows(cfg: DefenceConfig, device: torch.device) -> list[dict]:
    """Binary linear teachers above the line; exact students from every defended answer at chapter 11's T, and
    from the rounded answers at each of `linear_probe_temperatures` (rows marked `probe`)."""
    pc = round(cfg.linear_n_over_d * cfg.linear_dim / 2)
    ids = list(range(cfg.linear_teachers))
    data = make_linear_data(
        [pc] * len(ids),
        2,
        cfg.linear_dim,
        [derive_seed(cfg.seed, "data", "linear", k, cfg.linear_dim) for k in ids],
        1000,
        device,
    )
    w = train_teachers(
        data,
        1,
        [derive_seed(cfg.seed, "teacher", "linear", k) for k in ids],
        cfg.linear_teacher_epochs,
        1e-2,
        torch.float32,
    )
    perfect = teacher_accuracy(linear_logits(w, data.x)[:, 0], data.y, data.valid).cpu() == 1.0
    rounding = [("round", float(r), f"round{r}") for r in cfg.linear_decimals]
    grid = (
        [("none", 0.0, "none")]
        + rounding
        + [("logprob round", float(r), f"logprob_round{r}") for r in cfg.linear_decimals]
        + [("noise", float(s), f"noise{s:g}") for s in cfg.linear_sigmas]
        + [("label only", 0.0, "label")]
    )
    rows = _linear_students(cfg, data, w, perfect, cfg.linear_temperature, grid, probe=False)
    for t in cfg.linear_probe_temperatures:
        rows += _linear_students(cfg, data, w, perfect, t, rounding, probe=True)
    return rows


def _linear_students(
    cfg: DefenceConfig,
    data: Any,
    w: torch.Tensor,
    perfect: torch.Tensor,
    t: float,
    grid: Sequence[tuple[str, float, str]],
    probe: bool,
) -> list[dict]:
    """Rows of the exact students of every teacher (K) and defence of `grid` (M) when the server answers at T = t."""
    ids = range(len(perfect))
    z = linear_logits(w, data.x)[:, 0] / t  # (K, N, 2)
    probs = torch.stack(
        [
            parse(spec)
            .apply(z, seed=[derive_seed(cfg.seed, "probe", "linear", k) for k in ids])
            .completed(cfg.withheld)
            for _, _, spec in grid
        ],
        dim=1,
    )  # (K, M, N, 2)
    mask = student_mask(data, [cfg.linear_rho] * len(grid))  # (K, M, N)
    ws = solve_soft_labels(data.x, probs, mask, 1)  # (K, D, M, 1)
    metrics = recovery_metrics(
        linear_logits(ws, data.x),
        linear_logits(ws, data.fresh),
        linear_logits(w, data.fresh),
        data.y,
        data.valid,
        mask,
        probs,
        torch.full(mask.shape[:2], 1 / t, dtype=torch.float64),
    )
    p_true = torch.softmax(z, -1).min(-1).values  # (K, N): the smaller probability of each point
    held = data.valid & ~mask[:, 0]
    rows = []
    for k in ids:
        p_small = float(p_true[k][mask[k, 0]].min())  # the worst of the student's equations
        margin = float((z[k, :, 1] - z[k, :, 0]).abs()[held[k]].min())
        for j, (family, strength, spec) in enumerate(grid):
            acc = float(metrics["test_acc"][k, j])
            rows.append(
                {
                    "setting": "linear",
                    "dataset": k,
                    "classes": 2,
                    "input_dim": cfg.linear_dim,
                    "family": family,
                    "strength": strength,
                    "defence": spec,
                    "student": 0,
                    "temperature": t,
                    "train_acc": float(metrics["train_acc"][k, j]),
                    "test_acc": acc,
                    "independent_acc": math.nan,
                    "leak": acc - 0.5,
                    "fidelity": float(metrics["agreement_fresh"][k, j]),
                    "leak_baseline": "chance",
                    "chance": 0.5,
                    "teacher_memorized": bool(perfect[k]),
                    "p_small": p_small,
                    "margin_small": margin,
                    "probe": probe,
                }
            )
    return rows


@experiment(DefenceConfig)
def defence_frontier(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Leak and fidelity of students under every defence and strength, in the chosen settings (one row per student).

    mlp: the server-side grid (`defence_grid`) on `teachers` teachers, then the same datasets' teachers
    trained with each label smoothing and each weight decay (the server answering plainly). linear:
    round (probabilities and log-probabilities, `linear_decimals`), noise and label only, exact students,
    at `linear_temperature`; rounding alone also at each of `linear_probe_temperatures` (rows with `probe`).
    one_hidden_layer: `recovery_defences` in chapter 13's recovery cell (`RECOVERY_CELL`). Teachers below
    100% are kept, flagged by `teacher_memorized`.
    """
    cfg = make_config(DefenceConfig, "defence_frontier", profile, overrides)
    device = resolve_device(cfg.device)
    rows: list[dict] = []
    if "mlp" in cfg.settings:
        rows += _mlp_rows(cfg, defence_grid(cfg), "mlp")
        for s in cfg.label_smoothings:
            rows += _mlp_rows(cfg, [("none", 0.0, "none")], "mlp", {"label_smoothing": s}, "label smoothing", s)
        for wd in cfg.weight_decays:
            rows += _mlp_rows(cfg, [("none", 0.0, "none")], "mlp", {"weight_decay": wd}, "weight decay", wd)
    if "linear" in cfg.settings:
        rows += _linear_rows(cfg, device)
    if "one_hidden_layer" in cfg.settings:
        cell = replace(
            cfg,
            **RECOVERY_CELL[cfg.profile],
            hidden_layers=1,
            distribution="gaussian",
            temperatures=(20.0,),
            students=1,
        )
        rows += _mlp_rows(
            cell, [(_family_of(s), _strength_of(s), s) for s in cfg.recovery_defences], "one_hidden_layer"
        )
    table = pd.DataFrame(rows)
    table = table[[c for c in COLUMNS if c in table.columns]]
    table.insert(0, TEACHER_ID, f"{cfg.seed}:" + table["setting"] + "/" + table["dataset"].astype(str))
    table.attrs["config"] = config_dict(cfg)
    return table


def _family_of(spec: str) -> str:
    """The family of a one-step defence, as `defence_grid` names them ("combined" for several steps)."""
    steps = parse(spec).steps
    if not steps:
        return "none"
    if len(steps) > 1:
        return "combined"
    name = {"TopK": "top-k", "Noise": "noise", "LabelOnly": "label only", "Temperature": "temperature"}
    step = steps[0]
    return (
        ("logprob round" if step.of == "logprob" else "round")
        if hasattr(step, "decimals")
        else name[type(step).__name__]
    )


def _strength_of(spec: str) -> float:
    """The strength of a one-step defence (k, decimals, sigma, t); 0 for none, label only and chains."""
    steps = parse(spec).steps
    if len(steps) != 1:
        return 0.0
    step = steps[0]
    return float(next((getattr(step, a) for a in ("k", "decimals", "sigma", "t") if hasattr(step, a)), 0.0))


__all__ = ["DefenceConfig", "RECOVERY_CELL", "SETTINGS", "defence_frontier", "defence_grid"]
