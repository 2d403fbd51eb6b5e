"""Fig 8 beyond random vectors: a 1-layer transformer memorizes modular addition, and students learn from it.

Same contract as the random-data figures (`memkd.experiments.fig2_logits`); teachers are the unit of replication (see
`memkd.experiments.cifar` for the pattern).

transformer_distillation (Fig 8, appendix A.4): modular addition `a b =`; teacher k (a 1-layer
    transformer) memorizes its own random D of all k^2 pairs, the same number of pairs of every
    answer; students of the same architecture fit sigma_T(teacher logits) on alpha of each answer
    of D, at several temperatures; `test_acc` on the rest of D, `independent_acc` the student on
    the pairs outside D (the trivial baseline of modular addition, which has a learnable rule),
    `teacher_independent_acc` the teacher there (a check: how far the teacher has grokked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from memkd.declare import experiment
from memkd.config import (
    POS_INT,
    ExperimentConfig,
    alphas_knob,
    chunk_knob,
    epochs_knob,
    heads_knob,
    int_range,
    knob,
    lrs_knob,
    make_config,
    memorized_fraction_knob,
    students_knob,
    teacher_epochs_knob,
    teacher_stop_knob,
    teachers_knob,
    temperatures_knob,
    weight_decay_knob,
)
from memkd.data.random_vectors import split_per_class
from memkd.device import resolve_device
from memkd.device_memory import chunks
from memkd.students import member_grid
from memkd.tables import tidy
from memkd.metrics import accuracy
from memkd.seeds import derive_seed

# --- Fig 8: a 1-layer transformer on modular addition ----------------------------------------------


@dataclass(frozen=True)
class ModularTransformerConfig(ExperimentConfig):
    """The knobs every modular-addition experiment shares: the modular-addition problem and the network of Nanda et al."""

    modulus: int = knob(113, int_range(3), "k: numbers 0..k-1, the answer (a + b) mod k")
    d_model: int = knob(128, POS_INT, "residual width (Nanda et al.: 128)")
    heads: int = heads_knob(4, "must divide d_model")
    d_mlp: int = knob(512, POS_INT, "MLP width (Nanda et al.: 512)")

    def check(self) -> None:
        if self.d_model % self.heads:
            self.fail("heads", f"must divide d_model={self.d_model}. Got {self.heads!r} instead.")

    def check_split(self, name: str, value: float, taken: int, total: int, what: str) -> None:
        """Fail knob `name` (= `value`) when it puts `taken` of `total` pairs (`what`) in D: D needs at
        least 2 of them, and one must stay outside."""
        if taken < 2 or taken > total - 1:
            self.fail(
                name,
                f"gives {taken} of the {total} pairs{what} in D: D needs at least 2 pairs{what} and "
                f"one pair{what} must stay outside. Got {value!r} instead.",
            )

    def check_fractions(self, name: str, fractions: tuple, size: int, what: str, empty: str) -> None:
        """Fail knob `name` when one of its `fractions` of `size` pairs in D (`what`) leaves the
        student's part or the held-out part without a pair (`empty` says what is then empty)."""
        for f in fractions:
            k = int(round(f * size))
            if k < 1 or k > size - 1:
                self.fail(name, f"contains {f}, which with {size} pairs{what} in D leaves {empty}.")


@dataclass(frozen=True)
class TransformerConfig(ModularTransformerConfig):
    memorized_fraction: float = memorized_fraction_knob(0.3, "the k pairs of each answer")
    teachers: int = teachers_knob(5)
    teacher_epochs: int = teacher_epochs_knob(5000, "full-batch step")
    teacher_stop: str = teacher_stop_knob()
    teacher_extra_epochs: int = knob(0, int_range(0), "teacher steps after its budget (towards grokking)")
    alphas: tuple = alphas_knob((0.5,), "each answer class of D")
    temperatures: tuple = temperatures_knob((1.0, 2.0, 5.0, 10.0, 20.0))
    lrs: tuple = lrs_knob((1e-3,), "AdamW")
    weight_decay: float = weight_decay_knob(1.0)
    epochs: int = epochs_knob(1000, unit="full-batch steps")
    students: int = students_knob(10, "teacher and temperature")
    chunk: Any = chunk_knob("one alpha")

    TABLE_COLUMNS = (
        "dataset",
        "alpha",
        "temperature",
        "lr",
        "student",
        "modulus",
        "train_acc",
        "test_acc",
        "independent_acc",
        "teacher_independent_acc",
        "chance",
        "teacher_stop",
        "teacher_first_perfect",
        "teacher_epochs_run",
        "teacher_extra_epochs",
        "n_memorized",
        "n_outside",
        "ratio",
    )
    PROFILE_VALUES = {
        "smoke": dict(
            modulus=13,
            memorized_fraction=0.6,
            teachers=3,
            d_model=32,
            heads=4,
            d_mlp=64,
            teacher_epochs=600,
            temperatures=(1.0, 10.0),
            epochs=300,
            students=2,
        ),
        "quick": dict(
            modulus=23,
            memorized_fraction=0.5,
            teachers=5,
            teacher_epochs=400,
            temperatures=(1.0, 5.0, 20.0),
            epochs=250,
            students=2,
        ),
        "paper": dict(
            modulus=113,
            memorized_fraction=0.3,
            teachers=5,
            alphas=(0.5,),
            temperatures=(1.0, 2.0, 5.0, 10.0, 20.0),
            epochs=2000,
            students=4,
        ),
    }

    @property
    def per_answer(self) -> int:
        """Pairs of each answer in D."""
        return int(round(self.memorized_fraction * self.modulus))

    def check(self) -> None:
        super().check()
        self.check_split(
            "memorized_fraction", self.memorized_fraction, self.per_answer, self.modulus, " of each answer"
        )
        self.check_fractions(
            "alphas",
            self.alphas,
            self.per_answer,
            " of each answer",
            "an answer empty in the student's part or in the held-out part",
        )


