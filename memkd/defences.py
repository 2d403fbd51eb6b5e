"""Server-side defences: what a server that returns a model's probabilities can do to its answer
before a student sees it, and the soft labels a student then learns from.

Shape letters (see `memkd`): N samples, C classes; `...` any leading axes (K teachers, E members).

A defence is a chain of transforms, applied left to right to the teacher's logits (..., N, C):

    Temperature(t)            the server's own temperature: logits / t
    Noise(sigma)              Gaussian noise on the logits: z + sigma * N(0, 1)   (Orekondy et al. 2020 perturb
                              the probabilities; noise on the logits keeps them a distribution)
    TopK(k)                   only the k largest probabilities are returned, the rest withheld
                              (the top-k log-probabilities of language-model APIs, Carlini et al. 2024)
    Round(r, of="prob")       the returned probabilities rounded to r decimals (Tramer et al. 2016);
    Round(r, of="logprob")    or the returned log-probabilities
    LabelOnly()               only the class: a one-hot answer

Logit transforms (Temperature, Noise) come before the probability transforms (TopK, Round, LabelOnly).
One line composes them, `TopK(5) | Round(2, of="logprob")` or `parse("top5|logprob_round2")`
(top-5 log-probabilities rounded to 2 decimals); `parse` reads the names `Defence.spec` writes.

What the student makes of an answer (`Answer.completed`), by default (withheld="uniform"): the
returned entries keep their served values; the withheld mass, 1 minus the sum of the returned
probabilities (0 if rounding made that sum exceed 1), is spread **uniformly over the withheld
classes**, and the vector is normalized to sum 1. Why uniform: the student knows what the server
returned and that the rest sums to the withheld mass; the uniform spread is the largest-entropy
completion consistent with that, it keeps every returned probability at its served value (the
completion is one-to-one with the answer: nothing served is thrown away), and it does not claim
that the withheld classes are impossible. Renormalizing over the k returned entries
(withheld="renormalize", offered for comparison) throws away the returned values' sum: the top-1
answer becomes the label alone. For a binary teacher the top-1 probability returns everything (the
withheld entry is 1 - p), and k = C changes nothing. A served probability rounded to 0 stays 0.
`Answer.targets(T)` then softens the completed answer at the student's own temperature,
softmax(log q / T) = q^(1/T) normalized, so that the one sigma_T of the book applies to whatever the
server returned (label only gives one-hot targets at any T). A caveat measured in chapter 14: at a
large student T the softening lifts the uniform floor of the withheld classes as much as any small
served probability, so a student that renormalizes may extract more from a top-k answer with k >= 2.

Left out: defences that need the attacker's queries (query monitoring), and PATE's teacher
ensembles (Papernot et al. 2017, 2018): chapter 14 relates them. Teacher-side defences are
knobs of `memkd.distillation.train_teacher` (label_smoothing, weight_decay).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import Tensor

from memkd.config import invalid, knob, one_of
from memkd.seeds import derive_seed

ROUND_OF = ("prob", "logprob")
WITHHELD = ("uniform", "renormalize")  # how the student completes an answer with withheld entries


def withheld_knob() -> object:
    """How a student completes a top-k answer (`WITHHELD`), the same knob wherever students read one."""
    return knob(
        "uniform",
        one_of(*WITHHELD),
        "how a student completes a top-k answer: the withheld mass spread "
        "uniformly, or the k returned entries renormalized (memkd.defences)",
    )


# --- the answer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the server returns for N inputs: probabilities (..., N, C) and which entries it returns.

    probs : float64; entries where `returned` is False are not part of the answer.
    returned : bool (..., N, C).
    """

    probs: Tensor
    returned: Tensor

    def completed(self, withheld: str = "uniform") -> Tensor:
        """The student's distribution (..., N, C) from the answer, normalized to sum 1.

        withheld : "uniform" (the default): returned entries as served, the withheld mass spread
            uniformly over the withheld classes; "renormalize": the withheld classes get 0 and the
            returned entries are rescaled to sum 1 (see the module's docstring for the choice).
        """
        if withheld not in WITHHELD:
            raise invalid("withheld", "Answer.completed", f"one of {WITHHELD}", withheld)
        kept = torch.where(self.returned, self.probs, torch.zeros_like(self.probs))
        q = kept
        if withheld == "uniform":
            hidden = ~self.returned
            missing = (1.0 - kept.sum(-1, keepdim=True)).clamp_min(0.0)  # (..., N, 1)
            q = torch.where(hidden, missing / hidden.sum(-1, keepdim=True).clamp_min(1), kept)
        total = q.sum(-1, keepdim=True)
        uniform = torch.full_like(q, 1.0 / q.shape[-1])
        return torch.where(total > 0, q / total.clamp_min(torch.finfo(q.dtype).tiny), uniform)

    def targets(self, temperature: float | Tensor = 1.0, withheld: str = "uniform") -> Tensor:
        """Soft labels (..., N, C) at the student's temperature: q^(1/T) normalized, q = `completed(withheld)`.

        temperature : a float, or a tensor broadcasting against (..., N, C) after two trailing axes are
            added (e.g. (E,) for E members along the first axis).
        """
        q = self.completed(withheld)
        t = torch.as_tensor(temperature, dtype=q.dtype, device=q.device)
        t = t.view(*t.shape, 1, 1) if t.dim() else t
        logq = q.clamp_min(0).log()  # -inf where q = 0: that entry stays 0
        return torch.softmax(logq / t, dim=-1)


