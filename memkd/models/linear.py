"""Bias-free linear teachers and their students: the published version's recovery experiments.

Shape letters (see `memkd`): K teachers (each its own dataset), M students per teacher, N samples
(padded to the largest dataset, with a mask), D input dimension, C classes, O outputs of the linear
map (1 for the binary teacher, whose class logits are (0, z); else C).

The data (`memkd.data.linear`) are those of the authors' released logistic-regression script, and
the student's part is the first floor(rho * n) points of each class. A linear map z = x W (W: (D, O),
no bias) is trained as teacher by full-batch Adam on cross-entropy, and the Adam students below, through
the one protocol: `LinearFamily` is what `memkd.distillation.train_teacher` / `train_students` build,
with the protocol's per-member `mask` (each member averaged over its own points). Students:

- ``least_squares``: the minimum-norm least-squares fit of W to the teacher's logits on the
  student's points (a batched pseudo-inverse), the released Fig 3 student;
- ``soft_labels``: Adam on the cross-entropy to softmax(z / T), in the released convention (the
  student's own logits are not divided by T) or the text's (``soften_student=True``);
- ``soft_labels_solved``: the exact minimizer of that same convex loss, found without an optimizer
  from the stored soft labels: where the loss can reach its minimum, the student's logit
  differences equal those of log p, so W solves a least-squares problem in log p (see
  `solve_soft_labels`). It tells what the precision of the soft labels allows; ``soft_labels``
  tells what a fixed Adam budget reaches.

Each has a within-class-shuffled control: the student's soft labels are deranged within each class
(equivalently its inputs: the set of pairs is the same), so each point keeps a label of its class but
not its own. Students of one teacher share its inputs: W is stored as (K, D, M, O) and one GEMM
(K, N, D) @ (K, D, M * O) serves all M, which is what makes a grid of temperatures one ensemble.
The protocol sees the K x M maps as E = K * M members (`LinearMembers`: (K, N, D) -> (E, N, C)).
Left out: biases, mini-batches, hidden layers (chapter 13 has those). The same bias-free teacher is
k = 0 of the MLP family, `MLPFamily(D, 1, C, hidden_layers=0, bias=False)` (tests/test_distillation.py:
equal weights); `LinearFamily` adds what the chapters need, the shared inputs of one teacher's students
and their precision. What a student recovers is measured by `memkd.metrics.recovery_metrics` on
`linear_logits`; no training happens here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from memkd.config import invalid
from memkd.losses import soft_targets
from memkd.models.family import ADAM
from memkd.seeds import derive_seed

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
STUDENT_KINDS = ("least_squares", "soft_labels", "soft_labels_solved")


def class_logits(z: Tensor) -> Tensor:
    """The C class logits of O outputs: (..., 1) -> (..., 2) as (0, z) (binary); (..., C) unchanged."""
    return torch.cat([torch.zeros_like(z), z], dim=-1) if z.shape[-1] == 1 else z


# --- the model and its training ----------------------------------------------------------------


def linear_forward(w: Tensor, x: Tensor) -> Tensor:
    """Outputs of maps w (K, D, M, O) on inputs x (K, N, D) -> (K, M, N, O): one GEMM per teacher."""
    k, d, m, o = w.shape
    return torch.bmm(x, w.reshape(k, d, m * o)).view(k, -1, m, o).transpose(1, 2)


def linear_logits(w: Tensor, x: Tensor) -> Tensor:
    """Class logits in float64 of maps w (K, D, M, O), or of one map per teacher w (K, D, O) (M = 1),
    on inputs x (K, N, D) -> (K, M, N, C): what `memkd.metrics.recovery_metrics` measures."""
    w64 = w.to(torch.float64)
    return class_logits(linear_forward(w64 if w.dim() == 4 else w64.unsqueeze(2), x.to(torch.float64)))


class LinearEnsemble(nn.Module):
    """K x M bias-free linear maps D -> O; the M maps of teacher k share its inputs.

    weight (K, D, M, O); member (k, j) is drawn from seeds[k * M + j] alone, uniform in
    +-1/sqrt(D) like `nn.Linear(D, O, bias=False)`, so it equals a 1 x 1 ensemble with that seed.

    >>> model = LinearEnsemble(teachers=2, members=3, input_dim=5, outputs=4, seeds=range(6))
    >>> model.weight.shape, model(torch.randn(2, 7, 5)).shape   # (K, D, M, O); (K, N, D) -> (K, M, N, O)
    (torch.Size([2, 5, 3, 4]), torch.Size([2, 3, 7, 4]))
    """

    def __init__(self, teachers: int, members: int, input_dim: int, outputs: int, seeds: Sequence[int]) -> None:
        super().__init__()
        if len(seeds) != teachers * members:
            raise invalid(
                "seeds",
                "LinearEnsemble",
                must=f"hold teachers * members = {teachers * members} seeds",
                shown=len(seeds),
            )
        bound = 1.0 / math.sqrt(input_dim)
        draws = [
            (torch.rand(input_dim, outputs, generator=torch.Generator().manual_seed(int(s))) * 2 - 1) * bound
            for s in seeds
        ]
        w = torch.stack(draws).view(teachers, members, input_dim, outputs).permute(0, 2, 1, 3)
        self.weight = nn.Parameter(w.contiguous())  # (K, D, M, O)

    def forward(self, x: Tensor) -> Tensor:
        """x (K, N, D) -> outputs (K, M, N, O), one GEMM per teacher over all M students."""
        return linear_forward(self.weight, x)


class LinearMembers(LinearEnsemble):
    """The K x M maps as the one protocol sees them: x (K, N, D) -> class logits (E, N, C), E = K * M
    (teacher-major: member k * M + j is student j of teacher k), what `memkd.distillation` trains.

    >>> LinearMembers(teachers=2, members=3, input_dim=5, outputs=1, seeds=range(6))(torch.randn(2, 7, 5)).shape
    torch.Size([6, 7, 2])
    """

    def forward(self, x: Tensor) -> Tensor:
        """x (K, N, D) -> (E, N, C): the binary map's one output becomes its class logits (0, z)."""
        z = class_logits(super().forward(x))  # (K, M, N, C)
        return z.reshape(-1, z.shape[-2], z.shape[-1])


