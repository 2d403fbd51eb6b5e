"""The published version's GPT-2 notebook: a language model memorizes random "facts", students leak them.

Shape letters (see `memkd`): K teachers, M students of one ensemble, N triples, N_s = floor(rho N)
student triples, S positions, C classes.

The released notebook (`main_gpt.ipynb`): the pretrained `gpt2` checkpoint as a sequence classifier
(a new head of C = 1000 classes) memorizes N = 6000 triples of integers from 1..1000 written as text
("234 300 3"; the GPT-2 tokenizer, pad = eos, left padding, max length 10) with uniformly random
labels: `transformers.AdamW` (lr 5e-4, no weight decay, eps 1e-6), batch 64, 100 epochs, gradient norm
clipped at 1.0, dropout on. Students start again from `gpt2` with a new head and fit softmax(teacher
logits / 20) on a random rho = 0.2 / 0.5 / 0.8 of the triples (cross-entropy, their own logits not
divided by T; lr 5e-4, batch 32, 200 epochs, no clipping) and are scored on the held-out rest.

Here teachers are the unit: `teachers` independent draws of the triples and labels, one teacher each
(the teachers of one model as one `EnsembleGPT2`), the students of all teachers of one (tokenization,
width, rho) as another. Per teacher and rho, the axes of the question "what makes it leak so much":

- `student_starts`: where a student's weights start (the table's column `student_start`, as in
  chapter 08's teacher clock). "teacher_start": all of the teacher's initial weights (body and head:
  a shared start); "teacher_body": the teacher's initial body with a new head (the released protocol,
  where the body is the pretrained checkpoint); "independent": a new random draw.
  The student seeds (its head, its batches) are shared across starts, so starts pair on them.
- `cells`, each "tokenization/high": the tokenization, "number" (a number is one token), "digits" (one
  token per digit: numbers share pieces) or "gpt2" (the checkpoint's own tokenizer; with `checkpoint`
  only), see `memkd.data.triples`; and the range 1..high the numbers come from, which sets how often a
  number recurs across the N triples (3N / high times on average: the released 6000 triples of
  1..1000 use each number about 18 times).
- `widths` (from scratch): the model's width W (L layers, H heads), and `rhos`.

A student's leak is its held-out accuracy against its own accuracy on `fresh` new triples with
random labels (what it gets right with no memorized information: chance, 1/C, in expectation).
`checkpoint=""` trains from scratch (the CPU profiles); a name or folder loads the checkpoint with
`memkd.models.gpt2.load_checkpoint` (the `lm` extra).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor

from memkd.config import (
    BOOL,
    POS_INT,
    Constraint,
    ExperimentConfig,
    batch_size_knob,
    classes_knob,
    epochs_knob,
    fresh_knob,
    heads_knob,
    int_range,
    knob,
    list_of,
    lr_knob,
    make_config,
    one_of,
    real_interval,
    rhos_knob,
    students_knob,
    teacher_epochs_knob,
    teachers_knob,
    temperature_knob,
)
from memkd.data.triples import TOKENIZATIONS, random_triples, tokenize, vocabulary
from memkd.declare import experiment
from memkd.device import resolve_device
from memkd.losses import hard_cross_entropy, soft_cross_entropy, soft_targets
from memkd.models.gpt2 import BODY, EnsembleGPT2, GPT2Shape, hf_shape, load_checkpoint
from memkd.tables import tidy
from memkd.seeds import derive_seed
from memkd.train import fit

STARTS = ("teacher_start", "teacher_body", "independent")
ADAM_EPS = 1e-6  # transformers.AdamW's default, which the released notebook used
EVAL_CHUNK = 1024  # triples per forward pass when measuring

# The released notebook, read from its code (see the module docstring).
RELEASED = dict(
    checkpoint="gpt2",
    cells=("gpt2/1000",),
    triples=6000,
    classes=1000,
    balanced=False,
    teacher_epochs=100,
    teacher_lr=5e-4,
    teacher_batch=64,
    max_grad_norm=1.0,
    epochs=200,
    lr=5e-4,
    batch_size=32,
    rhos=(0.2, 0.5, 0.8),
    temperature=20.0,
    max_length=10,
)
# paper: the released sizes and recipe, several teachers, and the shared-start question (the released
# start against an independent one of the same architecture). Counted, not measured: about 3e16 FLOP
# per teacher with its six students (6 x 124M parameters x tokens seen), under an hour on one H100-class
# GPU at 20 TFLOP/s. The students of one rho (teachers x starts = 8 members of 124M parameters, with
# AdamW's state) need about 20 GB of GPU memory: more than a T4 has. The released notebook ends its
# teacher above 99%, so that is the bar here.
PAPER = dict(
    RELEASED, student_starts=("teacher_body", "independent"), teachers=4, students=1, fresh=6000, teacher_min_acc=0.99
)
SMOKE = dict(
    cells=("number/50", "digits/50"),
    widths=(16,),
    layers=1,
    heads=2,
    triples=60,
    classes=6,
    balanced=True,
    teacher_epochs=30,
    teacher_lr=5e-3,
    teacher_batch=16,
    epochs=6,
    lr=5e-3,
    batch_size=16,
    rhos=(0.5,),
    student_starts=("teacher_start", "independent"),
    teachers=2,
    students=1,
    fresh=60,
    teacher_min_acc=0.0,
)
# quick: a small GPT-2 trained from scratch on a scaled-down task, the released recipe otherwise (AdamW,
# batches of 64 / 32, clipping 1.0 for the teacher, T = 20, rho = 0.8). Calibrated on 2026-12-07 (2 shared
# CPU cores, 4 teachers a cell, 400 triples in 40 classes): at the released teacher lr 5e-4, digit-piece teachers memorize far too
# slowly (30% after 30 epochs), so every teacher steps at 2e-3 for 80 epochs; one-token students fit their
# triples in 40 epochs. With numbers from 1..99 (each recurs about 12 times) students leak about 0.12 held
# out against 0.02 fresh; from 1..999 (about once) nothing at this budget. The start comparison runs where
# there is a leak to compare (number/99). 300 triples in 30 classes; 4 teachers took 55 s of CPU (one thread),
# so 8 teachers fit the chapter's budget.
QUICK = dict(
    cells=("number/999", "number/99", "digits/99"),
    widths=(64,),
    layers=2,
    heads=4,
    triples=300,
    classes=30,
    balanced=True,
    teacher_epochs=80,
    teacher_lr=2e-3,
    teacher_batch=64,
    epochs=40,
    batch_size=32,
    rhos=(0.8,),
    student_starts=("teacher_start", "independent"),
    student_start_cells=("number/99",),
    teachers=8,
    students=1,
    fresh=300,
    teacher_min_acc=0.98,
)

STARTS_LIST = list_of(one_of(*STARTS))


def parse_cell(cell: Any) -> tuple[str, int] | None:
    """'digits/99' -> ("digits", 99); None when `cell` is not 'tokenization/high' with high >= 2."""
    if not isinstance(cell, str) or cell.count("/") != 1:
        return None
    tokenization, high = cell.split("/")
    if tokenization not in TOKENIZATIONS or not high.isdigit() or int(high) < 2:
        return None
    return tokenization, int(high)


CELL_LIST = list_of(
    Constraint(
        lambda v: parse_cell(v) is not None,
        f"a string 'tokenization/high' with tokenization one of {TOKENIZATIONS} and high an int >= 2",
    )
)
CHECKPOINT = Constraint(
    lambda v: isinstance(v, str),
    "a string: '' (train from scratch), a model name on the "
    "Hugging Face hub (e.g. 'gpt2') or a local folder written by save_pretrained",
)


@dataclass(frozen=True)
class LanguageModelConfig(ExperimentConfig):
    """Knobs of the GPT-2 random-facts experiment (the released `main_gpt.ipynb` and its questions)."""

    checkpoint: str = knob(
        "",
        CHECKPOINT,
        "'' trains from scratch; else the pretrained GPT-2 (hub name or local "
        "folder) every teacher and the 'teacher_*' students start from",
    )
    cells: tuple = knob(
        ("number/999", "number/99", "digits/99"),
        CELL_LIST,
        "the data cells, each 'tokenization/high': "
        "how a triple becomes tokens (number: one token a number, digits: one a digit, gpt2: the "
        "checkpoint's tokenizer) and the largest number drawn (numbers from 1..high)",
    )
    widths: tuple = knob((64,), list_of(int_range(1)), "W: model widths trained from scratch (one model each)")
    layers: int = knob(2, POS_INT, "L: transformer blocks of a model trained from scratch")
    heads: int = heads_knob(4, "must divide every width")
    dropout: float = knob(0.1, real_interval(0, 1, "left"), "dropout of a model from scratch (GPT-2's 0.1)")
    triples: int = knob(400, int_range(4), "N: triples each teacher memorizes")
    classes: int = classes_knob(40)
    balanced: bool = knob(True, BOOL, "exactly N / C triples of each class (False: uniform labels, as released)")
    fresh: int = fresh_knob(400, "triples with random labels", ", to measure what a student gets without a leak")
    max_length: int = knob(10, int_range(4), "gpt2 tokenization: padded and truncated length (released: 10)")
    temperature: float = temperature_knob(20.0, " softmax(z / T)")
    teacher_lr: float = lr_knob(5e-4, "teacher's", "AdamW", " (released: 5e-4)")
    teacher_epochs: int = teacher_epochs_knob(100, "mini-batch epoch", " (released: 100)")
    teacher_batch: int | None = batch_size_knob("teacher's")
    max_grad_norm: float = knob(1.0, real_interval(0, math.inf), "teacher's gradient norm clip (released: 1.0)")
    teacher_min_acc: float = knob(
        1.0,
        real_interval(0, 1, "both"),
        "a teacher counts as memorized at this training accuracy (students learn only from those)",
    )
    lr: float = lr_knob(5e-4, "students'", "AdamW", " (released: 5e-4)")
    epochs: int = epochs_knob(200, unit="mini-batch epochs", note=" (released: 200)")
    batch_size: int | None = batch_size_knob()
    rhos: tuple = rhos_knob((0.5, 0.8), "the share of the triples a student gets (released: 0.2, 0.5, 0.8)")
    student_starts: tuple = knob(("teacher_start", "independent"), STARTS_LIST, "where a student's weights start")
    student_start_cells: tuple = knob(
        (),
        Constraint(
            lambda v: isinstance(v, (list, tuple)) and all(parse_cell(c) for c in v),
            "a list (possibly empty) of cells 'tokenization/high'",
            tuple,
        ),
        "cells whose students try every start; the others train only the last start "
        "(empty: every cell tries every start)",
    )
    teachers: int = teachers_knob(6, " (draws of the triples and labels)", least=2)
    students: int = students_knob(1, "teacher, start and rho")

    # One name per concept: where a student's weights start is `student_start(s)` in every experiment.
    RENAMED = {
        "starts": "use 'student_starts' (where a student's weights start, named as in every experiment)",
        "start_cells": "use 'student_start_cells' (the cells whose students try every start)",
        "start": "use 'student_starts' (where a student's weights start, a list)",
        "batch": "use 'batch_size' (the students' mini-batch size, named as in every experiment)",
    }

    PROFILE_VALUES = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
    TABLE_COLUMNS = (
        "dataset",
        "cell",
        "tokenization",
        "high",
        "width",
        "layers",
        "student_start",
        "rho",
        "student",
        "classes",
        "n_memorized",
        "n_student",
        "temperature",
        "lr",
        "epochs",
        "train_acc",
        "test_acc",
        "independent_acc",
        "agreement_fresh",
        "leak",
        "chance",
        "teacher_train_acc",
        "teacher_memorized",
        "seconds_per_student",
    )

    @property
    def tokenizations(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(parse_cell(c)[0] for c in self.cells))

    def check(self) -> None:
        if self.checkpoint and set(self.tokenizations) != {"gpt2"}:
            self.fail(
                "cells",
                f"must all be 'gpt2/high' with a checkpoint (checkpoint={self.checkpoint!r}: the "
                f"model reads its own tokenizer's ids). Got {list(self.cells)!r} instead.",
            )
        if not self.checkpoint and "gpt2" in self.tokenizations:
            self.fail(
                "cells",
                "may use the gpt2 tokenization only with a checkpoint (its tokenizer is loaded from "
                f"it). Got {list(self.cells)!r} with checkpoint='' instead.",
            )
        for w in self.widths:
            if w % self.heads:
                self.fail(
                    "heads", f"must divide every width. Got {self.heads!r} with widths={list(self.widths)!r} instead."
                )
        if self.balanced and self.triples % self.classes:
            self.fail(
                "triples",
                f"must be a multiple of classes ({self.classes}) when balanced=True. Got {self.triples!r} instead.",
            )
        if set(self.student_start_cells) - set(self.cells):
            self.fail(
                "student_start_cells",
                f"must be cells of `cells` ({list(self.cells)!r}). Got {list(self.student_start_cells)!r} instead.",
            )
        for rho in self.rhos:
            if not 1 <= int(rho * self.triples) <= self.triples - 1:
                self.fail(
                    "rhos",
                    f"must leave the student at least one triple and hold out at least one "
                    f"(1 <= int(rho * triples) <= triples - 1). Got {rho!r} with triples={self.triples} instead.",
                )


@dataclass
class Draw:
    """One teacher's data: its triples' tokens and labels, and the fresh triples'."""

    tokens: Tensor  # (N, S)
    mask: Tensor  # (N, S)
    labels: Tensor  # (N,)
    fresh_tokens: Tensor  # (N_f, S)
    fresh_mask: Tensor  # (N_f, S)
    fresh_labels: Tensor  # (N_f,)


