"""The 1-layer transformer of Nanda et al. (2023) for modular addition, batched along an ensemble axis.

Architecture (their defaults): token and learned positional embeddings (d_model 128), one attention
layer (4 heads of 32, causal), one ReLU MLP (d_mlp 512), no LayerNorm, residual stream, an unembedding
read at the last position ("=") into k logits. Initialisation as in their code: weights ~ N(0, 1/d_model)
(the unembedding N(0, 1/vocab)), biases zero.

Shapes: E members, N sequences, S = 3 positions, V vocabulary (k + 1), M = d_model, H heads,
Dh = d_head, F = d_mlp, K = k output classes.

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

Training uses the library's one loop (`memkd.train.fit`) with `BatchedAdam(decoupled=True)`, which is
AdamW member by member: full batch, lr 1e-3, weight decay 1.0, betas (0.9, 0.98).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from memkd.losses import hard_cross_entropy, soft_cross_entropy, soft_targets
from memkd.metrics import accuracy
from memkd.train import fit

ADAMW = {"lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98)}  # Nanda et al. (2023)


def functional_forward(p: dict[str, Tensor], tokens: Tensor) -> Tensor:
    """Logits at the last position. p: parameters with a leading (E,) axis or without one.

    tokens : int64 (N, S) -> logits (E, N, K), or (N, K) for unbatched parameters.
    """
    heads, d_head = p["w_q"].shape[-2], p["w_q"].shape[-1]
    resid = p["embed"][..., tokens, :] + p["pos"].unsqueeze(-3)  # (E, N, S, M)
    last = resid[..., -1, :]  # (E, N, M)
    q = torch.einsum("...nm,...mhd->...nhd", last, p["w_q"])  # (E, N, H, Dh)
    k = torch.einsum("...nsm,...mhd->...nshd", resid, p["w_k"])  # (E, N, S, H, Dh)
    v = torch.einsum("...nsm,...mhd->...nshd", resid, p["w_v"])  # (E, N, S, H, Dh)
    scores = torch.einsum("...nhd,...nshd->...nhs", q, k) / math.sqrt(d_head)  # (E, N, H, S)
    z = torch.einsum("...nhs,...nshd->...nhd", scores.softmax(dim=-1), v)  # (E, N, H, Dh)
    z = z.reshape(*z.shape[:-2], heads * d_head)  # (E, N, H*Dh)
    last = last + z @ p["w_o"]  # (E, N, M)
    hidden = torch.relu(last @ p["w_in"] + p["b_in"])  # (E, N, F)
    last = last + hidden @ p["w_out"] + p["b_out"]  # (E, N, M)
    return last @ p["unembed"]  # (E, N, K)


class EnsembleTransformer(nn.Module):
    """E independent 1-layer transformers with stacked parameters.

    Parameters
    ----------
    members : E.
    modulus : k; the vocabulary is k + 1 tokens ("=" is id k), the output k classes.
    d_model, heads, d_mlp, context : M, H, F, S (Nanda et al.: 128, 4, 512, 3).
    seed : initialisation seed (all members drawn from one generator, independently).
    """

    def __init__(self, members: int, modulus: int, d_model: int = 128, heads: int = 4,
                 d_mlp: int = 512, context: int = 3, seed: int = 0) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"EnsembleTransformer: d_model ({d_model}) must be a multiple of "
                             f"heads ({heads}).")
        self.members, self.modulus, self.d_model, self.heads = members, modulus, d_model, heads
        self.d_mlp, self.context = d_mlp, context
        vocab, d_head, e = modulus + 1, d_model // heads, members
        gen = torch.Generator().manual_seed(int(seed))

        def normal(*shape: int, scale: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(e, *shape, generator=gen) * scale)

        s = 1 / math.sqrt(d_model)
        self.embed = normal(vocab, d_model, scale=s)  # (E, V, M)
        self.pos = normal(context, d_model, scale=s)  # (E, S, M)
        self.w_q = normal(d_model, heads, d_head, scale=s)  # (E, M, H, Dh)
        self.w_k = normal(d_model, heads, d_head, scale=s)
        self.w_v = normal(d_model, heads, d_head, scale=s)
        self.w_o = normal(heads * d_head, d_model, scale=s)  # (E, H*Dh, M)
        self.w_in = normal(d_model, d_mlp, scale=s)  # (E, M, F)
        self.b_in = nn.Parameter(torch.zeros(e, 1, d_mlp))  # (E, 1, F)
        self.w_out = normal(d_mlp, d_model, scale=1 / math.sqrt(d_model))  # (E, F, M)
        self.b_out = nn.Parameter(torch.zeros(e, 1, d_model))  # (E, 1, M)
        self.unembed = normal(d_model, modulus, scale=1 / math.sqrt(vocab))  # (E, M, K)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens : int64 (N, S) shared by all members -> logits (E, N, K)."""
        return functional_forward(dict(self.named_parameters()), tokens)

    @torch.no_grad()
    def member(self, index: int) -> "Transformer":
        """A plain single-model `Transformer` with member `index`'s weights (a copy)."""
        single = Transformer(self.modulus, self.d_model, self.heads, self.d_mlp, self.context)
        for name, param in single.named_parameters():
            param.copy_(getattr(self, name)[index])
        return single.to(self.embed.device)

    def extra_repr(self) -> str:
        return (f"members={self.members}, modulus={self.modulus}, d_model={self.d_model}, "
                f"heads={self.heads}, d_mlp={self.d_mlp}")


