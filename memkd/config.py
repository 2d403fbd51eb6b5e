"""Experiment configurations: one frozen dataclass per experiment, three profiles, validation.

Every knob is declared once with its constraint and a help text (`knob`). `make_config` merges a
profile with keyword overrides, rejects unknown knobs, and validates every value before any
training starts, with one message format:

    The 'alpha' parameter of logit_distillation must be a float in the open interval (0, 1).
    Got 1.5 instead.

`invalid` builds that message; every ValueError raised in memkd is built by it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

PROFILES = ("smoke", "quick", "paper")


class _Nothing:
    """The marker for "no value given" (None is a value a user can pass)."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


def invalid(
    name: str,
    owner: str,
    allowed: str | None = None,
    got: Any = NOTHING,
    *,
    must: str | None = None,
    shown: Any = None,
    after: str = "",
    says: str | None = None,
    error: type[ValueError] = ValueError,
) -> ValueError:
    """The ValueError for a bad value, in the one message format of memkd (raise what it returns).

    `name` is the argument, knob, field, column or file that is wrong, `owner` the public
    function, class or command that received it, `allowed` completes "must be ..." (the range,
    the choices, the shape, and any hint on what to do), and `got` is the value found (shown
    with repr). Every ValueError raised in memkd is built here, so each starts with
    "The '<name>' parameter of <owner> " (tests/test_errors.py checks both):

        The '<name>' parameter of <owner> must be <allowed>. Got <repr(got)> instead.<after>

    The keywords cover the messages of other shapes, in the same words:

    - `must`: instead of `allowed`, a requirement that is not "be ..." ("have the column(s) ['x']").
    - `shown`: instead of `got`, the words for what came, where `repr(got)` would not say it
      ("3 seeds", "columns ['a']"; shown with str).
    - `after`: text after "instead." (where the value came from, the names that are allowed).
    - `says`: a message of another shape, alone: everything after "The '<name>' parameter of <owner> "
      (a renamed or unknown knob, a rule that ties several knobs together).
    - `error`: the ValueError subclass to build (e.g. `memkd.data.images.ChecksumError`).

    A call that mixes the shapes (both `allowed` and `must`, no value, `says` with more) is a
    programming error: TypeError.

    >>> str(invalid("alpha", "logit_distillation", "a float in the open interval (0, 1)", 1.5))
    "The 'alpha' parameter of logit_distillation must be a float in the open interval (0, 1). Got 1.5 instead."
    >>> str(invalid("seed", "EnsembleMLP", must="hold one seed per member (4)", shown="3 seeds"))
    "The 'seed' parameter of EnsembleMLP must hold one seed per member (4). Got 3 seeds instead."
    >>> str(invalid("students", "temperature_window", says="was renamed: use 'solvers'."))
    "The 'students' parameter of temperature_window was renamed: use 'solvers'."
    """
    start = f"The '{name}' parameter of {owner} "
    if says is not None:
        if allowed is not None or must is not None or got is not NOTHING or shown is not None or after:
            raise TypeError("invalid: 'says' is the whole message after the owner; give it alone")
        return error(f"{start}{says}")
    if (allowed is None) == (must is None):
        raise TypeError("invalid: give exactly one of 'allowed' (completes 'must be ...') and 'must'")
    if (got is NOTHING) == (shown is None):
        raise TypeError("invalid: give exactly one of 'got' (shown with repr) and 'shown'")
    rule = f"be {allowed}" if allowed is not None else must
    came = repr(got) if shown is None else shown
    return error(f"{start}must {rule}. Got {came} instead.{after}")


# --- constraints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constraint:
    """A predicate on one value and the words that describe what it allows."""

    check: Callable[[Any], bool]
    allowed: str  # completes "must be ..."
    convert: Callable[[Any], Any] = lambda v: v
    item: "Constraint | None" = None  # a list's constraint on each of its items (`list_of`)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def int_range(low: int, high: float = math.inf) -> Constraint:
    words = f"an int >= {low}" if high == math.inf else f"an int in [{low}, {high}]"
    return Constraint(lambda v: _is_int(v) and low <= v <= high, words, int)


