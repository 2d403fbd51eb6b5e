"""Question 5 of chapter 09: students with a frozen random first layer, and linear students.

`PROBE_VARIANTS` names the four kinds; `linear_fit_r2` measures how linear a teacher's logits are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
import torch

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import POS_INT, knob, lr_knob, make_config
from memkd.evaluation import evaluate_students
from memkd.experiments.random_data import RandomDataConfig
from memkd.memorization import MemorizationTask
from memkd.students import distill, student_seed
from memkd.models.mlp import EnsembleMLP
from memkd.distillation import MLPFamily, train_students
from memkd.experiments.open_questions import (
    ONE_ALPHA_ONE_WIDTH,
    question_profiles,
    question_table,
    soft_members,
    splits_of,
    teachers,
)


@dataclass(frozen=True)
class ProbeConfig(RandomDataConfig):
    feature_factor: int = knob(4, POS_INT, "width of the frozen random-feature layer / student width")
    probe_lr: float = lr_knob(1e-2, "linear and random-feature students'")

    SINGLE_VALUED = ONE_ALPHA_ONE_WIDTH
    TABLE_COLUMNS = (
        *DISTILL_COLUMNS,
        "question",
        "trainable",
        "variant",
        "student_depth",
        "student_activation",
        "frozen_layers",
        "teacher_activation",
        "teacher_linear_r2",
    )
    PROFILE_VALUES = question_profiles()


def linear_fit_r2(task: MemorizationTask) -> float:
    """How linear is the teacher? Fit logits ~ x W + b by least squares on D, score R^2 on fresh D'.

    Out of sample on purpose: on D itself a linear fit with D + 1 parameters per class explains
    about (D + 1) / N of anything, noise included. 1 means the teacher is a linear map of the input.
    """
    ones = lambda x: torch.cat([x, torch.ones(len(x), 1, device=x.device)], dim=1)  # (N, D + 1)
    coef = torch.linalg.lstsq(ones(task.x).cpu().double(), task.logits.cpu().double()).solution  # (D + 1, C)
    pred = ones(task.x_independent).cpu().double() @ coef  # (N', C)
    target = task.logits_independent.cpu().double()
    residual = (target - pred).pow(2).sum()
    total = (target - target.mean(0)).pow(2).sum()
    return float(1 - residual / total)


def train_probe_students(
    x,
    teacher_logits,
    *,
    temperature: float,
    classes: int,
    width: int,
    hidden_layers: int,
    activation: str,
    frozen_layers: int,
    members: int,
    lr: float,
    epochs: int,
    seed: int | Sequence[int],
) -> EnsembleMLP:
    """Soft-label students whose first `frozen_layers` layers keep their random initialization.

    x (N_train, D) shared or (E, N_train, D) per member; teacher_logits (N_train, C) or
    (E, N_train, C), softened with `temperature` by `memkd.distillation.train_students`;
    seed: one int, or one per member.
    """
    family = MLPFamily(x.shape[-1], width, classes, hidden_layers, activation, frozen_layers=frozen_layers)
    model, _ = train_students(
        x,
        kind="soft",
        teacher_logits=teacher_logits,
        temperatures=temperature,
        family=family,
        members=members,
        lrs=lr,
        epochs=epochs,
        seed=seed,
    )
    return model


def _frozen_students(tasks, splits, cfg: ProbeConfig, width: int, depth: int, act: str, lr: float) -> list[dict]:
    """Rows of frozen-first-layer students of every task, trained as one ensemble (K * M members) and
    measured like `distill`'s: dataset, student, trainable (parameters that train) and the metrics.
    Their seeds are the "probe" setting's, so a frozen_first student starts where its trained twin does."""
    m, temperature = cfg.students, cfg.temperatures[0]
    x = torch.cat([task.x[tr].expand(m, -1, -1) for task, (tr, _) in zip(tasks, splits)])  # (K*M, N_tr, D)
    logits = torch.cat([task.logits[tr].expand(m, -1, -1) for task, (tr, _) in zip(tasks, splits)])  # (K*M, N_tr, C)
    seeds = [student_seed(cfg, task.dataset, width, (cfg.alphas[0], "probe"), s) for task in tasks for s in range(m)]
    model = train_probe_students(
        x,
        logits,
        temperature=temperature,
        classes=tasks[0].classes,
        width=width,
        hidden_layers=depth,
        activation=act,
        frozen_layers=1,
        members=len(seeds),
        lr=lr,
        epochs=cfg.epochs,
        seed=seeds,
    )
    trainable = sum(int(w[0].numel()) for w in model.parameters() if w.requires_grad)
    with torch.no_grad():
        out_d = model(torch.cat([task.x.expand(m, -1, -1) for task in tasks]))  # (K*M, N, C)
        out_i = model(torch.cat([task.x_independent.expand(m, -1, -1) for task in tasks]))  # (K*M, N', C)
    rows = []
    for k, (task, (tr, te)) in enumerate(zip(tasks, splits)):
        part = slice(k * m, (k + 1) * m)
        metrics = evaluate_students(task, out_d[part], out_i[part], tr, te, "soft")
        rows += [
            {
                "dataset": task.dataset,
                "student": s,
                "trainable": trainable,
                **{key: float(v[s]) for key, v in metrics.items()},
                "teacher_independent_acc": task.teacher_independent_acc,
                "teacher_memorized": task.memorized,
                "teacher_stop": cfg.teacher_stop,
            }
            for s in range(m)
        ]
    return rows