class Transformer(nn.Module):
    """One 1-layer transformer written plainly (every position, causal mask): the reference."""

    def __init__(self, modulus: int, d_model: int = 128, heads: int = 4, d_mlp: int = 512,
                 context: int = 3) -> None:
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
        """tokens (N, S) -> logits at the last position (N, K)."""
        n, s = tokens.shape
        x = self.embed[tokens] + self.pos[:s]  # (N, S, M)
        q = torch.einsum("nsm,mhd->nhsd", x, self.w_q)  # (N, H, S, Dh)
        k = torch.einsum("nsm,mhd->nhsd", x, self.w_k)
        v = torch.einsum("nsm,mhd->nhsd", x, self.w_v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (N, H, S, S)
        causal = torch.ones(s, s, dtype=torch.bool, device=tokens.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        z = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, s, -1)  # (N, S, H*Dh)
        x = x + z @ self.w_o
        x = x + torch.relu(x @ self.w_in + self.b_in) @ self.w_out + self.b_out
        return (x @ self.unembed)[:, -1]  # (N, K)


# ---------------------------------------------------------------- training


class TransformerDidNotMemorize(RuntimeError):
    """The transformer teacher did not reach 100% accuracy on D within its step budget."""


@dataclass
class TransformerTeacher:
    model: EnsembleTransformer  # one member
    train_acc: float
    epochs_to_memorize: int  # first full-batch step count at 100% on D, -1 if never
    history: pd.DataFrame

    @torch.no_grad()
    def logits(self, tokens: Tensor) -> Tensor:
        """(N, S) -> (1, N, K)."""
        return self.model(tokens)


def train_transformer_teacher(tokens: Tensor, labels: Tensor, *, modulus: int,
                              max_epochs: int = 5000, extra_epochs: int = 0, seed: int = 0,
                              d_model: int = 128, heads: int = 4, d_mlp: int = 512,
                              progress: bool = False) -> TransformerTeacher:
    """Full-batch AdamW on the memorized set until 100% accuracy (then it stops moving).

    tokens (N, S), labels (N,). extra_epochs trains on after memorizing (towards grokking).
    Raises TransformerDidNotMemorize with the accuracy reached.
    """
    model = EnsembleTransformer(1, modulus, d_model, heads, d_mlp, tokens.shape[1], seed=seed)
    model = model.to(tokens.device)

    def objective(idx):
        logits = model(tokens)  # (1, N, K)
        return hard_cross_entropy(logits, labels), accuracy(logits.detach(), labels)

    history, first = fit(model, objective, n_samples=len(labels), epochs=max_epochs,
                         lr=ADAMW["lr"], weight_decay=ADAMW["weight_decay"],
                         decoupled_weight_decay=True, betas=ADAMW["betas"],
                         freeze_when_perfect=True, log_every=max(1, max_epochs // 50),
                         seed=seed, progress=progress, desc="transformer teacher")
    reached = int(first[0])
    if reached >= 0 and extra_epochs > 0:
        more, _ = fit(model, objective, n_samples=len(labels), epochs=extra_epochs,
                      lr=ADAMW["lr"], weight_decay=ADAMW["weight_decay"],
                      decoupled_weight_decay=True, betas=ADAMW["betas"],
                      log_every=max(1, extra_epochs // 20), seed=seed + 1, progress=progress,
                      desc="transformer teacher (extra)")
        more["epoch"] += reached  # the teacher stopped moving at its first 100%
        history = pd.concat([history, more], ignore_index=True)
    with torch.no_grad():
        acc = float(accuracy(model(tokens), labels)[0])
    if acc < 1.0:
        raise TransformerDidNotMemorize(
            f"train_transformer_teacher: the teacher reached {acc:.2%} on its memorized set of "
            f"{len(labels)} pairs (modulus {modulus}) after {max_epochs} full-batch epochs, not "
            f"100%. Give it more epochs (teacher_epochs) or a smaller memorized fraction."
        )
    return TransformerTeacher(model, acc, reached, history)


def train_transformer_students(tokens: Tensor, teacher_logits: Tensor, *, modulus: int,
                               members: int, temperatures: Tensor | Sequence[float] | float,
                               lrs: Tensor | Sequence[float] | float = ADAMW["lr"],
                               epochs: int = 1000, weight_decay: float = ADAMW["weight_decay"],
                               seed: int = 0, d_model: int = 128, heads: int = 4,
                               d_mlp: int = 512, progress: bool = False
                               ) -> tuple[EnsembleTransformer, pd.DataFrame]:
    """E students of the teacher's architecture fit sigma_T(teacher logits), all at once.

    tokens (N, S): the student's part of D; teacher_logits (N, K) or (1, N, K);
    temperatures and lrs: one value or one per member (E,). The loss is the library's soft
    cross-entropy (teacher softened by T, student at T = 1: see memkd.losses).
    """
    model = EnsembleTransformer(members, modulus, d_model, heads, d_mlp, tokens.shape[1],
                                seed=seed).to(tokens.device)
    temps = torch.as_tensor(temperatures, dtype=torch.float32,
                            device=tokens.device).expand(members)
    logits = teacher_logits.reshape(1, *teacher_logits.shape[-2:])
    targets = soft_targets(logits, temps)  # (E, N, K)
    teacher_labels = logits[0].argmax(dim=-1)

    def objective(idx):
        out = model(tokens)
        return soft_cross_entropy(out, targets), accuracy(out.detach(), teacher_labels)

    return model, fit(model, objective, n_samples=len(tokens), epochs=epochs, lr=lrs,
                      weight_decay=weight_decay, decoupled_weight_decay=True,
                      betas=ADAMW["betas"], log_every=max(1, epochs // 20), seed=seed,
                      progress=progress, desc="transformer students")[0]
