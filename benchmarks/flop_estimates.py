"""Estimated GPU time and memory of each chapter at profile="paper", from FLOP counts (no training).

How: every chapter's experiment functions run at profile="paper" with `train_teacher`,
`train_students` and `fit` replaced by stubs that record each training call (members, samples,
layer sizes, epochs) and return untrained stand-ins (zero logits, teachers marked memorized).
So the count follows the experiments' real loops and the profiles' real sizes. Each call costs

    epochs x 3 x 2 x N x members x sum(in x out)      (forward + 2 backward matmuls, fp32)

plus, for similarity students, 3 x 2 x N x B x C per epoch for the (N, B) similarity blocks
(B = min(N, 4096)). Teachers count their whole epoch budget (`teacher_stop="budget"`, the
default). Element-wise work, evaluation and data generation are left out; they are small
against the matmuls at these shapes. The time is the count over an assumed sustained rate
(ASSUMED_RATES: half of each GPU's fp32 peak from its data sheet, TF32 off); the memory is
`memkd.device_memory.training_bytes_per_member` of the largest single training call (an ensemble
that does not fit is split into chunks, so this is what one chunk of all members would need).
These are estimates, not measurements: `benchmarks/gpu_check.sh` measures chapter 02 and the
fraction of the matmul rate the ensembles reach.

Chapters whose models are not memkd MLPs (the transformer, the convolutional networks) and the
CIFAR-10 chapter are reported as not counted, with the reason; so is a part whose code needs
trained models (its stand-ins fail there).

Run:  .venv/bin/python benchmarks/flop_estimates.py        (prints a markdown table)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import memkd  # noqa: E402
import memkd.distillation as mdist  # noqa: E402
import memkd.train as mtrain  # noqa: E402
from memkd.device_memory import training_bytes_per_member  # noqa: E402

# Sustained fp32 rates assumed for the estimates: half of the data-sheet fp32 (non-tensor) peak.
ASSUMED_RATES = {
    "H200": 0.5 * 67e12,  # NVIDIA H100/H200 SXM data sheet: 67 TFLOP/s fp32
    "T4": 0.5 * 8.1e12,  # NVIDIA T4 data sheet: 8.1 TFLOP/s fp32 (Colab's free GPU)
}
SIMILARITY_BLOCK = 4096  # train_students' max_full_similarity


@dataclass
class Call:
    """One recorded training call."""

    what: str  # teacher | soft | hard | similarity | fit
    members: int
    samples: int
    sizes: tuple[int, ...]  # layer widths: input, hidden..., output
    epochs: int
    own_inputs: bool = False

    @property
    def flops(self) -> float:
        if self.what == "svd":  # one SVD-based pseudo-inverse per member (R-SVD: 4 m n^2 + 22 n^3, m >= n)
            m, n = max(self.samples, self.sizes[0]), min(self.samples, self.sizes[0])
            return float(self.members * (4 * m * n * n + 22 * n**3 + 2 * self.samples * self.sizes[0] * self.sizes[-1]))
        matmul = sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        per_epoch = 3 * 2 * self.samples * self.members * matmul
        if self.what == "similarity":
            per_epoch += 3 * 2 * self.samples * min(self.samples, SIMILARITY_BLOCK) * self.sizes[-1] * self.members
        return float(self.epochs * per_epoch)

    @property
    def bytes(self) -> int:
        d, *hidden, c = self.sizes
        width = max(hidden) if hidden else c
        need = self.members * training_bytes_per_member(
            self.samples, d, width, c, max(1, len(hidden)), own_inputs=self.own_inputs, soft_targets=self.what != "hard"
        )
        if self.what == "similarity":
            need += 4 * 3 * min(self.samples, SIMILARITY_BLOCK) ** 2
        return need


class FakeModel:
    """An untrained stand-in for an EnsembleMLP: zero logits (E, N, C) for inputs (N, D) or (K, N, D)."""

    def __init__(
        self, members: int, input_dim: int, width: int, classes: int, hidden_layers: int, activation: str = "relu"
    ) -> None:
        self.members, self.input_dim, self.width, self.classes = members, input_dim, width, classes
        self.hidden_layers, self.activation = hidden_layers, activation

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.members, x.shape[-2], self.classes, device=x.device)

    def to(self, *args, **kwargs) -> "FakeModel":
        return self

    def eval(self) -> "FakeModel":
        return self

    def parameters(self):
        return iter(())

    def member(self, k: int) -> "FakeModel":
        return FakeModel(1, self.input_dim, self.width, self.classes, self.hidden_layers, self.activation)


class FakeTeacher(mdist.Teacher):
    """A Teacher whose model is a FakeModel, marked as having memorized D."""

    def member(self, k: int) -> "FakeTeacher":
        one = self.model.member(k)
        return FakeTeacher(
            one,
            self.train_acc[k : k + 1],
            self.memorized[k : k + 1],
            self.epochs_to_memorize[k : k + 1],
            self.epochs_run,
            self.history,
        )


def _rows(tasks: list, members: list[dict], kind: str, width: int) -> list[dict]:
    """What `distill` returns, with NaN metrics (nothing was trained)."""
    nan = float("nan")
    metrics = (
        "train_acc",
        "test_acc",
        "memorized_acc",
        "test_acc_class",
        "independent_acc",
        "teacher_agreement_independent",
        "test_count_class",
        "teacher_independent_acc",
    )
    return [
        {
            "dataset": task.dataset,
            "kind": kind,
            "width": width,
            **member,
            **dict.fromkeys(metrics, nan),
            "chance": 1.0 / task.classes,
            "teacher_memorized": True,
            "teacher_first_perfect": 0,
            "teacher_stop": "budget",
        }
        for task in tasks
        for member in members
    ]


def _sizes(d: int, width: int, hidden_layers: int, classes: int) -> tuple[int, ...]:
    return (d,) + (width,) * hidden_layers + (classes,)


def _shape(family: Any, classes: Any, width: Any, hidden_layers: int, activation: str) -> tuple:
    """(classes, width, hidden_layers, activation) of a training call, from its `family` where it passes one
    (memkd.models.family.MLPFamily) and from its keywords otherwise."""
    if family is not None:
        return (family.classes, family.width, family.hidden_layers, getattr(family, "activation", activation))
    return classes, width, hidden_layers, activation


@contextlib.contextmanager
def recording(calls: list[Call]):
    """Replace train_teacher / train_students / fit everywhere memkd imported them; record calls."""

    def train_teacher(
        x,
        y,
        *,
        classes=None,
        width=None,
        hidden_layers=2,
        max_epochs=1000,
        extra_epochs=0,
        activation="relu",
        family=None,
        **_: Any,
    ):
        classes, width, hidden_layers, activation = _shape(family, classes, width, hidden_layers, activation)
        k = 1 if x.dim() == 2 else x.shape[0]
        n, d = x.shape[-2], x.shape[-1]
        calls.append(
            Call("teacher", k, n, _sizes(d, width, hidden_layers, classes), max_epochs + extra_epochs, own_inputs=True)
        )
        return FakeTeacher(
            FakeModel(k, d, width, classes, hidden_layers, activation),
            torch.ones(k),
            torch.ones(k, dtype=torch.bool),
            torch.zeros(k, dtype=torch.long),
            max_epochs,
            pd.DataFrame(columns=["epoch", "member", "loss", "train_acc"]),
        )

    def train_students(
        x,
        targets=None,
        *,
        kind,
        members,
        epochs,
        classes=None,
        width=None,
        hidden_layers=2,
        activation="relu",
        family=None,
        **_: Any,
    ):
        classes, width, hidden_layers, activation = _shape(family, classes, width, hidden_layers, activation)
        n, d = x.shape[-2], x.shape[-1]
        calls.append(Call(kind, members, n, _sizes(d, width, hidden_layers, classes), epochs, own_inputs=x.dim() == 3))
        return FakeModel(members, d, width, classes, hidden_layers, activation), pd.DataFrame()

    def fit(model, objective, *, n_samples, epochs, **_: Any):
        weights = getattr(model, "weights", None)
        if weights:
            sizes = (weights[0].shape[1],) + tuple(w.shape[2] for w in weights)
            calls.append(Call("fit", weights[0].shape[0], n_samples, sizes, epochs))
        members = weights[0].shape[0] if weights else 1
        return pd.DataFrame(columns=["epoch", "member", "loss", "train_acc"]), torch.zeros(members, dtype=torch.long)

    stubs = {"train_teacher": train_teacher, "train_students": train_students, "fit": fit}
    originals = {name: getattr(mtrain if name == "fit" else mdist, name) for name in stubs}
    import memkd.students as common

    def distill(tasks, splits, *, cfg, kind, width, members, hidden_layers=None, epochs=None, **_: Any):
        """common.distill without its data copies: record the one ensemble it trains, return NaN rows."""
        if isinstance(tasks, common.MemorizationTask):
            tasks, splits = [tasks], [splits]
        task, (train_idx, _) = tasks[0], splits[0]
        calls.append(
            Call(
                kind,
                len(tasks) * len(members),
                len(train_idx),
                _sizes(task.x.shape[-1], width, hidden_layers or cfg.hidden_layers, task.classes),
                epochs or cfg.epochs,
                own_inputs=len(tasks) > 1,
            )
        )
        return _rows(tasks, members, kind, width)

    stubs["distill"], originals["distill"] = distill, common.distill
    patched: list[tuple[Any, str, Any]] = []
    for module in [m for name, m in sys.modules.items() if name.startswith("memkd") and m is not None]:
        for name, stub in stubs.items():
            if getattr(module, name, None) is originals[name]:
                patched.append((module, name, originals[name]))
                setattr(module, name, stub)
    try:
        yield
    finally:
        for module, name, original in patched:
            setattr(module, name, original)


def chapter_runs() -> dict[str, list[tuple[str, Callable[[], Any]]]]:
    """What each chapter trains at profile="paper" (its experiment calls with the notebook's knobs)."""
    from memkd import experiments as ex

    p, cpu = "paper", dict(device="cpu")
    fig2 = ex.logit_distillation.config.PROFILE_VALUES["paper"]
    return {
        "01_toy_2d": [("toy_2d_regions", lambda: ex.toy_2d_regions(p, **cpu)), ("toy_2d", lambda: ex.toy_2d(p, **cpu))],
        "02_logit_distillation": [
            ("soft labels", lambda: ex.logit_distillation(p, **cpu)),
            # the chapter picks the best alpha from the soft run; the largest alpha bounds it
            (
                "hard labels",
                lambda: ex.logit_distillation(
                    p, targets="hard", alphas=[max(fig2["alphas"])], student_widths=[max(fig2["student_widths"])], **cpu
                ),
            ),
        ],
        "03_similarity_scores": [("similarity_distillation", lambda: ex.similarity_distillation(p, **cpu))],
        "04_cifar10": [("cifar_shuffles", None)],
        "05_temperature_lr": [("temperature_lr", lambda: ex.temperature_lr(p, **cpu))],
        "06_dataset_composition": [("dataset_composition", lambda: ex.dataset_composition(p, **cpu))],
        "07_logit_surgery": [("logit_surgery", lambda: ex.logit_surgery(p, **cpu))],
        "08_transformer": [("transformer_distillation", None)],
        "09_open_questions": [
            ("Q1 overlap", lambda: ex.logit_vs_similarity_overlap(p, **cpu)),
            ("Q2 regularization", lambda: ex.teacher_regularization(p, **cpu)),
            ("Q3 architecture", lambda: ex.architecture(p, **cpu)),
            ("Q4 convention", lambda: ex.temperature_convention(p, **cpu)),
            ("Q5 probe, relu", lambda: ex.random_features_probe(p, **cpu)),
            ("Q5 probe, tanh", lambda: ex.random_features_probe(p, activation="tanh", **cpu)),
        ],
        "10_convolutions": [("convolutional_distillation", None)],
        "13_one_hidden_layer": [("one_hidden_layer", lambda: _one_hidden_layer(p))],
    }


def linear_calls() -> dict[str, list[Call]]:
    """The training calls of chapters 11-12 at profile="paper", from their configs (no stubs: their
    least-squares and exact students would otherwise run for real). Linear students of one teacher
    share its inputs, padded to the largest dataset: cost = epochs x 6 x N_max x K x M x D x O."""
    from memkd.config import make_config
    from memkd.experiments.linear_recovery import RecoveryConfig
    from memkd.experiments.temperature_window import WindowConfig

    out: dict[str, list[Call]] = {}
    rec = make_config(RecoveryConfig, "linear_recovery", "paper", {})
    k, d, o = rec.teachers * len(rec.n_over_d), rec.input_dim, 1 if rec.binary else rec.classes
    n = rec.classes * max(rec.per_class(rec.classes))
    shuffles = 2 if rec.shuffle else 1
    calls = [Call("teacher", k, n, (d, o), rec.teacher_epochs)]
    if "soft_labels" in rec.student_kinds:
        calls.append(Call("soft", k * len(rec.rhos) * len(rec.temperatures) * shuffles, n, (d, o), rec.epochs))
    if "least_squares" in rec.student_kinds:
        calls.append(Call("svd", k * len(rec.rhos) * shuffles, n, (d, o), 1))
    out["11_linear_recovery"] = calls
    win = make_config(WindowConfig, "temperature_window", "paper", {})
    calls = []
    for c in win.class_counts:
        k, d = win.teachers * len(win.n_over_d), win.input_dim
        n = c * max(win.per_class(c))
        calls.append(Call("teacher", k, n, (d, c), win.teacher_epochs))
        for dtype in win.dtypes:
            shuffles = 2 if win.shuffle and dtype in win.shuffle_adam_dtypes else 1
            if "adam" in win.solvers:
                calls.append(Call("soft", k * len(win.temperatures) * shuffles, n, (d, c), win.epochs))
            if "exact" in win.solvers:
                calls.append(Call("svd", k * len(win.temperatures) * (2 if win.shuffle else 1), n, (d, c), 1))
    out["12_temperature_window"] = calls
    return out


def _one_hidden_layer(profile: str, **overrides: Any) -> list[Call]:
    """The training calls of one_hidden_layer, counted from its config without running it: at the
    paper's sizes its data alone (5 draws of D and D' per size, up to 250,000 x 1000 each) would need
    about 10 GB. Every teacher is counted as memorized (so every cell trains students) and the
    surgery's two cells are counted at the grid's middle size and variant_rho."""
    import importlib

    module = importlib.import_module("memkd.experiments.one_hidden_layer")
    cfg = module.make_config(module.OneHiddenLayerConfig, "one_hidden_layer", profile, overrides)
    k, m, d, p, c = cfg.teachers, cfg.students, cfg.input_dim, cfg.width, cfg.classes
    t = len(cfg.temperatures)
    calls = []
    for classes, part in [(c, "map")] + [(cc, "classes") for cc in cfg.variant_classes]:
        for n in cfg.per_class_values:
            calls.append(Call("teacher", k, classes * n, (d, p, classes), cfg.teacher_epochs, own_inputs=True))
            rhos = cfg.rhos if part == "map" else (cfg.variant_rho,)
            for rho in rhos:
                control = part == "map" and cfg.shuffle and abs(rho - cfg.variant_rho) < 1e-9 and int(rho * n) >= 2
                calls.append(
                    Call(
                        "soft",
                        k * m * t * (2 if control else 1),
                        classes * int(rho * n),
                        (d, p, classes),
                        cfg.epochs,
                        own_inputs=k > 1,
                    )
                )
            if part == "map":  # the width variants on the first kv teachers, at every fraction
                kv = cfg.variant_teachers or k
                calls += [
                    Call("soft", kv * m * t, c * int(rho * n), (d, w, c), cfg.epochs, own_inputs=kv > 1)
                    for w in cfg.variant_widths
                    for rho in cfg.rhos
                ]
                for w in cfg.equal_widths:
                    calls.append(Call("teacher", kv, c * n, (d, w, c), cfg.teacher_epochs, own_inputs=True))
                    calls += [
                        Call("soft", kv * m * t, c * int(rho * n), (d, w, c), cfg.epochs, own_inputs=kv > 1)
                        for rho in cfg.rhos
                    ]
    if cfg.surgery:
        n, tested = cfg.per_class_values[len(cfg.per_class_values) // 2], k - k // 2
        for _ in range(2):  # the recovery cell and the partial-leak cell
            calls.append(
                Call(
                    "soft",
                    tested * m * t * (1 + len(cfg.tail_fractions)),
                    c * int(cfg.variant_rho * n),
                    (d, p, c),
                    cfg.epochs,
                    own_inputs=tested > 1,
                )
            )
            calls.append(
                Call(
                    "soft",
                    tested * m * t,
                    (c - 1) * int(cfg.variant_rho * n),
                    (d, p, c),
                    cfg.epochs,
                    own_inputs=tested > 1,
                )
            )
    return calls


NOT_MLP = {
    "08_transformer": "all (a transformer: the count is written for MLPs)",
    "10_convolutions": "all (convolutional networks)",
    "04_cifar10": "all (CIFAR-10's 50000 images: preparing them takes minutes on a CPU)",
}


def estimate(only: list[str] | None = None) -> pd.DataFrame:
    """One row per chapter: FLOPs, the largest training call's memory, estimated minutes per GPU.

    only: chapter names to count (default all)."""
    rows = []
    for chapter, runs in chapter_runs().items():
        if only and chapter not in only:
            continue
        calls: list[Call] = []
        problems = []
        for label, run in runs:
            if run is None:
                problems.append(NOT_MLP.get(chapter, "not counted"))
                continue
            try:
                with recording(calls), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    counted = run()
                if isinstance(counted, list) and all(isinstance(c, Call) for c in counted):
                    calls += counted  # a chapter counted from its config (see _one_hidden_layer)
            except Exception as err:  # e.g. data that cannot be had offline
                problems.append(f"{label} ({type(err).__name__}: {str(err).splitlines()[0][:60]})")
        flops = sum(c.flops for c in calls)
        row = {
            "chapter": chapter,
            "training calls": len(calls),
            "PFLOP": flops / 1e15,
            "largest call GiB": max((c.bytes for c in calls), default=0) / 2**30,
        }
        for gpu, rate in ASSUMED_RATES.items():
            row[f"{gpu} min"] = flops / rate / 60
        row["not counted"] = "; ".join(problems)
        rows.append(row)
    for chapter, calls in linear_calls().items():
        flops = sum(c.flops for c in calls)
        row = {
            "chapter": chapter,
            "training calls": len(calls),
            "PFLOP": flops / 1e15,
            "largest call GiB": max(c.bytes for c in calls) / 2**30,
        }
        row.update({f"{gpu} min": flops / rate / 60 for gpu, rate in ASSUMED_RATES.items()})
        row["not counted"] = "least-squares / exact solves as SVDs; every precision at the fp32 rate"
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The table as markdown, with the totals of what was counted."""
    rates = ", ".join(f"{gpu} {rate / 1e12:.1f} TFLOP/s" for gpu, rate in ASSUMED_RATES.items())
    cols = ["chapter", "PFLOP", "largest call GiB"] + [f"{gpu} min" for gpu in ASSUMED_RATES] + ["not counted"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        if r["training calls"] == 0:  # nothing counted: no estimate rather than zeros
            cells = [r["chapter"], "n/a", "n/a"] + ["n/a" for _ in ASSUMED_RATES] + [r["not counted"]]
        else:
            cells = [r["chapter"], f"{r['PFLOP']:.2f}", f"{r['largest call GiB']:.1f}"]
            cells += [f"{r[f'{gpu} min']:.1f}" for gpu in ASSUMED_RATES] + [r["not counted"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    total = ["**counted total**", f"{table['PFLOP'].sum():.2f}", ""]
    total += [f"{table[f'{gpu} min'].sum():.0f}" for gpu in ASSUMED_RATES] + [""]
    lines.append("| " + " | ".join(total) + " |")
    return "\n".join(lines) + f"\n\nAssumed sustained fp32 rates: {rates}.\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="chapters to count (default: all)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = estimate(args.only)
    print(
        f"Estimates (not measurements), memkd {memkd.__version__}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, `python benchmarks/flop_estimates.py` "
        f"({time.perf_counter() - start:.0f} s, no training):\n"
    )
    print(markdown(table))


if __name__ == "__main__":
    main()
