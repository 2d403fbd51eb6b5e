"""The 1-layer transformer of Nanda et al. (2023) for modular addition, batched along an ensemble axis.

Architecture (their defaults): token and learned positional embeddings (d_model 128), one attention
layer (4 heads of 32, causal), one ReLU MLP (d_mlp 512), no LayerNorm, residual stream, an unembedding
read at the last position ("=") into k logits. Initialisation as in their code: weights ~ N(0, 1/d_model)
(the unembedding N(0, 1/vocab)), biases zero.

Shapes: E members, N sequences, S = 3 positions, V vocabulary (k + 1), Dm = d_model, H heads,
Dh = d_head, Dmlp = d_mlp, C = k output classes.

`EnsembleTransformer` holds every parameter stacked as (E, ...) and runs all members with batched
matmuls; since only the last position is read and there is one layer, queries, the MLP and the
unembedding are computed at the last position only (keys and values at all three). `member(i)` returns
a plain single-model `Transformer` (every position, causal mask) with member i's weights: the tests
check the two agree. `functional_forward` is the same maths as a function of a parameter dict with or
without the leading E axis, so it can also run under `torch.func.vmap`. Measured with
benchmarks/transformer_ensemble.py (1 CPU thread, forward + backward, full batch): the hand-batched
call and `vmap` of the same function are within about 10% of each other (E=10, k=59: 454 vs 418 ms;
E=20, k=23: 549 vs 592 ms), both about 2x a loop over plain members; `vmap` over the plain module
(every position) is slower than the loop. The library calls the hand-batched path (no vmap needed).
Keys and values come from one GEMM, and the attention over S = 3 positions is written as products and
sums rather than einsums, which ran as batched GEMMs of 3 x 1 matrices (measured against the einsum
version in benchmarks/step_parts.py).

`TransformerFamily` is the family `memkd.distillation.train_teacher` and `train_students` train: the
one protocol of every model family, here with `memkd.models.family.ADAMW` (AdamW member by member: full
batch, lr 1e-3, weight decay 1.0, betas (0.9, 0.98)). No training loop lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from memkd.config import invalid
from memkd.models.family import ADAMW


def functional_forward(p: dict[str, Tensor], tokens: Tensor) -> Tensor:
    """Logits at the last position. p: parameters with a leading (E,) axis or without one.

    tokens : int64 (N, S) shared by every member, or (E, N, S) one set per member (stacked
        parameters only) -> logits (E, N, C), or (N, C) for unbatched parameters.
    """
    heads, d_head = p["w_q"].shape[-2], p["w_q"].shape[-1]
    if tokens.dim() == 3:  # each member reads its own sequences
        members = torch.arange(p["embed"].shape[0], device=tokens.device).view(-1, 1, 1)
        embedded = p["embed"][members, tokens]  # (E, N, S, Dm)
    else:
        embedded = p["embed"][..., tokens, :]
    resid = embedded + p["pos"].unsqueeze(-3)  # (E, N, S, Dm)
    last = resid[..., -1, :]  # (E, N, Dm)
    q = (last @ p["w_q"].flatten(-2)).unflatten(-1, (heads, d_head))  # (E, N, H, Dh)
    # keys and values at every position in one GEMM over the N * S rows of each member
    w_kv = torch.cat([p["w_k"].flatten(-2), p["w_v"].flatten(-2)], dim=-1)  # (E, Dm, 2 H Dh)
    kv = (resid.flatten(-3, -2) @ w_kv).unflatten(-2, resid.shape[-3:-1])  # (E, N, S, 2 H Dh)
    k, v = kv.unflatten(-1, (2, heads, d_head)).unbind(-3)  # (E, N, S, H, Dh) each
    # S = 3 positions: products and sums, not batched GEMMs of 3 x 1 matrices
    scores = (q.unsqueeze(-3) * k).sum(-1) / math.sqrt(d_head)  # (E, N, S, H)
    z = (scores.softmax(dim=-2).unsqueeze(-1) * v).sum(-3)  # (E, N, H, Dh)
    z = z.flatten(-2)  # (E, N, H*Dh)
    last = last + z @ p["w_o"]  # (E, N, Dm)
    hidden = torch.relu(last @ p["w_in"] + p["b_in"])  # (E, N, Dmlp)
    last = last + hidden @ p["w_out"] + p["b_out"]  # (E, N, Dm)
    return last @ p["unembed"]  # (E, N, C)


def _draw_parameters(
    members: int, modulus: int, d_model: int, heads: int, d_mlp: int, context: int, seed: int
) -> dict[str, Tensor]:
    """Every parameter of `members` transformers, stacked (E, ...), drawn from one generator."""
    vocab, d_head, e = modulus + 1, d_model // heads, members
    gen = torch.Generator().manual_seed(int(seed))

    def normal(*shape: int, scale: float) -> Tensor:
        return torch.randn(e, *shape, generator=gen) * scale

    s = 1 / math.sqrt(d_model)
    return {
        "embed": normal(vocab, d_model, scale=s),  # (E, V, Dm)
        "pos": normal(context, d_model, scale=s),  # (E, S, Dm)
        "w_q": normal(d_model, heads, d_head, scale=s),  # (E, Dm, H, Dh)
        "w_k": normal(d_model, heads, d_head, scale=s),
        "w_v": normal(d_model, heads, d_head, scale=s),
        "w_o": normal(heads * d_head, d_model, scale=s),  # (E, H*Dh, Dm)
        "w_in": normal(d_model, d_mlp, scale=s),  # (E, Dm, Dmlp)
        "b_in": torch.zeros(e, 1, d_mlp),  # (E, 1, Dmlp)
        "w_out": normal(d_mlp, d_model, scale=1 / math.sqrt(d_model)),  # (E, Dmlp, Dm)
        "b_out": torch.zeros(e, 1, d_model),  # (E, 1, Dm)
        "unembed": normal(d_model, modulus, scale=1 / math.sqrt(vocab)),  # (E, Dm, C)
    }


class EnsembleTransformer(nn.Module):
    """E independent 1-layer transformers with stacked parameters.

    Parameters
    ----------
    members : E.
    modulus : k; the vocabulary is k + 1 tokens ("=" is id k), the output k classes.
    d_model, heads, d_mlp, context : Dm, H, Dmlp, S (Nanda et al.: 128, 4, 512, 3).
    seed : initialisation seed: one int (all members drawn from one generator, independently),
        or one seed per member, so that member i equals a one-member ensemble seeded seed[i]
        whatever ensemble it is trained in (see `memkd.seeds`).

    >>> from memkd.data.tokens import all_pairs
    >>> tokens, labels = all_pairs(7)                           # (N, S) = (49, 3) and (N,)
    >>> model = EnsembleTransformer(members=2, modulus=7, d_model=16, heads=2, d_mlp=32)
    >>> model(tokens).shape                                     # (E, N, C), C = k
    torch.Size([2, 49, 7])
    """

    def __init__(
        self,
        members: int,
        modulus: int,
        d_model: int = 128,
        heads: int = 4,
        d_mlp: int = 512,
        context: int = 3,
        seed: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise invalid(
                "heads",
                "EnsembleTransformer",
                must=f"divide d_model ({d_model}): d_model must be a multiple of heads",
                got=heads,
            )
        self.members, self.modulus, self.d_model, self.heads = members, modulus, d_model, heads
        self.d_mlp, self.context = d_mlp, context
        if isinstance(seed, (int, np.integer)):
            drawn = _draw_parameters(members, modulus, d_model, heads, d_mlp, context, int(seed))
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != members:
                raise invalid(
                    "seed",
                    "EnsembleTransformer",
                    f"an int or hold one seed per member ({members})",
                    shown=f"{len(seeds)} seeds",
                )
            parts = [_draw_parameters(1, modulus, d_model, heads, d_mlp, context, s) for s in seeds]
            drawn = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
        for name, value in drawn.items():
            setattr(self, name, nn.Parameter(value))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens : int64 (N, S) shared by all members, or (E, N, S) per member -> logits (E, N, C)."""
        return functional_forward(dict(self.named_parameters()), tokens)

    @torch.no_grad()
    def member(self, index: int) -> "Transformer":
        """A plain single-model `Transformer` with member `index`'s weights (a copy)."""
        single = Transformer(self.modulus, self.d_model, self.heads, self.d_mlp, self.context)
        for name, param in single.named_parameters():
            param.copy_(getattr(self, name)[index])
        return single.to(self.embed.device)

    def extra_repr(self) -> str:
        return (
            f"members={self.members}, modulus={self.modulus}, d_model={self.d_model}, "
            f"heads={self.heads}, d_mlp={self.d_mlp}"
        )


