"""Losses for teachers and students, and the logit surgery of appendix A.3.

Shape letters (see `memkd`): E members, N samples, C classes. Every loss returns one value per member, shape (E,),
so that summing them gives each member exactly its own gradient.

Temperature convention. The paper's text softens both sides, CE(sigma_T(z_teacher), sigma_T(z_student));
the authors' released code softens only the teacher, CE(sigma_T(z_teacher), softmax(z_student)).
`soft_cross_entropy(..., soften_student=False)` is the released code's convention, which the book
uses because it is what produced the paper's figures; `soften_student=True` is the text's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_targets(teacher_logits: Tensor, temperature: Tensor | float, dtype: torch.dtype | None = None) -> Tensor:
    """sigma_T(z): teacher logits (..., N, C) -> probabilities (..., N, C).

    `temperature` is a float or a tensor of the logits' leading shape (one temperature per member:
    (E,) for logits (E, N, C); (K, M) for logits (K, 1, N, C) gives (K, M, N, C), M temperatures
    of each of K teachers). `dtype`: the precision the soft labels are kept in; z / T is computed
    in the logits' precision, rounded to `dtype`, and the softmax computed in `dtype` (what a run in
    that precision stores). None: the logits' own precision.

    >>> z = torch.randn(4, 6, 3)                                   # logits (E, N, C)
    >>> p = soft_targets(z, torch.tensor([1.0, 5.0, 10.0, 20.0]))  # one T per member
    >>> p.shape, bool(p.sum(-1).allclose(torch.ones(4, 6)))
    (torch.Size([4, 6, 3]), True)
    >>> soft_targets(z.double()[:2, None], torch.ones(2, 5), torch.bfloat16).shape   # (K, 1, N, C), T (K, M)
    torch.Size([2, 5, 6, 3])
    """
    temperature = torch.as_tensor(temperature, dtype=teacher_logits.dtype, device=teacher_logits.device)
    scaled = teacher_logits / temperature.view(*temperature.shape, 1, 1)  # (...,) -> (..., 1, 1): one T per member
    return torch.softmax(scaled if dtype is None else scaled.to(dtype), dim=-1)


def member_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Each member's mean over its samples: values (E, N) -> (E,); with mask (E, N) bool, over the
    samples where it holds (a member with none: 0). The reduction of every loss here, so that
    members that see different points of a shared, padded N (the linear students) get their own mean.

    >>> member_mean(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[True, False, True]]))
    tensor([2.])
    """
    if mask is None:
        return values.mean(dim=-1)
    m = mask.to(values.dtype)
    return (values * m).sum(-1) / m.sum(-1).clamp_min(1)


