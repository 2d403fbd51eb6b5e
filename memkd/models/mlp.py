"""ReLU MLPs and their batched ensemble: E independent networks evaluated in one pass.

Shape letters (see `memkd`): E members, N samples, D input dimension, P hidden width, C classes.
`EnsembleMLP` stacks each layer's weights as (E, in, out) and uses batched matmuls; member i
behaves exactly like the plain `nn.Sequential` that `member(i)` returns (tested).
The 1-layer transformer lives in `memkd.models.transformer`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from memkd.config import invalid

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}


def _activation_fn(name: str):
    if name == "relu":
        return torch.relu_
    if name == "tanh":
        return torch.tanh_
    if name == "linear":
        return lambda h: h
    raise invalid("activation", "EnsembleMLP", f"one of {tuple(ACTIVATIONS)}", name)


def _draw_layers(members: int, sizes: list[int], seed: int) -> list[tuple[Tensor, Tensor]]:
    """Weights (E, in, out) and biases (E, 1, out) of every layer, uniform in +-1/sqrt(fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(members, fan_in, fan_out, generator=gen) * 2 - 1) * bound
        b = (torch.rand(members, 1, fan_out, generator=gen) * 2 - 1) * bound
        layers.append((w, b))
    return layers


class EnsembleMLP(nn.Module):
    """E independent MLPs D -> P -> ... -> P -> C with stacked weights.

    Parameters
    ----------
    members : E, the number of independent networks.
    input_dim, width, classes : D, P, C.
    hidden_layers : number of hidden layers of width P (the paper uses 2; Fig 1 and the published
        version's network use 1; 0 is the linear map D -> C, and `width` is then unused).
    bias : False: no biases (they are zero and never trained); with hidden_layers=0 this is the
        bias-free linear model of the published version (`memkd.models.linear`), drawn alike.
    activation : "relu" | "tanh" | "linear".
    seed : initialisation seed; weights and biases are drawn like `nn.Linear`
        (uniform in +-1/sqrt(fan_in)), independently for every member. A sequence of E seeds
        draws member i from seed[i] alone, so that it equals a one-member ensemble with that
        seed whatever ensemble it is trained in (see `memkd.seeds`).

    >>> net = EnsembleMLP(members=4, input_dim=10, width=16, classes=3)
    >>> net(torch.randn(6, 10)).shape, net(torch.randn(4, 6, 10)).shape   # (N, D) shared or (E, N, D)
    (torch.Size([4, 6, 3]), torch.Size([4, 6, 3]))
    >>> net.weights[0].shape                                            # (E, D, P)
    torch.Size([4, 10, 16])
    """

    def __init__(
        self,
        members: int,
        input_dim: int,
        width: int,
        classes: int,
        hidden_layers: int = 2,
        activation: str = "relu",
        seed: int | Sequence[int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(hidden_layers, (int, np.integer)) or hidden_layers < 0:
            raise invalid("hidden_layers", "EnsembleMLP", "an int >= 0", hidden_layers)
        self.members, self.input_dim, self.width, self.classes = members, input_dim, width, classes
        self.hidden_layers, self.activation, self.bias = hidden_layers, activation, bias
        self._act = _activation_fn(activation)
        sizes = [input_dim] + [width] * hidden_layers + [classes]
        if isinstance(seed, (int, np.integer)):
            layers = _draw_layers(members, sizes, int(seed))
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != members:
                raise invalid(
                    "seed",
                    "EnsembleMLP",
                    f"an int or hold one seed per member ({members})",
                    shown=f"{len(seeds)} seeds",
                )
            per_member = [_draw_layers(1, sizes, s) for s in seeds]
            layers = [
                (torch.cat([m[i][0] for m in per_member]), torch.cat([m[i][1] for m in per_member]))
                for i in range(len(sizes) - 1)
            ]
        self.weights = nn.ParameterList([nn.Parameter(w) for w, _ in layers])  # (E, in, out)
        # (E, 1, out); without bias: zeros that no optimizer moves (the weights are drawn as with biases)
        self.biases = nn.ParameterList(
            [nn.Parameter(b if bias else torch.zeros_like(b), requires_grad=bias) for _, b in layers]
        )

    def forward(self, x: Tensor) -> Tensor:
        """x : (N, D) shared by all members, or (E, N, D) per member. Returns logits (E, N, C)."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if h.dim() == 2:  # shared input: broadcast (N, D) to (E, N, D) without a copy
                h = h.expand(self.members, *h.shape)
            h = torch.baddbmm(b, h, w)  # (E, N, in) @ (E, in, out) + b -> (E, N, out)
            if i < last:
                h = self._act(h)  # in place: autograd keeps what the backward needs
        return h

    @torch.no_grad()
    def member(self, index: int) -> nn.Sequential:
        """A plain nn.Sequential with member `index`'s weights (a copy)."""
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.Linear(w.shape[1], w.shape[2], bias=self.bias)
            lin.weight.copy_(w[index].T)
            if self.bias:
                lin.bias.copy_(b[index, 0])
            layers.append(lin.to(w.device))
            if i < len(self.weights) - 1:
                layers.append(ACTIVATIONS[self.activation]())
        return nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return (
            f"members={self.members}, input_dim={self.input_dim}, width={self.width}, "
            f"classes={self.classes}, hidden_layers={self.hidden_layers}, activation={self.activation!r}, bias={self.bias}"
        )
