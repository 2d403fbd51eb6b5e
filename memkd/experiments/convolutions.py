"""Does the leak survive convolution? CNN and MLP teachers and students on memorized images.

Same contract as the other experiments: `convolutional_distillation(profile, **overrides) -> tidy DataFrame`,
every knob validated before any training, one row per trained student, and the validated
configuration in `table.attrs["config"]`.

Design. A *unit* is one setting and one teacher index k (column `dataset`): its own draw of the
memorized set D and the trivial set (balanced classes, `split_memorized` with a seed of k), its
own shuffles, and two teachers trained to 100% on the same D: a CNN and an MLP. Teachers are the
unit of replication: `teachers` independent units per setting. The settings are those of chapter
04: "clean", "labels" (labels permuted), "pixels" (each image's pixels in its own order), "both",
and the probe "fixed" (one pixel order shared by every image of the unit). Unit k of "clean",
"pixels" and "fixed" holds the same images (their labels are not shuffled, so the split is the
same); only the pixel order differs.

Students see alpha of each class of D, labelled with sigma_T(teacher logits), and are tested on the
rest of D (`test_acc`). Their own trivial accuracy (`independent_acc`) is their accuracy on the
trivial set: images of the same distribution and shuffles that no teacher saw. `leak` =
test_acc - independent_acc is what the student knows about held-out *memorized* images beyond what
it would know about any image. Pairs: "cnn->cnn", "mlp->mlp", "cnn->mlp", "mlp->cnn" (teacher ->
student), all on the same units, splits and temperature.

All teachers of one architecture train as one ensemble (one member per unit, each on its own D);
all students of one architecture train as one ensemble (units x teacher architectures x seeds),
in chunks of at most `chunk` members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from memkd.declare import experiment
from memkd.config import (
    POS_INT,
    alpha_knob,
    batch_size_knob,
    chunk_knob,
    epochs_knob,
    int_range,
    knob,
    list_of,
    lr_knob,
    make_config,
    one_of,
    settings_knob,
    soften_student_knob,
    students_knob,
    teacher_stop_knob,
    teachers_knob,
    temperature_knob,
)
from memkd.device_memory import chunks
from memkd.models.cnn import CNNFamily
from memkd.data.random_vectors import split_per_class
from memkd.device import resolve_device
from memkd import distillation
from memkd.distillation import MLPFamily, predict
from memkd.experiments.cifar import SETTINGS, ImageDataConfig, shuffled_task
from memkd.tables import tidy
from memkd.metrics import accuracy
from memkd.seeds import derive_seed

PAIRS = ("cnn->cnn", "mlp->mlp", "cnn->mlp", "mlp->cnn")
ARCHS = ("cnn", "mlp")


@dataclass(frozen=True)
class ConvolutionConfig(ImageDataConfig):
    settings: tuple = settings_knob(
        SETTINGS, "teachers on clean, label-shuffled, pixel-shuffled, both, fixed-permutation images"
    )
    pairs: tuple = knob(PAIRS, list_of(one_of(*PAIRS)), "teacher -> student architectures")
    teachers: int = teachers_knob(5, " per setting (the data draw shared by its pairs)")
    cnn_width: int = knob(32, POS_INT, "channels of the CNN's first conv layer (doubling per layer)")
    conv_layers: int = knob(2, int_range(1, 3), "conv blocks (3x3 conv, ReLU, 2x2 max pool) of the CNN")
    head_width: int = knob(256, POS_INT, "hidden units of the CNN's MLP head")
    mlp_width: int = knob(512, POS_INT, "P of the MLPs (two hidden ReLU layers)")
    cnn_teacher_lr: float = lr_knob(1e-3, "CNN teacher's")
    mlp_teacher_lr: float = lr_knob(1e-3, "MLP teacher's")
    cnn_teacher_epochs: int = epochs_knob(300, "CNN teacher's", "epoch budget")
    mlp_teacher_epochs: int = epochs_knob(2000, "MLP teacher's", "epoch budget")
    teacher_stop: str = teacher_stop_knob()
    teacher_batch_size: Any = batch_size_knob("teachers'")
    alpha: float = alpha_knob(0.6, "each class of D")
    temperature: float = temperature_knob(5.0)
    soften_student: bool = soften_student_knob()
    cnn_lr: float = lr_knob(3e-3, "CNN students'")
    mlp_lr: float = lr_knob(3e-3, "MLP students'")
    epochs: int = epochs_knob(200)
    batch_size: Any = batch_size_knob()
    students: int = students_knob(4, "teacher and pair")
    chunk: Any = chunk_knob("a pair")

    TABLE_COLUMNS = (
        "dataset",
        "alpha",
        "temperature",
        "lr",
        "student",
        "setting",
        "pair",
        "teacher",
        "student_arch",
        "train_acc",
        "test_acc",
        "independent_acc",
        "leak",
        "teacher_independent_acc",
        "teacher_first_perfect",
        "chance",
        "images",
        "n_memorized",
        "n_trivial",
        "note",
    )
    PROFILE_VALUES = {
        "smoke": dict(
            dataset="digits",
            teachers=3,
            memorized_fraction=0.5,
            images_per_class=10,
            cnn_width=8,
            head_width=64,
            mlp_width=128,
            cnn_teacher_lr=3e-3,
            mlp_teacher_lr=3e-3,
            cnn_teacher_epochs=150,
            mlp_teacher_epochs=150,
            epochs=40,
            students=2,
        ),
        "quick": dict(
            teachers=5,
            memorized_fraction=0.5,
            images_per_class=20,
            cnn_width=8,
            head_width=128,
            mlp_width=256,
            cnn_teacher_lr=3e-3,
            mlp_teacher_lr=3e-3,
            cnn_teacher_epochs=200,
            mlp_teacher_epochs=150,
            epochs=80,
            students=2,
        ),
        "paper": dict(
            dataset="auto",
            teachers=5,
            memorized_fraction=0.8,
            images_per_class=None,
            cnn_width=32,
            conv_layers=3,
            head_width=512,
            mlp_width=512,
            cnn_teacher_epochs=300,
            mlp_teacher_epochs=1000,
            teacher_batch_size=1000,
            epochs=300,
            batch_size=2000,
            students=4,
            chunk=40,
        ),
    }

    def check(self) -> None:
        for name in ("settings", "pairs"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                self.fail(name, f"must not repeat an entry. Got {values!r} instead.")
        if self.images_per_class is not None:
            k = int(round(self.alpha * self.images_per_class))
            if k < 1 or k > self.images_per_class - 1:
                self.fail(
                    "alpha",
                    f"({self.alpha}) with images_per_class={self.images_per_class} gives the "
                    f"student {k} images of each class: a class would be empty in the student's part or "
                    "in the held-out part.",
                )


@dataclass
class Unit:
    """One setting and teacher index: D (N images), the trivial set (M images), the student split."""

    setting: str
    index: int
    x: Tensor  # (N, D) standardized
    y: Tensor  # (N,)
    x_trivial: Tensor  # (M, D)
    y_trivial: Tensor  # (M,)
    train_idx: Tensor  # (N_train,) indices into D
    test_idx: Tensor  # (N - N_train,)


def make_unit(images, setting: str, index: int, cfg: ConvolutionConfig, device: torch.device) -> Unit:
    """Draw unit `index` of `setting` exactly as chapter 04 draws its teacher `index`
    (`memkd.experiments.cifar.shuffled_task`), then the student's per-class split."""
    x_d, y_d, x_t, y_t = shuffled_task(images, setting, cfg, device, index)
    train_idx, test_idx = split_per_class(y_d, cfg.alpha, seed=derive_seed(cfg.seed, "split", index))
    return Unit(setting, index, x_d, y_d, x_t, y_t, train_idx, test_idx)