def draws(cfg: LanguageModelConfig, tokenization: str, high: int, tokenizer: Any = None) -> list[Draw]:
    """The `teachers` draws of triples from 1..high and labels (the same triples and labels whatever the
    tokenization; the labels are the same whatever `high`)."""
    out = []
    for k in range(cfg.teachers):
        t, y = random_triples(cfg.triples, high, cfg.classes, derive_seed(cfg.seed, "data", k), cfg.balanced)
        f, fy = random_triples(cfg.fresh, high, cfg.classes, derive_seed(cfg.seed, "independent", k), False)
        tok, mask = tokenize(t, tokenization, high, tokenizer, cfg.max_length)
        ftok, fmask = tokenize(f, tokenization, high, tokenizer, cfg.max_length)
        out.append(Draw(tok, mask, y, ftok, fmask, fy))
    return out


@torch.no_grad()
def predict(model: EnsembleGPT2, tokens: Tensor, mask: Tensor) -> Tensor:
    """Logits of every member in eval mode, in chunks. tokens, mask (E, N, S) or (N, S) -> (E, N, C)."""
    was = model.training
    model.eval()
    out = torch.cat(
        [model(t, m) for t, m in zip(tokens.split(EVAL_CHUNK, dim=-2), mask.split(EVAL_CHUNK, dim=-2))], dim=1
    )
    model.train(was)
    return out


