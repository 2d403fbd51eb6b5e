"""Fig 1: the 2-D toy. Thirty random points in the plane, three random colours, one teacher per
dataset that memorizes them, and hard- and soft-label students on 60% of the points.

Same contract as the random-data figures (`memkd.experiments.fig2_logits`). All datasets' teachers train as one ensemble, and all
their students (of one kind) as another; student s of dataset k starts from the same weights
whatever its targets, so hard and soft students are paired by initialization.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from memkd.device_memory import check_run_fits
from memkd.declare import experiment
from memkd.config import make_config
from memkd.data.random_vectors import make_memorization_data, split_per_class
from memkd.device import resolve_device
from memkd.experiments.random_data import RandomDataConfig
from memkd.tables import tidy
from memkd.metrics import accuracy
from memkd.seeds import derive_seed
from memkd.distillation import MLPFamily, require_memorized, train_students, train_teacher


# --- Fig 1: the 2-D toy --------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyConfig(RandomDataConfig):
    TABLE_COLUMNS = (
        "dataset",
        "alpha",
        "width",
        "targets",
        "temperature",
        "lr",
        "student",
        "train_acc",
        "test_acc",
        "independent_acc",
        "teacher_independent_acc",
        "chance",
        "teacher_memorized",
        "teacher_stop",
        "teacher_first_perfect",
    )
    PROFILE_VALUES = {
        "smoke": dict(
            input_dim=2,
            classes=3,
            per_class=10,
            teacher_width=200,
            hidden_layers=1,
            teacher_lr=1e-2,
            teacher_epochs=3000,
            student_widths=(200,),
            alphas=(0.6,),
            temperatures=(20.0,),
            lrs=(1e-2,),
            epochs=400,
            students=3,
            teachers=8,
        ),
        # 48 teachers: the soft-label claims' power plan (plans.yml, pilot at seed 1) needs 45 after Holm, with
        # three to spare for teachers that do not memorize (left out of every claim)
        "quick": dict(
            input_dim=2,
            classes=3,
            per_class=10,
            teacher_width=500,
            hidden_layers=1,
            teacher_lr=1e-2,
            teacher_epochs=5000,
            student_widths=(500,),
            alphas=(0.6,),
            temperatures=(5.0, 20.0),
            lrs=(1e-2,),
            epochs=1000,
            students=3,
            teachers=48,
        ),
    }
    # the paper's sizes: quick's, with the longer budgets and 20 students per teacher
    PROFILE_VALUES["paper"] = {**PROFILE_VALUES["quick"], "teacher_epochs": 10000, "epochs": 5000, "students": 20}


def _toy_setup(cfg: ToyConfig, datasets: list[int], require_memorization: bool = True):
    """K datasets stacked: x (K, N, 2), y (K, N), per-dataset splits (K, N_tr) / (K, N_te), teachers
    (TeacherDidNotMemorize when one ends below 100%, unless require_memorization=False)."""
    device = resolve_device(cfg.device, cfg.experiment)
    xs, ys, trs, tes = [], [], [], []
    for k in datasets:
        x, y = make_memorization_data(
            cfg.classes, cfg.per_class, cfg.input_dim, derive_seed(cfg.seed, "data", k), cfg.distribution, device
        )
        tr, te = split_per_class(y, cfg.alphas[0], seed=derive_seed(cfg.seed, "split", k))
        xs.append(x)
        ys.append(y)
        trs.append(tr)
        tes.append(te)
    x, y, tr, te = torch.stack(xs), torch.stack(ys), torch.stack(trs), torch.stack(tes)
    check_run_fits(
        device,
        "toy_2d",
        samples=x.shape[1],
        dim=cfg.input_dim,
        classes=cfg.classes,
        hidden_layers=cfg.hidden_layers,
        teacher_width=cfg.teacher_width,
        student_widths=cfg.student_widths,
        student_samples=tr.shape[1],
        own_inputs=len(datasets) > 1,
    )
    teacher = train_teacher(
        x,
        y,
        classes=cfg.classes,
        width=cfg.teacher_width,
        hidden_layers=cfg.hidden_layers,
        activation=cfg.activation,
        lr=cfg.teacher_lr,
        max_epochs=cfg.teacher_epochs,
        stop=cfg.teacher_stop,
        seed=[derive_seed(cfg.seed, "teacher", k) for k in datasets],
        require_memorization=require_memorization,
        progress=cfg.progress,
    )
    return x, y, tr, te, teacher


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-row sample selection: t (K, N, ...) and idx (K, M) -> (K, M, ...)."""
    if t.dim() == 2:
        return torch.gather(t, 1, idx)
    return torch.gather(t, 1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))


