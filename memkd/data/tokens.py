"""Modular addition as tokens (Nanda et al., 2023): the input `a b =`, the label (a + b) mod k.

Token ids 0..k-1 are the numbers, id k is "=". All k^2 ordered pairs form the universe; a random
`fraction` of them is the memorized set D the teacher trains on, the rest are the pairs outside D
(the "independent" data, the analogue of a fresh D'). Students see an alpha fraction of D, split per
class (per answer) with `memkd.data.random_vectors.split_per_class` like the MLP experiments.

Shapes: N sequences of length 3, tokens int64 of shape (N, 3), labels int64 of shape (N,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memkd.config import invalid


@dataclass
class ModularAddition:
    """All pairs of one modulus, with D and its complement as index arrays into them."""

    modulus: int
    tokens: torch.Tensor  # (k^2, 3) int64: a, b, "=" (id k)
    labels: torch.Tensor  # (k^2,) int64: (a + b) mod k
    memorized: np.ndarray  # indices of D
    outside: np.ndarray  # indices of the pairs not in D

    @property
    def vocab(self) -> int:
        return self.modulus + 1


def all_pairs(modulus: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every `a b =` sequence of modulus k, and its answer: shapes (k^2, 3) and (k^2,).

    >>> tokens, labels = all_pairs(5)
    >>> tokens.shape, labels.shape, tokens[7].tolist(), int(labels[7])   # 1 + 2 = 3 (mod 5)
    (torch.Size([25, 3]), torch.Size([25]), [1, 2, 5], 3)
    """
    if not isinstance(modulus, (int, np.integer)) or modulus < 2:
        raise invalid("modulus", "all_pairs", "an int >= 2", modulus)
    a, b = torch.meshgrid(torch.arange(modulus), torch.arange(modulus), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    tokens = torch.stack([a, b, torch.full_like(a, modulus)], dim=1)  # (k^2, 3)
    return tokens, (a + b) % modulus


def make_modular_addition(modulus: int, fraction: float, seed: int = 0, balanced: bool = False) -> ModularAddition:
    """Modular addition with a random `fraction` of all k^2 pairs as the memorized set D.

    balanced=False: round(fraction * k^2) pairs drawn at random. balanced=True: round(fraction * k)
    pairs drawn at random from each answer's k pairs, so every answer appears equally often in D
    and every draw of D splits per answer into parts of the same sizes (what stacking the
    students of several teachers in one ensemble needs).

    >>> task = make_modular_addition(7, 0.5, seed=0, balanced=True)    # round(0.5 * 7) = 4 pairs per answer
    >>> len(task.memorized), len(task.outside), task.tokens.shape, task.vocab
    (28, 21, torch.Size([49, 3]), 8)
    """
    if not 0.0 < fraction < 1.0:
        raise invalid("fraction", "make_modular_addition", "a float in the open interval (0, 1)", fraction)
    tokens, labels = all_pairs(modulus)
    rng = np.random.default_rng(seed)
    if balanced:
        take = int(round(fraction * modulus))
        if not 1 <= take < modulus:
            raise invalid(
                "fraction",
                "make_modular_addition",
                says=f"({fraction!r}) gives {take} of the {modulus} pairs of each answer with "
                "balanced=True: it must leave at least one pair of each answer in D and one outside.",
            )
        answers = labels.numpy()
        chosen = np.concatenate([rng.permutation(np.flatnonzero(answers == c))[:take] for c in range(modulus)])
        inside = np.zeros(len(answers), dtype=bool)
        inside[chosen] = True
        return ModularAddition(int(modulus), tokens, labels, np.flatnonzero(inside), np.flatnonzero(~inside))
    order = rng.permutation(len(labels))
    size = int(round(fraction * len(labels)))
    return ModularAddition(int(modulus), tokens, labels, np.sort(order[:size]), np.sort(order[size:]))
