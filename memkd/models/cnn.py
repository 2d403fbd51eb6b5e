"""Small convolutional networks as one batched ensemble, and how teachers and students train.

Shapes: E members, N images, (c, h, w) one image, D = c * h * w (images arrive flattened,
channel-major, as `memkd.data.images` keeps them), C classes, K channels of the first conv layer.

Architecture of every member: `conv_layers` blocks of [3x3 conv (padding 1) -> ReLU -> 2x2 max
pool], channels K, 2K, 4K, ..., then an MLP head: flatten -> `head_width` -> ReLU -> C.

`EnsembleCNN` keeps each parameter stacked along a leading member axis, (E, ...), so that
`memkd.train.BatchedAdam` gives each member its own learning rate, and `memkd.train.fit` trains
all members at once. Two equivalent forward passes (`backend`):
    "grouped"  the members' channels side by side, every conv one grouped conv (groups = E);
    "vmap"     `torch.func.vmap` of one member's functional forward over the stacked parameters.
Member i is initialised from its own generator (seed `seeds[i]`), drawn like `nn.Conv2d` and
`nn.Linear` (uniform in +-1/sqrt(fan_in)), so it equals the single CNN built with that seed, and
trains like it (tested). `member(i)` returns it as a plain `nn.Sequential`.

`CNNFamily` is the family `memkd.distillation.train_teacher` and `train_students` train: the one
protocol of every model family (autograd, Adam; soft and hard students). No training loop lives here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memkd.config import invalid
from memkd.models.family import ADAM

BACKENDS = ("grouped", "vmap")
CNN_STUDENT_KINDS = ("soft", "hard")
KERNEL = 3


def _check_int(name: str, value, low: int, high: float = math.inf, where: str = "EnsembleCNN") -> None:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        allowed = f"an int >= {low}" if high == math.inf else f"an int in [{low}, {int(high)}]"
        raise invalid(name, where, allowed, value)


def member_seeds(members: int, seed: int | Sequence[int]) -> list[int]:
    """One initialisation seed per member: `seed + i` for an int, else the given list (length E)."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(members)]
    seeds = [int(s) for s in seed]
    if len(seeds) != members:
        raise invalid(
            "seed", "EnsembleCNN", f"an int or a list of {members} ints (one per member)", shown=f"{len(seeds)} seeds"
        )
    return seeds


