"""The audit a user runs on their own model: how much of its memorized training data its served
probabilities leak to a distilled student, under each defence of `memkd.defences`, and what each
defence costs in fidelity.

Shape letters (see `memkd`): N samples, D input dimension, C classes, E students.

`audit(model_fn, inputs, labels, defences=[...])` takes any callable that returns logits (a torch
module trained outside memkd, or several: the seeds of its training), the inputs it was trained on
and their labels. For every model and repeat it splits the points per class (a fraction `alpha` for
the student, the rest held out), serves the model's answer on the student's part under every
defence, trains `students` MLP students per defence on the served soft labels (one batched
ensemble) and measures each: its accuracy on the held-out memorized points, on fresh draws, and its
agreement with the model there. Everything is validated before the model is called for training
data; every ValueError names the argument (`memkd.config.invalid`). `memkd.audit` is this function.
Left out: models that are not classifiers of flat vectors (images are flattened by the caller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import Tensor

from memkd.config import (
    POS_INT,
    ExperimentConfig,
    alpha_knob,
    epochs_knob,
    fresh_knob,
    hidden_layers_knob,
    invalid,
    knob,
    lr_knob,
    make_config,
    students_knob,
    temperature_knob,
    width_knob,
)
from memkd.defences import withheld_knob
from memkd.declare import COLUMNS, experiment_doc
from memkd.defences import DefenceLike, parse
from memkd.data.random_vectors import split_per_class
from memkd.device import resolve_device
from memkd.distillation import MLPFamily, train_students
from memkd.metrics import accuracy, agreement
from memkd.seeds import derive_seed
from memkd.tables import TEACHER_ID


@dataclass(frozen=True)
class AuditConfig(ExperimentConfig):
    """The audit's knobs (its defences, model and data are arguments of `audit`)."""

    alpha: float = alpha_knob(0.6)
    temperature: float = temperature_knob(
        10.0, ", applied by the student to what the server returns (q^(1/T) normalized)"
    )
    repeats: int = knob(3, POS_INT, "splits of each model's points (new split, new students each)")
    students: int = students_knob(2, "model, repeat and defence")
    width: int = width_knob(128, "the MLP students")
    hidden_layers: int = hidden_layers_knob(2, "the MLP students (0: linear)", least=0)
    epochs: int = epochs_knob(200, "students'", "full-batch Adam epochs")
    lr: float = lr_knob(3e-3, "students'")
    withheld: str = withheld_knob()
    fresh: int = fresh_knob(1000, note=" drawn when fresh_inputs is not given")

    TABLE_COLUMNS = (
        TEACHER_ID,
        "model",
        "repeat",
        "defence",
        "student",
        "alpha",
        "temperature",
        "classes",
        "train_acc",
        "test_acc",
        "independent_acc",
        "leak",
        "fidelity",
        "fresh_source",
        "chance",
    )


def _tensor(value: Any, name: str, dims: int, dtype: torch.dtype | None) -> Tensor:
    """`value` as a tensor of `dims` dimensions, else invalid(name)."""
    try:
        t = torch.as_tensor(value) if dtype is None else torch.as_tensor(value).to(dtype)
    except (TypeError, ValueError, RuntimeError):
        raise invalid(name, "audit", f"a tensor or array with {dims} dimension(s)", type(value).__name__) from None
    if t.dim() != dims:
        raise invalid(name, "audit", f"a tensor or array with {dims} dimension(s)", tuple(t.shape))
    return t


@torch.no_grad()
def _logits(model_fn: Callable, x: Tensor, n: int, index: int, chunk: int = 4096) -> Tensor:
    """The model's logits (N, C) on x (N, D), `chunk` rows at a time, checked against (n, C >= 2)."""
    outs = []
    for i in range(0, len(x), chunk):
        out = model_fn(x[i : i + chunk])
        outs.append(torch.as_tensor(out).detach().to(torch.float64))
    z = torch.cat(outs) if outs else torch.empty(0)
    if z.dim() != 2 or z.shape[0] != n or z.shape[1] < 2:
        raise invalid(
            "model_fn",
            "audit",
            f"a callable returning logits of shape (N, C) with N = {n} (one row per "
            f"input) and C >= 2; model {index} returned shape",
            tuple(z.shape),
        )
    return z


