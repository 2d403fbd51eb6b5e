"""One function per paper figure: `fn(profile="smoke" | "quick" | "paper", **overrides) -> DataFrame`."""

from memkd.experiments.figures import (
    dataset_composition,
    logit_distillation,
    logit_surgery,
    similarity_distillation,
    temperature_lr,
    toy_2d,
    toy_2d_regions,
)

__all__ = [
    "toy_2d", "toy_2d_regions", "logit_distillation", "similarity_distillation", "temperature_lr",
    "dataset_composition", "logit_surgery",
]