def transformer_tasks(cfg: TransformerConfig, device: torch.device):
    """Draw every teacher's D and train the teachers as one ensemble.

    Returns (data, teacher): data is one `memkd.data.tokens.ModularAddition` per teacher, teacher a
    `memkd.distillation.Teacher` of the `TransformerFamily` with one member per D.
    """
    from memkd.distillation import train_teacher
    from memkd.data.tokens import make_modular_addition
    from memkd.models.transformer import TransformerFamily

    data = [
        make_modular_addition(cfg.modulus, cfg.memorized_fraction, derive_seed(cfg.seed, "data", k), balanced=True)
        for k in range(cfg.teachers)
    ]
    x = torch.stack([d.tokens[d.memorized] for d in data]).to(device)  # (K, N, 3)
    y = torch.stack([d.labels[d.memorized] for d in data]).to(device)  # (K, N)
    teacher = train_teacher(
        x,
        y,
        TransformerFamily(cfg.modulus, cfg.d_model, cfg.heads, cfg.d_mlp),
        max_epochs=cfg.teacher_epochs,
        extra_epochs=cfg.teacher_extra_epochs,
        stop=cfg.teacher_stop,
        progress=cfg.progress,
        seed=[derive_seed(cfg.seed, "teacher", k) for k in range(cfg.teachers)],
    )
    return data, teacher


@experiment(TransformerConfig)
def transformer_distillation(profile: str = "quick", **overrides: Any) -> pd.DataFrame:
    """Fig 8: transformer students of `teachers` transformer teachers that memorized modular addition.

    independent_acc is on the pairs outside D, chance is 1/k, and epochs count full-batch steps.
    Student i of a teacher starts from the same initialization at every temperature (comparisons
    across T are paired).
    """
    from memkd.distillation import train_students

    cfg = make_config(TransformerConfig, "transformer_distillation", profile, overrides)
    device = resolve_device(cfg.device, cfg.experiment)
    data, teacher = transformer_tasks(cfg, device)
    ks = range(cfg.teachers)
    x = [d.tokens[d.memorized].to(device) for d in data]
    y = [d.labels[d.memorized].to(device) for d in data]
    outside = [(d.tokens[d.outside].to(device), d.labels[d.outside].to(device)) for d in data]
    with torch.no_grad():
        logits = teacher.logits(torch.stack(x))  # (K, N, k)
        trivial = accuracy(teacher.logits(torch.stack([o[0] for o in outside])), torch.stack([o[1] for o in outside]))
    rows: list[dict] = []
    for alpha in cfg.alphas:
        splits = [split_per_class(y[k], alpha, seed=derive_seed(cfg.seed, "split", k, alpha)) for k in ks]
        members = [
            dict(dataset=k, alpha=alpha, **m)
            for k in ks
            for m in member_grid(temperature=cfg.temperatures, lr=cfg.lrs, student=range(cfg.students))
        ]
        for part in chunks(members, cfg.chunk):
            owners = [m["dataset"] for m in part]
            train = [splits[k][0] for k in owners]
            model, _ = train_students(
                torch.stack([x[k][tr] for k, tr in zip(owners, train)]),  # (E, N_tr, 3)
                teacher_logits=torch.stack([logits[k, tr] for k, tr in zip(owners, train)]),
                kind="soft",
                family=teacher.family,
                members=len(part),
                temperatures=[m["temperature"] for m in part],
                lrs=[m["lr"] for m in part],
                epochs=cfg.epochs,
                weight_decay=cfg.weight_decay,
                progress=cfg.progress,
                seed=[derive_seed(cfg.seed, "student", m["dataset"], alpha, m["student"]) for m in part],
            )
            with torch.no_grad():
                pred_d = model(torch.stack([x[k] for k in owners])).argmax(-1)  # (E, N)
                pred_o = model(torch.stack([outside[k][0] for k in owners])).argmax(-1)  # (E, N_out)
            for i, (m, k) in enumerate(zip(part, owners)):
                tr_i, te_i = splits[k]
                hit_d = (pred_d[i] == y[k]).float()
                rows.append(
                    {
                        **m,
                        "modulus": cfg.modulus,
                        "train_acc": float(hit_d[tr_i].mean()),
                        "test_acc": float(hit_d[te_i].mean()),
                        "independent_acc": float((pred_o[i] == outside[k][1]).float().mean()),
                        "teacher_independent_acc": float(trivial[k]),
                        "chance": 1.0 / cfg.modulus,
                        "teacher_stop": cfg.teacher_stop,
                        "teacher_first_perfect": int(teacher.epochs_to_memorize[k]),
                        "teacher_epochs_run": teacher.epochs_run,
                        "teacher_extra_epochs": cfg.teacher_extra_epochs,
                        "n_memorized": len(y[k]),
                        "n_outside": len(outside[k][1]),
                    }
                )
    return tidy(rows, ratio_to_trivial=True, cfg=cfg)