def _toy_students(cfg: ToyConfig, x, y, tr, teacher, kind: str, temperature: float, datasets: list[int]):
    """cfg.students students per dataset, all datasets in one ensemble: returns model (K*S members).
    Student s of dataset k starts from the same weights whatever its targets (paired by initialization)."""
    seed = [
        derive_seed(cfg.seed, "student", k, cfg.student_widths[0], s) for k in datasets for s in range(cfg.students)
    ]
    k, s = x.shape[0], cfg.students
    x_tr = _gather(x, tr).repeat_interleave(s, dim=0)  # (K*S, N_tr, 2)
    with torch.no_grad():
        logits_tr = _gather(teacher.model(x), tr)  # (K, N_tr, C)
    if kind == "soft":  # train_students applies sigma_T to the teacher's logits
        given = dict(teacher_logits=logits_tr.repeat_interleave(s, dim=0))
    else:
        given = dict(targets=_gather(y, tr).repeat_interleave(s, dim=0))
    family = MLPFamily(x.shape[-1], cfg.student_widths[0], cfg.classes, cfg.hidden_layers, cfg.activation)
    model, _ = train_students(
        x_tr,
        kind=kind,
        family=family,
        members=k * s,
        lrs=cfg.lrs[0],
        epochs=cfg.epochs,
        temperatures=temperature,
        soften_student=cfg.soften_student,
        seed=seed,
        progress=cfg.progress,
        **given,
    )
    return model


