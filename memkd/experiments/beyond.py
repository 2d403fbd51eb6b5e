"""Beyond random vectors: real images with shuffles (Fig 4) and tokens with a transformer (Fig 8).

Same contract as `memkd.experiments.figures`: `fn(profile, **overrides) -> tidy DataFrame`, every
knob validated before any training, one row per trained student with its knobs and metrics.

cifar_shuffles (Fig 4, section 3.3): D is 80% of the image training set (balanced classes), the
    other 20% the trivial set. Five teachers (MLPs trained to 100% on D): "clean", "labels"
    (labels permuted), "pixels" (each image's pixels permuted on their own), "both", and "fixed"
    (one pixel permutation shared by all images: a sanity check, an MLP cannot tell). Soft-label
    students learn on alpha of D; `test_acc` is on the rest of D, `teacher_independent_acc` is the
    teacher on the trivial set (the trivial accuracy), `independent_acc` the student there.
transformer_distillation (Fig 8, appendix A.4): modular addition `a b =`; a 1-layer transformer
    teacher memorizes a random fraction D of all k^2 pairs; students of the same architecture fit
    sigma_T(teacher logits) on alpha of D, at several temperatures; `test_acc` on the rest of D,
    `independent_acc` on the pairs outside D, `teacher_independent_acc` the teacher there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from memkd.config import (
    ALPHAS, BOOL, DEVICE, LRS, OPTIONAL_INT, POS_INT, POS_INTS, TEMPERATURES, Constraint,
    ExperimentConfig, int_range, knob, list_of, make_config, one_of, real_interval,
)
from memkd.data import split_per_class
from memkd.experiments.common import member_grid, tidy
from memkd.device import resolve_device
from memkd.losses import soft_targets
from memkd.metrics import accuracy

SETTINGS = ("clean", "labels", "pixels", "both", "fixed")
STRING = Constraint(lambda v: isinstance(v, str), "a str (a path, or '' for the default)")


# --- Fig 4: images with shuffles ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageShuffleConfig(ExperimentConfig):
    dataset: str = knob("auto", one_of("auto", "cifar10", "digits"),
                        "cifar10, digits (sklearn's 8x8, no download), or auto (CIFAR-10 if it can be had)")
    data_root: str = knob("", STRING, "CIFAR-10 archive or its folder; '' uses $MEMKD_DATA or ~/.cache/memkd")
    settings: tuple = knob(SETTINGS, list_of(one_of(*SETTINGS)), "teachers: clean, labels, pixels, both, fixed")
    memorized_fraction: float = knob(0.8, real_interval(0, 1), "fraction of each class in D (the rest: trivial set)")
    per_class: Any = knob(None, OPTIONAL_INT, "images per class in D (a subsample); None: all of the fraction")
    teacher_width: int = knob(512, POS_INT, "P of the teacher")
    hidden_layers: int = knob(2, int_range(1, 4), "hidden layers of teacher and students")
    teacher_lr: float = knob(1e-3, real_interval(0, 1, "right"), "teacher's Adam learning rate")
    teacher_epochs: int = knob(2000, POS_INT, "teacher's epoch budget to reach 100% on D")
    teacher_batch_size: Any = knob(None, OPTIONAL_INT, "teacher's mini-batch size; None: full batch")
    student_widths: tuple = knob((512,), POS_INTS, "P of the students")
    alphas: tuple = knob((0.4, 0.8), ALPHAS, "fraction of each class of D the student sees")
    temperatures: tuple = knob((5.0,), TEMPERATURES, "softmax temperatures T of the soft labels")
    lrs: tuple = knob((1e-2,), LRS, "students' Adam learning rates")
    epochs: int = knob(200, POS_INT, "students' training epochs")
    batch_size: Any = knob(None, OPTIONAL_INT, "students' mini-batch size; None: full batch")
    students: int = knob(5, POS_INT, "student seeds per setting")
    seed: int = knob(0, int_range(0), "base random seed (shuffles, splits, initialisations)")
    device: str = knob("auto", DEVICE, "where to train")
    progress: bool = knob(False, BOOL, "show progress bars")

    PROFILE_VALUES = {
        "smoke": dict(dataset="digits", per_class=30, teacher_width=128, teacher_lr=3e-3,
                      teacher_epochs=1000, student_widths=(128,), alphas=(0.6,), lrs=(1e-2,),
                      epochs=60, students=3),
        "quick": dict(per_class=139, teacher_width=256, teacher_epochs=2000, student_widths=(256,),
                      alphas=(0.3, 0.6), lrs=(3e-3,), epochs=150, students=4),
        "paper": dict(per_class=None, teacher_width=512, teacher_epochs=5000, teacher_batch_size=None,
                      student_widths=(512,), alphas=(0.2, 0.4, 0.6, 0.8), temperatures=(5.0,),
                      lrs=(1e-2,), epochs=1000, students=10),
    }

    def check(self) -> None:
        if len(set(self.settings)) != len(self.settings):
            self.fail("settings", f"must not repeat a setting. Got {self.settings!r} instead.")
        if self.per_class is not None:
            for a in self.alphas:
                k = int(round(a * self.per_class))
                if k < 1 or k > self.per_class - 1:
                    self.fail("alphas", f"contains {a}, which with per_class={self.per_class} leaves a "
                              "class empty in the student's part or in the held-out part.")


def prepare_images(cfg: ImageShuffleConfig):
    """Load the images once: (ImageSet, note). The note is non-empty when auto fell back."""
    from memkd.images import load_images

    return load_images(cfg.dataset, root=cfg.data_root or None)


def shuffled_task(images, setting: str, cfg: ImageShuffleConfig, device: torch.device):
    """One setting's data: (x_D, y_D, x_trivial, y_trivial) as tensors, shuffles applied to all.

    The shuffles act on the whole training set first, then it is split into D (balanced classes)
    and the trivial set, so both parts carry the same permutations (as in the paper).
    """
    from memkd.images import permute_pixels, shuffle_labels, shuffle_pixels, split_memorized, standardize

    x, y = images.x, images.y
    base = cfg.seed * 1000
    if setting in ("labels", "both"):
        y = shuffle_labels(y, base + 1)
    if setting in ("pixels", "both"):
        x = shuffle_pixels(x, images.image_shape, base + 2)
    if setting == "fixed":
        x = permute_pixels(x, images.image_shape, base + 3)
    x = standardize(x, images.image_shape)  # per-channel statistics: unchanged by pixel shuffles
    memorized, trivial = split_memorized(y, cfg.memorized_fraction, base + 4, cfg.per_class)
    as_t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)
    return (as_t(x[memorized], torch.float32), as_t(y[memorized], torch.long),
            as_t(x[trivial], torch.float32), as_t(y[trivial], torch.long))


def cifar_shuffles(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 4: students of teachers that memorized clean or shuffled images.

    One row per student: dataset ("cifar10" | "digits"), setting, alpha, width, temperature, lr,
    student, train_acc, test_acc, independent_acc, teacher_independent_acc (trivial accuracy),
    ratio (test_acc / trivial accuracy), chance, teacher_epochs, n_memorized, n_trivial, note.
    """
    from memkd.train import train_students, train_teacher

    cfg = make_config(ImageShuffleConfig, "cifar_shuffles", profile, overrides)
    device = resolve_device(cfg.device)
    images, note = prepare_images(cfg)
    rows: list[dict] = []
    for s_i, setting in enumerate(cfg.settings):
        x, y, x_triv, y_triv = shuffled_task(images, setting, cfg, device)
        teacher = train_teacher(x, y, classes=images.classes, width=cfg.teacher_width,
                                hidden_layers=cfg.hidden_layers, lr=cfg.teacher_lr,
                                max_epochs=cfg.teacher_epochs, batch_size=cfg.teacher_batch_size,
                                seed=cfg.seed * 1000 + 17 + s_i, progress=cfg.progress)
        with torch.no_grad():
            logits = teacher.logits(x)  # (1, N, C)
            trivial = float(accuracy(teacher.logits(x_triv), y_triv)[0])
        for a_i, alpha in enumerate(cfg.alphas):
            train_idx, test_idx = split_per_class(y, alpha, seed=cfg.seed * 1000 + a_i)
            for w_i, width in enumerate(cfg.student_widths):
                members = member_grid(temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
                temps = torch.tensor([m["temperature"] for m in members], device=device)
                lrs = torch.tensor([m["lr"] for m in members], device=device)
                model, _ = train_students(
                    x[train_idx], soft_targets(logits[:, train_idx], temps), kind="soft",
                    classes=images.classes, width=width, members=len(members), lrs=lrs,
                    epochs=cfg.epochs, temperatures=temps, hidden_layers=cfg.hidden_layers,
                    batch_size=cfg.batch_size, progress=cfg.progress,
                    seed=cfg.seed * 7919 + s_i * 101 + a_i * 13 + w_i)
                with torch.no_grad():
                    out = model(x)  # (E, N, C)
                    metrics = {"train_acc": accuracy(out[:, train_idx], y[train_idx]),
                               "test_acc": accuracy(out[:, test_idx], y[test_idx]),
                               "independent_acc": accuracy(model(x_triv), y_triv)}
                for i, m in enumerate(members):
                    rows.append({"dataset": images.name, "setting": setting, "alpha": alpha,
                                 "width": width, **m,
                                 **{k: float(v[i]) for k, v in metrics.items()},
                                 "teacher_independent_acc": trivial,
                                 "chance": 1.0 / images.classes,
                                 "teacher_epochs": int(teacher.epochs_to_memorize.max()),
                                 "n_memorized": len(y), "n_trivial": len(y_triv), "note": note})
    return tidy(rows, ratio_to_trivial=True)


# --- Fig 8: a 1-layer transformer on modular addition ----------------------------------------------


@dataclass(frozen=True)
class TransformerConfig(ExperimentConfig):
    modulus: int = knob(113, int_range(3), "k: numbers 0..k-1, the answer (a + b) mod k")
    memorized_fraction: float = knob(0.3, real_interval(0, 1), "fraction of all k^2 pairs in D")
    d_model: int = knob(128, POS_INT, "residual width (Nanda et al.: 128)")
    heads: int = knob(4, POS_INT, "attention heads (d_model must be a multiple)")
    d_mlp: int = knob(512, POS_INT, "MLP width (Nanda et al.: 512)")
    teacher_epochs: int = knob(5000, POS_INT, "teacher's full-batch step budget to reach 100% on D")
    teacher_extra_epochs: int = knob(0, int_range(0), "teacher steps after 100% (towards grokking)")
    alphas: tuple = knob((0.5,), ALPHAS, "fraction of each answer class of D the student sees")
    temperatures: tuple = knob((1.0, 2.0, 5.0, 10.0, 20.0), TEMPERATURES, "softmax temperatures T")
    lrs: tuple = knob((1e-3,), LRS, "students' AdamW learning rates")
    weight_decay: float = knob(1.0, real_interval(0, math.inf, "left"), "students' AdamW weight decay")
    epochs: int = knob(1000, POS_INT, "students' full-batch steps")
    students: int = knob(10, POS_INT, "student seeds per temperature")
    seed: int = knob(0, int_range(0), "base random seed (D, splits, initialisations)")
    device: str = knob("auto", DEVICE, "where to train")
    progress: bool = knob(False, BOOL, "show progress bars")

    PROFILE_VALUES = {
        "smoke": dict(modulus=13, memorized_fraction=0.6, d_model=32, heads=4, d_mlp=64,
                      teacher_epochs=2000, temperatures=(1.0, 10.0), epochs=100, students=2),
        "quick": dict(modulus=23, memorized_fraction=0.5, temperatures=(1.0, 2.0, 5.0, 10.0, 20.0),
                      epochs=300, students=4),
        "paper": dict(modulus=113, memorized_fraction=0.3, alphas=(0.5,),
                      temperatures=(1.0, 2.0, 5.0, 10.0, 20.0), epochs=2000, students=10),
    }

    def check(self) -> None:
        if self.d_model % self.heads:
            self.fail("heads", f"must divide d_model={self.d_model}. Got {self.heads!r} instead.")
        size = int(round(self.memorized_fraction * self.modulus ** 2))
        if size < 2 * self.modulus or self.modulus ** 2 - size < 1:
            self.fail("memorized_fraction", f"gives {size} of {self.modulus ** 2} pairs in D: D needs "
                      f"at least 2 x modulus pairs and at least one pair must stay outside. Got "
                      f"{self.memorized_fraction!r} instead.")


def transformer_distillation(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 8: transformer students of a transformer teacher that memorized modular addition.

    One row per student: modulus, alpha, temperature, lr, student, train_acc, test_acc,
    independent_acc, teacher_independent_acc, chance (1/k), teacher_epochs, n_memorized.
    """
    from memkd.tokens import make_modular_addition
    from memkd.transformer import train_transformer_students, train_transformer_teacher

    cfg = make_config(TransformerConfig, "transformer_distillation", profile, overrides)
    device = resolve_device(cfg.device)
    k = cfg.modulus
    data = make_modular_addition(k, cfg.memorized_fraction, seed=cfg.seed * 1000 + 1)
    tokens, labels = data.tokens.to(device), data.labels.to(device)
    d_idx = torch.as_tensor(data.memorized, device=device)
    out_idx = torch.as_tensor(data.outside, device=device)
    x, y = tokens[d_idx], labels[d_idx]
    arch = dict(d_model=cfg.d_model, heads=cfg.heads, d_mlp=cfg.d_mlp)
    teacher = train_transformer_teacher(x, y, modulus=k, max_epochs=cfg.teacher_epochs,
                                        extra_epochs=cfg.teacher_extra_epochs,
                                        seed=cfg.seed * 1000 + 17, progress=cfg.progress, **arch)
    with torch.no_grad():
        logits = teacher.logits(x)  # (1, N, K)
        trivial = float(accuracy(teacher.logits(tokens[out_idx]), labels[out_idx])[0])
    rows: list[dict] = []
    for a_i, alpha in enumerate(cfg.alphas):
        train_idx, test_idx = split_per_class(y, alpha, seed=cfg.seed * 1000 + a_i)
        members = member_grid(temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
        temps = torch.tensor([m["temperature"] for m in members], device=device)
        lrs = torch.tensor([m["lr"] for m in members], device=device)
        model, _ = train_transformer_students(
            x[train_idx], logits[:, train_idx], modulus=k, members=len(members), temperatures=temps,
            lrs=lrs, epochs=cfg.epochs, weight_decay=cfg.weight_decay,
            seed=cfg.seed * 7919 + a_i, progress=cfg.progress, **arch)
        with torch.no_grad():
            metrics = {"train_acc": accuracy(model(x[train_idx]), y[train_idx]),
                       "test_acc": accuracy(model(x[test_idx]), y[test_idx]),
                       "independent_acc": accuracy(model(tokens[out_idx]), labels[out_idx])}
        for i, m in enumerate(members):
            rows.append({"modulus": k, "alpha": alpha, **m,
                         **{name: float(v[i]) for name, v in metrics.items()},
                         "teacher_independent_acc": trivial, "chance": 1.0 / k,
                         "teacher_epochs": teacher.epochs_to_memorize,
                         "teacher_extra_epochs": cfg.teacher_extra_epochs,
                         "n_memorized": len(y), "n_outside": len(out_idx)})
    return tidy(rows, ratio_to_trivial=True)
