"""Random memorization data: the dataset D, a fresh dataset D', and the per-class alpha split.

Shape letters (see `memkd`): N = classes * per_class samples, D input dimension.
Nothing here trains; images and tokens live in `memkd.data.images` and `memkd.data.tokens`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from memkd.config import invalid

DISTRIBUTIONS = ("uniform", "gaussian")


def make_memorization_data(
    classes: int,
    per_class: int,
    input_dim: int,
    seed: int,
    distribution: str = "uniform",
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Draw D: i.i.d. inputs and exactly `per_class` labels for each class, in random order.

    Returns x : float32 (N, D), uniform in [-1, 1] (or standard normal), and y : int64 (N,).
    The same arguments always give the same tensors (a private generator, CPU then moved).

    >>> x, y = make_memorization_data(classes=3, per_class=4, input_dim=10, seed=0)
    >>> x.shape, y.shape, torch.bincount(y).tolist()                   # (N, D), (N,): 4 of each class
    (torch.Size([12, 10]), torch.Size([12]), [4, 4, 4])
    """
    if distribution not in DISTRIBUTIONS:
        raise invalid("distribution", "make_memorization_data", f"one of {DISTRIBUTIONS}", distribution)
    gen = torch.Generator().manual_seed(int(seed))
    n = classes * per_class
    if distribution == "uniform":
        x = torch.rand(n, input_dim, generator=gen) * 2 - 1  # (N, D) in [-1, 1)
    else:
        x = torch.randn(n, input_dim, generator=gen)
    y = torch.arange(classes).repeat_interleave(per_class)  # balanced: per_class of each
    y = y[torch.randperm(n, generator=gen)]
    return x.to(device), y.to(device)


def split_per_class(y: Tensor, alpha: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split indices of D into the student's part and the held-out part, class by class.

    In each class, round(alpha * count) samples go to the student; the rest are held out.
    Returns (train_idx, test_idx), int64 index tensors on y's device, each sorted.
    Raises ValueError when a class would end up with no student or no held-out sample.

    >>> y = torch.arange(3).repeat_interleave(4)                      # (N,) = (12,), 4 per class
    >>> train_idx, test_idx = split_per_class(y, alpha=0.5, seed=0)
    >>> train_idx.shape, test_idx.shape, torch.bincount(y[train_idx]).tolist()
    (torch.Size([6]), torch.Size([6]), [2, 2, 2])
    """
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    y_cpu = y.detach().cpu()
    train, test = [], []
    for c in torch.unique(y_cpu).tolist():
        members = torch.nonzero(y_cpu == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        k = int(round(alpha * len(members)))
        if k == 0 or k == len(members):
            raise invalid(
                "alpha",
                "split_per_class",
                says=f"leaves class {c} with {k} of {len(members)} samples for the student: every class needs "
                "at least one student sample and one held-out sample. Use more samples per class or an "
                f"alpha further from 0 and 1. Got {alpha!r} instead.",
            )
        train.append(members[:k])
        test.append(members[k:])
    train_idx = torch.sort(torch.cat(train)).values
    test_idx = torch.sort(torch.cat(test)).values
    return train_idx.to(y.device), test_idx.to(y.device)
