"""Evaluation of the random-data students: each student's accuracies on a memorization task.

Shape letters (see `memkd`): E students, N samples of D, N' samples of D', C classes. Owns
`evaluate_students` (train / held-out test / memorized / one class / independent accuracy and the
agreement with the teacher on D', per student) and `LabelledTask` (what it reads of a task). The
statistics themselves (accuracy, agreement, nearest-neighbour accuracy) are `memkd.metrics`'; the rows
they go into are `memkd.students.distill`'s.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from memkd.metrics import accuracy, agreement, nearest_neighbour_accuracy


class LabelledTask(Protocol):
    """What `evaluate_students` reads of a task (`memkd.memorization.MemorizationTask`)."""

    y: Tensor  # (N,) labels of D
    y_independent: Tensor  # (N',) labels of D'
    logits_independent: Tensor  # (N', C) the teacher's logits on D'


def evaluate_students(
    task: LabelledTask,
    out_d: Tensor,
    out_ind: Tensor,
    train_idx: Tensor,
    test_idx: Tensor,
    kind: str,
    class_of_interest: int = 0,
) -> dict[str, Tensor]:
    """Per-student metrics (each (E,)) from outputs on D (E, N, C) and on D' (E, N', C).

    task : the labels of D and D' and the teacher's logits on D' (a `memkd.memorization.MemorizationTask`).

    Logit students predict argmax; similarity students predict the label of the nearest
    student-part sample in their embedding space (cosine), so their train accuracy is 1.
    """
    y = task.y
    test_c = test_idx[y[test_idx] == class_of_interest]
    if kind == "similarity":
        ref, ref_y = out_d[:, train_idx], y[train_idx]

        def acc_on(idx: Tensor) -> Tensor:
            return nearest_neighbour_accuracy(ref, ref_y, out_d[:, idx], y[idx])

        train_acc = acc_on(train_idx)
        test_acc = acc_on(test_idx)
        class_acc = acc_on(test_c)
        independent = nearest_neighbour_accuracy(ref, ref_y, out_ind, task.y_independent)
        teacher_agree = torch.full_like(test_acc, math.nan)
    else:
        train_acc = accuracy(out_d[:, train_idx], y[train_idx])
        test_acc = accuracy(out_d[:, test_idx], y[test_idx])
        class_acc = accuracy(out_d[:, test_c], y[test_c])
        independent = accuracy(out_ind, task.y_independent)
        teacher_agree = agreement(out_ind, task.logits_independent.unsqueeze(0))
    n_tr, n_te = len(train_idx), len(test_idx)
    memorized = (train_acc * n_tr + test_acc * n_te) / (n_tr + n_te)
    return {
        "train_acc": train_acc.cpu(),
        "test_acc": test_acc.cpu(),
        "memorized_acc": memorized.cpu(),
        "test_acc_class": class_acc.cpu(),
        "independent_acc": independent.cpu(),
        "teacher_agreement_independent": teacher_agree.cpu(),
        "test_count_class": torch.full_like(test_acc, float(len(test_c))).cpu(),  # held-out class-c points
    }
