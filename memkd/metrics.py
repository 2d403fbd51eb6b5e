"""Accuracies and the statistics every claim is stated with.

Shapes: E members, N samples, C classes, K embedding dimension.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor


@torch.no_grad()
def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of argmax(logits) == labels per member. logits (E, N, C), labels (N,) or (E, N) -> (E,)."""
    return (logits.argmax(dim=-1) == labels).float().mean(dim=-1)


@torch.no_grad()
def per_class_accuracy(logits: Tensor, labels: Tensor, classes: int) -> Tensor:
    """Accuracy on the samples of each class. -> (E, C); NaN for a class with no sample."""
    correct = (logits.argmax(dim=-1) == labels).float()  # (E, N)
    labels = labels.expand_as(correct)
    totals = torch.zeros(correct.shape[0], classes, device=correct.device)
    hits = torch.zeros_like(totals)
    totals.scatter_add_(1, labels, torch.ones_like(correct))
    hits.scatter_add_(1, labels, correct)
    return hits / totals  # 0/0 -> NaN


@torch.no_grad()
def agreement(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Fraction of samples where both argmaxes agree. (E, N, C) and (E or 1, N, C) -> (E,)."""
    return (logits_a.argmax(dim=-1) == logits_b.argmax(dim=-1)).float().mean(dim=-1)


@torch.no_grad()
def nearest_neighbour_predictions(reference: Tensor, reference_labels: Tensor, queries: Tensor) -> Tensor:
    """Label of each query's nearest reference embedding by cosine similarity.

    reference (E, M, K), reference_labels (M,) or (E, M), queries (E, Q, K) -> labels (E, Q).
    """
    ref = torch.nn.functional.normalize(reference, dim=-1)
    qry = torch.nn.functional.normalize(queries, dim=-1)
    nearest = (qry @ ref.transpose(-1, -2)).argmax(dim=-1)  # (E, Q)
    labels = reference_labels.expand(reference.shape[0], -1)
    return torch.gather(labels, 1, nearest)


def nearest_neighbour_accuracy(reference: Tensor, reference_labels: Tensor, queries: Tensor, query_labels: Tensor) -> Tensor:
    """Accuracy of the nearest-neighbour labels of `queries` (see above). -> (E,)."""
    pred = nearest_neighbour_predictions(reference, reference_labels, queries)
    return (pred == query_labels).float().mean(dim=-1)


def mean_sem(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN SEM for fewer than two values)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan
    sem = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return float(v.mean()), sem


def compare_to_chance(values: Sequence[float] | np.ndarray, chance: float) -> dict:
    """One-sided one-sample t-test of mean(values) > chance.

    Returns mean, sem, n, chance, t and p_value. With zero spread the p-value is 0 when the
    mean is above chance and 1 otherwise (the t statistic is infinite or undefined).
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    mean, sem = mean_sem(v)
    n = len(v)
    if n < 2:
        return {"mean": mean, "sem": sem, "n": n, "chance": chance, "t": math.nan, "p_value": math.nan}
    if v.std() <= 1e-9 * max(1.0, abs(mean)):  # no spread (float noise only): the sign decides
        p = 0.0 if mean > chance else 1.0
        t = math.inf if mean > chance else -math.inf if mean < chance else math.nan
    else:
        with warnings.catch_warnings():  # scipy warns about precision when values nearly agree
            warnings.simplefilter("ignore", RuntimeWarning)
            t, p = stats.ttest_1samp(v, chance, alternative="greater")
    return {"mean": mean, "sem": sem, "n": n, "chance": chance, "t": float(t), "p_value": float(p)}


def compare_paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """One-sided paired t-test of mean(a - b) > 0 (e.g. test accuracy above independent accuracy)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    out = compare_to_chance(diff, 0.0)
    out["mean_a"], out["mean_b"] = float(np.nanmean(a)), float(np.nanmean(b))
    return out


def compare_independent(a: Sequence[float], b: Sequence[float], two_sided: bool = False) -> dict:
    """Welch's t-test of mean(a) > mean(b) (or != with `two_sided`) for unpaired samples.

    Returns mean_a, mean_b, difference, t and p_value. Samples without spread decide by the
    sign of the difference (scipy would warn and return NaN).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    spread = max(a.std(), b.std())
    if spread <= 1e-9 * max(1.0, abs(float(a.mean())), abs(float(b.mean()))):
        if two_sided:
            p = 1.0 if abs(diff) <= 1e-12 else 0.0
        else:
            p = 0.0 if diff > 0 else 1.0
        t = math.copysign(math.inf, diff) if diff else math.nan
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t, p = stats.ttest_ind(a, b, equal_var=False, alternative="two-sided" if two_sided else "greater")
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "difference": diff, "t": float(t), "p_value": float(p)}


def format_p(p: float) -> str:
    """p-values as people read them: 'p = 0.03', 'p < 1e-6'."""
    if p is None or math.isnan(p):
        return "p = n/a"
    if p < 1e-6:
        return "p < 1e-6"
    if p < 1e-3:
        return f"p = {p:.1e}"
    return f"p = {p:.3f}"


def verdict(values: Sequence[float], chance: float, level: float = 0.01, what: str = "accuracy") -> str:
    """A sentence: mean +- SEM (n), the ratio to chance, the p-value and whether it beats chance."""
    r = compare_to_chance(values, chance)
    beats = r["p_value"] < level
    return (
        f"{what}: {r['mean']:.3f} ± {r['sem']:.3f} (n = {r['n']}), {r['mean'] / chance:.2f}× chance "
        f"({chance:.3f}), {format_p(r['p_value'])}: "
        + ("beats chance" if beats else "not distinguishable from chance")
        + f" at the {level:g} level."
    )