def _trainable(width: int, depth: int, d: int, c: int, frozen: int = 0) -> int:
    """Trainable parameters of one MLP D -> (P x depth) -> C whose first `frozen` layers are frozen."""
    sizes = [d] + [width] * depth + [c]
    return sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(frozen, len(sizes) - 1))


PROBE_VARIANTS = ("trained", "frozen_first", "random_features", "linear")


@experiment(ProbeConfig)
def random_features_probe(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q5: how simple is the structure that leaks? Four students on the same teachers and splits.

    variant "trained": the usual student (all layers train; the reference).
    "frozen_first": the same network with its first layer frozen at its random initialization.
    "random_features": one frozen random ReLU layer of width feature_factor * P, a trained linear readout.
    "linear": one hidden layer without activation, i.e. a linear map D -> C.
    One row per student: variant, trainable (parameters that train), teacher_activation,
    teacher_linear_r2 (`linear_fit_r2`: how much of the teacher's logits on fresh D' a linear map
    fitted on D explains) and the metrics. `activation` sets the teacher's (and the trained and
    frozen_first students') activation.
    """
    cfg = make_config(ProbeConfig, "random_features_probe", profile, overrides)
    p, t, d, c = cfg.student_widths[0], cfg.temperatures[0], cfg.input_dim, cfg.classes
    tasks = teachers(cfg)
    splits = splits_of(tasks, cfg)
    r2 = {task.dataset: linear_fit_r2(task) for task in tasks}
    rows: list[dict] = []
    for name in PROBE_VARIANTS:
        width, depth, act, lr = {
            "trained": (p, cfg.hidden_layers, cfg.activation, cfg.lrs[0]),
            "frozen_first": (p, cfg.hidden_layers, cfg.activation, cfg.lrs[0]),
            "random_features": (cfg.feature_factor * p, 1, "relu", cfg.probe_lr),
            "linear": (p, 1, "linear", cfg.probe_lr),
        }[name]
        if name in ("trained", "linear"):
            part = distill(
                tasks,
                splits,
                cfg=cfg,
                kind="soft",
                width=width,
                members=soft_members(cfg, lr=lr),
                setting=(cfg.alphas[0], "probe"),
                hidden_layers=depth,
                activation=act,
            )
            part = [{**r, "trainable": _trainable(width, depth, d, c)} for r in part]
        else:
            part = _frozen_students(tasks, splits, cfg, width, depth, act, lr)
        for r in part:
            rows.append(
                {
                    **r,
                    "variant": name,
                    "width": width,
                    "student_depth": depth,
                    "student_activation": act,
                    "frozen_layers": int(name in ("frozen_first", "random_features")),
                    "temperature": t,
                    "lr": lr,
                    "alpha": cfg.alphas[0],
                    "chance": 1.0 / c,
                    "teacher_activation": cfg.activation,
                    "teacher_linear_r2": r2[r["dataset"]],
                }
            )
    return question_table(rows, "probe", cfg)