# --- the transforms -------------------------------------------------------------------------------


class Transform:
    """One step of a defence; `a | b` chains two steps (a first) into a `Defence`."""

    stage = "probs"  # "logits": acts on the logits (before any probability transform)

    def __or__(self, other: "Transform | Defence") -> "Defence":
        return Defence((self,)) | other

    def spec(self) -> str:  # pragma: no cover (every transform overrides it)
        raise NotImplementedError

    def apply(self, logits: Tensor, seed: int | Sequence[int] = 0) -> "Answer":
        """This transform alone as a defence: `Defence((self,)).apply(logits, seed)`."""
        return Defence((self,)).apply(logits, seed)

    def check(self, classes: int) -> None:
        """Checks that need C (the number of classes); raise `invalid` when the transform cannot apply."""

    def __str__(self) -> str:
        return self.spec()


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Temperature(Transform):
    """The server's temperature: it serves softmax(z / t)."""

    t: float
    stage = "logits"

    def __post_init__(self) -> None:
        if not _real(self.t) or self.t <= 0:
            raise invalid("t", "Temperature", "a float > 0 (the server's temperature)", self.t)

    def spec(self) -> str:
        return f"temp{self.t:g}"


@dataclass(frozen=True)
class Noise(Transform):
    """Gaussian noise of standard deviation `sigma` added to every logit (a fresh draw per answer)."""

    sigma: float
    stage = "logits"

    def __post_init__(self) -> None:
        if not _real(self.sigma) or self.sigma < 0:
            raise invalid(
                "sigma", "Noise", "a float >= 0 (the standard deviation of the noise on the logits)", self.sigma
            )

    def spec(self) -> str:
        return f"noise{self.sigma:g}"


@dataclass(frozen=True)
class TopK(Transform):
    """Only the k largest probabilities of each answer are returned; the others are withheld."""

    k: int

    def __post_init__(self) -> None:
        if not _int(self.k) or self.k < 1:
            raise invalid("k", "TopK", "an int >= 1 (how many probabilities the server returns)", self.k)

    def check(self, classes: int) -> None:
        if self.k > classes:
            raise invalid(
                "k",
                "TopK",
                f"an int in [1, C = {classes}] (how many of the C probabilities the server returns)",
                self.k,
            )

    def spec(self) -> str:
        return f"top{self.k}"


@dataclass(frozen=True)
class Round(Transform):
    """The returned probabilities (of="prob") or log-probabilities (of="logprob") rounded to `decimals`."""

    decimals: int
    of: str = "prob"

    def __post_init__(self) -> None:
        if not _int(self.decimals) or self.decimals < 0:
            raise invalid("decimals", "Round", "an int >= 0 (decimals kept)", self.decimals)
        if self.of not in ROUND_OF:
            raise invalid("of", "Round", f"one of {ROUND_OF}", self.of)

    def spec(self) -> str:
        return f"{'logprob_' if self.of == 'logprob' else ''}round{self.decimals}"


