"""The published version's random data for bias-free linear teachers (chapters 11, 12, 14, 16).

Shape letters (see `memkd`): K datasets (one per teacher), M students per teacher, N samples
(padded to the largest dataset, with a mask), D input dimension, C classes.

The data of the authors' released logistic-regression script: Gaussian inputs with every feature
standardized over the dataset, exactly n points of each class (labels in class blocks), and fresh
inputs no one trains on. A student's part is the first floor(rho * n) points of each class
(`student_mask`; the rest is the held-out memorized part), and its within-class-shuffled control
moves each of its points onto another point of its class (`within_class_permutation`). The models
and their training are `memkd.models.linear`; their measurements `memkd.metrics.recovery_metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from memkd.config import invalid


@dataclass
class LinearData:
    """K datasets, padded to the largest: inputs, labels, a validity mask, and fresh inputs.

    x (K, N, D) standardized per feature over each dataset's own points (padding rows are 0);
    y (K, N) int64, class blocks of `per_class[k]` points each (padding: -1); valid (K, N) bool;
    fresh (K, N', D) inputs no one trains on, drawn from the same distribution.
    """

    x: Tensor
    y: Tensor
    valid: Tensor
    fresh: Tensor
    per_class: list[int]
    classes: int

    def to(self, dtype: torch.dtype) -> "LinearData":
        return LinearData(self.x.to(dtype), self.y, self.valid, self.fresh.to(dtype), self.per_class, self.classes)


def standardized_gaussian(n: int, d: int, gen: torch.Generator) -> Tensor:
    """(n, d) draws of N(0, I/d), each feature then standardized to mean 0 and variance 1 over the n."""
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    return (x - x.mean(0)) / x.std(0).clamp_min(1e-12)


def make_linear_data(
    per_class: Sequence[int],
    classes: int,
    input_dim: int,
    seeds: Sequence[int],
    fresh: int = 1000,
    device: torch.device | str = "cpu",
) -> LinearData:
    """One dataset per entry of `per_class` (n points of each class, labels in class blocks), float64.

    `seeds[k]` alone draws dataset k and its `fresh` inputs, so a dataset is the same in any batch.
    """
    if len(per_class) != len(seeds):
        raise invalid(
            "seeds",
            "make_linear_data",
            must=f"have the same length as 'per_class' ({len(per_class)}), one seed per dataset",
            shown=f"{len(seeds)} seeds",
        )
    n_max = classes * max(per_class)
    k = len(per_class)
    x = torch.zeros(k, n_max, input_dim, dtype=torch.float64)
    y = torch.full((k, n_max), -1, dtype=torch.int64)
    f = torch.empty(k, fresh, input_dim, dtype=torch.float64)  # (K, N', D)
    for i, (n, seed) in enumerate(zip(per_class, seeds)):
        gen = torch.Generator().manual_seed(int(seed))
        x[i, : classes * n] = standardized_gaussian(classes * n, input_dim, gen)
        y[i, : classes * n] = torch.arange(classes).repeat_interleave(n)
        f[i] = torch.randn(fresh, input_dim, generator=gen, dtype=torch.float64)
    return LinearData(x.to(device), y.to(device), (y >= 0).to(device), f.to(device), list(per_class), classes)


def student_mask(data: LinearData, rhos: Sequence[float]) -> Tensor:
    """Which points each student sees: the first floor(rho * n) of each class. (K, M, N) bool, M = len(rhos)."""
    k, n = data.y.shape
    within = torch.arange(n, device=data.y.device).expand(k, n) % torch.tensor(
        [max(pc, 1) for pc in data.per_class], device=data.y.device
    ).view(k, 1)  # position within its class
    counts = torch.tensor(
        [[math.floor(r * pc + 1e-9) for r in rhos] for pc in data.per_class], device=data.y.device
    )  # (K, M)
    return data.valid.unsqueeze(1) & (within.unsqueeze(1) < counts.unsqueeze(-1))


def within_class_permutation(data: LinearData, mask: Tensor, seeds: Sequence[int]) -> Tensor:
    """For each (teacher, student), an index permutation of N that moves every one of the student's points
    to another point of its class (a derangement: the class's points in a random order, each taking the
    next one's place, a random cycle) and fixes every other point. A plain random permutation leaves on
    average one point per class on its own soft label, which lifts the control above chance when classes
    have few points; a class with one point cannot move. mask (K, M, N); seeds: K * M ints -> (K, M, N)."""
    k, m, n = mask.shape
    perm = torch.arange(n).repeat(k, m, 1)
    y, mask_cpu = data.y.cpu(), mask.cpu()
    for i in range(k):
        for j in range(m):
            gen = torch.Generator().manual_seed(int(seeds[i * m + j]))
            for c in range(data.classes):
                idx = torch.nonzero(mask_cpu[i, j] & (y[i] == c)).flatten()
                order = idx[torch.randperm(len(idx), generator=gen)]
                perm[i, j, order] = order.roll(-1)
    return perm.to(mask.device)


__all__ = ["LinearData", "make_linear_data", "standardized_gaussian", "student_mask", "within_class_permutation"]
