"""The questions the paper leaves open, one function each (chapter 09).

Same contract as `memkd.experiments.figures`: `fn(profile="smoke" | "quick" | "paper", **overrides)
-> tidy DataFrame`, every knob validated before any training, one row per trained student (one row
per *pair* of students for the overlap question).

1. `logit_vs_similarity_overlap` : do logit and similarity students get the same held-out samples right?
2. `teacher_regularization`      : weight decay, and stopping at the first 100% vs training on after.
3. `architecture`                : activation, depth, and teacher/student mismatch.
4. `temperature_convention`      : softening the student's logits with T (paper's text) or not (code).
5. `random_features_probe`       : students with a frozen random first layer, and linear students.

The statistics helpers for these questions live here too (`overlap_test`, `paired_difference`,
`combine_p`, `summarize`). Shapes: E students, N samples of D, C classes, P width.
Left out on purpose: plotting (the chapter does it) and any new training loop beyond the frozen-layer
student, which reuses `memkd.train.fit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from memkd.config import (
    BOOL, POS_INT, int_range, knob, list_of, make_config, one_of, real_interval,
)
from memkd.data import split_per_class
from memkd.seeds import derive_seed
from memkd.experiments.common import (
    MemorizationTask, RandomDataConfig, distill, evaluate_students, member_grid, memorization_task, split,
)
from memkd.losses import soft_cross_entropy, soft_targets
from memkd.metrics import accuracy, nearest_neighbour_predictions
from memkd.models import EnsembleMLP
from memkd.train import fit, teacher_similarity, train_students

# Smallest settings that show the effect in seconds (smoke), a CPU chapter within ~3 minutes on two
# cores (quick: about half the figures' quick scale, several teachers per question), the paper's.
SMOKE = dict(input_dim=100, classes=10, per_class=20, teacher_width=50, teacher_lr=3e-3,
             teacher_epochs=600, student_widths=(50,), alphas=(0.6,), temperatures=(20.0,),
             lrs=(1e-2,), epochs=100, students=3, datasets=2)
QUICK = dict(input_dim=150, classes=20, per_class=20, teacher_width=100, teacher_lr=2e-3,
             teacher_epochs=1000, student_widths=(100,), alphas=(0.6,), temperatures=(20.0,),
             lrs=(3e-3,), epochs=150, students=4, datasets=3)
PAPER = dict(input_dim=1000, classes=100, per_class=100, teacher_width=500, teacher_lr=1e-3,
             teacher_epochs=2000, student_widths=(500,), alphas=(0.6,), temperatures=(20.0,),
             lrs=(1e-3,), epochs=1000, students=10, datasets=3)
PROFILES = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}


@dataclass(frozen=True)
class OpenQuestionConfig(RandomDataConfig):
    """The shared knobs; each question uses one alpha and one student width (the first)."""

    def check(self) -> None:
        super().check()
        for name in ("alphas", "student_widths"):
            if len(getattr(self, name)) != 1:
                self.fail(name, f"must hold exactly one value for {self.experiment}. "
                          f"Got {getattr(self, name)!r} instead.")


def _profiles(**extra: dict) -> dict:
    """PROFILE_VALUES: the shared profiles updated with each profile's question-specific values."""
    return {p: {**PROFILES[p], **extra.get(p, {})} for p in PROFILES}


def _split(task: MemorizationTask, cfg: OpenQuestionConfig):
    return split(task, cfg.alphas[0], cfg)


def _seed(cfg: OpenQuestionConfig, dataset: int, offset: int = 0) -> int:
    return derive_seed(cfg.seed, "probe", dataset, offset)


# --- statistics ----------------------------------------------------------------------------------


