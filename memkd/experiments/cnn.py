"""Small convolutional networks as one batched ensemble, and how teachers and students train.

Shapes: E members, N images, (c, h, w) one image, D = c * h * w (images arrive flattened,
channel-major, as `memkd.experiments.images` keeps them), C classes, K channels of the first conv layer.

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

`train_ensemble_teacher` and `train_ensemble_students` train any such ensemble (an `EnsembleCNN`
or a `memkd.models.EnsembleMLP`) through `fit` with autograd, with the losses of `memkd.losses`.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memkd.losses import hard_cross_entropy, soft_cross_entropy
from memkd.metrics import accuracy
from memkd.distillation import Teacher, TeacherDidNotMemorize
from memkd.train import fit

BACKENDS = ("grouped", "vmap")
CNN_STUDENT_KINDS = ("soft", "hard")
TEACHER_STOPS = ("budget", "first_perfect")
KERNEL = 3


def _check_int(name: str, value, low: int, high: float = math.inf, where: str = "EnsembleCNN") -> None:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        allowed = f"an int >= {low}" if high == math.inf else f"an int in [{low}, {int(high)}]"
        raise ValueError(f"The '{name}' parameter of {where} must be {allowed}. Got {value!r} instead.")


def member_seeds(members: int, seed: int | Sequence[int]) -> list[int]:
    """One initialisation seed per member: `seed + i` for an int, else the given list (length E)."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(members)]
    seeds = [int(s) for s in seed]
    if len(seeds) != members:
        raise ValueError(f"The 'seed' parameter of EnsembleCNN must be an int or a list of {members} "
                         f"ints (one per member). Got {len(seeds)} seeds instead.")
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
            raise ValueError(f"The 'backend' parameter of EnsembleCNN must be one of {BACKENDS}. "
                             f"Got {backend!r} instead.")
        shape = tuple(int(v) for v in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"The 'image_shape' parameter of EnsembleCNN must be (channels, height, "
                             f"width) of positive ints. Got {image_shape!r} instead.")
        c, h, w = shape
        factor = 2 ** conv_layers
        if h % factor or w % factor:
            raise ValueError(f"The 'conv_layers' parameter of EnsembleCNN must leave the image "
                             f"divisible by the pooling: {h}x{w} images allow at most "
                             f"{_max_layers(h, w)} layers. Got {conv_layers} instead.")
        self.members, self.image_shape, self.classes = members, shape, classes
        self.width, self.conv_layers, self.head_width, self.backend = width, conv_layers, head_width, backend
        self.seeds = member_seeds(members, seed)
        channels = [c] + [width * 2 ** i for i in range(conv_layers)]
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
            raise ValueError(f"EnsembleCNN expects inputs of shape (N, {math.prod(self.image_shape)}) "
                             f"or (E, N, {math.prod(self.image_shape)}). Got {tuple(x.shape)} instead.")
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
        return torch.func.vmap(one, in_dims=(0, 0, in_x))(
            list(self.conv_weights), list(self.conv_biases), x)

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
        return (f"members={self.members}, image_shape={self.image_shape}, classes={self.classes}, "
                f"width={self.width}, conv_layers={self.conv_layers}, head_width={self.head_width}, "
                f"backend={self.backend!r}")


def _max_layers(h: int, w: int) -> int:
    layers = 0
    while layers < 3 and h % 2 ** (layers + 1) == 0 and w % 2 ** (layers + 1) == 0:
        layers += 1
    return layers


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, chunk: int = 4096) -> Tensor:
    """Logits (E, N, C) of an ensemble on x (N, D) or (E, N, D), `chunk` images at a time."""
    parts = [model(x[..., i:i + chunk, :]) for i in range(0, x.shape[-2], chunk)]
    return torch.cat(parts, dim=1)


# --- training -----------------------------------------------------------------------------------


def _rows(t: Tensor, idx: Tensor | None, trailing: int) -> Tensor:
    """Select samples `idx` along the sample axis of a tensor with `trailing` dims after it."""
    if idx is None:
        return t
    return t[..., idx, :] if trailing == 1 else t[..., idx]