@dataclass(frozen=True)
class LabelOnly(Transform):
    """Only the predicted class: a one-hot answer."""

    def spec(self) -> str:
        return "label"


TRANSFORMS = (Temperature, Noise, TopK, Round, LabelOnly)


# --- a defence: a chain of transforms ---------------------------------------------------------------


@dataclass(frozen=True)
class Defence:
    """A chain of transforms applied left to right; the empty chain serves the probabilities as they are.

    >>> d = TopK(5) | Round(2, of="logprob")
    >>> d.spec(), parse("top5|logprob_round2") == d
    ('top5|logprob_round2', True)
    >>> a = d.apply(torch.randn(3, 10))   # logits (N, C) -> Answer
    >>> a.targets(1.0).shape, int(a.returned.sum())
    (torch.Size([3, 10]), 15)
    """

    steps: tuple = ()

    def __post_init__(self) -> None:
        seen_probs = False
        for step in self.steps:
            if not isinstance(step, Transform):
                raise invalid(
                    "steps", "Defence", "a tuple of transforms (Temperature, Noise, TopK, Round, LabelOnly)", step
                )
            if step.stage == "logits" and seen_probs:
                raise invalid(
                    "steps",
                    "Defence",
                    "logit transforms (Temperature, Noise) before probability transforms (TopK, Round, LabelOnly)",
                    self.spec(),
                )
            seen_probs = seen_probs or step.stage == "probs"

    def __or__(self, other: "Transform | Defence") -> "Defence":
        more = other.steps if isinstance(other, Defence) else (other,)
        return Defence(self.steps + tuple(more))

    def spec(self) -> str:
        """The one-line name `parse` reads back ("none" for the empty chain)."""
        return "|".join(s.spec() for s in self.steps) or "none"

    def __str__(self) -> str:
        return self.spec()

    def check(self, classes: int) -> None:
        """Raise `invalid` (naming the transform's argument) when a step cannot apply to C classes."""
        for step in self.steps:
            step.check(classes)

    @torch.no_grad()
    def apply(self, logits: Tensor, seed: int | Sequence[int] = 0) -> Answer:
        """The server's answer to teacher logits (..., N, C), computed in float64.

        seed : the noise's seed: one int, or one per entry of the first axis (e.g. one per teacher),
            so each member's draw does not depend on which others are served with it.
        """
        self.check(logits.shape[-1])
        z = logits.detach().to(torch.float64)
        probs, returned = None, torch.ones_like(z, dtype=torch.bool)
        for step in self.steps:
            if isinstance(step, Temperature):
                z = z / step.t
            elif isinstance(step, Noise):
                z = z + step.sigma * _normal(z, seed, step.sigma)
            else:
                probs = torch.softmax(z, dim=-1) if probs is None else probs
                probs, returned = _serve(step, probs, returned)
        return Answer(torch.softmax(z, dim=-1) if probs is None else probs, returned)

    def targets(
        self,
        logits: Tensor,
        temperature: float | Tensor = 1.0,
        seed: int | Sequence[int] = 0,
        withheld: str = "uniform",
    ) -> Tensor:
        """`apply(logits, seed).targets(temperature, withheld)`: the soft labels (..., N, C) a student learns from."""
        return self.apply(logits, seed).targets(temperature, withheld)


def _normal(z: Tensor, seed: int | Sequence[int], sigma: float) -> Tensor:
    """Standard normal noise shaped like z (..., N, C), one generator per entry of the first axis
    when `seed` is a sequence (drawn on the CPU, so a seed gives the same draw on every device)."""
    seeds = [seed] if isinstance(seed, int) else list(seed)
    parts = z.unsqueeze(0) if isinstance(seed, int) else z
    if len(seeds) != parts.shape[0]:
        raise invalid(
            "seed", "Defence.apply", f"one int, or one per entry of the logits' first axis ({parts.shape[0]})", seed
        )
    draws = [
        torch.randn(
            p.shape,
            generator=torch.Generator().manual_seed(derive_seed(int(s), "probe", "noise", sigma)),
            dtype=torch.float64,
        )
        for s, p in zip(seeds, parts)
    ]
    out = torch.stack(draws).to(z.device)
    return out[0] if isinstance(seed, int) else out