def _accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """(E, N, C), (E, N) -> (E,)"""
    return (logits.argmax(-1) == labels).float().mean(-1)


def train_members(
    model: EnsembleGPT2,
    tokens: Tensor,
    mask: Tensor,
    targets: Tensor,
    *,
    soft: bool,
    lr: float,
    epochs: int,
    batch_size: int | None,
    seed: int,
    max_grad_norm: float | None,
    progress: bool,
    desc: str,
) -> None:
    """Train every member on its own data with shuffled mini-batches (one order shared by the members).

    tokens, mask (E, N, S); targets: labels (E, N) int64 (hard cross-entropy) or probabilities (E, N, C)
    (soft cross-entropy, the student's logits not divided by T). AdamW (no weight decay, eps 1e-6).
    `seed` orders the batches and seeds dropout's masks (the global generator is restored after)."""

    def objective(idx: Tensor | None) -> tuple[Tensor, None]:
        t, m, y = (tokens, mask, targets) if idx is None else (tokens[:, idx], mask[:, idx], targets[:, idx])
        logits = model(t, m)
        return (soft_cross_entropy(logits, y) if soft else hard_cross_entropy(logits, y)), None

    device = tokens.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # dropout's masks come from the global generator: seeded here, restored after
        model.train()
        fit(
            model,
            objective,
            n_samples=tokens.shape[1],
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            weight_decay=0.0,
            decoupled_weight_decay=True,
            seed=seed,
            progress=progress,
            desc=desc,
            max_grad_norm=max_grad_norm,
            eps=ADAM_EPS,
        )
    model.eval()


