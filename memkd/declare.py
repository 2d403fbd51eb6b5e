"""How an experiment is declared: `@experiment(Config)` on its function.

Owns: `COLUMNS` (what every column of an experiment's table means, written once for all
experiments), the docstring every experiment shows in `help()` (its own summary, then every knob
with its allowed values and its default in each profile, then its table's columns: built from the
config dataclass and its `TABLE_COLUMNS`, so nothing is written twice), the `teacher_id` column
(`memkd.tables`) added to every table, and `EXPERIMENTS` (every declared experiment by name).

    >>> from memkd import experiments as ex
    >>> "student_widths" in ex.logit_distillation.__doc__ and "teacher_id" in ex.logit_distillation.__doc__
    True
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import MISSING, fields
from typing import Any, Callable

from memkd.config import PROFILES, ExperimentConfig
from memkd.tables import TEACHER_ID, add_teacher_id

EXPERIMENTS: dict[str, Callable] = {}
# The columns of a row of `common.distill` (with alpha), which most random-data tables share.
DISTILL_COLUMNS = ("dataset", "alpha", "width", "kind", "temperature", "lr", "student", "train_acc", "test_acc",
                   "memorized_acc", "test_acc_class", "independent_acc", "teacher_agreement_independent", "test_count_class",
                   "teacher_independent_acc", "chance", "teacher_memorized", "teacher_stop", "teacher_first_perfect")

# What each column of an experiment's table means (one row per trained student unless said).
COLUMNS: dict[str, str] = {
    # the teacher and the student
    TEACHER_ID: 'the teacher, unique across seeds and sweep runs: "{seed}:{dataset}" (the unit of replication)',
    "dataset": "the teacher's index k within this run (its dataset D and D'); restarts at 0 in every run",
    "question": "which open question of chapter 09 the row belongs to",
    "setting": "the data setting of the teacher (e.g. clean, labels, pixels, both, fixed)",
    "kind": 'what the student learns from: "soft" (sigma_T of the teacher\'s logits), "hard" (labels), "similarity"',
    "targets": '"hard" (labels) or "soft" (sigma_T of the teacher\'s logits)',
    "variant": "the variant of the experiment the row belongs to",
    "part": 'the part of the architecture question ("activation", "depth", "mismatch"), or of chapter 13 ("map", "width", "classes", "surgery")',
    "pair": "the two kinds compared (e.g. soft-similarity, or cnn->mlp: teacher -> student)",
    "teacher": "the teacher's architecture (chapters 09, 10), or its index and size 'k/(N/d)' (chapters 11, 12)",
    "experiment": "the experiment that made the row",
    "student_arch": "the student's architecture",
    "student": "the student's seed index within its teacher and setting",
    "student_a": "the first student of the pair", "student_b": "the second student of the pair",
    # knobs copied into the rows
    "classes": "C, classes", "per_class": "samples of each class in D", "input_dim": "D, input dimension",
    "modulus": "k of the modular addition (a + b mod k)", "alpha": "fraction of each class the student sees",
    "width": "P, the student's hidden width", "temperature": "T of the soft labels (NaN where none)",
    "lr": "the student's learning rate", "epochs": "the student's training epochs",
    "tail_fraction": "fraction of the smallest probabilities cut (cut_tail; NaN otherwise)",
    "surgery_class": "the class c that the surgery touches", "weight_decay": "the teacher's L2 weight decay",
    "soften_student": "whether the student's logits are divided by T too (the paper's text)",
    "teacher_activation": "the teacher's activation", "teacher_depth": "the teacher's hidden layers",
    "teacher_width": "P of the teacher", "student_activation": "the student's activation",
    "student_depth": "the student's hidden layers", "frozen_layers": "the student's layers frozen at initialization",
    "trainable": "the student's trainable parameters",
    # the published version's linear teachers (chapters 11, 12)
    "n_over_d": "N/d: samples in D over the input dimension", "outputs": "the linear teacher's logits (1: binary)",
    "n_student": "samples of D the student sees (floor(rho * n) of each class)",
    "rho": "fraction of each class the student sees (the first floor(rho * n) points)",
    "rho_n_over_d": "rho N / d: soft-labelled points over the input dimension (1 = the counting bound)",
    "solver": 'how the student is found: "pinv" (least squares), "adam" (gradient steps), "exact" (the soft-label loss solved exactly)',
    "shuffled": "whether the student's inputs were permuted within each class (soft labels kept): the control",
    "dtype": "the floating-point type of the soft labels and the student", "student_seed": "the student's seed index in its setting",
    "teacher_perfect": "whether the teacher ended at 100% on D (cells without it are left out of the claims)",
    "agreement_fresh": "agreement with the teacher's predictions on fresh inputs (functional recovery)",
    "logit_error": "the student's logit error against the teacher's on fresh inputs (relative)",
    # the published version's one hidden layer (chapter 13)
    "n_trained": "samples the student trained on (after a surgery that drops samples)",
    "half": 'the half of the teachers the row belongs to: "choose" (cells are chosen on it) or "test"',
    "phase": "the cell's phase: partial leak, approximate fit, recovery or teacher fails (memkd.experiments.phases)",
    "cell": 'the surgery\'s cell ("recovery" or "partial leak"), chosen on the choosing half',
    # the published version's teacher clock (chapter 08)
    "teacher_step": "the step at which the teacher was stopped (its snapshot)",
    "teacher_unseen_acc": "the teacher's accuracy, at that step, on the pairs nobody trained on",
    "teacher_state": 'the teacher at that step: "memorized" (100% on its pairs, not generalized) or "generalized"',
    "heldout_acc": "accuracy on the teacher's pairs the student did not see (held-out memorized)",
    "unseen_acc": "accuracy on the pairs nobody trained on", "trivial_acc": "the student's own baseline: its unseen_acc",
    "n_heldout": "held-out memorized pairs", "n_unseen": "pairs nobody trained on",
    "heldout_correct": "held-out memorized pairs the student gets right", "unseen_correct": "unseen pairs the student gets right",
    # the student's accuracies
    "train_acc": "accuracy on the student's own part of D",
    "test_acc": "accuracy on the held-out part of D (memorized by the teacher, never seen by the student)",
    "test_count_class": "held-out samples of that class (the trials of chapter 07's exact tests)",
    "memorized_acc": "accuracy on all of D", "test_acc_class": "held-out accuracy on one class (surgery_class in logit_surgery, else class 0)",
    "independent_acc": "accuracy on fresh data D' (or the trivial set): what memorization cannot explain",
    "teacher_agreement_independent": "agreement with the teacher's predictions on D'",
    "leak": "test_acc - independent_acc",
    "ratio": "test_acc / teacher_independent_acc (times the trivial accuracy)",
    # the teacher
    "teacher_independent_acc": "the teacher's accuracy on D' (the trivial accuracy)",
    "chance": "1 / classes", "teacher_memorized": "whether the teacher ended at 100% on D",
    "teacher_train_acc": "the teacher's accuracy on D", "teacher_stop": "the teacher protocol (budget | first_perfect)",
    "teacher_first_perfect": "the teacher's first epoch at 100% on D (-1 if never)",
    "teacher_epochs_run": "epochs the teacher trained", "teacher_extra_epochs": "epochs trained on after the first 100%",
    "teacher_logit_norm": "mean norm of the teacher's logits on D", "teacher_top_prob": "mean top probability of sigma_T on D",
    "teacher_linear_r2": "how much of the teacher's logits on D' a linear map fitted on D explains",
    # data sizes and provenance
    "images": '"cifar10" | "digits"', "n_memorized": "samples in D", "n_trivial": "samples in the trivial set",
    "n_outside": "pairs outside D", "note": "how the images were obtained",
    # overlap of correct sets (chapter 09, Q1)
    "n": "held-out samples compared", "acc_a": "accuracy of student a", "acc_b": "accuracy of student b",
    "both": "held-out samples both get right (mean over pairs)", "expected": "its expectation under independence",
    "lift": "both / expected", "phi": "correlation of the two correct sets",
    "p_value": "the pair's permutation p-value", "group_p_value": "the teacher's joint permutation test of the pair type",
}


def _defaults(config: type[ExperimentConfig]) -> dict[str, dict[str, Any]]:
    """{knob: {profile: default}} from the dataclass defaults and the profiles."""
    out = {}
    for f in fields(config):
        if "constraint" not in f.metadata:
            continue
        base = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = {p: config.PROFILE_VALUES.get(p, {}).get(f.name, base) for p in PROFILES}
    return out


def _value(v: Any) -> str:
    return repr(list(v) if isinstance(v, tuple) else v)


def experiment_doc(summary: str | None, config: type[ExperimentConfig], table: bool = True) -> str:
    """The docstring of an experiment: `summary`, its knobs (help, allowed values, profile
    defaults) and, when it returns a table, the columns of `config.TABLE_COLUMNS`."""
    lines = [inspect.cleandoc(summary or ""), "", "Parameters", "----------",
             f"profile : one of {PROFILES} (default 'quick'): the sizes below; keyword overrides change any knob."]
    for name, by_profile in _defaults(config).items():
        f = config.__dataclass_fields__[name]
        values = {_value(v) for v in by_profile.values()}
        default = (f"default {values.pop()}" if len(values) == 1
                   else "defaults " + ", ".join(f"{p} {_value(v)}" for p, v in by_profile.items()))
        lines.append(f"{name} : {f.metadata['help']}; {f.metadata['constraint'].allowed}; {default}")
    if table:
        lines += ["", "Returns", "-------", "pandas.DataFrame, one row per trained student unless said, columns:"]
        lines += [f"    {c} : {COLUMNS[c]}" for c in table_columns(config)]
        lines.append('    (table.attrs["config"]: the validated configuration)')
    return "\n".join(lines)


def table_columns(config: type[ExperimentConfig]) -> tuple[str, ...]:
    """The columns an experiment's table may hold: teacher_id, then `config.TABLE_COLUMNS`."""
    return (TEACHER_ID, *[c for c in getattr(config, "TABLE_COLUMNS", ()) if c != TEACHER_ID])