def _serve(step: Transform, probs: Tensor, returned: Tensor) -> tuple[Tensor, Tensor]:
    """One probability transform: (probs, returned) -> (probs, returned), shapes (..., N, C)."""
    if isinstance(step, TopK):
        masked = torch.where(returned, probs, torch.full_like(probs, -1.0))
        top = masked.topk(step.k, dim=-1).indices
        return probs, returned & torch.zeros_like(returned).scatter(-1, top, True)
    if isinstance(step, Round):
        scale = 10.0**step.decimals
        if step.of == "prob":
            rounded = torch.round(probs * scale) / scale
        else:
            rounded = torch.exp(torch.round(probs.clamp_min(torch.finfo(probs.dtype).tiny).log() * scale) / scale)
        return torch.where(returned, rounded, probs), returned
    if isinstance(step, LabelOnly):
        masked = torch.where(returned, probs, torch.full_like(probs, -1.0))
        one_hot = torch.zeros_like(probs).scatter(-1, masked.argmax(-1, keepdim=True), 1.0)
        return one_hot, torch.ones_like(returned)
    raise invalid("step", "Defence.apply", "a transform of memkd.defences", step)  # pragma: no cover


# --- one line ------------------------------------------------------------------------------------

_NUMBER = r"(-?\d+(?:\.\d*)?(?:e-?\d+)?)"  # signed, so that a negative value meets its transform's check
_INT = r"(-?\d+)"
_TOKENS = [
    (re.compile(r"top" + _INT), lambda v: TopK(int(v))),
    (re.compile(r"(?:prob_)?round" + _INT), lambda v: Round(int(v), "prob")),
    (re.compile(r"logprob_round" + _INT), lambda v: Round(int(v), "logprob")),
    (re.compile(r"noise" + _NUMBER), lambda v: Noise(float(v))),
    (re.compile(r"temp" + _NUMBER), lambda v: Temperature(float(v))),
    (re.compile(r"label(?:_only)?"), lambda v: LabelOnly()),
]
GRAMMAR = (
    "'none', or steps joined by '|': topK, roundR (probabilities), logprob_roundR, noiseSIGMA, "
    "tempT, label (e.g. 'top5|logprob_round2', 'temp4|noise0.5')"
)

DefenceLike = Union[str, Transform, Defence]


def parse(spec: DefenceLike) -> Defence:
    """A defence from its one-line name ("top5|logprob_round2"), a transform, or a defence.

    >>> parse("temp4|noise0.5|top1").steps
    (Temperature(t=4.0), Noise(sigma=0.5), TopK(k=1))
    """
    if isinstance(spec, Defence):
        return spec
    if isinstance(spec, Transform):
        return Defence((spec,))
    if not isinstance(spec, str):
        raise invalid("spec", "memkd.defences.parse", f"a string ({GRAMMAR}), a transform or a Defence", spec)
    text = spec.strip().lower()
    if text in ("", "none"):
        return Defence()
    steps = []
    for token in (t.strip() for t in text.split("|")):
        for pattern, build in _TOKENS:
            match = pattern.fullmatch(token)
            if match:
                steps.append(build(match.group(1) if match.groups() else None))
                break
        else:
            raise invalid("spec", "memkd.defences.parse", f"{GRAMMAR}; {token!r} is none of these", spec)
    return Defence(tuple(steps))


__all__ = [
    "Answer",
    "Defence",
    "DefenceLike",
    "GRAMMAR",
    "LabelOnly",
    "Noise",
    "ROUND_OF",
    "Round",
    "TRANSFORMS",
    "Temperature",
    "WITHHELD",
    "TopK",
    "Transform",
    "parse",
]
