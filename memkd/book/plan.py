"""What every claim fixes before its run: its margin (with the reason) and its power plan.

A **margin** is the bound a claim is tested against: for "equivalent" the half-width of the band
within which two quantities count as the same, for "above" / "below" how far beyond the baseline
the difference must lie (0: any difference in the stated direction). Each margin is a `Margin`
(value, reason); the named margins below are the book's, each with its reason, in one place:
a fraction of the paper's effect, of chance 1/C, or of the measurement's resolution, and never so
wide that the claim cannot fail.

A **plan** says how many teachers (or, for an exact test, outcomes) a claim needs for 80% power at
its level, for an assumed effect: the effect the paper reports where it gives a number, else the
smallest effect of interest stated here. `PLANS` maps (chapter, claim id pattern) to a `Plan`;
`Chapter.claim` looks its claim up there, computes the planned n with
`memkd.power.planned_teachers` (t tests) or `planned_trials` (exact tests) and records it with
the claim, so that the report can label a claim whose n falls short "underpowered". The spread
the t plans assume is this build's per-teacher standard deviation (no earlier estimate is kept in
code; the report says so): the plan then answers "how many teachers would this spread need to
detect the assumed effect", not "how many were chosen before the run".
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

DIRECTION_REASON = "a direction: any difference beyond the baseline in the stated direction"


@dataclass(frozen=True)
class Margin:
    """A margin fixed before the run, with its reason (see the module docstring)."""

    value: float
    reason: str

    def __post_init__(self) -> None:
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value >= 0):
            raise ValueError(f"The 'value' parameter of Margin must be a finite float >= 0. Got {self.value!r} instead.")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError(f"The 'reason' parameter of Margin must be a non-empty string. Got {self.reason!r} instead.")

    def __format__(self, spec: str) -> str:
        """Formats as its value, so that prose can print it: f"within ±{margin:g}"."""
        return format(self.value, spec)


def margin_of(margin: float | Margin, expect: str) -> tuple[float, str]:
    """(value, reason) of a margin given as a `Margin` or a bare number. A bare 0 on a claim of
    direction gets DIRECTION_REASON; any other bare number gets no reason ("": the report flags it)."""
    if isinstance(margin, Margin):
        return float(margin.value), margin.reason.strip()
    return margin, (DIRECTION_REASON if expect != "equivalent" and margin == 0 else "")


# ---------------------------------------------------------------------------- the book's margins

PAPER_FIG1_EFFECT = 0.10  # Fig 1: soft-label students about 40% held out, against about 30% (chance 1/3)


def toy_at_chance() -> Margin:
    """Chapter 01: hard-label students at chance in 2-D."""
    return Margin(PAPER_FIG1_EFFECT / 2, "half the soft-label effect of the paper's Fig 1 (about 40% against "
                  "about 30% held out: 0.10), so that a student with that effect could not pass as at chance")


def hard_labels_at_chance(chance: float) -> Margin:
    """Chapter 02: hard-label students at chance on held-out memorized data."""
    return Margin(chance / 2, "half of chance 1/C: half the smallest soft-label effect of interest "
                  "(a held-out accuracy of twice chance) tested beside it")


def surgery_class_kept(value: float) -> Margin:
    """Chapter 07: class-c held-out accuracy kept when class c is dropped (the chapter's parameter)."""
    return Margin(value, f"{value:g} in class-c held-out accuracy: one of the 10 held-out class-c points "
                  "of a teacher at the quick profile, the resolution of one teacher's class-c accuracy")


def surgery_overall_kept(chance: float) -> Margin:
    """Chapter 07: overall held-out accuracy kept under a surgery of class c."""
    return Margin(chance / 4, "a quarter of 1/C, the share of the held-out points that are of class c: a "
                  "surgery that changed only class c's points could move the overall accuracy by at most "
                  "1/C, so a margin of 1/C (the old one) could not fail")


def composition_far_above(chance: float) -> Margin:
    """Chapter 06: the best cell's held-out accuracy 'far above' its trivial accuracy."""
    return Margin(chance, "'far above' read as more than twice the trivial accuracy (a margin of 1/C of the "
                  "chosen cell): with a margin of 0 the best of many cells passes whenever any cell leaks at all")


def transformer_trivial(chance: float) -> Margin:
    """Chapter 08: held-out accuracy against the students' own accuracy outside D."""
    return Margin(chance, "1/k: fewer than one extra correct answer in k held-out pairs counts as trivial")


def convolution_no_leak(value: float) -> Margin:
    """Chapter 10: 'no leak' of CNN students (the chapter's parameter)."""
    return Margin(value, f"{value:g} in held-out accuracy: under a third of chance on ten classes, and far "
                  "below the leak of the MLP students tested beside it")


def linear_chance(value: float = 0.05) -> Margin:
    """Chapters 11-12: a within-class-shuffled linear student 'at chance'."""
    return Margin(value, f"{value:g} in held-out accuracy: the cells' held-out sets hold 10-100 points, so one "
                  "teacher's mean moves by a few points by chance alone, while the recovery the chapter looks for "
                  "is a move of 0.5 (from chance to 1)")


def linear_same_threshold(value: float = 0.02) -> Margin:
    """Chapter 11: the soft-label student 'reaches the same threshold' as least squares."""
    return Margin(value, f"{value:g} in held-out accuracy above the line: at most two held-out points in a hundred "
                  "apart, paired on teachers, against a gap of 0.5 between recovery and chance")


def window_same_width(value: float = 1.0) -> Margin:
    """Chapter 12: two precisions give 'the same window'."""
    return Margin(value, f"{value:g} temperature: one step of the temperature grid, the resolution at which a "
                  "window's edge is measured")


def hidden_shuffle_at_chance(value: float) -> Margin:
    """Chapter 13: the shuffle control of the one-hidden-layer students 'at chance' (pooled points)."""
    return Margin(value, f"{value:g} in held-out accuracy: twice chance 1/C at C = 100, far below the partial "
                  "leak (about 0.4) of the students whose inputs are not shuffled")


def clock_equivalent(value: float) -> Margin:
    """Chapter 08, the teacher clock: held-out memorized and unseen accuracies 'agree'."""
    return Margin(value, f"{value:g} in accuracy: about one standard error of one student's accuracy on 100 "
                  "pairs (0.5 / sqrt(100)); smaller gaps are what drawing the pairs alone gives")


# ---------------------------------------------------------------------------- power plans


@dataclass(frozen=True)
class Plan:
    """The effect a claim is planned for (see the module docstring).

    effect : the assumed true difference in the claim's direction (for an exact test: the true
        proportion's distance from p0); with `per_chance`, in units of chance 1/C
    reason : where the effect comes from (the paper's number, or why it is the smallest of interest)
    sd : the per-teacher standard deviation assumed; None: this build's own spread
    """

    effect: float
    reason: str
    per_chance: bool = False
    sd: float | None = None

    def effect_at(self, chance: float) -> float:
        """The assumed effect in the claim's units (NaN when it needs a chance level and has none)."""
        return self.effect * chance if self.per_chance else self.effect


SMALLEST_GAIN = "the paper gives no number here; the smallest effect of interest: a held-out accuracy of twice chance"
SMALLEST_PAIRED = "the paper gives no number here; the smallest difference of interest between two settings: half of chance"
NO_DIFFERENCE = "an equivalence claim, planned for a true difference of 0"
SMALLEST_LINEAR = ("the published version gives no number here; the smallest effect of interest: five points of "
                   "held-out accuracy above chance 0.5 (a tenth of the way to recovery)")

PLANS: dict[tuple[str, str], Plan] = {
    ("01_toy_2d", "toy_hard_at_chance"): Plan(0.0, NO_DIFFERENCE),
    ("01_toy_2d", "toy_soft*_beats_chance"): Plan(PAPER_FIG1_EFFECT, "the paper's Fig 1: about 40% held out "
                                                  "against about 30%"),
    ("02_logit_distillation", "logits_beat_chance"): Plan(1.0, SMALLEST_GAIN, per_chance=True),
    ("02_logit_distillation", "logits_beat_trivial"): Plan(1.0, SMALLEST_GAIN, per_chance=True),
    ("02_logit_distillation", "little_data_suffices"): Plan(1.0, SMALLEST_GAIN, per_chance=True),
    ("02_logit_distillation", "wider_students_extract_more"): Plan(0.5, SMALLEST_PAIRED, per_chance=True),
    ("02_logit_distillation", "hard_labels_at_chance"): Plan(0.0, NO_DIFFERENCE),
    ("03_similarity_scores", "similarity_beats_chance"): Plan(1.0, SMALLEST_GAIN, per_chance=True),
    ("03_similarity_scores", "logits_beat_similarity"): Plan(0.5, SMALLEST_PAIRED, per_chance=True),
    ("04_cifar10", "*_beats_trivial"): Plan(0.5, "the paper gives no number here; the smallest effect of "
                                            "interest: half of chance above the teacher's trivial accuracy",
                                            per_chance=True),
    ("04_cifar10", "both_beats_labels"): Plan(0.5, SMALLEST_PAIRED, per_chance=True),
    ("05_temperature_lr", "high_temperature_helps*"): Plan(0.5, SMALLEST_PAIRED, per_chance=True),
    ("05_temperature_lr", "temperature_grid_beats_trivial"): Plan(1.0, SMALLEST_GAIN, per_chance=True),
    ("05_temperature_lr", "best_temperature_above_one"): Plan(0.5, SMALLEST_PAIRED, per_chance=True),
    ("06_dataset_composition", "composition_nontrivial_cells"): Plan(
        2.0, "the paper gives no number here; planned for a ratio of 3 to the trivial accuracy (2/C above "
        "it), twice the margin of 'far above'", per_chance=True),
    ("06_dataset_composition", "best_dimension_grows"): Plan(
        0.4, "a sign test, planned for 9 teachers in 10 with a slope above 0 (the paper's proportionality "
        "would put every teacher there)"),
    ("06_dataset_composition", "optimum_inside_grid"): Plan(0.25, "the paper gives no number here; the "
                                                            "smallest advantage of interest: a quarter of chance",
                                                            per_chance=True),
    ("07_logit_surgery", "drop_class_keeps_class"): Plan(1.0, SMALLEST_GAIN + " (an exact test of the pooled "
                                                          "class-c points)", per_chance=True),
    ("07_logit_surgery", "drop_class_like_plain"): Plan(0.0, NO_DIFFERENCE),
    ("07_logit_surgery", "zero_class_kills_class"): Plan(1.0, "the paper: below the trivial accuracy; planned "
                                                          "for no correct class-c point at all (an exact test)",
                                                          per_chance=True),
    ("07_logit_surgery", "zero_class_below_plain"): Plan(0.1, "the smallest drop of interest: one of the 10 "
                                                         "held-out class-c points of a teacher at the quick "
                                                         "profile, the resolution of its class-c accuracy"),
    ("07_logit_surgery", "*_overall_kept"): Plan(0.0, NO_DIFFERENCE),
    ("07_logit_surgery", "tail_carries_information"): Plan(0.5, "the paper reports a sharp drop but no number; "
                                                           "the smallest drop of interest: half of chance",
                                                           per_chance=True),
    ("08_transformer", "no_fit_and_transfer"): Plan(0.0, NO_DIFFERENCE),
    # the published version (chapters 11-13, and chapter 08's teacher clock)
    ("08_transformer", "clock_leak_*"): Plan(1.0, SMALLEST_GAIN + " above the students' own unseen accuracy",
                                             per_chance=True),
    ("08_transformer", "clock_vanishes_*"): Plan(0.0, NO_DIFFERENCE),
    ("11_linear_recovery", "*_perfect_above_line"): Plan(
        0.2, "the released Fig 3 file: 99.8% of the cells above the line are perfect (our count); planned for a "
        "true share of 1 against the bound of 0.8 (an exact test on teachers)"),
    ("11_linear_recovery", "*_partial_leak_below"): Plan(0.05, SMALLEST_LINEAR),
    ("11_linear_recovery", "*_not_perfect_below"): Plan(0.05, "the smallest shortfall of interest: five points "
                                                         "below 1 (1.4% of the released cells below the line are perfect)"),
    ("11_linear_recovery", "*_leak_grows_below"): Plan(0.1, "the smallest slope of interest: 0.1 of held-out "
                                                        "accuracy per unit of rho N / d (the rise from chance to 1 "
                                                        "is 0.5 over one unit)"),
    ("11_linear_recovery", "*_at_chance"): Plan(0.0, NO_DIFFERENCE),
    ("11_linear_recovery", "soft_labels_same_threshold"): Plan(0.0, NO_DIFFERENCE),
    ("11_linear_recovery", "teacher_*_capacity"): Plan(
        0.5, "Cover's count: a linear separator memorizes random labels almost surely well below N/d = 2 and "
        "almost never well above; planned for a true share of 1 against 0.5 (an exact test on teachers)"),
    ("12_temperature_window", "c*_adam_window_float64_vs_float32"): Plan(0.0, NO_DIFFERENCE),
    ("12_temperature_window", "c*_window_*"): Plan(1.0, "the smallest difference of interest: one step of the "
                                                   "temperature grid"),
    ("12_temperature_window", "c*_recovers_at_*"): Plan(
        0.4, "the published Fig 4a (Adam inside the window) and the counting argument (the exact solve at any T): "
        "planned for a true share of 1 against the bound of 0.6 (an exact test on teachers)"),
    ("12_temperature_window", "c*_adam_fails_at_lowest_T"): Plan(
        0.4, "our probe of the released protocol (no recovery at T <= 3 at the released budget): planned for a "
        "true share of 0 against the bound of 0.4 (an exact test on teachers)"),
    ("12_temperature_window", "c*_bfloat16_upper_edge_precision"): Plan(
        0.4, "bfloat16 keeps about three significant digits, below which a large T squeezes the logit "
        "differences: planned for a true share of 0 against the bound of 0.4 (an exact test on teachers)"),
    ("12_temperature_window", "c*_shuffled_at_chance"): Plan(0.0, NO_DIFFERENCE),
    ("13_one_hidden_layer", "recovery_cell_exists"): Plan(
        0.05, "the published version: 100% held out in the recovery phase; planned for a true share of 1 against "
        "the bound of 0.95 (an exact test on the pooled held-out points)"),
    ("13_one_hidden_layer", "recovery_agrees_on_fresh_inputs"): Plan(
        0.05, "functional recovery means agreement near 1; the smallest effect of interest: 0.05 above the bound 0.9"),
    ("13_one_hidden_layer", "bound_not_sufficient"): Plan(
        0.25, "the published version: recovery needs far more samples than parameters; planned for a held-out "
        "accuracy of 0.7 in a partial-leak cell against the bound of 0.95 (an exact test)"),
    ("13_one_hidden_layer", "partial_leak_beats_chance"): Plan(1.0, SMALLEST_GAIN, per_chance=True),
    ("13_one_hidden_layer", "shuffled_at_chance"): Plan(0.0, NO_DIFFERENCE),
    ("13_one_hidden_layer", "surgery_*_keeps_recovery"): Plan(
        0.05, "the released appendix Fig 16 (surgery in the recovery phase); planned for a true share of 1 against "
        "the bound of 0.95 (an exact test on the pooled held-out points)"),
}


def plan_for(chapter: str, claim: str) -> Plan | None:
    """The plan registered for a claim (patterns as in fnmatch), or None."""
    for (ch, pattern), plan in PLANS.items():
        if ch == chapter and fnmatch.fnmatchcase(claim, pattern):
            return plan
    return None


# ---------------------------------------------------------------------------- baselines

CHANCE = "chance 1/C: the labels are random, so a student that knows nothing of a held-out point can only guess"
OWN_FRESH = ("the same students on fresh data: what they get right without any memorized information "
             "(the student's own baseline, preferred for a leak)")
TEACHER_TRIVIAL = ("the teacher's accuracy on the trivial set (the paper's baseline): what the teacher's "
                   "generalization alone gives")
PAIRED = "the other setting on the same teachers and student initializations (paired)"

BASELINES: dict[tuple[str, str], str] = {
    ("01_toy_2d", "*"): CHANCE,
    ("02_logit_distillation", "logits_beat_trivial"): OWN_FRESH,
    ("02_logit_distillation", "wider_students_extract_more"): "the narrowest students of the same teachers (paired)",
    ("02_logit_distillation", "*"): CHANCE,
    ("03_similarity_scores", "similarity_beats_chance"): CHANCE,
    ("03_similarity_scores", "logits_beat_similarity"): "the similarity students of the same teachers (paired)",
    ("04_cifar10", "*_beats_trivial"): TEACHER_TRIVIAL + " with the same shuffles; chapter 10 uses the students' own",
    ("04_cifar10", "both_beats_labels"): "labels shuffled alone, on the same images, labels and initialization (paired)",
    ("05_temperature_lr", "temperature_grid_beats_trivial"): TEACHER_TRIVIAL,
    ("05_temperature_lr", "*"): "T = 1 on the same teachers (paired): the temperature at which soft labels are "
                                "closest to hard ones",
    ("06_dataset_composition", "composition_nontrivial_cells"): TEACHER_TRIVIAL + ", in the chosen cell",
    ("06_dataset_composition", "best_dimension_grows"): "a slope of 0 (the best d does not move): a sign test "
                                                        "against one half",
    ("06_dataset_composition", "optimum_inside_grid"): "the better of the grid's two ends in the chosen row",
    ("07_logit_surgery", "*_kills_class"): CHANCE + " (on held-out class-c points)",
    ("07_logit_surgery", "*_keeps_class"): CHANCE + " (on held-out class-c points)",
    ("07_logit_surgery", "*"): "plain distillation on the same teachers and initializations (paired)",
    ("08_transformer", "*"): ("the students' own accuracy on the pairs outside D: modular addition has a rule any "
                              "student can pick up, so only held-out accuracy above it points to memorized pairs"),
    ("10_convolutions", "*_leaks_*"): PAIRED,
    ("10_convolutions", "probe_fixed_l*"): PAIRED,
    ("10_convolutions", "*"): OWN_FRESH,
    ("11_linear_recovery", "*_perfect_above_line"): ("a bound of 0.8 on the share of teachers whose every cell above "
                                                     "the line is perfect (an exact test: the outcome has no spread)"),
    ("11_linear_recovery", "*_not_perfect_below"): "1, perfect recovery: what the counting argument rules out below the line",
    ("11_linear_recovery", "*_leak_grows_below"): "a slope of 0: held-out accuracy that does not move with rho N / d",
    ("11_linear_recovery", "soft_labels_same_threshold"): "the least-squares students of the same teachers (paired)",
    ("11_linear_recovery", "teacher_*_capacity"): "one half: a teacher as likely to memorize as not (an exact test)",
    ("11_linear_recovery", "*"): "chance 1/2: the labels are random and balanced",
    ("12_temperature_window", "c*_window_*"): "the window of the other precision on the same teachers (paired)",
    ("12_temperature_window", "c*_shuffled_at_chance"): CHANCE,
    ("12_temperature_window", "*"): "a bound on the share of teachers recovered (an exact test: the outcome has no spread)",
    ("13_one_hidden_layer", "recovery_agrees_on_fresh_inputs"): "the bound 0.9 on agreement with the teacher on fresh inputs",
    ("13_one_hidden_layer", "partial_leak_beats_chance"): CHANCE,
    ("13_one_hidden_layer", "shuffled_at_chance"): CHANCE,
    ("13_one_hidden_layer", "*"): ("a bound of 0.95 on the share of held-out points correct (an exact test on the "
                                   "points pooled over the test half's teachers)"),
}


def baseline_for(chapter: str, claim: str) -> str:
    """The stated baseline of a claim, with its reason (the first pattern that matches), or ""."""
    for (ch, pattern), reason in BASELINES.items():
        if ch == chapter and fnmatch.fnmatchcase(claim, pattern):
            return reason
    return ""