class UndeclaredColumnWarning(UserWarning):
    """An experiment returned a column its config's TABLE_COLUMNS does not list."""


def experiment(config: type[ExperimentConfig], table: bool = True) -> Callable[[Callable], Callable]:
    """Declare `fn(profile, **overrides)` an experiment of `config`: its docstring is built by
    `experiment_doc`, its table gets `teacher_id` (from the run's seed), and a column missing from
    `config.TABLE_COLUMNS` warns (UndeclaredColumnWarning; the tests make it an error)."""
    missing = [c for c in getattr(config, "TABLE_COLUMNS", ()) if c not in COLUMNS]
    if missing:
        raise ValueError(f"The 'config' parameter of experiment must list in TABLE_COLUMNS only columns that "
                         f"COLUMNS in memkd/declare.py explains. Got {config.__name__}.TABLE_COLUMNS naming "
                         f"{missing}, which COLUMNS does not explain, instead.")

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(profile: str = "quick", *args: Any, **overrides: Any) -> Any:
            out = fn(profile, *args, **overrides)
            if table:
                seed = (out.attrs.get("config") or {}).get("seed")
                if seed is None:
                    seed = overrides.get("seed", _defaults(config)["seed"].get(profile, 0))
                add_teacher_id(out, seed)
                extra = [c for c in out.columns if c not in table_columns(config)]
                if extra:
                    warnings.warn(f"{fn.__name__}: columns {extra} are not in {config.__name__}.TABLE_COLUMNS "
                                  "(add them there, and their meaning to declare.COLUMNS)",
                                  UndeclaredColumnWarning, stacklevel=2)
            return out

        run.__doc__ = experiment_doc(fn.__doc__, config, table)
        run.config, run.returns_table = config, table  # type: ignore[attr-defined]
        EXPERIMENTS[fn.__name__] = run
        return run

    return wrap


__all__ = ["COLUMNS", "DISTILL_COLUMNS", "EXPERIMENTS", "experiment", "experiment_doc", "table_columns", "UndeclaredColumnWarning"]
