"""The published version's one-hidden-layer ReLU network: the (N, rho) phase map, its variants, surgery.

Shape letters (see `memkd`): K teachers, M students per teacher, D input dim, P hidden width,
C classes, N = C * n samples of D (n per class), N_s = C * floor(rho * n) student points.

The released scripts' data and protocol (the defaults where nothing else is said): inputs N(0, I),
exactly n labels of each class in random order; a teacher D -> P -> C with biases, full-batch Adam
at lr 1e-3 for a fixed budget; the student gets the first floor(rho * n) points of each class (in
D's order) with sigma_T(teacher logits), T = 20, its own logits not divided by T; the held-out
points are the rest of D. Teachers train as one ensemble per size and students of all teachers of a
cell as one ensemble (`memkd.students`). On top of the map, in this order: the shuffle
control (each student's inputs permuted within their class, the soft labels left in place; in the
map's row at `variant_rho`, where a class gives the student at least two points to permute), two
width variants at every size and fraction on the first `variant_teachers` teachers (a student of
another width distilling the map's teacher, part "width"; a teacher and student both of another
width, part "equal"), a class-count variant, and the workshop's logit surgery in two cells chosen on
half of the teachers (`memkd.experiments.phases.choose_cells`) and measured on the other half.
Phases, thresholds and the counting bound live in `memkd.experiments.phases`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor

from memkd.config import (
    BOOL,
    ExperimentConfig,
    classes_knob,
    epochs_knob,
    input_dim_knob,
    int_range,
    knob,
    lr_knob,
    make_config,
    maybe_empty_list_of,
    per_class_values_knob,
    real_interval,
    rhos_knob,
    shuffle_knob,
    students_knob,
    surgery_class_knob,
    tail_fractions_knob,
    teacher_epochs_knob,
    teachers_knob,
    temperatures_knob,
    width_knob,
)
from memkd.memorization import MemorizationTask, StudentShapes, memorization_tasks
from memkd.students import distill, member_grid
from memkd.declare import experiment
from memkd.experiments.phases import choose_cells, classify_phase, phase_map
from memkd.losses import cut_tail, soft_targets, zero_class_elsewhere
from memkd.metrics import choose_and_test_units
from memkd.seeds import derive_seed
from memkd.tables import TEACHER_ID, tidy

WIDTHS = maybe_empty_list_of(int_range(1))
CLASS_COUNTS = maybe_empty_list_of(int_range(2))

# The released sizes (Figs 5-6): d = 1000, C = 100, P = 500, n = 50 .. 2500 (21 values), rho in
# linspace(0.05, 0.95, 10), 5 repeats, teacher 2000 epochs, student 10,000.
RELEASED = dict(
    input_dim=1000,
    classes=100,
    width=500,
    teacher_epochs=2000,
    teacher_lr=1e-3,
    epochs=10_000,
    lr=1e-4,
    per_class_values=(50,) + tuple(range(125, 2501, 125)),
    rhos=tuple(round(0.05 + 0.1 * i, 2) for i in range(10)),
)

SMOKE = dict(
    input_dim=10,
    classes=30,
    width=40,
    per_class_values=(3, 6),
    rhos=(0.67,),
    teacher_epochs=800,
    teacher_lr=3e-3,
    epochs=400,
    lr=1e-2,
    students=1,
    teachers=4,
    variant_teachers=2,
    variant_rho=0.67,
    variant_widths=(60,),
    equal_widths=(60,),
    variant_classes=(),
    surgery=True,
    tail_fractions=(0.1, 0.5),
)
# quick: the released d, C and P (d = 50, C = 100, P = 50: 7650 parameters, n* = 77.3 student points),
# calibrated on short runs (4 teachers each, 2026-12-07, shared 2-core CPU): teachers at lr 1e-3 for 750
# epochs memorize n = 10 and 13 and fail at n = 16 (0 of 4; at 1000 epochs they memorize n = 16, at 500
# they fail at n = 13 but the students of n = 10 no longer recover); students at lr 2e-3 for 1000 epochs
# show a partial leak at n = 3, fit only approximately at n = 10, rho = 0.34 and recover at n = 10, rho =
# 0.67 (held out 0.999; at lr 3e-3 for 600 epochs they fit only approximately). With C = 100 every cell
# of the map has at least C = 100 > n* student points: the cells below n* are the variants' (a student
# twice as wide has n* = 153.5). 20 teachers: the surgery's cells are chosen on 10 and tested on 10, the
# fewest for which a sign test without spread clears a Holm level of 0.05 over the published block's
# claims (0.5 ** 10 < 0.05 / 35); the width variants are descriptive and use 4 of them.
QUICK = dict(
    input_dim=50,
    classes=100,
    width=50,
    per_class_values=(3, 10, 16),
    rhos=(0.34, 0.67),
    teacher_epochs=750,
    teacher_lr=1e-3,
    epochs=1000,
    lr=2e-3,
    students=1,
    teachers=20,
    variant_teachers=4,
    variant_rho=0.67,
    variant_widths=(100,),
    equal_widths=(100,),
    variant_classes=(),
    surgery=True,
    tail_fractions=(0.02, 0.5),
)
# The class-count variant (new teachers at every size) doubles the chapter's time, so quick leaves it to
# the paper profile and to `variant_classes=(50,)` (measured on 2026-12-03 at d = 20, shared 2-core CPU:
# 181 s without it, about 900 s with it and the machine loaded; at C = 50 no size up to N = 800 recovered).
# paper: the released d, C, P, T, budgets and learning rates on a coarser grid. The released grid
# (21 sizes x 10 fractions x 5 repeats) is about 4.6 EFLOP, some 38 hours on one H200 at half its fp32
# peak (benchmarks/flop_estimates.py); this one, 6 sizes x 4 fractions x 6 teachers, the class-count
# variant, the two width variants (a student of width 1000 distilling the map's teachers; teachers and
# students both of width 250) on 2 teachers at every cell, and the surgery, about 2.6 hours. Sizes run
# past the teacher's expected capacity (n ~ 1000).
PAPER = dict(
    RELEASED,
    per_class_values=(50, 125, 250, 500, 750, 1250),
    rhos=(0.2, 0.4, 0.6, 0.8),
    students=1,
    teachers=6,
    variant_teachers=2,
    variant_rho=0.6,
    variant_widths=(1000,),
    equal_widths=(250,),
    variant_classes=(50,),
    surgery=True,
    tail_fractions=(0.01, 0.02, 0.1, 0.5),
)


@dataclass(frozen=True)
class OneHiddenLayerConfig(ExperimentConfig):
    """Knobs of the one-hidden-layer phase map (the released Figs 5, 6 and 16)."""

    input_dim: int = input_dim_knob(20)
    classes: int = classes_knob(100)
    width: int = width_knob(50, "the teacher and of the map's students")
    per_class_values: tuple = per_class_values_knob((3, 10), " (n: one map row each)")
    rhos: tuple = rhos_knob((0.67,), "the student gets the first floor(rho * n) points of each class")
    temperatures: tuple = temperatures_knob((20.0,))
    teacher_lr: float = lr_knob(1e-3, "teacher's")
    teacher_epochs: int = teacher_epochs_knob(2000, "full-batch epoch", must_memorize=False)
    lr: float = lr_knob(1e-4, "students'", note=" (released: 1e-4)")
    epochs: int = epochs_knob(10_000, unit="full-batch epochs", note=" (released: 10,000)")
    students: int = students_knob(1, "teacher and cell")
    teachers: int = teachers_knob(10, " per size", least=2)
    shuffle: bool = shuffle_knob(
        " (inputs permuted within each class) in the map's cells at variant_rho with >= 2 student points per class"
    )
    variant_rho: float = knob(0.67, real_interval(0, 1), "rho of the width and class-count variants")
    variant_widths: tuple = knob(
        (), WIDTHS, "student widths of the width variant (teacher keeps `width`), at every size and fraction of the map"
    )
    equal_widths: tuple = knob(
        (),
        WIDTHS,
        "widths of the equal-width variant: new teachers of this width and "
        "students of the same width, at every size and fraction of the map",
    )
    variant_teachers: int = knob(
        0, int_range(0), "teachers per size in the width variants (the first ones; 0: all `teachers`)"
    )
    variant_classes: tuple = knob((), CLASS_COUNTS, "class counts C of the class-count variant (new teachers)")
    surgery: bool = knob(True, BOOL, "logit surgery in a recovery and a partial-leak cell (chosen on half)")
    tail_fractions: tuple = tail_fractions_knob((0.01, 0.02, 0.1, 0.5), may_be_empty=True)
    surgery_class: int = surgery_class_knob()

    PROFILE_VALUES = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
    RENAMED = {
        "per_class": "use 'per_class_values' (the sizes n, one map row each; 'per_class' is one n elsewhere)",
        "variant_datasets": "use 'variant_teachers' (teachers per size in the width variants, named as "
        "the knob 'teachers')",
    }
    TABLE_COLUMNS = (
        "dataset",
        "classes",
        "per_class",
        "input_dim",
        "width",
        "teacher_width",
        "kind",
        "variant",
        "tail_fraction",
        "temperature",
        "lr",
        "student",
        "part",
        "n_memorized",
        "rho",
        "n_student",
        "shuffled",
        "train_acc",
        "test_acc",
        "memorized_acc",
        "test_acc_class",
        "independent_acc",
        "teacher_agreement_independent",
        "test_count_class",
        "teacher_independent_acc",
        "chance",
        "teacher_memorized",
        "teacher_stop",
        "teacher_first_perfect",
        "teacher_train_acc",
        "agreement_fresh",
        "n_trained",
        "half",
        "phase",
        "cell",
    )

    # What the shared pipeline (memorization_tasks, distill) reads: the released protocol, fixed.
    distribution = "gaussian"
    hidden_layers = 1
    activation = "relu"
    teacher_stop = "budget"
    soften_student = False
    batch_size = None

    @property
    def teacher_width(self) -> int:
        return self.width

    def student_shapes(self) -> StudentShapes:
        """The students' widths (the map's `width` and the width variant's) and shares (`rhos`)."""
        return StudentShapes((self.width,) + self.variant_widths, self.rhos)

    def check(self) -> None:
        for n in self.per_class_values:
            for rho in self.rhos + (self.variant_rho,):
                k = int(rho * n)  # the released split: int(), i.e. floor
                if k < 1 or k > n - 1:
                    name = "rhos" if rho in self.rhos else "variant_rho"
                    self.fail(
                        name,
                        f"contains {rho}, which with per_class={n} gives the student int({rho} * {n}) = "
                        f"{k} of {n} points of each class: every class needs at least one student point "
                        "and one held-out point. Choose 1 <= int(rho * n) <= n - 1 for every size.",
                    )
        if self.variant_teachers > self.teachers:
            self.fail(
                "variant_teachers",
                f"must be an int in [0, {self.teachers}] (teachers={self.teachers}): the "
                f"width variants use the first teachers of each size. Got {self.variant_teachers!r} instead.",
            )
        if self.surgery_class >= min((self.classes,) + self.variant_classes):
            self.fail(
                "surgery_class",
                f"must be an int in [0, {self.classes - 1}] (classes={self.classes}). "
                f"Got {self.surgery_class!r} instead.",
            )