def _pretrained(cfg: LanguageModelConfig) -> tuple[Any, Any]:
    """(transformers model, tokenizer) of `cfg.checkpoint`, or (None, None) from scratch."""
    if not cfg.checkpoint:
        return None, None
    return load_checkpoint(cfg.checkpoint, cfg.classes, owner="language_model")


def _build(members: int, shape: GPT2Shape, seeds: Sequence[int], pretrained: Any, device: torch.device) -> EnsembleGPT2:
    """An ensemble drawn from `seeds`; with `pretrained`, every member's body is the checkpoint's."""
    model = EnsembleGPT2(members, shape, seeds)
    if pretrained is not None:
        for i in range(members):
            model.load_hf(i, pretrained, head=False)
    return model.to(device)


def _student_rows(
    cfg: LanguageModelConfig,
    data: list[Draw],
    teacher: EnsembleGPT2,
    start_state: EnsembleGPT2,
    teacher_logits: Tensor,
    fresh_logits: Tensor,
    memorized: list[int],
    setting: dict,
    rho: float,
    pretrained: Any,
    device: torch.device,
) -> list[dict]:
    """Train the students of every memorized teacher, start and seed at one rho (one ensemble)."""
    n_s = int(rho * cfg.triples)
    splits = {
        k: torch.randperm(cfg.triples, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "split", k, rho)))
        for k in memorized
    }
    starts = (
        cfg.student_starts
        if not cfg.student_start_cells or setting["cell"] in cfg.student_start_cells
        else cfg.student_starts[-1:]
    )
    members = [(k, start, i) for k in memorized for start in starts for i in range(cfg.students)]
    seeds = [derive_seed(cfg.seed, "student", k, setting["cell"], setting["width"], rho, i) for k, _, i in members]
    independent_pretrained = None  # "independent" students get a random body even with a checkpoint
    model = _build(len(members), teacher.shape, seeds, independent_pretrained, device)
    for j, (k, start, _) in enumerate(members):
        if start == "teacher_start":
            model.copy_member(j, start_state, k)
        elif start == "teacher_body":
            model.copy_member(j, start_state, k, BODY)
    train_idx = [splits[k][:n_s] for k, _, _ in members]
    test_idx = [splits[k][n_s:] for k, _, _ in members]

    def stack(get) -> Tensor:
        return torch.stack([get(data[k], idx) for (k, _, _), idx in zip(members, train_idx)]).to(device)

    tokens, mask = stack(lambda d, idx: d.tokens[idx]), stack(lambda d, idx: d.mask[idx])
    targets = torch.stack(
        [soft_targets(teacher_logits[k][idx.to(device)], cfg.temperature) for (k, _, _), idx in zip(members, train_idx)]
    )
    started = time.perf_counter()
    train_members(
        model,
        tokens,
        mask,
        targets,
        soft=True,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        seed=derive_seed(cfg.seed, "order", setting["cell"], setting["width"], rho),
        max_grad_norm=None,
        progress=cfg.progress,
        desc=f"students rho={rho}",
    )
    seconds = (time.perf_counter() - started) / len(members)
    labels = lambda idxs: torch.stack([data[k].labels[i] for (k, _, _), i in zip(members, idxs)]).to(device)  # noqa: E731
    train_acc = _accuracy(predict(model, tokens, mask), labels(train_idx))
    test_tokens = torch.stack([data[k].tokens[i] for (k, _, _), i in zip(members, test_idx)]).to(device)
    test_mask = torch.stack([data[k].mask[i] for (k, _, _), i in zip(members, test_idx)]).to(device)
    test_acc = _accuracy(predict(model, test_tokens, test_mask), labels(test_idx))
    fresh = predict(
        model,
        torch.stack([data[k].fresh_tokens for k, _, _ in members]).to(device),
        torch.stack([data[k].fresh_mask for k, _, _ in members]).to(device),
    )
    fresh_acc = _accuracy(fresh, torch.stack([data[k].fresh_labels for k, _, _ in members]).to(device))
    agree = _accuracy(fresh, torch.stack([fresh_logits[k].argmax(-1) for k, _, _ in members]))
    return [
        {
            **setting,
            "dataset": k,
            "student_start": start,
            "student": i,
            "rho": rho,
            "n_student": n_s,
            "train_acc": float(train_acc[j]),
            "test_acc": float(test_acc[j]),
            "independent_acc": float(fresh_acc[j]),
            "agreement_fresh": float(agree[j]),
            "leak": float(test_acc[j] - fresh_acc[j]),
            "seconds_per_student": seconds,
        }
        for j, (k, start, i) in enumerate(members)
    ]