def family(arch: str, cfg: ConvolutionConfig, image_shape, classes: int) -> CNNFamily | MLPFamily:
    """The model family of `arch`: CNNs, or MLPs with two hidden ReLU layers on the flattened images."""
    if arch == "cnn":
        return CNNFamily(
            tuple(image_shape), classes, width=cfg.cnn_width, conv_layers=cfg.conv_layers, head_width=cfg.head_width
        )
    return MLPFamily(int(np.prod(image_shape)), cfg.mlp_width, classes, 2, "relu")


def train_teachers(
    units: list[Unit], arch: str, cfg: ConvolutionConfig, image_shape, classes: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Train one teacher of `arch` per unit. Returns logits on D (U, N, C), trivial accuracy (U,),
    and the first epoch at 100% (U,)."""
    logits, trivial, epochs = [], [], []
    lr = cfg.cnn_teacher_lr if arch == "cnn" else cfg.mlp_teacher_lr
    budget = cfg.cnn_teacher_epochs if arch == "cnn" else cfg.mlp_teacher_epochs
    for part in chunks(len(units), cfg.chunk):
        us = [units[i] for i in part]
        x = torch.stack([u.x for u in us])
        y = torch.stack([u.y for u in us])
        seeds = [derive_seed(cfg.seed, "teacher", arch, u.index) for u in us]  # paired across settings
        # autograd for both families (fused=False): the numbers this chapter has always had
        teacher = distillation.train_teacher(
            x,
            y,
            family(arch, cfg, image_shape, classes),
            lr=lr,
            max_epochs=budget,
            stop=cfg.teacher_stop,
            batch_size=cfg.teacher_batch_size,
            seed=seeds,
            progress=cfg.progress,
            fused=False,
        )
        model = teacher.model
        logits.append(predict(model, x))
        xt = torch.stack([u.x_trivial for u in us])
        trivial.append(accuracy(predict(model, xt), torch.stack([u.y_trivial for u in us])).cpu())
        epochs.append(teacher.epochs_to_memorize)
        del model, x, xt
    return torch.cat(logits), torch.cat(trivial), torch.cat(epochs)


def train_students(
    units: list[Unit],
    arch: str,
    members: list[dict],
    teacher_logits: dict[str, Tensor],
    cfg: ConvolutionConfig,
    image_shape,
    classes: int,
    device: torch.device,
) -> list[dict]:
    """Train the students of `arch`; `members` holds one dict per student (unit, teacher, student).
    Returns one row per student with train_acc, test_acc, independent_acc."""
    rows: list[dict] = []
    lr = cfg.cnn_lr if arch == "cnn" else cfg.mlp_lr
    for c_i, part in enumerate(chunks(len(members), cfg.chunk)):
        ms = [members[i] for i in part]
        us = [units[m["unit"]] for m in ms]
        x = torch.stack([u.x[u.train_idx] for u in us])  # (E, N_train, D)
        logits = torch.stack(
            [teacher_logits[m["teacher"]][m["unit"], u.train_idx] for m, u in zip(ms, us)]
        )  # (E, N_train, C)
        seeds = [derive_seed(cfg.seed, "student", arch, u.index, m["teacher"], m["student"]) for m, u in zip(ms, us)]
        model, _ = distillation.train_students(
            x,
            kind="soft",
            teacher_logits=logits,
            temperatures=cfg.temperature,
            soften_student=cfg.soften_student,
            family=family(arch, cfg, image_shape, classes),
            members=len(ms),
            lrs=lr,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            seed=seeds,
            progress=cfg.progress,
            fused=False,
        )
        del x, logits
        out_d = predict(model, torch.stack([u.x for u in us]))  # (E, N, C)
        out_t = predict(model, torch.stack([u.x_trivial for u in us]))  # (E, M, C)
        for i, (m, u) in enumerate(zip(ms, us)):
            rows.append(
                {
                    **m,
                    "train_acc": float(accuracy(out_d[i : i + 1, u.train_idx], u.y[u.train_idx])[0]),
                    "test_acc": float(accuracy(out_d[i : i + 1, u.test_idx], u.y[u.test_idx])[0]),
                    "independent_acc": float(accuracy(out_t[i : i + 1], u.y_trivial)[0]),
                }
            )
        del model, out_d, out_t
    return rows


@experiment(ConvolutionConfig)
def convolutional_distillation(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """CNN and MLP teachers and students in the settings of chapter 04, and the probe.

    `dataset` is the teacher's index k within its setting; independent_acc is on the trivial set;
    teacher_first_perfect is the first logged epoch at 100%.
    """
    from memkd.experiments.cifar import prepare_images

    cfg = make_config(ConvolutionConfig, "convolutional_distillation", profile, overrides)
    device = resolve_device(cfg.device, cfg.experiment)
    images, note = prepare_images(cfg)
    units = [make_unit(images, s, k, cfg, device) for s in cfg.settings for k in range(cfg.teachers)]
    needed = {p.split("->")[0] for p in cfg.pairs}
    logits, trivial, epochs = {}, {}, {}
    for arch in ARCHS:
        if arch in needed:
            logits[arch], trivial[arch], epochs[arch] = train_teachers(
                units, arch, cfg, images.image_shape, images.classes, device
            )
    rows: list[dict] = []
    for arch in ARCHS:
        members = [
            {"unit": u_i, "teacher": p.split("->")[0], "pair": p, "student": s}
            for u_i in range(len(units))
            for p in cfg.pairs
            if p.endswith(arch)
            for s in range(cfg.students)
        ]
        if members:
            rows += train_students(units, arch, members, logits, cfg, images.image_shape, images.classes, device)
    out = []
    for r in rows:
        u, t = units[r["unit"]], r["teacher"]
        out.append(
            {
                "dataset": u.index,
                "setting": u.setting,
                "pair": r["pair"],
                "teacher": t,
                "student_arch": r["pair"].split("->")[1],
                "student": r["student"],
                "alpha": cfg.alpha,
                "temperature": cfg.temperature,
                "lr": cfg.cnn_lr if r["pair"].endswith("cnn") else cfg.mlp_lr,
                "train_acc": r["train_acc"],
                "test_acc": r["test_acc"],
                "independent_acc": r["independent_acc"],
                "leak": r["test_acc"] - r["independent_acc"],
                "teacher_independent_acc": float(trivial[t][r["unit"]]),
                "teacher_first_perfect": int(epochs[t][r["unit"]]),
                "chance": 1.0 / images.classes,
                "images": images.name,
                "n_memorized": len(u.y),
                "n_trivial": len(u.y_trivial),
                "note": note,
            }
        )
    table = tidy(out)
    order = {p: i for i, p in enumerate(cfg.pairs)}
    table = table.sort_values(
        ["setting", "pair", "dataset", "student"],
        key=lambda c: (
            c.map(order)
            if c.name == "pair"
            else (c.map({s: i for i, s in enumerate(cfg.settings)}) if c.name == "setting" else c)
        ),
    )
    table = table.reset_index(drop=True)
    table.attrs["config"] = cfg.asdict()
    return table