def released_split(y: Tensor, rho: float, classes: int) -> tuple[Tensor, Tensor]:
    """The released scripts' split of D: the first int(rho * n_c) points of each class c (in D's
    order) go to the student, the rest are held out. Returns (train_idx, test_idx), each sorted."""
    train, test = [], []
    for c in range(classes):
        idx = torch.nonzero(y == c).flatten()
        k = int(rho * len(idx))
        train.append(idx[:k])
        test.append(idx[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


def shuffled_within_class(train_idx: Tensor, y: Tensor, seed: int) -> Tensor:
    """train_idx with its entries permuted within each class so that no entry stays in place: soft
    labels taken at these indices pair every student input with the soft label of ANOTHER point of
    its class (the shuffle control). Each class's points are put in a random order and each takes
    the soft label of the next one (a random cycle). The released code uses a plain random
    permutation, which leaves on average one point per class with its own soft label: with a few
    points per class that is a large share of unshuffled points. Returns (N_s,) indices."""
    gen = torch.Generator().manual_seed(int(seed))
    out = train_idx.clone()
    labels = y[train_idx].cpu()
    for c in torch.unique(labels).tolist():
        pos = torch.nonzero(labels == c).flatten()
        order = pos[torch.randperm(len(pos), generator=gen)]
        out[order] = train_idx[order.roll(-1)]
    return out


def _targets(task: MemorizationTask, tr: Tensor, member: dict, cfg: OneHiddenLayerConfig) -> Tensor:
    """sigma_T(teacher logits) for one member (N_s, C): shuffled within class and/or after surgery."""
    idx = tr
    if member.get("shuffled"):
        idx = shuffled_within_class(
            tr, task.y, derive_seed(cfg.seed, "shuffle", task.dataset, len(tr), member["student"])
        )
    probs = soft_targets(task.logits[idx], member["temperature"])
    variant = member.get("variant", "plain")
    if variant == "zero_class":
        return zero_class_elsewhere(probs, task.y[tr], cfg.surgery_class)
    if variant == "cut_tail":
        return cut_tail(probs, member["tail_fraction"])
    return probs


def _cell_rows(
    tasks: list[MemorizationTask],
    n: int,
    rho: float,
    width: int,
    cfg: OneHiddenLayerConfig,
    members: list[dict],
    part: str,
    drop_class: bool = False,
) -> list[dict]:
    """Train the students of one cell (all memorized teachers in one ensemble) and return their rows;
    teachers below 100% get one row each with NaN measures (no student learns from them)."""
    c = tasks[0].classes
    base = dict(
        part=part,
        input_dim=cfg.input_dim,
        classes=c,
        per_class=n,
        n_memorized=c * n,
        rho=rho,
        n_student=c * int(rho * n),
    )
    rows = [
        {
            **base,
            "dataset": t.dataset,
            "width": width,
            "shuffled": False,
            "student": -1,
            "temperature": cfg.temperatures[0],
            "teacher_train_acc": float(t.teacher.train_acc[0]),
            "train_acc": math.nan,
            "test_acc": math.nan,
            "agreement_fresh": math.nan,
        }
        for t in tasks
        if not t.memorized
    ]
    good = [t for t in tasks if t.memorized]
    if not good:
        return rows
    splits = [released_split(t.y, rho, c) for t in good]
    if drop_class:
        splits = [(tr[t.y[tr] != cfg.surgery_class], te) for t, (tr, te) in zip(good, splits)]
    targets = [torch.stack([_targets(t, tr, m, cfg) for m in members]) for t, (tr, _) in zip(good, splits)]
    out = distill(
        good,
        splits,
        cfg=cfg,
        kind="soft",
        width=width,
        members=members,
        targets=targets,
        setting=(n, rho),
        class_of_interest=cfg.surgery_class,
    )
    by_dataset = {t.dataset: t for t in good}
    for r in out:
        rows.append(
            {
                **base,
                **r,
                "teacher_train_acc": float(by_dataset[r["dataset"]].teacher.train_acc[0]),
                "agreement_fresh": r["teacher_agreement_independent"],
                "n_trained": len(splits[good.index(by_dataset[r["dataset"]])][0]),
            }
        )
    return rows


def _members(cfg: OneHiddenLayerConfig, shuffle: bool, variants: Sequence[tuple[str, float]] = (("plain", 0.0),)):
    grid = member_grid(
        variant=list(variants),
        shuffled=(False, True) if shuffle else (False,),
        temperature=cfg.temperatures,
        lr=(cfg.lr,),
        student=range(cfg.students),
    )
    return [{**m, "variant": m["variant"][0], "tail_fraction": m["variant"][1]} for m in grid]


@experiment(OneHiddenLayerConfig)
def one_hidden_layer(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """The released Figs 5-6 (phase map, shuffle control, width and class-count variants) and 16 (surgery).

    One row per student (or per failed teacher and cell) with: part ("map", "width", "equal", "classes",
    "surgery"), teacher_width, dataset, input_dim, classes, per_class, n_memorized (N), n_student (C floor(rho n)),
    n_trained, rho, width, temperature, lr, student, shuffled, variant, tail_fraction, cell (surgery:
    "recovery" / "partial leak"), half ("choose" / "test"), teacher_train_acc, train_acc, test_acc
    (held-out memorized points), test_acc_class (held-out points of `surgery_class`), agreement_fresh
    (agreement with the teacher on N fresh N(0, I) inputs), independent_acc, chance, phase.
    `table.attrs["chosen"]` holds the cells chosen for the surgery (see `phases.choose_cells`).
    """
    cfg = make_config(OneHiddenLayerConfig, "one_hidden_layer", profile, overrides)
    choose, test = choose_and_test_units(range(cfg.teachers), seed=cfg.seed)
    rows: list[dict] = []
    tasks_by_size: dict[int, list[MemorizationTask]] = {}
    for n in cfg.per_class_values:
        tasks = memorization_tasks(cfg, per_class=n, require_memorization=False)
        tasks_by_size[n] = tasks
        for rho in cfg.rhos:
            control = cfg.shuffle and math.isclose(rho, cfg.variant_rho) and int(rho * n) >= 2
            rows += _cell_rows(tasks, n, rho, cfg.width, cfg, _members(cfg, control), "map")
        few = cfg.variant_teachers or cfg.teachers
        for w in cfg.variant_widths:
            for rho in cfg.rhos:
                rows += _cell_rows(tasks[:few], n, rho, w, cfg, _members(cfg, False), "width")
        for w in cfg.equal_widths:
            equal = memorization_tasks(
                cfg, range(few), per_class=n, require_memorization=False, teacher_overrides=dict(width=w)
            )
            for rho in cfg.rhos:
                cell = _cell_rows(equal, n, rho, w, cfg, _members(cfg, False), "equal")
                rows += [{**r, "teacher_width": w} for r in cell]
    for c in cfg.variant_classes:
        for n in cfg.per_class_values:
            tasks = memorization_tasks(cfg, per_class=n, classes=c, require_memorization=False)
            rows += _cell_rows(tasks, n, cfg.variant_rho, cfg.width, cfg, _members(cfg, False), "classes")
    chosen: dict = {"recovery": None, "partial leak": None}
    if cfg.surgery:
        table = pd.DataFrame(rows)
        chosen = choose_cells(phase_map(table[table["part"] == "map"], datasets=choose))
        # no "plain" member: the map's students of the same teachers and cell are the plain ones (same
        # initialization, same points)
        variants = [("zero_class", 0.0)] + [("cut_tail", q) for q in cfg.tail_fractions]
        for name, cell in chosen.items():
            if cell is None:
                continue
            tested = [t for t in tasks_by_size[cell["per_class"]] if t.dataset in test]
            cut = _cell_rows(
                tested, cell["per_class"], cell["rho"], cfg.width, cfg, _members(cfg, False, variants), "surgery"
            )
            dropped = _cell_rows(
                tested,
                cell["per_class"],
                cell["rho"],
                cfg.width,
                cfg,
                _members(cfg, False, [("drop_class", 0.0)]),
                "surgery",
                drop_class=True,
            )
            rows += [{**r, "cell": name} for r in cut + dropped if r["student"] >= 0]
    for r in rows:
        r.setdefault("teacher_width", cfg.width)
        r.setdefault("variant", "plain")
        r.setdefault("shuffled", False)
        r["half"] = "choose" if r["dataset"] in choose else "test"
        r["phase"] = classify_phase(r["teacher_train_acc"], r["train_acc"], r["test_acc"], r["agreement_fresh"])
    table = tidy(rows, cfg=cfg)
    # teacher k of one size, class count and teacher width is its own dataset: `dataset` alone repeats
    table.insert(
        0,
        TEACHER_ID,
        f"{cfg.seed}:C"
        + table["classes"].astype(str)
        + "/n"
        + table["per_class"].astype(str)
        + "/P"
        + table["teacher_width"].astype(str)
        + "/"
        + table["dataset"].astype(str),
    )
    table.attrs["chosen"] = chosen
    return table