def hard_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean cross-entropy per member. logits (E, N, C), labels (N,) or (E, N) -> (E,).

    mask (E, N) bool: average over the samples where it holds (`member_mean`); a label outside
    the mask is not read (padding may hold -1).

    >>> hard_cross_entropy(torch.randn(4, 6, 3), torch.tensor([0, 1, 2, 0, 1, 2])).shape
    torch.Size([4])
    """
    e, n, c = logits.shape
    labels = labels.expand(e, n)
    if mask is not None:
        labels = labels.clamp_min(0)  # padding's -1: any class, masked out below
    loss = F.cross_entropy(logits.reshape(e * n, c), labels.reshape(e * n), reduction="none")
    return member_mean(loss.view(e, n), mask)


def smoothed_labels(labels: Tensor, classes: int, smoothing: float) -> Tensor:
    """Label smoothing's targets: (1 - smoothing) on the label plus smoothing / C on every class.

    labels (..., N) int64 -> probabilities (..., N, C) (a teacher-side defence: `memkd.distillation.train_teacher`'s
    `label_smoothing`; smoothing 0 gives the one-hot labels).

    >>> smoothed_labels(torch.tensor([0, 2]), classes=3, smoothing=0.3)   # (N,) -> (N, C)
    tensor([[0.8000, 0.1000, 0.1000],
            [0.1000, 0.1000, 0.8000]])
    """
    one_hot = F.one_hot(labels, classes).to(torch.float32)
    return one_hot * (1.0 - smoothing) + smoothing / classes


def soft_cross_entropy(
    student_logits: Tensor,
    target_probs: Tensor,
    temperature: Tensor | float = 1.0,
    soften_student: bool = False,
    mask: Tensor | None = None,
) -> Tensor:
    """Mean over samples of -sum_c p_c log q_c per member -> (E,).

    student_logits (E, N, C); target_probs (E, N, C) or (N, C), e.g. `soft_targets(...)`.
    q = softmax(z / T) when `soften_student` (temperature a float or (E,)), else softmax(z).
    Targets need not sum to one (logit surgery may zero some entries). mask (E, N) bool: average
    over the samples where it holds (`member_mean`).

    >>> z = torch.randn(4, 6, 3)                                  # student logits (E, N, C)
    >>> soft_cross_entropy(z, soft_targets(torch.randn(6, 3), 10.0)).shape   # shared targets (N, C)
    torch.Size([4])
    """
    z = student_logits
    if soften_student:
        temperature = torch.as_tensor(temperature, dtype=z.dtype, device=z.device)
        z = z / (temperature.view(-1, 1, 1) if temperature.dim() == 1 else temperature)
    log_q = torch.log_softmax(z, dim=-1)
    return member_mean(-(target_probs * log_q).sum(dim=-1), mask)


def cosine_similarity_matrix(outputs: Tensor) -> Tensor:
    """rho^{ij} = <f_i, f_j> / (|f_i| |f_j|). outputs (E, N, K) -> (E, N, N).

    >>> cosine_similarity_matrix(torch.randn(4, 6, 5)).shape     # (E, N, K) -> (E, N, N)
    torch.Size([4, 6, 6])
    """
    unit = F.normalize(outputs, dim=-1, eps=1e-12)
    return unit @ unit.transpose(-1, -2)


def similarity_mse(student_outputs: Tensor, teacher_similarity: Tensor) -> Tensor:
    """Mean squared difference of pairwise cosine similarities per member -> (E,).

    student_outputs (E, N, K), teacher_similarity (N, N) or (E, N, N).

    >>> similarity_mse(torch.randn(4, 6, 5), torch.eye(6)).shape   # teacher similarity (N, N) -> (E,)
    torch.Size([4])
    """
    diff = cosine_similarity_matrix(student_outputs) - teacher_similarity
    return diff.pow(2).mean(dim=(-1, -2))


# --- logit surgery (appendix A.3) -------------------------------------------------------------


def drop_class(indices: Tensor, labels: Tensor, cls: int) -> Tensor:
    """The student's indices without the samples whose label is `cls`."""
    return indices[labels[indices] != cls]


def zero_class_elsewhere(probs: Tensor, labels: Tensor, cls: int) -> Tensor:
    """Set p_cls to zero on every sample whose label is not `cls`. probs (..., N, C), labels (N,)."""
    out = probs.clone()
    out[..., labels != cls, cls] = 0.0
    return out


def tail_entries(fraction: float, classes: int) -> int:
    """How many entries of a sample's C probabilities `cut_tail` zeroes: ceil(fraction * C), at most
    C - 1 (the largest always stays), 0 for a fraction of 0.

    >>> [tail_entries(q, 50) for q in (0.0, 0.005, 0.02, 0.05, 0.5, 1.0)]
    [0, 1, 1, 3, 25, 49]
    """
    return max(0, min(math.ceil(fraction * classes - 1e-9), classes - 1))


def cut_tail(probs: Tensor, fraction: float) -> Tensor:
    """Zero the smallest ceil(fraction * C) probabilities of each sample. probs (..., N, C).

    The fraction counts entries (classes), not probability mass, and any fraction > 0 cuts at
    least one entry (so the paper's 0.5% of 100 classes cuts the single smallest). The rest is
    left as it is, not renormalized, as in the paper's description.
    """
    k = tail_entries(fraction, probs.shape[-1])
    if k <= 0:
        return probs.clone()
    smallest = probs.topk(k, dim=-1, largest=False).indices
    return probs.scatter(-1, smallest, 0.0)