class Transformer(nn.Module):
    """One 1-layer transformer written plainly (every position, causal mask): the reference."""

    def __init__(self, modulus: int, d_model: int = 128, heads: int = 4, d_mlp: int = 512, context: int = 3) -> None:
        super().__init__()
        d_head = d_model // heads
        self.heads, self.d_head = heads, d_head
        self.embed = nn.Parameter(torch.zeros(modulus + 1, d_model))
        self.pos = nn.Parameter(torch.zeros(context, d_model))
        self.w_q = nn.Parameter(torch.zeros(d_model, heads, d_head))
        self.w_k = nn.Parameter(torch.zeros(d_model, heads, d_head))
        self.w_v = nn.Parameter(torch.zeros(d_model, heads, d_head))
        self.w_o = nn.Parameter(torch.zeros(heads * d_head, d_model))
        self.w_in = nn.Parameter(torch.zeros(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(1, d_mlp))
        self.w_out = nn.Parameter(torch.zeros(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(1, d_model))
        self.unembed = nn.Parameter(torch.zeros(d_model, modulus))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (N, S) -> logits at the last position (N, C)."""
        n, s = tokens.shape
        x = self.embed[tokens] + self.pos[:s]  # (N, S, Dm)
        q = torch.einsum("nsm,mhd->nhsd", x, self.w_q)  # (N, H, S, Dh)
        k = torch.einsum("nsm,mhd->nhsd", x, self.w_k)
        v = torch.einsum("nsm,mhd->nhsd", x, self.w_v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (N, H, S, S)
        causal = torch.ones(s, s, dtype=torch.bool, device=tokens.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        z = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, s, -1)  # (N, S, H*Dh)
        x = x + z @ self.w_o
        x = x + torch.relu(x @ self.w_in + self.b_in) @ self.w_out + self.b_out
        return (x @ self.unembed)[:, -1]  # (N, C)


# ---------------------------------------------------------------- the family


@dataclass(frozen=True)
class TransformerFamily:
    """`EnsembleTransformer`s for modular addition mod `modulus`: the family that
    `memkd.distillation.train_teacher` / `train_students` train (see `memkd.models.family.Family`),
    full batch with the AdamW of Nanda et al. (weight decay 1 unless the caller gives another,
    betas (0.9, 0.98); lr 1e-3, the protocol's default). Soft students only."""

    modulus: int
    d_model: int = 128
    heads: int = 4
    d_mlp: int = 512
    context: int = 3

    inputs = "tokens"  # int64 (N, S) or (E, N, S)
    student_kinds = ("soft",)
    fusable = False  # the fused step is written for MLPs
    eval_chunk = None  # every pair at once
    optimizer = ADAMW
    unit = "full-batch steps"

    def build(self, members: int, seed: int | Sequence[int], device: torch.device) -> EnsembleTransformer:
        return EnsembleTransformer(
            members, self.modulus, self.d_model, self.heads, self.d_mlp, self.context, seed=seed
        ).to(device)

    def training_bytes(self, samples: int, own_inputs: bool, soft_targets: bool) -> None:
        return None  # not estimated for transformers