class EnsembleCNN(nn.Module):
    """E independent small CNNs with stacked parameters.

    Parameters
    ----------
    members : E.
    image_shape : (c, h, w); h and w must be divisible by 2 ** conv_layers.
    classes : C.
    width : K, channels of the first conv layer (layer l has K * 2**l).
    conv_layers : 1 to 3 conv blocks.
    head_width : hidden units of the MLP head.
    seed : an int (member i uses seed + i) or one seed per member.
    backend : "grouped" or "vmap" (the same numbers to float rounding).

    >>> cnn = EnsembleCNN(members=2, image_shape=(1, 8, 8), classes=3, width=4, conv_layers=2, head_width=8)
    >>> cnn(torch.randn(5, 64)).shape                           # (N, D) with D = c * h * w -> (E, N, C)
    torch.Size([2, 5, 3])
    """

    def __init__(
        self,
        members: int,
        image_shape: Sequence[int],
        classes: int,
        width: int = 16,
        conv_layers: int = 2,
        head_width: int = 128,
        seed: int | Sequence[int] = 0,
        backend: str = "grouped",
    ) -> None:
        super().__init__()
        _check_int("members", members, 1)
        _check_int("classes", classes, 2)
        _check_int("width", width, 1)
        _check_int("conv_layers", conv_layers, 1, 3)
        _check_int("head_width", head_width, 1)
        if backend not in BACKENDS:
            raise invalid("backend", "EnsembleCNN", f"one of {BACKENDS}", backend)
        shape = tuple(int(v) for v in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise invalid("image_shape", "EnsembleCNN", "(channels, height, width) of positive ints", image_shape)
        c, h, w = shape
        factor = 2**conv_layers
        if h % factor or w % factor:
            raise invalid(
                "conv_layers",
                "EnsembleCNN",
                must=f"leave the image divisible by the pooling: {h}x{w} images allow at "
                f"most {_max_layers(h, w)} layers",
                shown=conv_layers,
            )
        self.members, self.image_shape, self.classes = members, shape, classes
        self.width, self.conv_layers, self.head_width, self.backend = width, conv_layers, head_width, backend
        self.seeds = member_seeds(members, seed)
        channels = [c] + [width * 2**i for i in range(conv_layers)]
        self.flat = channels[-1] * (h // factor) * (w // factor)
        heads = [self.flat, head_width, classes]
        # one member after another, each from its own generator: member i = a single CNN with seeds[i]
        drawn = [self._draw(torch.Generator().manual_seed(s), channels, heads) for s in self.seeds]
        stack = lambda j: nn.Parameter(torch.stack([d[j] for d in drawn]))
        n_conv = conv_layers
        self.conv_weights = nn.ParameterList([stack(2 * i) for i in range(n_conv)])  # (E, out, in, k, k)
        self.conv_biases = nn.ParameterList([stack(2 * i + 1) for i in range(n_conv)])  # (E, out)
        self.weights = nn.ParameterList([stack(2 * n_conv + 2 * i) for i in range(2)])  # (E, in, out)
        self.biases = nn.ParameterList([stack(2 * n_conv + 2 * i + 1) for i in range(2)])  # (E, 1, out)

    @staticmethod
    def _draw(gen: torch.Generator, channels: list[int], heads: list[int]) -> list[Tensor]:
        out: list[Tensor] = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            bound = 1.0 / math.sqrt(cin * KERNEL * KERNEL)
            out.append((torch.rand(cout, cin, KERNEL, KERNEL, generator=gen) * 2 - 1) * bound)
            out.append((torch.rand(cout, generator=gen) * 2 - 1) * bound)
        for fan_in, fan_out in zip(heads[:-1], heads[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            out.append((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound)
            out.append((torch.rand(1, fan_out, generator=gen) * 2 - 1) * bound)
        return out

    # --- forward passes -------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """x : (N, D) shared by all members, or (E, N, D) one batch per member. Returns (E, N, C)."""
        if x.dim() not in (2, 3) or x.shape[-1] != math.prod(self.image_shape):
            raise invalid(
                "x",
                "EnsembleCNN.forward",
                must=f"have the shape (N, {math.prod(self.image_shape)}) or (E, N, {math.prod(self.image_shape)})",
                shown=tuple(x.shape),
            )
        features = self._features_grouped(x) if self.backend == "grouped" else self._features_vmap(x)
        h = torch.relu(torch.baddbmm(self.biases[0], features, self.weights[0]))  # (E, N, head)
        return torch.baddbmm(self.biases[1], h, self.weights[1])  # (E, N, C)

    def _features_grouped(self, x: Tensor) -> Tensor:
        e = self.members
        c, hh, ww = self.image_shape
        n = x.shape[-2]
        if x.dim() == 2:  # the same images for every member: repeat them along the channels
            h = x.reshape(n, 1, c, hh, ww).expand(n, e, c, hh, ww).reshape(n, e * c, hh, ww)
        else:
            h = x.reshape(e, n, c, hh, ww).transpose(0, 1).reshape(n, e * c, hh, ww)
        for w, b in zip(self.conv_weights, self.conv_biases):
            weight = w.reshape(e * w.shape[1], *w.shape[2:])  # (E * out, in, k, k)
            h = F.conv2d(h, weight, b.reshape(-1), padding=KERNEL // 2, groups=e)
            h = F.max_pool2d(torch.relu(h), 2)  # (N, E * out, h', w')
        return h.reshape(n, e, -1).transpose(0, 1)  # (E, N, flat)

    def _features_vmap(self, x: Tensor) -> Tensor:
        c, hh, ww = self.image_shape

        def one(weights: list[Tensor], biases: list[Tensor], xi: Tensor) -> Tensor:
            h = xi.reshape(-1, c, hh, ww)
            for w, b in zip(weights, biases):
                h = F.max_pool2d(torch.relu(F.conv2d(h, w, b, padding=KERNEL // 2)), 2)
            return h.reshape(h.shape[0], -1)

        in_x = None if x.dim() == 2 else 0
        return torch.func.vmap(one, in_dims=(0, 0, in_x))(list(self.conv_weights), list(self.conv_biases), x)

    # --- members ------------------------------------------------------------------------------

    @torch.no_grad()
    def member(self, index: int) -> nn.Sequential:
        """A plain nn.Sequential on (N, D) inputs with member `index`'s weights (a copy)."""
        layers: list[nn.Module] = [nn.Unflatten(1, self.image_shape)]
        for w, b in zip(self.conv_weights, self.conv_biases):
            conv = nn.Conv2d(w.shape[2], w.shape[1], KERNEL, padding=KERNEL // 2)
            conv.weight.copy_(w[index])
            conv.bias.copy_(b[index])
            layers += [conv.to(w.device), nn.ReLU(), nn.MaxPool2d(2)]
        layers.append(nn.Flatten())
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.Linear(w.shape[1], w.shape[2])
            lin.weight.copy_(w[index].T)
            lin.bias.copy_(b[index, 0])
            layers.append(lin.to(w.device))
            if i == 0:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return (
            f"members={self.members}, image_shape={self.image_shape}, classes={self.classes}, "
            f"width={self.width}, conv_layers={self.conv_layers}, head_width={self.head_width}, "
            f"backend={self.backend!r}"
        )


def _max_layers(h: int, w: int) -> int:
    layers = 0
    while layers < 3 and h % 2 ** (layers + 1) == 0 and w % 2 ** (layers + 1) == 0:
        layers += 1
    return layers


@dataclass(frozen=True)
class CNNFamily:
    """`EnsembleCNN`s on flattened images of `image_shape` (c, h, w): a family for
    `memkd.distillation.train_teacher` / `train_students` (see `memkd.models.family.Family`)."""

    image_shape: tuple
    classes: int
    width: int = 16
    conv_layers: int = 2
    head_width: int = 128
    backend: str = "grouped"

    inputs = "images"
    student_kinds = CNN_STUDENT_KINDS
    fusable = False  # the fused step is written for MLPs
    eval_chunk = 4096  # images per forward pass when measuring
    optimizer = ADAM
    unit = "epochs"

    def build(self, members: int, seed: int | Sequence[int], device: torch.device) -> EnsembleCNN:
        return EnsembleCNN(
            members,
            self.image_shape,
            self.classes,
            width=self.width,
            conv_layers=self.conv_layers,
            head_width=self.head_width,
            seed=seed,
            backend=self.backend,
        ).to(device)

    def training_bytes(self, samples: int, own_inputs: bool, soft_targets: bool) -> None:
        return None  # not estimated for CNNs
