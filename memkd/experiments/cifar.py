"""Fig 4 beyond random vectors: real images, with labels or pixels shuffled.

Same contract as the random-data figures (`memkd.experiments.fig2_logits`): `fn(profile, **overrides) -> tidy DataFrame`, every
knob validated before any training, one row per trained student with its knobs and metrics, and the
validated configuration in `table.attrs["config"]`. Teachers are the unit of replication: every
setting gets `teachers` independent teachers (column `dataset`, 0..teachers-1), each with its own
draw of the data and its own initialization; all teachers of an experiment train as one ensemble
(in chunks when memory is short), and the students of all teachers as another for each alpha (Fig 8)
or each setting and alpha (Fig 4). Every seed comes from `memkd.seeds.derive_seed`.

cifar_shuffles (Fig 4, section 3.3): teacher k of a setting memorizes its own balanced draw D of
    the image training set (`images_per_class` images per class, else 80% of each class), the rest of
    the draw being its trivial set. Settings: "clean", "labels" (labels permuted over the whole
    training set before the draw), "pixels" (each image's pixel positions in its own random order,
    channels moving together), "both", and "fixed" (one pixel order shared by every image: a
    check, an MLP cannot tell). Teacher k of "clean", "pixels" and "fixed" holds the same images,
    and teacher k of "labels" and "both" the same images and labels; teacher k of every setting
    starts from the same initialization, so settings can be compared paired on k. Soft-label
    students learn on alpha of each class of D; `test_acc` is on the rest of D,
    `teacher_independent_acc` the teacher on its trivial set (the paper's trivial accuracy),
    `independent_acc` the student there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from memkd.declare import DISTILL_COLUMNS, experiment
from memkd.config import (
    OPTIONAL_INT,
    Constraint,
    ExperimentConfig,
    alphas_knob,
    batch_size_knob,
    epochs_knob,
    hidden_layers_knob,
    invalid,
    knob,
    lr_knob,
    lrs_knob,
    make_config,
    memorized_fraction_knob,
    one_of,
    settings_knob,
    soften_student_knob,
    student_widths_knob,
    students_knob,
    teacher_epochs_knob,
    teacher_stop_knob,
    teacher_width_knob,
    teachers_knob,
    temperatures_knob,
)
from memkd.data.random_vectors import split_per_class
from memkd.device import resolve_device
from memkd.memorization import MemorizationTask
from memkd.students import distill, member_grid
from memkd.tables import tidy
from memkd.device_memory import check_run_fits, chunks, members_per_chunk, training_bytes_per_member
from memkd.seeds import derive_seed

SETTINGS = ("clean", "labels", "pixels", "both", "fixed")
STRING = Constraint(lambda v: isinstance(v, str), "a str (a path, or '' for the default)")


# --- Fig 4: images with shuffles ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDataConfig(ExperimentConfig):
    """The images and their split into D and the trivial set: the knobs of Fig 4 and chapter 10."""

    dataset: str = knob(
        "auto",
        one_of("auto", "cifar10", "digits"),
        "cifar10, digits (sklearn's 8x8, no download), or auto (CIFAR-10 if it can be had)",
    )
    data_root: str = knob("", STRING, "CIFAR-10 archive or its folder; '' uses $MEMKD_DATA or ~/.cache/memkd")
    memorized_fraction: float = memorized_fraction_knob(0.8, "each class (the rest: trivial set)")
    images_per_class: Any = knob(
        None, OPTIONAL_INT, "images of each class in D (a subsample); None: all of the fraction"
    )

    RENAMED = {
        "per_class": "use 'images_per_class' (a subsample of the images, None for all; 'per_class' is the "
        "size of a random dataset elsewhere)"
    }


@dataclass(frozen=True)
class ImageShuffleConfig(ImageDataConfig):
    settings: tuple = settings_knob(
        SETTINGS, "teachers on clean, label-shuffled, pixel-shuffled, both, fixed-permutation images"
    )
    teachers: int = teachers_knob(5, " per setting (and its own shuffles)")
    teacher_width: int = teacher_width_knob(512)
    hidden_layers: int = hidden_layers_knob(2)
    teacher_lr: float = lr_knob(1e-3, "teacher's")
    teacher_epochs: int = teacher_epochs_knob(2000)
    teacher_stop: str = teacher_stop_knob()
    teacher_batch_size: Any = batch_size_knob("teacher's")
    student_widths: tuple = student_widths_knob((512,))
    alphas: tuple = alphas_knob((0.4, 0.8), "each class of D")
    temperatures: tuple = temperatures_knob((5.0,))
    lrs: tuple = lrs_knob((1e-2,))
    epochs: int = epochs_knob(200)
    batch_size: Any = batch_size_knob()
    students: int = students_knob(5, "teacher and setting")
    soften_student: bool = soften_student_knob()

    TABLE_COLUMNS = (
        *DISTILL_COLUMNS,
        "setting",
        "teacher_epochs_run",
        "images",
        "n_memorized",
        "n_trivial",
        "note",
        "ratio",
    )
    PROFILE_VALUES = {
        "smoke": dict(
            dataset="digits",
            teachers=3,
            images_per_class=30,
            teacher_width=128,
            teacher_lr=3e-3,
            teacher_epochs=300,
            student_widths=(128,),
            alphas=(0.6,),
            lrs=(1e-2,),
            epochs=60,
            students=2,
        ),
        "quick": dict(
            teachers=5,
            images_per_class=100,
            teacher_width=128,
            teacher_lr=3e-3,
            teacher_epochs=400,
            student_widths=(128,),
            alphas=(0.3, 0.6),
            lrs=(3e-3,),
            epochs=150,
            students=2,
        ),
        "paper": dict(
            teachers=5,
            images_per_class=None,
            teacher_width=512,
            teacher_epochs=5000,
            teacher_batch_size=None,
            student_widths=(512,),
            alphas=(0.2, 0.4, 0.6, 0.8),
            temperatures=(5.0,),
            lrs=(1e-2,),
            epochs=1000,
            students=4,
        ),
    }

    def check(self) -> None:
        if len(set(self.settings)) != len(self.settings):
            self.fail("settings", f"must not repeat a setting. Got {self.settings!r} instead.")
        if self.images_per_class is not None:
            for a in self.alphas:
                k = int(round(a * self.images_per_class))
                if k < 1 or k > self.images_per_class - 1:
                    self.fail(
                        "alphas",
                        f"contains {a}, which with images_per_class={self.images_per_class} leaves a "
                        "class empty in the student's part or in the held-out part.",
                    )


def prepare_images(cfg: ImageShuffleConfig):
    """Load the images once: (ImageSet, note). The note is non-empty when auto fell back.

    cfg : any config with `dataset` and `data_root` knobs.
    """
    from memkd.data.images import load_images

    return load_images(cfg.dataset, root=cfg.data_root or None)


def shuffled_task(images, setting: str, cfg: ImageShuffleConfig, device: torch.device, index: int = 0):
    """Teacher `index`'s data in `setting`: (x_D (N, D), y_D (N,), x_trivial (M, D), y_trivial (M,)).

    The labels are permuted over the whole training set first (as in the paper), then the balanced
    draw of D and its trivial set is made, then the pixel shuffles act on the drawn images (D and
    trivial set alike). Seeds depend on `index` only (not on the setting), so teacher k of "clean",
    "pixels" and "fixed" holds the same images, and teacher k of "labels" and "both" the same
    images and labels.
    """
    from memkd.data.images import permute_pixels, shuffle_labels, shuffle_pixels, split_memorized, standardize

    if setting not in SETTINGS:
        raise invalid("setting", "shuffled_task", f"one of {SETTINGS}", setting)
    x, y = images.x, images.y
    if setting in ("labels", "both"):
        y = shuffle_labels(y, derive_seed(cfg.seed, "shuffle", "labels", index))
    memorized, trivial = split_memorized(
        y, cfg.memorized_fraction, derive_seed(cfg.seed, "data", index), cfg.images_per_class
    )
    chosen = np.concatenate([memorized, trivial])
    xs, ys = x[chosen], y[chosen]
    if setting in ("pixels", "both"):
        xs = shuffle_pixels(xs, images.image_shape, derive_seed(cfg.seed, "shuffle", "pixels", index))
    if setting == "fixed":
        xs = permute_pixels(xs, images.image_shape, derive_seed(cfg.seed, "shuffle", "fixed", index))
    xs = standardize(xs, images.image_shape)  # per-channel statistics: unchanged by pixel shuffles
    n = len(memorized)
    as_t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)
    return (
        as_t(xs[:n], torch.float32),
        as_t(ys[:n], torch.long),
        as_t(xs[n:], torch.float32),
        as_t(ys[n:], torch.long),
    )


def image_teachers(units: list[tuple], cfg: ImageShuffleConfig, classes: int) -> list:
    """Train one MLP teacher per unit as one ensemble (in chunks if memory is short).

    units : (x_D (N, D), y_D (N,), x_trivial, y_trivial, index) per unit, all with the same N.
    Returns one `memkd.distillation.Teacher` (one member) per unit. Teacher k's initialization depends
    on k alone: the same in every setting.
    """
    from memkd.distillation import train_teacher

    n, d = units[0][0].shape
    need = training_bytes_per_member(
        n, d, cfg.teacher_width, classes, cfg.hidden_layers, own_inputs=True, soft_targets=False
    )
    chunk = members_per_chunk(len(units), need, units[0][0].device, "the teacher width or images_per_class")
    teachers = []
    for part in chunks(units, chunk):
        ensemble = train_teacher(
            torch.stack([u[0] for u in part]),
            torch.stack([u[1] for u in part]),
            classes=classes,
            width=cfg.teacher_width,
            hidden_layers=cfg.hidden_layers,
            lr=cfg.teacher_lr,
            max_epochs=cfg.teacher_epochs,
            batch_size=cfg.teacher_batch_size,
            stop=cfg.teacher_stop,
            seed=[derive_seed(cfg.seed, "teacher", u[4], cfg.teacher_width) for u in part],
            progress=cfg.progress,
        )
        teachers += [ensemble.member(j) for j in range(len(part))]
    return teachers


@experiment(ImageShuffleConfig)
def cifar_shuffles(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 4: students of teachers that memorized clean or shuffled images, `teachers` per setting
    (`dataset` is the teacher's index k within its setting; independent_acc is on the trivial set)."""
    cfg = make_config(ImageShuffleConfig, "cifar_shuffles", profile, overrides)
    device = resolve_device(cfg.device, cfg.experiment)
    images, note = prepare_images(cfg)
    keys = [(s, k) for s in cfg.settings for k in range(cfg.teachers)]
    units = [(*shuffled_task(images, s, cfg, device, k), k) for s, k in keys]
    n, d = units[0][0].shape
    check_run_fits(
        device,
        "cifar_shuffles",
        samples=n,
        dim=d,
        classes=images.classes,
        hidden_layers=cfg.hidden_layers,
        teacher_width=cfg.teacher_width,
        student_widths=cfg.student_widths,
        student_samples=max(int(round(a * n)) for a in cfg.alphas),
        own_inputs=cfg.teachers > 1,
    )
    teachers = image_teachers(units, cfg, images.classes)
    tasks = {}
    for (s, k), (x, y, xt, yt, _), teacher in zip(keys, units, teachers):
        tasks[s, k] = MemorizationTask(
            k,
            x,
            y,
            xt,
            yt,
            teacher,
            teacher.logits(x)[0],
            teacher.logits(xt)[0],
            images.classes,
            {"epochs_run": teacher.epochs_run},
        )
    rows: list[dict] = []
    for setting in cfg.settings:
        for alpha in cfg.alphas:
            part = [tasks[setting, k] for k in range(cfg.teachers)]
            splits = [split_per_class(t.y, alpha, seed=derive_seed(cfg.seed, "split", t.dataset, alpha)) for t in part]
            for width in cfg.student_widths:
                members = member_grid(
                    setting=(setting,),
                    alpha=(alpha,),
                    temperature=cfg.temperatures,
                    lr=cfg.lrs,
                    student=range(cfg.students),
                )
                rows += distill(
                    part,
                    splits,
                    cfg=cfg,
                    kind="soft",
                    width=width,
                    members=members,
                    setting=(setting, alpha),
                    activation="relu",
                )
    n_mem, n_triv = len(units[0][1]), len(units[0][3])
    for r in rows:
        r.update(
            teacher_epochs_run=tasks[r["setting"], r["dataset"]].info["epochs_run"],
            images=images.name,
            n_memorized=n_mem,
            n_trivial=n_triv,
            note=note,
        )
    table = tidy(rows, ratio_to_trivial=True, cfg=cfg)
    return table[["setting"] + [c for c in table.columns if c != "setting"]]


PAPER_FIG4 = dict(images_per_class=None, teacher_width=512, student_widths=[512], temperatures=[5.0], lrs=[0.01])