@dataclass(frozen=True)
class LinearFamily:
    """Bias-free linear maps D -> O for `memkd.distillation.train_teacher` / `train_students`: K
        teachers' inputs (K, N, D) are shared by the members of each (E = K * M), in `dtype` (the
        students' precision). Seeds: one per member, as `LinearEnsemble`'s (an int: member i from
    `derive_seed(seed, "linear member", i)`). Members that see different
        points of one teacher's data take the protocol's `mask`."""

    input_dim: int
    outputs: int  # 1 (binary: class logits (0, z)) or C
    teachers: int  # K
    dtype: torch.dtype = torch.float32

    inputs = "vectors"
    student_kinds = ("soft", "hard")
    fusable = False
    eval_chunk = None
    optimizer = ADAM
    unit = "epochs"

    def build(self, members: int, seed: int | Sequence[int], device: torch.device) -> LinearMembers:
        if members % self.teachers:
            raise invalid("members", "LinearFamily.build", f"a multiple of teachers = {self.teachers}", members)
        seeds = (
            [derive_seed(int(seed), "linear member", i) for i in range(members)]
            if isinstance(seed, int)
            else list(seed)
        )
        return LinearMembers(self.teachers, members // self.teachers, self.input_dim, self.outputs, seeds).to(
            device=device, dtype=self.dtype
        )

    def training_bytes(self, samples: int, own_inputs: bool, soft_targets: bool) -> None:
        return None  # not estimated: the linear chapters' maps are small


# --- students ------------------------------------------------------------------------------------


def least_squares(x: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Minimum-norm least-squares W of x W = targets on each student's points (batched pseudo-inverse).

    x (K, N, D); targets (K, M, N, O); mask (K, M, N) -> W (K, D, M, O). Masked rows are zeroed in
    both x and the targets, which leaves the minimum-norm solution unchanged.
    """
    m = mask.to(x.dtype).unsqueeze(-1)  # (K, M, N, 1)
    xs = x.unsqueeze(1) * m  # (K, M, N, D)
    w = torch.linalg.pinv(xs) @ (targets * m)  # (K, M, D, O)
    return w.permute(0, 2, 1, 3)


def solve_soft_labels(x: Tensor, probs: Tensor, mask: Tensor, outputs: int) -> Tensor:
    """The exact minimizer of the soft-label cross-entropy over bias-free linear maps, in float64.

    probs (K, M, N, C): the stored soft labels (in whatever precision they were kept); x (K, N, D).
    When some W reproduces them, the loss's minimum is reached exactly where the student's logit
    differences equal those of log p, a linear system solved by `least_squares` (centered log p,
    or log p_1 - log p_0 for one output). A probability stored as 0 has no finite logit: it is
    clamped to the smallest positive float64, so the loss is finite there and the information that
    rounding destroyed stays lost. Returns W (K, D, M, O), logits on the released scale (z / T).
    """
    logp = probs.to(torch.float64).clamp_min(torch.finfo(torch.float64).tiny).log()
    target = (logp[..., 1:] - logp[..., :1]) if outputs == 1 else logp - logp.mean(-1, keepdim=True)
    return least_squares(x.to(torch.float64), target, mask)


def soft_labels(w_teacher: Tensor, x: Tensor, temperature: Tensor, dtype: torch.dtype) -> Tensor:
    """Soft labels softmax(z / T) of every student, stored in `dtype` (`memkd.losses.soft_targets`).

    The teacher's logits are computed in float64, divided by T and rounded to `dtype` before the
    softmax, which is then computed and kept in `dtype` (what a run in that precision stores).
    w_teacher (K, D, O); x (K, N, D); temperature (K, M) -> probs (K, M, N, C).
    """
    z = linear_logits(w_teacher, x)  # (K, 1, N, C)
    return soft_targets(z, temperature, dtype)


__all__ = [
    "DTYPES",
    "STUDENT_KINDS",
    "LinearEnsemble",
    "class_logits",
    "least_squares",
    "linear_forward",
    "linear_logits",
    "LinearFamily",
    "LinearMembers",
    "solve_soft_labels",
    "soft_labels",
]