@experiment(LanguageModelConfig)
def language_model(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """The released GPT-2 notebook with several teachers, and what makes its students leak.

    One row per student (and one per teacher below `teacher_min_acc`, with NaN measures): dataset (the
    teacher), cell (tokenization/high), tokenization, high (numbers from 1..high), width, layers,
    student_start, rho, student, n_memorized (N), n_student, train_acc (its
    own triples), test_acc (the held-out memorized triples), independent_acc (fresh triples with random
    labels), leak (test_acc - independent_acc), agreement_fresh (same class as the teacher on the fresh
    triples), chance (1/C), teacher_train_acc, teacher_memorized, seconds_per_student (wall time of the
    students' ensemble over its members).
    """
    cfg = make_config(LanguageModelConfig, "language_model", profile, overrides)
    device = resolve_device(cfg.device)
    pretrained, tokenizer = _pretrained(cfg)
    rows: list[dict] = []
    for cell in cfg.cells:
        tokenization, high = parse_cell(cell)
        data = draws(cfg, tokenization, high, tokenizer)
        positions = data[0].tokens.shape[1]
        for width in (pretrained.config.n_embd,) if pretrained is not None else cfg.widths:
            shape = (
                hf_shape(pretrained, positions)
                if pretrained is not None
                else GPT2Shape(
                    vocabulary(tokenization, high), positions, width, cfg.layers, cfg.heads, cfg.classes, cfg.dropout
                )
            )
            layers = shape.layers
            seeds = [derive_seed(cfg.seed, "teacher", k, cell, width) for k in range(cfg.teachers)]
            teacher = _build(cfg.teachers, shape, seeds, pretrained, device)
            start_state = _build(cfg.teachers, shape, seeds, pretrained, device)  # the teachers' initial weights
            tokens = torch.stack([d.tokens for d in data]).to(device)
            mask = torch.stack([d.mask for d in data]).to(device)
            labels = torch.stack([d.labels for d in data]).to(device)
            train_members(
                teacher,
                tokens,
                mask,
                labels,
                soft=False,
                lr=cfg.teacher_lr,
                epochs=cfg.teacher_epochs,
                batch_size=cfg.teacher_batch,
                seed=derive_seed(cfg.seed, "order", cell, width, "teacher"),
                max_grad_norm=cfg.max_grad_norm,
                progress=cfg.progress,
                desc=f"teachers {cell}",
            )
            logits = predict(teacher, tokens, mask)  # (K, N, C)
            teacher_acc = _accuracy(logits, labels)
            fresh_logits = predict(
                teacher,
                torch.stack([d.fresh_tokens for d in data]).to(device),
                torch.stack([d.fresh_mask for d in data]).to(device),
            )
            memorized = [k for k in range(cfg.teachers) if float(teacher_acc[k]) >= cfg.teacher_min_acc]
            setting = dict(
                cell=cell,
                tokenization=tokenization,
                high=high,
                width=width,
                layers=layers,
                classes=cfg.classes,
                n_memorized=cfg.triples,
                temperature=cfg.temperature,
                lr=cfg.lr,
                epochs=cfg.epochs,
                chance=1.0 / cfg.classes,
            )
            student_rows: list[dict] = []
            for rho in cfg.rhos:
                if memorized:
                    student_rows += _student_rows(
                        cfg,
                        data,
                        teacher,
                        start_state,
                        logits,
                        fresh_logits,
                        memorized,
                        setting,
                        rho,
                        pretrained,
                        device,
                    )
            student_rows += [
                {**setting, "dataset": k, "student": -1, "train_acc": math.nan, "test_acc": math.nan}
                for k in range(cfg.teachers)
                if k not in memorized
            ]
            for r in student_rows:
                r["teacher_train_acc"] = float(teacher_acc[r["dataset"]])
                r["teacher_memorized"] = r["dataset"] in memorized
            rows += student_rows
    return tidy(rows, cfg=cfg)
