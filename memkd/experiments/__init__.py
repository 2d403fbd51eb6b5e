"""One function per experiment: `fn(profile="smoke" | "quick" | "paper", **overrides) -> DataFrame`.

One module per figure or question: the paper's figure 1 (`toy`), figures 2-3 and 5-7 (`fig2_logits`,
`fig3_similarity`, `fig5_temperature_lr`, `fig6_composition`, `fig7_surgery`), its figures 4 and 8
beyond random vectors (`cifar`, `modular_addition`), the six questions it leaves open (`q1_overlap` ...
`q6_teacher_protocol`, chapter 09, with what they share in `open_questions`), CNN teachers and students
(`convolutions`, chapter 10); the published version's linear teachers (`linear_recovery`,
`temperature_window`, chapters 11-12; `class_scaling`, the class counts of
chapter 16), its one-hidden-layer phase map (`one_hidden_layer`, with its
phase rules in `phases`, chapter 13), its teacher clock for modular addition (`teacher_clock`,
chapter 08) and its GPT-2 notebook on random facts (`language_model`, chapter 15); beyond both, the defences
against the leak (`defence_frontier`, chapter 14). Each is declared with `memkd.declare.experiment` on its config: `help()` lists its knobs
with their profile defaults and its table's columns, every table gets `teacher_id`, and the config is
`fn.config`.
"""

from memkd.experiments.cifar import cifar_shuffles
from memkd.experiments.convolutions import convolutional_distillation
from memkd.experiments.linear_recovery import linear_recovery
from memkd.experiments.modular_addition import transformer_distillation
from memkd.experiments.temperature_window import temperature_window
from memkd.experiments.class_scaling import class_scaling
from memkd.experiments.teacher_clock import teacher_clock
from memkd.experiments.one_hidden_layer import one_hidden_layer
from memkd.experiments.language_model import language_model
from memkd.experiments.toy import toy_2d, toy_2d_regions
from memkd.experiments.fig2_logits import logit_distillation
from memkd.experiments.fig3_similarity import similarity_distillation
from memkd.experiments.fig5_temperature_lr import temperature_lr
from memkd.experiments.fig6_composition import dataset_composition
from memkd.experiments.fig7_surgery import logit_surgery
from memkd.experiments.q1_overlap import logit_vs_similarity_overlap
from memkd.experiments.q2_regularization import teacher_regularization
from memkd.experiments.q3_architecture import architecture
from memkd.experiments.q4_convention import temperature_convention
from memkd.experiments.q5_probe import random_features_probe
from memkd.experiments.q6_teacher_protocol import teacher_protocol
from memkd.experiments.defence_frontier import defence_frontier

__all__ = [
    "toy_2d",
    "toy_2d_regions",
    "logit_distillation",
    "similarity_distillation",
    "temperature_lr",
    "dataset_composition",
    "logit_surgery",
    "cifar_shuffles",
    "transformer_distillation",
    "logit_vs_similarity_overlap",
    "teacher_regularization",
    "architecture",
    "temperature_convention",
    "random_features_probe",
    "teacher_protocol",
    "convolutional_distillation",
    "linear_recovery",
    "temperature_window",
    "teacher_clock",
    "one_hidden_layer",
    "defence_frontier",
    "language_model",
    "class_scaling",
]