def real_interval(low: float, high: float, closed: str = "neither") -> Constraint:
    lo_ok = (lambda v: v >= low) if closed in ("left", "both") else (lambda v: v > low)
    hi_ok = (lambda v: v <= high) if closed in ("right", "both") else (lambda v: v < high)
    brackets = {"neither": "()", "left": "[)", "right": "(]", "both": "[]"}[closed]
    kind = {"neither": "open ", "both": "closed "}.get(closed, "")
    hi_txt = "inf" if high == math.inf else f"{high:g}"
    words = f"a float in the {kind}interval {brackets[0]}{low:g}, {hi_txt}{brackets[1]}"
    return Constraint(lambda v: _is_real(v) and lo_ok(float(v)) and hi_ok(float(v)), words, float)


def one_of(*options: Any) -> Constraint:
    return Constraint(lambda v: v in options, f"one of {options!r}")


BOOL = Constraint(lambda v: isinstance(v, bool), "a bool (True or False)")
OPTIONAL_INT = Constraint(lambda v: v is None or (_is_int(v) and v >= 1), "None or an int >= 1")
DEVICE = Constraint(
    lambda v: isinstance(v, str) and (v in ("auto", "cpu", "mps") or v.startswith("cuda")),
    "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'",
)


def list_of(inner: Constraint, min_len: int = 1) -> Constraint:
    """A non-empty list (or tuple) whose items satisfy `inner`; stored as a tuple."""

    def check(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and len(v) >= min_len and all(inner.check(i) for i in v)

    return Constraint(
        check, f"a non-empty list, each item {inner.allowed}", lambda v: tuple(inner.convert(i) for i in v), inner
    )


POS_INT = int_range(1)
POS_INTS = list_of(POS_INT)
ALPHAS = list_of(real_interval(0, 1))
TEMPERATURES = list_of(real_interval(0, math.inf))
LRS = list_of(real_interval(0, math.inf))


def knob(default: Any, constraint: Constraint, help: str) -> Any:
    """A dataclass field carrying its constraint and a help text."""
    return field(default=default, metadata={"constraint": constraint, "help": help})


# --- the protocol's knobs, declared once for every experiment that has them -----------------------

TEACHER_STOPS = ("budget", "first_perfect")  # the teacher's stop rules (applied by memkd.distillation)
LR = real_interval(0, 1, "right")  # one learning rate


def teacher_stop_knob() -> Any:
    """The teacher's stop rule (`TEACHER_STOPS`), the same knob in every experiment with teachers."""
    return knob(
        "budget",
        one_of(*TEACHER_STOPS),
        "budget: train the whole budget, 100% on D required at its "
        "end (the paper); first_perfect: stop at the first 100%",
    )


def teacher_epochs_knob(default: int, unit: str = "epoch", note: str = "", must_memorize: bool = True) -> Any:
    """The teacher's budget, in `unit`s (epochs, or full-batch steps). must_memorize=False: the
    experiment keeps a teacher below 100% and flags it (the linear and one-hidden-layer maps, where
    failing to memorize is one of the outcomes)."""
    rule = "it must be at 100% on D at its end" if must_memorize else "a teacher below 100% on D is kept and flagged"
    return knob(default, POS_INT, f"teacher's {unit} budget; {rule}{note}")


def lr_knob(default: float, who: str, optimizer: str = "Adam", note: str = "") -> Any:
    """One learning rate in (0, 1]: `who` is "teacher's", "students'", ...; `note` e.g. " (released: 1e-3)"."""
    return knob(default, LR, f"{who} {optimizer} learning rate{note}")


def epochs_knob(default: int, who: str = "students'", unit: str = "training epochs", note: str = "") -> Any:
    """How long the students (or `who`) train, in `unit`."""
    return knob(default, POS_INT, f"{who} {unit}{note}")


def students_knob(default: int, per: str, kind: str = "") -> Any:
    """Student seeds per `per` (e.g. "teacher and setting"); `kind` e.g. "soft-label " narrows who."""
    return knob(default, POS_INT, f"{kind}student seeds per {per}")


def batch_size_knob(who: str = "students'") -> Any:
    """A mini-batch size, None for full batch."""
    return knob(None, OPTIONAL_INT, f"{who} mini-batch size; None: full batch")


STUDENT_STARTS = ("own", "teacher")  # where a student's weights start: its own seed, or its teacher's initial weights


def student_start_knob(default: str = "own", released: str = "") -> Any:
    """Where each student starts (`STUDENT_STARTS`): "own" (an initialization of its own) or "teacher" (its
    teacher's initial weights, a shared starting point as a pretrained model gives)."""
    return knob(
        default,
        one_of(*STUDENT_STARTS),
        "own: every student its own initialization; teacher: each "
        "student starts from its teacher's initial weights" + (f" ({released})" if released else ""),
    )


def soften_student_knob(source: str = "the paper's text") -> Any:
    """The student-softening convention (applied once, in memkd.losses)."""
    return knob(False, BOOL, f"also divide the student's logits by T ({source})")


def maybe_empty_list_of(inner: Constraint) -> Constraint:
    """A list (possibly empty) whose items satisfy `inner`; stored as a tuple."""
    return Constraint(
        lambda v: isinstance(v, (list, tuple)) and all(inner.check(i) for i in v),
        f"a list (possibly empty), each item {inner.allowed}",
        lambda v: tuple(inner.convert(i) for i in v),
    )


# --- the data's and the models' knobs, declared once: each config picks its default ----------------
# `least` (where a factory has it) is the smallest value the experiment can use: e.g. at least 2
# teachers where a claim tests across teachers; the words and the check come from here.


def input_dim_knob(default: int, least: int = 1) -> Any:
    """D: the input dimension."""
    return knob(default, int_range(least), "D: input dimension")


def classes_knob(default: int) -> Any:
    """C: the number of classes of one dataset."""
    return knob(default, int_range(2), "C: number of classes")


def per_class_knob(default: int) -> Any:
    """n: the samples of each class in one dataset D (N = C * n)."""
    return knob(default, int_range(2), "samples of each class in D (n = classes * per_class)")


def per_class_values_knob(default: tuple, note: str = "") -> Any:
    """Several numbers of samples per class, one dataset family each (a sweep axis)."""
    return knob(default, list_of(int_range(2)), f"samples of each class in D{note}")


def class_counts_knob(default: tuple, note: str = "") -> Any:
    """Several numbers of classes C, one dataset family each (a sweep axis)."""
    return knob(default, list_of(int_range(2)), f"numbers of classes C{note}")


def teachers_knob(default: int, note: str = "", least: int = 1) -> Any:
    """How many independent teachers, each with its own draw of D and initialization (the unit of
    replication). The rows number them in the table column `dataset` (0 .. teachers - 1); the knob's
    former name `datasets` is refused, naming this one (`ExperimentConfig.renamed_knobs`)."""
    return field(
        default=default,
        metadata={
            "constraint": int_range(least),
            "formerly": ("datasets",),
            "help": f"independent teachers, each with its own D and initialization{note}; the rows number them in "
            "the column 'dataset'",
        },
    )


def fresh_knob(default: int, what: str = "inputs", note: str = "") -> Any:
    """How many fresh points (never memorized) a measure uses."""
    return knob(default, POS_INT, f"fresh {what}{note}")


def memorized_fraction_knob(default: float, of: str) -> Any:
    """The share of the available points that a teacher memorizes (its D); `of` says of what."""
    return knob(default, real_interval(0, 1), f"fraction of {of} in D")


def hidden_layers_knob(default: int = 2, who: str = "teacher and students", least: int = 1) -> Any:
    """Hidden layers of the MLPs (0: linear, where `least` allows it)."""
    return knob(default, int_range(least, 4), f"hidden layers of {who}")


def teacher_width_knob(default: int) -> Any:
    """P of the teacher."""
    return knob(default, POS_INT, "P of the teacher")


def student_widths_knob(default: tuple) -> Any:
    """P of the students (a sweep axis)."""
    return knob(default, POS_INTS, "P of the students")


def width_knob(default: int, who: str) -> Any:
    """One hidden width P for `who`."""
    return knob(default, POS_INT, f"P: hidden width of {who}")


def heads_knob(default: int, note: str) -> Any:
    """H: attention heads of a transformer; `note` says which width they must divide."""
    return knob(default, POS_INT, f"H: attention heads ({note})")


def alphas_knob(default: tuple, of: str = "each class") -> Any:
    """The fractions of D the student sees, per class (a sweep axis)."""
    return knob(default, ALPHAS, f"fraction of {of} the student sees")


def alpha_knob(default: float, of: str = "each class") -> Any:
    """One fraction of D the student sees, per class."""
    return knob(default, real_interval(0, 1), f"fraction of {of} the student sees")


def rhos_knob(default: tuple, note: str) -> Any:
    """rho: the shares of D whose soft labels a student gets (a sweep axis); `note` says which points."""
    return knob(default, ALPHAS, f"rho: {note}")


def temperatures_knob(default: tuple, note: str = "") -> Any:
    """The softmax temperatures T of the soft labels (a sweep axis)."""
    return knob(default, TEMPERATURES, f"softmax temperatures T of the soft labels{note}")


def temperature_knob(default: float, note: str = "") -> Any:
    """One softmax temperature T of the soft labels."""
    return knob(default, real_interval(0, math.inf), f"softmax temperature T of the soft labels{note}")


def lrs_knob(default: tuple, optimizer: str = "Adam") -> Any:
    """The students' learning rates (a sweep axis)."""
    return knob(default, LRS, f"students' {optimizer} learning rates")


def weight_decay_knob(default: float, who: str = "students'", note: str = "") -> Any:
    """One AdamW weight decay."""
    return knob(default, real_interval(0, math.inf, "left"), f"{who} AdamW weight decay{note}")


def weight_decays_knob(default: tuple) -> Any:
    """The teachers' L2 weight decays (Adam's, added to the gradient; a sweep axis)."""
    return knob(
        default,
        list_of(real_interval(0, math.inf, "left")),
        "teachers' L2 weight decay (Adam's, added to the gradient)",
    )


def chunk_knob(all_of: str) -> Any:
    """The most members trained as one ensemble (None: all of `all_of` at once)."""
    return knob(None, OPTIONAL_INT, f"most students trained as one ensemble; None: all of {all_of} at once")


def shuffle_knob(note: str = "") -> Any:
    """Also train the control whose inputs are shuffled within each class."""
    return knob(True, BOOL, f"also train the within-class-shuffled control{note}")


def settings_knob(options: tuple, note: str) -> Any:
    """Which of an experiment's settings (`options`, all by default) to run."""
    return knob(options, list_of(one_of(*options)), f"settings to run: {note}")


def surgery_class_knob() -> Any:
    """The class c that the logit surgery touches."""
    return knob(0, int_range(0), "the class c that the surgery touches (its entries or samples removed)")


def tail_fractions_knob(default: tuple, may_be_empty: bool = False) -> Any:
    """Surgery: the fractions of each sample's smallest probabilities set to zero."""
    fraction = real_interval(0, 1)
    return knob(
        default,
        maybe_empty_list_of(fraction) if may_be_empty else list_of(fraction),
        "surgery: fractions of each sample's smallest probabilities set to zero",
    )


# --- base config ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentConfig:
    """Validated knobs of one experiment; subclasses add fields and PROFILES."""

    experiment: str = field(default="", metadata={"internal": True})
    profile: str = field(default="quick", metadata={"internal": True})
    # the knobs every experiment has, declared once here
    seed: int = knob(0, int_range(0), "base random seed: every draw, split, shuffle and initialization derives from it")
    device: str = knob("auto", DEVICE, "where to train (auto, cpu, cuda, cuda:N or mps)")
    progress: bool = knob(False, BOOL, "show training progress bars")

    PROFILE_VALUES = {}  # type: dict[str, dict[str, Any]]  (overridden per experiment)
    # knobs that were renamed or removed: {old name: what to use instead}; `make_config` refuses
    # the old name with a message naming the new one
    RENAMED = {}  # type: dict[str, str]

    def __post_init__(self) -> None:
        for f in fields(self):
            spec = f.metadata.get("constraint")
            if spec is None:
                continue
            value = getattr(self, f.name)
            if not spec.check(value):
                raise invalid(f.name, self.experiment, spec.allowed, value)
            object.__setattr__(self, f.name, spec.convert(value))
        self.check()

    def check(self) -> None:
        """Checks that involve several knobs (override in subclasses)."""

    def check_resources(self) -> None:
        """Refuse, before any work, what this machine cannot run: a device it lacks (ValueError
        naming 'device'); configs that can estimate their memory (`memkd.experiments.random_data.RandomDataConfig`)
        also refuse a run too large for the device (MemoryError naming the knob). `memkd sweep`
        calls it for every point before a kernel starts."""
        from memkd.device import resolve_device

        resolve_device(self.device, self.experiment)

    def fail(self, name: str, message: str) -> None:
        raise invalid(name, self.experiment, says=message)

    @classmethod
    def renamed_knobs(cls) -> dict[str, str]:
        """{old name: what to use instead}: the former names a knob's factory declares (metadata
        "formerly", e.g. `teachers_knob`: datasets), then the class's own RENAMED."""
        former = {
            old: f"use '{f.name}' ({f.metadata['help']})" for f in fields(cls) for old in f.metadata.get("formerly", ())
        }
        return {**former, **cls.RENAMED}

    @classmethod
    def knobs(cls) -> dict[str, str]:
        """{knob name: help text} for the user-settable fields."""
        return {f.name: f.metadata["help"] for f in fields(cls) if "constraint" in f.metadata}

    def asdict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def make_config(cls: type[ExperimentConfig], experiment: str, profile: str, overrides: Mapping[str, Any]):
    """Profile values, then overrides; unknown, renamed and bad knobs are refused up front (ValueError)."""
    if profile not in PROFILES:
        raise invalid("profile", experiment, f"one of {PROFILES}", profile)
    allowed = cls.knobs()
    renamed_knobs = cls.renamed_knobs()
    renamed = sorted(set(overrides) & set(renamed_knobs))
    if renamed:
        old = renamed[0]
        raise invalid(old, experiment, says=f"was renamed: {renamed_knobs[old]}. Got {old}={overrides[old]!r} instead.")
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise invalid(
            unknown[0],
            experiment,
            says=f"does not exist: {experiment} got unknown parameter(s) "
            f"{unknown}. Allowed parameters: {sorted(allowed)}.",
        )
    values = {**cls.PROFILE_VALUES.get(profile, {}), **overrides}
    return cls(experiment=experiment, profile=profile, **values)


def check_split(cfg: ExperimentConfig, alphas: tuple[float, ...], per_class: int | tuple[int, ...]) -> None:
    """Every alpha must leave each class at least one student sample and one held-out sample."""
    for pc in per_class if isinstance(per_class, tuple) else (per_class,):
        for a in alphas:
            k = int(round(a * pc))
            if k < 1 or k > pc - 1:
                cfg.fail(
                    "alphas",
                    f"contains {a}, which with per_class={pc} gives the student {k} of {pc} "
                    "samples of each class: a class would be empty in the student's part or in the "
                    "held-out part. Choose alpha with 1 <= round(alpha * per_class) <= per_class - 1.",
                )


__all__ = [
    "PROFILES",
    "Constraint",
    "ExperimentConfig",
    "make_config",
    "knob",
    "replace",
    "int_range",
    "real_interval",
    "one_of",
    "list_of",
    "BOOL",
    "OPTIONAL_INT",
    "DEVICE",
    "POS_INT",
    "POS_INTS",
    "ALPHAS",
    "TEMPERATURES",
    "LRS",
    "check_split",
    "invalid",
]


SCALAR_TO_LIST = {"alpha": "alphas", "width": "student_widths", "temperature": "temperatures", "lr": "lrs"}


def knob_overrides(**values: Any) -> dict[str, Any]:
    """Experiment overrides from a chapter's sweepable parameters.

    A zero, None or empty value means "keep the profile's value" and is dropped. The scalar
    parameters alpha, width, temperature and lr become the one-element lists alphas,
    student_widths, temperatures and lrs; every other name passes through unchanged.

    >>> knob_overrides(alpha=0.4, width=0, epochs=300)
    {'alphas': (0.4,), 'epochs': 300}
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value in (None, 0, 0.0, "", [], ()):
            continue
        if name in SCALAR_TO_LIST:
            out[SCALAR_TO_LIST[name]] = (value,)
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out