@experiment(ToyConfig)
def toy_2d(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 1: 2-D inputs, 3 classes; hard-label and soft-label students over many datasets.

    All datasets' teachers train as one ensemble, and all their students as another. A dataset whose
    teacher ends below 100% (two 2-D points of different classes can lie very close) is left out of the
    table, with a warning and its number and training accuracy in `table.attrs["teachers_left_out"]`
    ({dataset: accuracy}): it memorized nothing for its students to leak.
    """
    cfg = make_config(ToyConfig, "toy_2d", profile, overrides)
    datasets = list(range(cfg.teachers))
    x, y, tr, te, teacher = _toy_setup(cfg, datasets, require_memorization=False)
    left_out = {k: float(teacher.train_acc[k]) for k in datasets if not bool(teacher.memorized[k])}
    if len(left_out) == len(datasets):  # nothing memorized: nothing to distil
        require_memorized(teacher.train_acc, cfg.teacher_stop, cfg.teacher_epochs, "toy_2d", "epochs")
    if left_out:
        warnings.warn(
            f"toy_2d: the teachers of datasets {sorted(left_out)} ended below 100% training accuracy "
            f"after {cfg.teacher_epochs} epochs (lowest {min(left_out.values()):.2%}); those datasets are "
            "left out of the table (table.attrs['teachers_left_out']).",
            stacklevel=2,
        )
    fresh = [
        make_memorization_data(
            cfg.classes, cfg.per_class, 2, derive_seed(cfg.seed, "independent", k), cfg.distribution, x.device
        )
        for k in datasets
    ]
    xi, yi = torch.stack([f[0] for f in fresh]), torch.stack([f[1] for f in fresh])
    with torch.no_grad():
        teacher_ind = accuracy(teacher.model(xi), yi).cpu()
    settings = [("hard", math.nan)] + [("soft", temperature) for temperature in cfg.temperatures]
    s = cfg.students
    rows = []
    for i, (kind, temperature) in enumerate(settings):
        model = _toy_students(cfg, x, y, tr, teacher, kind, temperature if kind == "soft" else 1.0, datasets=datasets)
        rep = lambda t: t.repeat_interleave(s, dim=0)
        with torch.no_grad():
            out = model(rep(x))  # (K*S, N, C)
            out_i = model(rep(xi))
        y_rep, tr_rep, te_rep = rep(y), rep(tr), rep(te)
        train_acc = (_gather(out.argmax(-1), tr_rep) == _gather(y_rep, tr_rep)).float().mean(-1)
        test_acc = (_gather(out.argmax(-1), te_rep) == _gather(y_rep, te_rep)).float().mean(-1)
        ind_acc = accuracy(out_i, rep(yi))
        for m in range(len(train_acc)):
            k = m // s
            if k in left_out:
                continue
            rows.append(
                {
                    "dataset": k,
                    "student": m % s,
                    "targets": kind,
                    "temperature": temperature,
                    "alpha": cfg.alphas[0],
                    "width": cfg.student_widths[0],
                    "lr": cfg.lrs[0],
                    "train_acc": float(train_acc[m]),
                    "test_acc": float(test_acc[m]),
                    "independent_acc": float(ind_acc[m]),
                    "teacher_independent_acc": float(teacher_ind[k]),
                    "chance": 1.0 / cfg.classes,
                    "teacher_memorized": bool(teacher.memorized[k]),
                    "teacher_stop": cfg.teacher_stop,
                    "teacher_first_perfect": int(teacher.epochs_to_memorize[k]),
                }
            )
    table = tidy(rows, cfg=cfg)
    table.attrs["teachers_left_out"] = left_out
    return table


@experiment(ToyConfig, table=False)
def toy_2d_regions(profile: str = "quick", dataset: int = 0, grid_size: int = 120, **overrides: Any) -> dict:
    """Decision regions for Fig 1 on one dataset: teacher, one hard-label and one soft-label
    student per temperature (the first student seed each).

    Returns a dict: "x" (N, 2), "y" (N,), "train_idx", "test_idx", "extent" (xmin, xmax, ymin, ymax),
    "regions" {name: (G, G) int array of predicted classes}, "test_correct" {name: (N_te,) bool},
    "test_acc" {name: float}. Names: "teacher", "hard", "soft T=...".
    """
    cfg = make_config(ToyConfig, "toy_2d", profile, {**overrides, "teachers": 1, "students": 1})
    x, y, tr, te, teacher = _toy_setup(cfg, [dataset])
    lin = torch.linspace(-1.1, 1.1, grid_size, device=x.device)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)  # (G*G, 2)
    models = {"teacher": teacher.model, "hard": _toy_students(cfg, x, y, tr, teacher, "hard", 1.0, [dataset])}
    for i, t in enumerate(cfg.temperatures):
        models[f"soft T={t:g}"] = _toy_students(cfg, x, y, tr, teacher, "soft", t, [dataset])
    out = {
        "x": x[0].cpu().numpy(),
        "y": y[0].cpu().numpy(),
        "train_idx": tr[0].cpu().numpy(),
        "test_idx": te[0].cpu().numpy(),
        "extent": (-1.1, 1.1, -1.1, 1.1),
        "regions": {},
        "test_correct": {},
        "test_acc": {},
    }
    with torch.no_grad():
        for name, model in models.items():
            out["regions"][name] = model(grid)[0].argmax(-1).view(grid_size, grid_size).cpu().numpy()
            pred = model(x[0])[0].argmax(-1)
            correct = (pred[te[0]] == y[0][te[0]]).cpu().numpy()
            out["test_correct"][name] = correct
            out["test_acc"][name] = float(correct.mean())
    return out