PAPER_FIG8 = dict(modulus=113, d_model=128, heads=4, d_mlp=512)


def transfer_by_temperature(
    table: pd.DataFrame, margin: float, level: float = 0.05, fit: float = 0.99
) -> tuple[pd.DataFrame, float, float]:
    """Test "no temperature gives students that fit and transfer" on per-teacher means.

    For every temperature, the per-teacher mean of test_acc - independent_acc (held-out D against the
    students' own accuracy outside D) is tested for equivalence to 0 within +-margin, at `level` and
    at the Bonferroni level level / m (m: temperatures at which the students fit, mean train_acc >=
    `fit`; all temperatures when none does). The claim holds when every such temperature is equivalent
    at `level` (an intersection-union test needs no correction); it does not hold when one transfers
    beyond the margin at level / m; else it is inconclusive.
    Returns (per_t, temperature, record_level): one row per temperature (train_acc, fits, n, mean,
    ci_low, ci_high, verdict at `level`, verdict_bonferroni), and the temperature and level at which
    `Chapter.claim` gives the same verdict (to record the claim with its interval).
    """
    from memkd.metrics import interval_test, per_unit_means

    rows = []
    for temperature, part in table.groupby("temperature"):
        diffs = per_unit_means(part, "test_acc", "independent_acc")["difference"]
        r = interval_test(diffs, "equivalent", margin, level)
        rows.append(
            {
                "temperature": temperature,
                "train_acc": part.train_acc.mean(),
                "train_acc_min": part.train_acc.min(),
                "n": r["n"],
                "mean": r["mean"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "verdict": r["verdict"],
            }
        )
    per_t = pd.DataFrame(rows)
    per_t["fits"] = per_t["train_acc"] >= fit
    tested = per_t[per_t["fits"]] if per_t["fits"].any() else per_t
    m = len(tested)
    per_t["verdict_bonferroni"] = [
        interval_test(
            per_unit_means(table[table.temperature == t], "test_acc", "independent_acc")["difference"],
            "equivalent",
            margin,
            level / m,
        )["verdict"]
        for t in per_t.temperature
    ]
    tested = per_t.loc[tested.index]
    refuted = tested[tested.verdict_bonferroni == "does not hold"]
    if len(refuted):
        return per_t, float(refuted.loc[refuted.ci_low.idxmax(), "temperature"]), level / m
    if (tested.verdict == "holds").all():
        return per_t, float(tested.loc[tested.ci_high.idxmax(), "temperature"]), level
    open_ = tested[tested.verdict != "holds"]
    return per_t, float(open_.loc[open_.ci_high.idxmax(), "temperature"]), level / m


def teacher_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The teachers of a `transformer_distillation` table: one row per teacher (dataset; first step at 100%
    on D, steps run, accuracy outside D). Chapter 08 says where the budget leaves them
    (`memkd.book.chapters.ch08_transformer.teacher_budget_text`)."""
    per = table.groupby("dataset")[["teacher_first_perfect", "teacher_epochs_run", "teacher_independent_acc"]].first()
    return per.reset_index()