def overlap_test(correct_a, correct_b, permutations: int = 2000, seed: int = 0, perms=None) -> dict:
    """Do two groups of students get the *same* samples right more often than by chance?

    correct_a : bool array (A, N) or (N,), correct_b : (B, N) or (N,): who is right on each of N
    held-out samples. Statistic: the mean over all (a, b) pairs of |correct_a & correct_b|.
    Null (independence): the samples of group b are relabelled by one random permutation for all of
    its members at once, which keeps every student's accuracy and the agreement within each group.
    Returns n, acc_a, acc_b (mean accuracies), both (observed statistic), expected (its null
    mean, N * acc_a * acc_b), lift = both / expected, and the one-sided permutation p-value
    (1 + #{permuted >= observed}) / (1 + permutations). `perms` (P, N) reuses permutations
    drawn once (many tests on the same N samples); otherwise they are drawn from `seed`.
    """
    a = np.atleast_2d(np.asarray(correct_a, dtype=float))  # (A, N)
    b = np.atleast_2d(np.asarray(correct_b, dtype=float))  # (B, N)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"overlap_test: both groups need the same samples. Got {a.shape[1]} and {b.shape[1]} instead.")
    n = a.shape[1]
    ma, mb = a.mean(0), b.mean(0)  # (N,) per-sample fraction of each group that is right
    observed = float(ma @ mb)
    if perms is None:
        perms = permutation_matrix(n, permutations, seed)
    null = mb[perms] @ ma  # (P,)
    expected = float(ma.sum() * mb.sum() / n)
    return {"n": n, "acc_a": float(ma.mean()), "acc_b": float(mb.mean()), "both": observed,
            "expected": expected, "lift": observed / expected if expected > 0 else math.nan,
            "p_value": float((1 + (null >= observed - 1e-9).sum()) / (1 + len(perms)))}


