"""What a model family tells the one protocol of `memkd.distillation`: the `Family` protocol, the
optimizer a family trains with (`Optimizer`: Adam with L2 decay, or AdamW), and the MLP family.

Shape letters (see `memkd`): E members, N samples, D input dimension, P width, C classes.

A family builds an ensemble (`build(members, seed, device)`, member i initialised from its own seed,
so that it equals the single model built with that seed) and says what it takes: `inputs`, the
student kinds it trains, whether the fused full-batch step (`memkd.fused`) applies, its memory per
member, its optimizer, and what one epoch is called in messages. The MLP family lives here; the
CNN family (`CNNFamily`) and the transformer family (`TransformerFamily`) beside their models in
`memkd.models.cnn` and `memkd.models.transformer`. No training happens here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import nn

from memkd.device_memory import training_bytes_per_member
from memkd.models.mlp import EnsembleMLP

STUDENT_KINDS = ("soft", "hard", "similarity")  # what `memkd.distillation.train_students` trains


@dataclass(frozen=True)
class Optimizer:
    """How `memkd.train.BatchedAdam` steps a family's members (the learning rate is the caller's).

    weight_decay : the default when the caller gives None (an explicit value wins).
    decoupled : False: Adam with L2 decay added to the gradient; True: AdamW (decay applied to
        the weights, scaled by the learning rate).
    betas : Adam's moment decay rates.
    """

    weight_decay: float = 0.0
    decoupled: bool = False
    betas: tuple[float, float] = (0.9, 0.999)

    def fit_options(self, weight_decay: float | None) -> dict:
        """The keyword arguments of `memkd.train.fit` that set the optimizer."""
        return dict(
            weight_decay=self.weight_decay if weight_decay is None else weight_decay,
            decoupled_weight_decay=self.decoupled,
            betas=self.betas,
        )


ADAM = Optimizer()  # the paper's and the released code's (torch.optim.Adam's defaults)
ADAMW = Optimizer(weight_decay=1.0, decoupled=True, betas=(0.9, 0.98))  # Nanda et al. (2023), lr 1e-3


class Family(Protocol):
    """What `memkd.distillation.train_teacher` and `train_students` need from a model family."""

    inputs: str  # "vectors" | "images" (float rows (N, D)) | "tokens" (int64 sequences (N, S))
    student_kinds: tuple[str, ...]  # the kinds of `train_students` it trains
    fusable: bool  # whether `memkd.models.fused_mlp.FusedCrossEntropy` trains it (full batch)
    eval_chunk: int | None  # samples per forward pass when measuring accuracy; None: all at once
    optimizer: Optimizer  # how its members step
    unit: str  # what one epoch is called in messages ("epochs", "full-batch steps")

    def build(self, members: int, seed: int | Sequence[int], device: torch.device) -> nn.Module:
        """An ensemble of E members with parameters stacked (E, ...), on `device`."""

    def training_bytes(self, samples: int, own_inputs: bool, soft_targets: bool) -> int | None:
        """Memory to train one member on `samples` rows; None: not estimated."""


@dataclass(frozen=True)
class MLPFamily:
    """`EnsembleMLP`s D -> P -> ... -> P -> C with `hidden_layers` hidden layers (k = 0: the linear
    map D -> C; with bias=False, the published version's bias-free linear model); the first
    `frozen_layers` layers keep their random initialization (no gradient, so Adam never moves them)."""

    input_dim: int
    width: int
    classes: int
    hidden_layers: int = 2
    activation: str = "relu"
    frozen_layers: int = 0
    bias: bool = True

    inputs = "vectors"
    student_kinds = STUDENT_KINDS
    eval_chunk = None
    optimizer = ADAM
    unit = "epochs"

    @property
    def fusable(self) -> bool:
        return self.frozen_layers == 0 and self.bias  # the fused step trains every parameter

    def build(self, members: int, seed: int | Sequence[int], device: torch.device) -> EnsembleMLP:
        model = EnsembleMLP(
            members,
            self.input_dim,
            self.width,
            self.classes,
            self.hidden_layers,
            self.activation,
            seed=seed,
            bias=self.bias,
        ).to(device)
        for layer in range(self.frozen_layers):
            model.weights[layer].requires_grad_(False)
            model.biases[layer].requires_grad_(False)
        return model

    def training_bytes(self, samples: int, own_inputs: bool, soft_targets: bool) -> int:
        return training_bytes_per_member(
            samples,
            self.input_dim,
            self.width,
            self.classes,
            self.hidden_layers,
            own_inputs=own_inputs,
            soft_targets=soft_targets,
        )