def train_ensemble_teacher(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float | Tensor = 1e-3,
    teacher_stop: str = "budget",
    batch_size: int | None = None,
    seed: int = 0,
    require_memorization: bool = True,
    progress: bool = False,
) -> Teacher:
    """Train an ensemble of K teachers (one per dataset) on hard labels with `fit`.

    x : (N, D) or (K, N, D); y : (N,) or (K, N); model : K members (EnsembleCNN or EnsembleMLP).
    teacher_stop : "budget" trains every teacher for all `epochs` and requires 100% training
        accuracy at the end; "first_perfect" freezes each teacher at its first epoch at 100%.
    Raises TeacherDidNotMemorize (with the lowest accuracy reached) if a teacher ends below 100%,
    unless `require_memorization=False`.
    """
    if teacher_stop not in TEACHER_STOPS:
        raise ValueError(f"The 'teacher_stop' parameter of train_ensemble_teacher must be one of "
                         f"{TEACHER_STOPS}. Got {teacher_stop!r} instead.")
    _check_int("epochs", epochs, 1, where="train_ensemble_teacher")
    n = x.shape[-2]

    def objective(idx: Tensor | None):
        logits = model(_rows(x, idx, 1))
        yb = _rows(y, idx, 0)
        return hard_cross_entropy(logits, yb), accuracy(logits.detach(), yb)

    def evaluate() -> Tensor:
        return accuracy(predict(model, x), y)

    history, first = fit(
        model, objective, n_samples=n, epochs=epochs, lr=lr, batch_size=batch_size,
        freeze_when_perfect=teacher_stop == "first_perfect", record_first_perfect=True, evaluate=evaluate,
        log_every=max(1, epochs // 50), seed=seed, progress=progress, desc="teacher",
    )
    acc = evaluate().cpu()
    memorized = acc >= 1.0
    if require_memorization and not bool(memorized.all()):
        raise TeacherDidNotMemorize(
            f"train_ensemble_teacher: {int((~memorized).sum())} of {len(acc)} teacher(s) did not reach "
            f"100% training accuracy {'after' if teacher_stop == 'budget' else 'within'} {epochs} epochs "
            f"(teacher_stop={teacher_stop!r}; lowest reached {float(acc.min()):.2%}). "
            "Give the teacher more epochs, more width or another learning rate."
        )
    epochs_run = int(history["epoch"].max()) if len(history) else 0
    return Teacher(model, acc, memorized, first, epochs_run, history)


def train_ensemble_students(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    *,
    kind: str,
    lrs: Tensor | Sequence[float] | float,
    epochs: int,
    temperatures: Tensor | Sequence[float] | float = 1.0,
    soften_student: bool = False,
    batch_size: int | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    log_every: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Train the E members of `model` as students; returns fit's history.

    x : (N, D) shared or (E, N, D) per member.
    targets, by kind:
      "soft"  probabilities (N, C) or (E, N, C), e.g. `soft_targets(teacher logits, T)`;
              `temperatures` (E,) matters only with soften_student=True (the paper's text
              convention: the student's logits are divided by T too).
      "hard"  labels (N,) or (E, N).
    """
    if kind not in CNN_STUDENT_KINDS:
        raise ValueError(f"The 'kind' parameter of train_ensemble_students must be one of "
                         f"{CNN_STUDENT_KINDS}. Got {kind!r} instead.")
    _check_int("epochs", epochs, 1, where="train_ensemble_students")
    members = next(model.parameters()).shape[0]
    temps = torch.as_tensor(temperatures, dtype=torch.float32, device=x.device).expand(members)
    labels = targets.argmax(dim=-1) if kind == "soft" else targets

    def objective(idx: Tensor | None):
        out = model(_rows(x, idx, 1))
        yb = _rows(labels, idx, 0)
        if kind == "hard":
            return hard_cross_entropy(out, yb), accuracy(out.detach(), yb)
        loss = soft_cross_entropy(out, _rows(targets, idx, 1), temps, soften_student)
        return loss, accuracy(out.detach(), yb)

    history, _ = fit(
        model, objective, n_samples=x.shape[-2], epochs=epochs, lr=lrs, batch_size=batch_size,
        weight_decay=weight_decay, log_every=log_every, seed=seed, progress=progress,
        desc=f"{kind} students",
    )
    return history