def _fresh(x: Tensor, count: int, classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """`count` inputs drawn uniformly within each feature's range in x (N, D), with uniformly random labels."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "independent", "audit"))
    low, high = x.min(0).values, x.max(0).values
    u = torch.rand(count, x.shape[1], generator=gen, dtype=torch.float64).to(x.dtype)
    return low + u * (high - low), torch.randint(classes, (count,), generator=gen)


def audit(
    model_fn: Callable | Sequence[Callable],
    inputs: Any,
    labels: Any,
    defences: Sequence[DefenceLike] = ("none",),
    *,
    fresh_inputs: Any = None,
    fresh_labels: Any = None,
    **knobs: Any,
) -> pd.DataFrame:
    """Audit a model's served probabilities: how much each defence leaves of the leak, at what fidelity."""
    cfg = make_config(AuditConfig, "audit", "quick", knobs)
    models = list(model_fn) if isinstance(model_fn, (list, tuple)) else [model_fn]
    if not models or not all(callable(m) for m in models):
        raise invalid("model_fn", "audit", "a callable returning logits (N, C), or a non-empty list of them", model_fn)
    x = _tensor(inputs, "inputs", 2, torch.float32)
    y = _tensor(labels, "labels", 1, torch.int64)
    if len(y) != len(x):
        raise invalid("labels", "audit", f"one label per input (N = {len(x)})", len(y))
    if isinstance(defences, (str, bytes)) or not isinstance(defences, Sequence) or not len(defences):
        raise invalid(
            "defences",
            "audit",
            "a non-empty list of defences (strings such as 'top5|logprob_round2', transforms or Defence objects)",
            defences,
        )
    chain = [parse(d) for d in defences]
    if fresh_labels is not None and fresh_inputs is None:
        raise invalid("fresh_labels", "audit", "given only with fresh_inputs", "labels without inputs")
    device = resolve_device(cfg.device)
    # the models see the inputs where the caller keeps them (their own device); the audit moves what they return
    home = x.device
    logits = [_logits(m, x, len(x), i).to(device) for i, m in enumerate(models)]  # each (N, C)
    x = x.to(device)
    classes = logits[0].shape[1]
    if any(z.shape[1] != classes for z in logits):
        raise invalid("model_fn", "audit", f"models that all return C = {classes} logits", [z.shape[1] for z in logits])
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise invalid(
            "labels",
            "audit",
            f"class indices in [0, C - 1 = {classes - 1}] (C from the model's output)",
            (int(y.min()), int(y.max())),
        )
    for d in chain:
        d.check(classes)
    counts = torch.bincount(y, minlength=classes)
    seen = (cfg.alpha * counts[counts > 0].double()).round()
    if bool((seen < 1).any() or (seen > counts[counts > 0].double() - 1).any()):
        raise invalid(
            "alpha",
            "audit",
            "a fraction that leaves every class at least one point for the student "
            f"and one held out (class sizes {counts.min().item()}..{counts.max().item()})",
            cfg.alpha,
        )
    if fresh_inputs is None:
        xf, yf, source = *_fresh(x.cpu(), cfg.fresh, classes, cfg.seed), "drawn"
        xf = xf.to(home)
    else:
        xf = _tensor(fresh_inputs, "fresh_inputs", 2, torch.float32)
        if xf.shape[1] != x.shape[1]:
            raise invalid("fresh_inputs", "audit", f"inputs of dimension D = {x.shape[1]}", tuple(xf.shape))
        yf = None if fresh_labels is None else _tensor(fresh_labels, "fresh_labels", 1, torch.int64)
        if yf is not None and len(yf) != len(xf):
            raise invalid("fresh_labels", "audit", f"one label per fresh input ({len(xf)})", len(yf))
        source = "given" if yf is not None else "given, no labels"
    fresh_logits = [_logits(m, xf, len(xf), i).to(device) for i, m in enumerate(models)]
    xf = xf.to(device)
    y, rows = y.to(device), []
    for i, z in enumerate(logits):
        for r in range(cfg.repeats):
            rows += _students(cfg, i, r, x, y, z.to(device), xf, yf, fresh_logits[i], chain, source)
    table = pd.DataFrame(rows)
    unit = (
        table["model"].astype(str)
        if len(models) > 1
        else table["model"].astype(str) + "/" + table["repeat"].astype(str)
    )
    table.insert(0, TEACHER_ID, f"{cfg.seed}:" + unit)
    table.attrs["config"] = {
        "experiment": "AuditConfig",
        **{k: v for k, v in cfg.asdict().items()},
        "defences": [d.spec() for d in chain],
        "models": len(models),
    }
    return table


def _students(
    cfg: AuditConfig,
    model: int,
    repeat: int,
    x: Tensor,
    y: Tensor,
    z: Tensor,
    xf: Tensor,
    yf: Tensor | None,
    zf: Tensor,
    chain: list,
    source: str,
) -> list[dict]:
    """Train and measure the students of one model and repeat: every defence x `cfg.students` seeds."""
    train_idx, test_idx = split_per_class(y, cfg.alpha, derive_seed(cfg.seed, "split", "audit", model, repeat))
    m = cfg.students
    served = [
        d.targets(
            z[train_idx],
            cfg.temperature,
            seed=derive_seed(cfg.seed, "probe", "audit", model, repeat, j),
            withheld=cfg.withheld,
        )
        for j, d in enumerate(chain)
    ]  # each (N_tr, C)
    targets = torch.stack([t for t in served for _ in range(m)]).to(torch.float32)  # (E, N_tr, C)
    seeds = [
        derive_seed(cfg.seed, "student", "audit", model, repeat, j, s) for j in range(len(chain)) for s in range(m)
    ]
    family = MLPFamily(x.shape[1], cfg.width, z.shape[1], cfg.hidden_layers)
    net, _ = train_students(
        x[train_idx],
        targets,
        kind="soft",
        members=len(seeds),
        lrs=cfg.lr,
        epochs=cfg.epochs,
        family=family,
        seed=seeds,
        progress=cfg.progress,
    )
    with torch.no_grad():
        out, out_f = net(x), net(xf)  # (E, N, C), (E, N', C)
    train_acc, test_acc = accuracy(out[:, train_idx], y[train_idx]), accuracy(out[:, test_idx], y[test_idx])
    fresh_acc = accuracy(out_f, yf.to(out_f.device)) if yf is not None else torch.full_like(test_acc, math.nan)
    fidelity = agreement(out_f, zf.unsqueeze(0))
    chance = 1.0 / z.shape[1]
    rows = []
    for e in range(len(seeds)):
        rows.append(
            {
                "model": model,
                "repeat": repeat,
                "defence": chain[e // m].spec(),
                "student": e % m,
                "alpha": cfg.alpha,
                "temperature": cfg.temperature,
                "classes": z.shape[1],
                "train_acc": float(train_acc[e]),
                "test_acc": float(test_acc[e]),
                "independent_acc": float(fresh_acc[e]),
                "leak": float(test_acc[e] - fresh_acc[e]),
                "fidelity": float(fidelity[e]),
                "fresh_source": source,
                "chance": chance,
            }
        )
    return rows


_SUMMARY = """Audit a model's served probabilities: the leak of its memorized points under each defence, and the fidelity.

model_fn : a callable (N, D) -> logits (N, C) (a torch module trained outside memkd), or a list of them
    (the seeds of its training: then each model is a unit of replication, its repeats averaged within it;
    with one model each repeat is a unit).
inputs : (N, D) the points the model was trained on; labels : (N,) their classes in [0, C).
defences : a list of `memkd.defences` defences, e.g. ["none", "top1", "top5|logprob_round2", "label"].
fresh_inputs, fresh_labels : fresh draws (N', D), (N',) (e.g. the model's test set): the student's own
    accuracy there is the leak's baseline, and agreement with the model there is the fidelity.
    Without them, N' = `fresh` inputs are drawn uniformly within each feature's range of `inputs`, with
    uniformly random labels (right for random data; for structured data pass a test set). With inputs but
    no labels, independent_acc and leak are NaN.
The unit (teacher_id below): "{seed}:{model}" with several models, "{seed}:{model}/{repeat}" with one;
`memkd.summarize(table, ["leak", "fidelity"], by=["defence"])` averages students within it first.
Bad input (k < 1 or > C, negative decimals or sigma, a model whose output is not (N, C), labels of
another length) raises ValueError naming the argument before any student trains.

>>> import torch, memkd
>>> torch.manual_seed(0) and None
>>> x, y = torch.rand(60, 8), torch.arange(60) % 3
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))  # your model
>>> table = memkd.audit(net, x, y, ["none", "top1", "label"], repeats=2, students=1, epochs=5, width=8)
>>> table.groupby("defence").size().to_dict()
{'label': 2, 'none': 2, 'top1': 2}
>>> sorted(table.columns)[:4]
['alpha', 'chance', 'classes', 'defence']
"""

audit.__doc__ = experiment_doc(_SUMMARY, AuditConfig).replace(
    "profile : one of ('smoke', 'quick', 'paper') (default 'quick'): the sizes below; keyword overrides change "
    "any knob.",
    "knobs (keywords):",
)
AUDIT_COLUMNS = {c: COLUMNS[c] for c in AuditConfig.TABLE_COLUMNS if c in COLUMNS}

__all__ = ["AUDIT_COLUMNS", "AuditConfig", "audit"]