def permutation_matrix(n: int, permutations: int, seed: int = 0) -> np.ndarray:
    """(P, N) int array: `permutations` independent random permutations of range(n)."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((permutations, n)), axis=1)


def phi(a, b) -> float:
    """Pearson correlation of two 0/1 vectors (NaN if one of them is constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided paired t-test of mean(a - b) = 0: mean, sem, n of the differences and p_value."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diff = diff[~np.isnan(diff)]
    n = len(diff)
    if n < 2:
        return {"mean": float(diff.mean()) if n else math.nan, "sem": math.nan, "n": n, "p_value": math.nan}
    sem = float(diff.std(ddof=1) / math.sqrt(n))
    p = 1.0 if sem == 0 and diff.mean() == 0 else 0.0 if sem == 0 else float(stats.ttest_1samp(diff, 0.0).pvalue)
    return {"mean": float(diff.mean()), "sem": sem, "n": n, "p_value": p}


def combine_p(p_values: Sequence[float]) -> float:
    """Fisher's combination of independent p-values (one per dataset) into one."""
    p = np.asarray([v for v in p_values if not math.isnan(v)], dtype=float)
    if len(p) == 0:
        return math.nan
    return float(stats.combine_pvalues(np.clip(p, 1e-300, 1.0), method="fisher").pvalue)


def summarize(table: pd.DataFrame, by: Sequence[str] | str, value: str = "test_acc") -> pd.DataFrame:
    """Mean, SEM and n of `value` per group (rows with NaN `value` dropped), for plots and verdicts."""
    by = [by] if isinstance(by, str) else list(by)
    g = table.dropna(subset=[value]).groupby(by, sort=False)[value]
    out = g.agg(mean="mean", sem="sem", n="count").reset_index()
    return out


def _tidy(rows: list[dict], question: str) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table.insert(0, "question", question)
    return table


# --- 1. logit vs similarity students -------------------------------------------------------------


@dataclass(frozen=True)
class OverlapConfig(OpenQuestionConfig):
    similarity_lr: float = knob(3e-3, real_interval(0, 1, "right"), "similarity students' Adam learning rate")
    similarity_epochs: int = knob(300, POS_INT, "similarity students' epochs")
    permutations: int = knob(2000, int_range(100), "permutations of each overlap test")

    PROFILE_VALUES = _profiles(smoke={"similarity_epochs": 150, "permutations": 500},
                               quick={"similarity_lr": 3e-3, "similarity_epochs": 300, "datasets": 4},
                               paper={"similarity_lr": 1e-4, "similarity_epochs": 2000})


def _correct_sets(task: MemorizationTask, model, train_idx, test_idx, kind: str) -> np.ndarray:
    """(E, N_test) bool: which held-out samples each student gets right."""
    with torch.no_grad():
        out = model(task.x)  # (E, N, C)
    y = task.y
    if kind == "similarity":
        pred = nearest_neighbour_predictions(out[:, train_idx], y[train_idx], out[:, test_idx])
    else:
        pred = out[:, test_idx].argmax(-1)
    return (pred == y[test_idx]).cpu().numpy()


def _students_with_model(task, train_idx, test_idx, cfg, kind, members, seed, epochs=None):
    """Train E students like `distill` does, and return their correct sets (E, N_test) on the held-out part."""
    dev = task.x.device
    temps = torch.tensor([m.get("temperature", 1.0) for m in members], dtype=torch.float32, device=dev)
    lrs = torch.tensor([m["lr"] for m in members], dtype=torch.float32, device=dev)
    if kind == "soft":
        targets = soft_targets(task.logits[train_idx].unsqueeze(0), temps)
    else:
        targets = teacher_similarity(task.logits[train_idx].unsqueeze(0))[0]
    model, _ = train_students(task.x[train_idx], targets, kind=kind, classes=task.classes,
                              width=cfg.student_widths[0], members=len(members), lrs=lrs,
                              epochs=epochs or cfg.epochs, temperatures=temps, hidden_layers=cfg.hidden_layers,
                              activation=cfg.activation, soften_student=cfg.soften_student,
                              batch_size=cfg.batch_size, seed=seed)
    return _correct_sets(task, model, train_idx, test_idx, kind)


def logit_vs_similarity_overlap(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q1: overlap of the held-out samples that logit ("soft") and similarity students get right.

    Per dataset one teacher and one split; `students` soft students and `students` similarity
    students. One row per pair of students: pair ("soft-soft", "soft-similarity",
    "similarity-similarity"), student_a, student_b, n, acc_a, acc_b, both, expected, lift, phi,
    p_value (permutation test of that pair), and group_p_value: the dataset's joint test of the
    pair type (`overlap_test` with each group as a whole; for within-kind pairs, the first half of
    the students against the second half).
    """
    cfg = make_config(OverlapConfig, "logit_vs_similarity_overlap", profile, overrides)
    rows: list[dict] = []
    for dataset in range(cfg.datasets):
        task = memorization_task(cfg, dataset)
        train_idx, test_idx = _split(task, cfg)
        seed = _seed(cfg, dataset)
        soft = _students_with_model(task, train_idx, test_idx, cfg, "soft", member_grid(
            temperature=cfg.temperatures[:1], lr=cfg.lrs[:1], student=range(cfg.students)), seed)
        sim = _students_with_model(task, train_idx, test_idx, cfg, "similarity", member_grid(
            lr=(cfg.similarity_lr,), student=range(cfg.students)), seed + 1, epochs=cfg.similarity_epochs)
        half = cfg.students // 2
        perms = permutation_matrix(len(test_idx), cfg.permutations, seed)  # shared by this dataset's tests
        groups = {"soft-soft": (soft, soft, soft[:half], soft[half:]),
                  "soft-similarity": (soft, sim, soft, sim),
                  "similarity-similarity": (sim, sim, sim[:half], sim[half:])}
        for pair, (a, b, ga, gb) in groups.items():
            group_p = overlap_test(ga, gb, perms=perms)["p_value"] if len(ga) and len(gb) else math.nan
            for i in range(len(a)):
                for j in range(len(b)):
                    if a is b and j <= i:
                        continue
                    t = overlap_test(a[i], b[j], perms=perms)
                    rows.append({"dataset": dataset, "alpha": cfg.alphas[0], "width": cfg.student_widths[0],
                                 "temperature": cfg.temperatures[0], "epochs": cfg.epochs,
                                 "pair": pair, "student_a": i, "student_b": j, **t, "phi": phi(a[i], b[j]),
                                 "group_p_value": group_p, "chance": 1.0 / task.classes,
                                 "teacher_independent_acc": task.teacher_independent_acc})
    return _tidy(rows, "overlap")


# --- 2. regularized teachers ---------------------------------------------------------------------


@dataclass(frozen=True)
class RegularizationConfig(OpenQuestionConfig):
    weight_decays: tuple = knob((0.0, 1e-3, 1e-2), list_of(real_interval(0, 1, "left")),
                                "teacher's L2 weight decay (Adam's, added to the gradient)")
    extra_epochs_values: tuple = knob((0, 300), list_of(int_range(0)),
                                      "epochs the teacher trains on after its first 100% (0: stop there)")

    PROFILE_VALUES = _profiles(smoke={"extra_epochs_values": (0, 200)},
                               quick={"extra_epochs_values": (0, 300), "datasets": 2},
                               paper={"extra_epochs_values": (0, 2000)})


def _teacher_stats(task: MemorizationTask, temperature: float) -> dict:
    """How peaked the teacher's soft labels are: logit norm and mean top probability at T."""
    with torch.no_grad():
        probs = soft_targets(task.logits, temperature)  # (N, C)
    return {"teacher_logit_norm": float(task.logits.norm(dim=-1).mean()),
            "teacher_top_prob": float(probs.max(-1).values.mean()),
            "teacher_train_acc": float(task.teacher.train_acc.min())}


def teacher_regularization(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q2: teachers with weight decay, stopped at their first 100% or trained `extra_epochs` after.

    Every (weight_decay, extra_epochs) teacher starts from the same initialisation on the same D.
    One row per student (soft labels, the profile's T and lr) with weight_decay, extra_epochs,
    teacher_memorized, teacher_train_acc, teacher_logit_norm, teacher_top_prob and the metrics.
    A teacher that ends below 100% on D gets one row with teacher_memorized=False and NaN metrics:
    no student learns from it.
    """
    cfg = make_config(RegularizationConfig, "teacher_regularization", profile, overrides)
    rows: list[dict] = []
    for dataset in range(cfg.datasets):
        for wd in cfg.weight_decays:
            for extra in cfg.extra_epochs_values:
                knobs = {"dataset": dataset, "weight_decay": wd, "extra_epochs": extra, "alpha": cfg.alphas[0]}
                task = memorization_task(cfg, dataset, require_memorization=False,
                                         teacher_overrides={"weight_decay": wd, "extra_epochs": extra})
                teacher = _teacher_stats(task, cfg.temperatures[0])
                if not task.memorized:
                    rows.append({**knobs, **teacher, "teacher_memorized": False, "chance": 1.0 / task.classes,
                                 "test_acc": math.nan, "independent_acc": math.nan})
                    continue
                train_idx, test_idx = _split(task, cfg)
                members = member_grid(temperature=cfg.temperatures[:1], lr=cfg.lrs[:1], student=range(cfg.students))
                for r in distill(task, (train_idx, test_idx), cfg=cfg, kind="soft", width=cfg.student_widths[0],
                                 members=members, setting=(cfg.alphas[0],)):
                    rows.append({**r, **knobs, **teacher})
    return _tidy(rows, "regularization")


# --- 3. architecture -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchitectureConfig(OpenQuestionConfig):
    activations: tuple = knob(("relu", "tanh"), list_of(one_of("relu", "tanh")),
                              "hidden activations of teacher and student (both the same)")
    depths: tuple = knob((1, 2, 3), list_of(int_range(1, 4)), "hidden layers of teacher and student (both the same)")
    width_factors: tuple = knob((0.5, 2.0), list_of(real_interval(0, math.inf)),
                                "student width / teacher width for the mismatched students")
    mismatch: bool = knob(True, BOOL, "also train students narrower, wider, shallower, deeper than the teacher")

    PROFILE_VALUES = _profiles(quick={"datasets": 2})

    def check(self) -> None:
        super().check()
        if self.mismatch and self.hidden_layers < 2:
            self.fail("hidden_layers", f"must be >= 2 when mismatch=True (a shallower student needs a layer "
                      f"to lose). Got {self.hidden_layers!r} instead.")


def architecture(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q3: does the effect survive other activations, depths and teacher/student mismatch?

    part "activation": teacher and student share the activation (depth `hidden_layers`).
    part "depth": teacher and student share the depth (activation `activation`).
    part "mismatch": the reference teacher (activation, hidden_layers, teacher_width) and students
    that are matched, narrower/wider (width_factors), shallower/deeper (one layer), or use the
    other activation. Students that are the same configuration (the reference appears in all three
    parts) are trained once and reported in each part. One row per (part, variant, student) with
    teacher_activation, teacher_depth, student_activation, student_depth, width and the metrics.
    """
    cfg = make_config(ArchitectureConfig, "architecture", profile, overrides)
    ref_act, ref_depth, p = cfg.activation, cfg.hidden_layers, cfg.teacher_width
    other = "tanh" if ref_act == "relu" else "relu"
    plan = [("activation", a, (a, ref_depth), (a, ref_depth, p)) for a in cfg.activations]
    plan += [("depth", f"{d} hidden", (ref_act, d), (ref_act, d, p)) for d in cfg.depths]
    if cfg.mismatch:
        plan += [("mismatch", "matched", (ref_act, ref_depth), (ref_act, ref_depth, p))]
        plan += [("mismatch", "narrower" if f < 1 else "wider", (ref_act, ref_depth),
                  (ref_act, ref_depth, max(1, int(round(f * p))))) for f in cfg.width_factors]
        plan += [("mismatch", "shallower", (ref_act, ref_depth), (ref_act, ref_depth - 1, p)),
                 ("mismatch", "deeper", (ref_act, ref_depth), (ref_act, ref_depth + 1, p)),
                 ("mismatch", f"{other} student", (ref_act, ref_depth), (other, ref_depth, p))]
    rows: list[dict] = []
    for dataset in range(cfg.datasets):
        teachers: dict[tuple, MemorizationTask] = {}
        students: dict[tuple, list[dict]] = {}
        for part, variant, (t_act, t_depth), (s_act, s_depth, s_width) in plan:
            if (t_act, t_depth) not in teachers:
                teachers[(t_act, t_depth)] = memorization_task(
                    cfg, dataset, require_memorization=False,
                    teacher_overrides={"activation": t_act, "hidden_layers": t_depth})
            task = teachers[(t_act, t_depth)]
            knobs = {"dataset": dataset, "part": part, "variant": variant, "teacher_activation": t_act,
                     "teacher_depth": t_depth, "teacher_width": p, "student_activation": s_act,
                     "student_depth": s_depth, "alpha": cfg.alphas[0]}
            if not task.memorized:
                rows.append({**knobs, "width": s_width, "teacher_memorized": False, "chance": 1.0 / task.classes,
                             "teacher_train_acc": float(task.teacher.train_acc.min()), "test_acc": math.nan})
                continue
            key = (t_act, t_depth, s_act, s_depth, s_width)
            if key not in students:
                train_idx, test_idx = _split(task, cfg)
                members = member_grid(temperature=cfg.temperatures[:1], lr=cfg.lrs[:1], student=range(cfg.students))
                students[key] = distill(task, (train_idx, test_idx), cfg=cfg, kind="soft", width=s_width,
                                        members=members, setting=(cfg.alphas[0], s_depth, s_act),
                                        hidden_layers=s_depth, activation=s_act)
            rows += [{**r, **knobs, "teacher_train_acc": 1.0} for r in students[key]]
    return _tidy(rows, "architecture")


# --- 4. temperature convention -------------------------------------------------------------------


@dataclass(frozen=True)
class ConventionConfig(OpenQuestionConfig):
    PROFILE_VALUES = _profiles(smoke={"temperatures": (1.0, 20.0)},
                               quick={"temperatures": (1.0, 3.0, 10.0, 30.0), "students": 3, "datasets": 2},
                               paper={"temperatures": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0), "students": 5})


def temperature_convention(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q4: soften_student False (the released code, the book's choice) vs True (the paper's text).

    Same teacher, split and student initialisations for both conventions at every temperature.
    One row per student: soften_student, temperature, student and the metrics.
    """
    cfg = make_config(ConventionConfig, "temperature_convention", profile, overrides)
    rows: list[dict] = []
    for dataset in range(cfg.datasets):
        task = memorization_task(cfg, dataset)
        train_idx, test_idx = _split(task, cfg)
        members = member_grid(temperature=cfg.temperatures, lr=cfg.lrs[:1], student=range(cfg.students))
        for soften in (False, True):
            for r in distill(task, (train_idx, test_idx), cfg=replace(cfg, soften_student=soften), kind="soft",
                             width=cfg.student_widths[0], members=members, setting=(cfg.alphas[0],)):
                rows.append({**r, "soften_student": soften, "alpha": cfg.alphas[0]})
    return _tidy(rows, "convention")


# --- 5. random features and linear students ------------------------------------------------------


@dataclass(frozen=True)
class ProbeConfig(OpenQuestionConfig):
    feature_factor: int = knob(4, POS_INT, "width of the frozen random-feature layer / student width")
    probe_lr: float = knob(1e-2, real_interval(0, 1, "right"), "learning rate of the linear and random-feature students")

    PROFILE_VALUES = _profiles(quick={"datasets": 2})


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


def train_probe_students(x, probs, *, classes: int, width: int, hidden_layers: int, activation: str,
                         frozen_layers: int, members: int, lr: float, epochs: int, seed: int) -> EnsembleMLP:
    """Soft-label students whose first `frozen_layers` layers keep their random initialisation.

    x (N_train, D), probs (N_train, C) = sigma_T(teacher logits). Frozen parameters get no
    gradient, so `BatchedAdam` (which skips parameters without a gradient) never moves them.
    """
    model = EnsembleMLP(members, x.shape[-1], width, classes, hidden_layers, activation, seed=seed).to(x.device)
    for layer in range(frozen_layers):
        model.weights[layer].requires_grad_(False)
        model.biases[layer].requires_grad_(False)
    labels = probs.argmax(-1)

    def objective(idx):
        out = model(x)  # (E, N_train, C)
        return soft_cross_entropy(out, probs), accuracy(out.detach(), labels)

    fit(model, objective, n_samples=x.shape[0], epochs=epochs, lr=lr, seed=seed)
    return model


def random_features_probe(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Q5: how simple is the structure that leaks? Four students on the same teachers and splits.

    variant "trained": the usual student (all layers train; the reference).
    "frozen_first": the same network with its first layer frozen at its random initialisation.
    "random_features": one frozen random ReLU layer of width feature_factor * P, a trained linear readout.
    "linear": one hidden layer without activation, i.e. a linear map D -> C.
    One row per student: variant, trainable (parameters that train), teacher_activation,
    teacher_linear_r2 (`linear_fit_r2`: how much of the teacher's logits on fresh D' a linear map
    fitted on D explains) and the metrics. `activation` sets the teacher's (and the trained and
    frozen_first students') activation.
    """
    cfg = make_config(ProbeConfig, "random_features_probe", profile, overrides)
    p, t = cfg.student_widths[0], cfg.temperatures[0]
    variants = [("trained", p, cfg.hidden_layers, cfg.activation, 0, cfg.lrs[0]),
                ("frozen_first", p, cfg.hidden_layers, cfg.activation, 1, cfg.lrs[0]),
                ("random_features", cfg.feature_factor * p, 1, "relu", 1, cfg.probe_lr),
                ("linear", p, 1, "linear", 0, cfg.probe_lr)]
    rows: list[dict] = []
    for dataset in range(cfg.datasets):
        task = memorization_task(cfg, dataset)
        train_idx, test_idx = _split(task, cfg)
        probs = soft_targets(task.logits[train_idx], t)  # (N_train, C)
        r2 = linear_fit_r2(task)
        for name, width, depth, act, frozen, lr in variants:
            model = train_probe_students(task.x[train_idx], probs, classes=task.classes, width=width,
                                         hidden_layers=depth, activation=act, frozen_layers=frozen,
                                         members=cfg.students, lr=lr, epochs=cfg.epochs, seed=_seed(cfg, dataset))
            trainable = sum(int(w[0].numel()) for w in model.parameters() if w.requires_grad)
            with torch.no_grad():
                metrics = evaluate_students(task, model(task.x), model(task.x_independent), train_idx, test_idx, "soft")
            for s in range(cfg.students):
                rows.append({"dataset": dataset, "variant": name, "width": width, "student_depth": depth,
                             "student_activation": act, "frozen_layers": frozen, "trainable": trainable,
                             "temperature": t, "lr": lr, "student": s, "alpha": cfg.alphas[0],
                             **{k: float(v[s]) for k, v in metrics.items()}, "chance": 1.0 / task.classes,
                             "teacher_activation": cfg.activation, "teacher_linear_r2": r2,
                             "teacher_independent_acc": task.teacher_independent_acc})
    return _tidy(rows, "probe")


__all__ = [
    "logit_vs_similarity_overlap", "teacher_regularization", "architecture", "temperature_convention",
    "random_features_probe", "linear_fit_r2", "overlap_test", "permutation_matrix", "phi", "paired_difference", "combine_p", "summarize",
    "train_probe_students",
]
