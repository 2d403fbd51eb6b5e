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

Training uses the library's one loop (`memkd.train.fit`) with `BatchedAdam(decoupled=True)`, which is
AdamW member by member: full batch, lr 1e-3, weight decay 1.0, betas (0.9, 0.98).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from memkd.losses import hard_cross_entropy, soft_cross_entropy, soft_targets
from memkd.metrics import accuracy
from memkd.train import fit

ADAMW = {"lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98)}  # Nanda et al. (2023)


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
    q = torch.einsum("...nm,...mhd->...nhd", last, p["w_q"])  # (E, N, H, Dh)
    k = torch.einsum("...nsm,...mhd->...nshd", resid, p["w_k"])  # (E, N, S, H, Dh)
    v = torch.einsum("...nsm,...mhd->...nshd", resid, p["w_v"])  # (E, N, S, H, Dh)
    scores = torch.einsum("...nhd,...nshd->...nhs", q, k) / math.sqrt(d_head)  # (E, N, H, S)
    z = torch.einsum("...nhs,...nshd->...nhd", scores.softmax(dim=-1), v)  # (E, N, H, Dh)
    z = z.reshape(*z.shape[:-2], heads * d_head)  # (E, N, H*Dh)
    last = last + z @ p["w_o"]  # (E, N, Dm)
    hidden = torch.relu(last @ p["w_in"] + p["b_in"])  # (E, N, Dmlp)
    last = last + hidden @ p["w_out"] + p["b_out"]  # (E, N, Dm)
    return last @ p["unembed"]  # (E, N, C)


def _draw_parameters(members: int, modulus: int, d_model: int, heads: int, d_mlp: int, context: int,
                     seed: int) -> dict[str, Tensor]:
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
    """

    def __init__(self, members: int, modulus: int, d_model: int = 128, heads: int = 4,
                 d_mlp: int = 512, context: int = 3, seed: int | Sequence[int] = 0) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"EnsembleTransformer: d_model ({d_model}) must be a multiple of "
                             f"heads ({heads}).")
        self.members, self.modulus, self.d_model, self.heads = members, modulus, d_model, heads
        self.d_mlp, self.context = d_mlp, context
        if isinstance(seed, (int, np.integer)):
            drawn = _draw_parameters(members, modulus, d_model, heads, d_mlp, context, int(seed))
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != members:
                raise ValueError(f"The 'seed' parameter of EnsembleTransformer must be an int or hold one seed "
                                 f"per member ({members}). Got {len(seeds)} seeds instead.")
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


# ---------------------------------------------------------------- training

TEACHER_STOPS = ("budget", "first_perfect")


class TransformerDidNotMemorize(RuntimeError):
    """A transformer teacher did not reach 100% accuracy on its D at the end of its step budget."""


@dataclass
class TransformerTeacher:
    """K teachers trained at once, one per memorized set D (members of one ensemble)."""

    model: EnsembleTransformer  # K members
    train_acc: Tensor  # (C,) accuracy on its own D at the end
    epochs_to_memorize: Tensor  # (C,) first full-batch step at 100% on D, -1 if never
    epochs_run: int  # steps trained (the budget, or fewer when every member stopped early)
    history: pd.DataFrame
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # step -> copied parameters (K, ...)
    monitor: pd.DataFrame | None = None  # step, member, monitor_acc: accuracy on a second set (snapshot_at)

    @torch.no_grad()
    def at(self, step: int) -> EnsembleTransformer:
        """The K teachers with their weights as they were after `step` steps (a copy; see snapshot_at)."""
        if step not in self.snapshots:
            raise ValueError(f"TransformerTeacher.at: no snapshot at step {step!r}; snapshots at "
                             f"{sorted(self.snapshots)}.")
        m = self.model
        out = EnsembleTransformer(m.members, m.modulus, m.d_model, m.heads, m.d_mlp, m.context).to(m.embed.device)
        for name, param in out.named_parameters():
            param.copy_(self.snapshots[step][name])
        return out

    @torch.no_grad()
    def logits(self, tokens: Tensor) -> Tensor:
        """(N, S) shared or (K, N, S) per teacher -> (K, N, C)."""
        return self.model(tokens)


def _adamw_fit(model: EnsembleTransformer, tokens: Tensor, loss_and_acc, *, epochs: int, lr, weight_decay,
               seed: int, progress: bool, desc: str, freeze: bool = False, track: bool = False,
               warmup: int = 0, after_epoch: Callable[[int], None] | None = None):
    """`memkd.train.fit` with the AdamW of Nanda et al. on full batches (and their warm-up, if asked)."""
    return fit(model, lambda idx: loss_and_acc(), n_samples=tokens.shape[-2], epochs=epochs, lr=lr,
               weight_decay=weight_decay, decoupled_weight_decay=True, betas=ADAMW["betas"],
               freeze_when_perfect=freeze, record_first_perfect=track, log_every=max(1, epochs // 50),
               seed=seed, progress=progress, desc=desc, warmup=warmup, after_epoch=after_epoch)


def train_transformer_teacher(tokens: Tensor, labels: Tensor, *, modulus: int,
                              max_epochs: int = 5000, extra_epochs: int = 0, stop: str = "budget",
                              seed: int | Sequence[int] = 0, d_model: int = 128, heads: int = 4,
                              d_mlp: int = 512, require_memorization: bool = True,
                              progress: bool = False, warmup: int = 0, snapshot_at: Sequence[int] = (),
                              monitor: tuple[Tensor, Tensor] | None = None,
                              monitor_every: int = 0, lr: float = ADAMW["lr"],
                              weight_decay: float = ADAMW["weight_decay"]) -> TransformerTeacher:
    """Train K teachers at once with full-batch AdamW, each on its own memorized set.

    tokens (N, S) and labels (N,) for one teacher, or (K, N, S) and (K, N) for K teachers.
    stop : "budget" (the paper's protocol): every teacher trains all `max_epochs` steps and must be
        at 100% on its D at the end; "first_perfect": each teacher stops moving at its first step at
        100% (an early stop; with weight decay the budget protocol keeps moving towards grokking).
    extra_epochs : steps trained on afterwards by every member (towards grokking).
    seed : one int, or one seed per teacher (see `memkd.seeds`).
    lr, weight_decay : AdamW's (Nanda et al. and the released code: 1e-3 and 1.0; betas fixed).
    warmup : linear learning-rate warm-up steps (see `memkd.train.fit`; the released code: 10).
    snapshot_at : steps (1-based, within max_epochs) after which every teacher's parameters are
        copied into `snapshots` (one training run, several stops); `at(step)` rebuilds them.
    monitor : (tokens (K, M, S), labels (K, M)), e.g. the pairs outside each D; with
        monitor_every > 0 each teacher's accuracy there is recorded every `monitor_every` steps
        and at every snapshot (`TransformerTeacher.monitor`: step, member, monitor_acc).
    Raises ValueError for an unknown `stop`, and TransformerDidNotMemorize with the accuracy reached
    when a teacher ends below 100% (unless require_memorization=False).
    """
    if stop not in TEACHER_STOPS:
        raise ValueError(f"The 'stop' parameter of train_transformer_teacher must be one of {TEACHER_STOPS}. "
                         f"Got {stop!r} instead.")
    if tokens.dim() == 2:
        tokens, labels = tokens.unsqueeze(0), labels.unsqueeze(0)
    k = tokens.shape[0]
    model = EnsembleTransformer(k, modulus, d_model, heads, d_mlp, tokens.shape[-1], seed=seed).to(tokens.device)
    fit_seed = seed if isinstance(seed, (int, np.integer)) else int(list(seed)[0])
    stops = sorted({int(s) for s in snapshot_at})
    if stops and not 1 <= stops[0] <= stops[-1] <= max_epochs:
        raise ValueError(f"The 'snapshot_at' parameter of train_transformer_teacher must hold steps in "
                         f"[1, max_epochs={max_epochs}]. Got {list(snapshot_at)!r} instead.")
    snapshots: dict[int, dict[str, Tensor]] = {}
    watched: list[dict] = []

    def loss_and_acc():
        logits = model(tokens)  # (C, N, classes)
        return hard_cross_entropy(logits, labels), accuracy(logits.detach(), labels)

    def after_epoch(epoch: int) -> None:
        if epoch in stops:
            snapshots[epoch] = {name: p.detach().clone() for name, p in model.named_parameters()}
        if monitor is not None and monitor_every > 0 and (epoch % monitor_every == 0 or epoch in stops):
            with torch.no_grad():
                acc_m = accuracy(model(monitor[0]), monitor[1]).cpu().tolist()
            watched.extend({"step": epoch, "member": i, "monitor_acc": a} for i, a in enumerate(acc_m))

    hook = after_epoch if stops or (monitor is not None and monitor_every > 0) else None
    history, first = _adamw_fit(model, tokens, loss_and_acc, epochs=max_epochs, lr=lr,
                                weight_decay=weight_decay, seed=fit_seed, progress=progress,
                                desc="transformer teachers", freeze=stop == "first_perfect", track=True,
                                warmup=warmup, after_epoch=hook)
    epochs_run = int(history["epoch"].max())
    if extra_epochs > 0:
        more, _ = _adamw_fit(model, tokens, loss_and_acc, epochs=extra_epochs, lr=lr,
                             weight_decay=weight_decay, seed=fit_seed + 1, progress=progress,
                             desc="transformer teachers (extra)")
        more["epoch"] += epochs_run
        history = pd.concat([history, more], ignore_index=True)
        epochs_run += extra_epochs
    with torch.no_grad():
        acc = accuracy(model(tokens), labels).cpu()
    if require_memorization and bool((acc < 1.0).any()):
        raise TransformerDidNotMemorize(
            f"train_transformer_teacher: {int((acc < 1.0).sum())} of {k} teacher(s) reached only "
            f"{float(acc.min()):.2%} on a memorized set of {labels.shape[-1]} pairs (modulus {modulus}) "
            f"{'after' if stop == 'budget' else 'within'} {max_epochs} full-batch steps (teacher_stop={stop!r}), "
            "not 100%. Give them more steps (teacher_epochs) or a smaller memorized fraction."
        )
    return TransformerTeacher(model, acc, first, epochs_run, history, snapshots,
                              pd.DataFrame(watched, columns=["step", "member", "monitor_acc"]) if hook else None)


def train_transformer_students(tokens: Tensor, teacher_logits: Tensor, *, modulus: int,
                               members: int, temperatures: Tensor | Sequence[float] | float,
                               lrs: Tensor | Sequence[float] | float = ADAMW["lr"],
                               epochs: int = 1000, weight_decay: float = ADAMW["weight_decay"],
                               seed: int | Sequence[int] = 0, d_model: int = 128, heads: int = 4,
                               d_mlp: int = 512, progress: bool = False, warmup: int = 0
                               ) -> tuple[EnsembleTransformer, pd.DataFrame]:
    """E students of the teacher's architecture fit sigma_T(teacher logits), all at once.

    tokens (N, S) shared, or (E, N, S) per student (students of different teachers);
    teacher_logits (N, C), (1, N, C) or (E, N, C) per student; temperatures and lrs: one value or
    one per member (E,); seed: one int or one per student. The loss is the library's soft
    cross-entropy (teacher softened by T, student at T = 1: see memkd.losses). The history's
    train_acc is agreement with the teacher's argmax on the student's part. warmup: linear
    learning-rate warm-up steps (see `memkd.train.fit`; 0, the default: none).
    """
    model = EnsembleTransformer(members, modulus, d_model, heads, d_mlp, tokens.shape[-1],
                                seed=seed).to(tokens.device)
    temps = torch.as_tensor(temperatures, dtype=torch.float32,
                            device=tokens.device).expand(members)
    logits = teacher_logits.reshape(-1, *teacher_logits.shape[-2:])  # (1 or E, N, C)
    targets = soft_targets(logits, temps)  # (E, N, C)
    teacher_labels = logits.argmax(dim=-1)  # (1 or E, N)
    fit_seed = seed if isinstance(seed, (int, np.integer)) else int(list(seed)[0])

    def loss_and_acc():
        out = model(tokens)
        return soft_cross_entropy(out, targets), accuracy(out.detach(), teacher_labels)

    return model, _adamw_fit(model, tokens, loss_and_acc, epochs=epochs, lr=lrs, weight_decay=weight_decay,
                             seed=fit_seed, progress=progress, desc="transformer students", warmup=warmup)[0]
