"""One training loop for ensembles (`fit`) and a batched Adam; `memkd.distillation` uses them for
teachers and students.

Shape letters (see `memkd`): E members, N samples, D input dimension, C classes.
Every member is an independent network: the loop sums per-member losses (shape (E,)), so each
member receives exactly its own gradient, and `BatchedAdam` applies Adam with a learning rate
(and weight decay) per member. Left out on purpose: schedulers, callbacks, checkpointing.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from memkd.config import invalid


class BatchedAdam:
    """Adam over stacked parameters (E, ...) with a learning rate per member.

    Matches `torch.optim.Adam` (defaults betas=(0.9, 0.999), eps=1e-8) member by member.
    `weight_decay` adds wd * param to the gradient (Adam's L2) or, with `decoupled=True`,
    shrinks the parameter by lr * wd first (AdamW).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: Tensor | Sequence[float] | float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Tensor | Sequence[float] | float = 0.0,
        decoupled: bool = False,
    ) -> None:
        self.params = [p for p in params]
        members = self.params[0].shape[0]
        device = self.params[0].device
        self.lr = torch.as_tensor(lr, dtype=torch.float32, device=device).expand(members).clone()
        self.weight_decay = torch.as_tensor(weight_decay, dtype=torch.float32, device=device).expand(members).clone()
        self.uses_weight_decay = bool((self.weight_decay != 0).any())  # read once: no host sync per step
        self.betas, self.eps, self.decoupled = betas, eps, decoupled
        self.step_count = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self._scratch = [torch.empty_like(p) for p in self.params]  # no allocation per step

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Tensor | None = None) -> None:
        """One Adam step; members where `active` (bool, (E,)) is False keep their parameters."""
        self.step_count += 1
        beta1, beta2 = self.betas
        self.apply(1 - beta1**self.step_count, (1 - beta2**self.step_count) ** 0.5, active)

    @torch.no_grad()
    def apply(self, bias1: float | Tensor, bias2_sqrt: float | Tensor, active: Tensor | None = None) -> None:
        """The update of one step given its bias corrections (Python floats, or 0-dim tensors on the
        device for a step captured in a CUDA graph: `memkd.fused.adam_step_on_device`)."""
        beta1, beta2 = self.betas
        lr = self.lr if active is None else self.lr * active.to(self.lr.dtype)
        step_size = lr / bias1
        for p, m, v, scratch in zip(self.params, self.exp_avg, self.exp_avg_sq, self._scratch):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad = p.grad
            if self.uses_weight_decay:
                wd = self.weight_decay.view(shape)
                if self.decoupled:
                    p.mul_(1 - lr.view(shape) * wd)
                else:
                    grad = grad + wd * p
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = torch.sqrt(v, out=scratch).div_(bias2_sqrt).add_(self.eps)
            p.sub_(torch.div(m, denom, out=scratch).mul_(step_size.view(shape)))


Objective = Callable[[Tensor | None], tuple[Tensor, Tensor | None]]


def fit(
    model: torch.nn.Module,
    objective: Objective,
    *,
    n_samples: int,
    epochs: int,
    lr: Tensor | Sequence[float] | float,
    batch_size: int | None = None,
    weight_decay: Tensor | Sequence[float] | float = 0.0,
    decoupled_weight_decay: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    freeze_when_perfect: bool = False,
    record_first_perfect: bool = False,
    evaluate: Callable[[], Tensor] | None = None,
    log_every: int = 0,
    seed: int = 0,
    progress: bool = False,
    desc: str = "train",
    cuda_graph: bool | None = None,
    sync_every: int | None = None,
    warmup: int = 0,
    after_epoch: Callable[[int], None] | None = None,
    max_grad_norm: float | None = None,
    eps: float = 1e-8,
) -> tuple[pd.DataFrame, Tensor]:
    """Train all members of `model` together.

    objective(batch_idx) -> (loss (E,), train_acc (E,) or None); batch_idx is None for full batch.
        An objective with `fills_gradients = True` (`memkd.models.fused_mlp.FusedMLPObjective`) computes
        the gradients itself, and its `parameters()` are what the optimizer updates.
    freeze_when_perfect: a member whose training accuracy reaches 1 stops moving (its learning
        rate is masked from that step on; with full batches the accuracy is the one computed
        before the step, so the frozen parameters are exactly the ones that reached 100%).
    record_first_perfect: track the first epoch at 100% (as freeze_when_perfect does) without
        freezing anyone: the teacher's fixed-budget protocol.
    evaluate() -> training accuracy (E,) on the full data, used at the end of each epoch with
        mini-batches (full batch uses the objective's own accuracy).
    cuda_graph: on CUDA, a fused objective with batch_size=None trains through
        `memkd.fused.StaticEpoch` (no host synchronisation per epoch), captured in a CUDA graph
        after 3 eager epochs. None (auto): capture there; False: never capture; True: capture,
        and warn where it is not possible (not CUDA, not fused full batch). A failed capture
        warns and trains eagerly. The numbers equal the eager ones to float rounding.
    sync_every: how often (epochs) the host reads the device to stop early once every member
        is frozen; None: 1 on CPU and MPS, 50 on CUDA. The history and first-perfect epochs do
        not depend on it (the device remembers the epoch at which the last member froze).
    warmup: linear learning-rate warm-up over the first `warmup` optimizer steps: step t (1-based)
        uses lr * min((t - 1) / warmup, 1), as PyTorch's `LambdaLR(lambda s: min(s / warmup, 1))`
        stepped after each optimizer step (Nanda et al.'s and the released transformer code's
        warm-up of 10). 0: none (constant lr).
    after_epoch(epoch): called after each epoch's step(s) with the 1-based epoch (e.g. to copy
        the weights at chosen steps). With `warmup` or `after_epoch`, training is eager (no CUDA graph).
    max_grad_norm: clip each member's gradient to this Euclidean norm over all its parameters
        before every step (`clip_member_gradients`, as torch.nn.utils.clip_grad_norm_ member by
        member); None: no clipping. Not with a fused objective.
    eps: Adam's epsilon (torch's default 1e-8; the `transformers` AdamW of the GPT-2 code: 1e-6).
    Returns (history, first_perfect_epoch): history is a long table with columns
    epoch, member, loss, train_acc every `log_every` epochs (and at the last epoch);
    first_perfect_epoch (E,) holds the first epoch (1-based) at which each member reached 100%
    training accuracy, or -1.
    """
    from memkd.fused import PerfectTracker, StaticEpoch

    fused = getattr(objective, "fills_gradients", False)
    params = objective.parameters() if fused else [p for p in model.parameters()]
    members = params[0].shape[0]
    device = params[0].device
    if sync_every is None:
        sync_every = 50 if device.type == "cuda" else 1
    if not isinstance(sync_every, int) or isinstance(sync_every, bool) or sync_every < 1:
        raise invalid("sync_every", "fit", "None or an int >= 1", sync_every)
    if cuda_graph not in (None, True, False):
        raise invalid("cuda_graph", "fit", "None, True or False", cuda_graph)
    if max_grad_norm is not None and (fused or not max_grad_norm > 0):
        raise invalid(
            "max_grad_norm",
            "fit",
            "None or a float > 0, and None with a fused objective",
            shown=f"{max_grad_norm!r} (fused={fused})",
        )
    opt = BatchedAdam(params, lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled_weight_decay)
    track = freeze_when_perfect or record_first_perfect
    tracker = PerfectTracker(members, device, freeze=freeze_when_perfect, remember_stop=sync_every > 1)
    active, first_perfect = tracker.active, tracker.first_perfect
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise invalid("warmup", "fit", "an int >= 0", warmup)
    base_lr = opt.lr.clone()
    static = None
    if fused and batch_size is None and _sync_free(device) and not warmup and after_epoch is None:
        static = StaticEpoch(
            objective, opt, tracker, track=track, freeze=freeze_when_perfect, capture=cuda_graph is not False
        )
    elif cuda_graph:
        import warnings

        warnings.warn(
            "fit(cuda_graph=True): capture needs a CUDA device and a fused full-batch objective "
            f"(here {device.type}, fused={fused}, batch_size={batch_size}); training eagerly.",
            RuntimeWarning,
            stacklevel=2,
        )
    gen = torch.Generator().manual_seed(int(seed) + 104729)
    logged: list[tuple[int, Tensor, Tensor | None]] = []  # kept on the device until the end
    stop: int | None = None
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        if static is not None:
            loss, acc = static()
        else:
            if batch_size is None or batch_size >= n_samples:
                batches: list[Tensor | None] = [None]
            else:
                order = torch.randperm(n_samples, generator=gen).to(device)
                batches = list(order.split(batch_size))
            for idx in batches:
                opt.zero_grad()
                loss, acc = objective(idx)
                if track and idx is None and acc is not None:
                    tracker.mark(acc, epoch - 1)  # perfect before this epoch's step
                if not fused:
                    loss.sum().backward()
                if max_grad_norm is not None:
                    clip_member_gradients(params, max_grad_norm)
                if warmup and opt.step_count <= warmup:
                    opt.lr.copy_(base_lr * (opt.step_count / warmup))
                opt.step(active if freeze_when_perfect else None)
            if track and batch_size is not None and evaluate is not None:
                with torch.no_grad():
                    acc = evaluate()
                tracker.mark(acc, epoch)
            tracker.end_epoch(epoch, loss, acc)
        if after_epoch is not None:
            after_epoch(epoch)
        last = epoch == epochs
        if (log_every and epoch % log_every == 0) or last:
            logged.append((epoch, loss.detach().clone(), None if acc is None else acc.detach().clone()))
        if freeze_when_perfect and (epoch % sync_every == 0 or last) and not bool(active.any()):
            stop = int(tracker.stopped_at) if tracker.remember_stop else epoch
            if tracker.remember_stop:  # what the epoch we stop at reported
                loss, acc = tracker.loss_at_stop, tracker.acc_at_stop
            logged = [entry for entry in logged if entry[0] <= stop]
            if not logged or logged[-1][0] != stop:  # always log the epoch we stop at
                logged.append((stop, loss.detach().clone(), acc.detach().clone()))
            break
    bar.close()
    return _history(logged, members), first_perfect.cpu()


@torch.no_grad()
def clip_member_gradients(params: Sequence[Tensor], max_norm: float) -> Tensor:
    """Scale each member's gradients (stacked (E, ...)) so that their joint Euclidean norm is at most
    `max_norm`, as torch.nn.utils.clip_grad_norm_ does for one model (coefficient max_norm / (norm +
    1e-6), capped at 1). Returns the norms before clipping, (E,)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.pow(2).reshape(g.shape[0], -1).sum(dim=1) for g in grads]).sum(dim=0).sqrt()  # (E,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view((-1,) + (1,) * (g.dim() - 1)))
    return norms


def _sync_free(device: torch.device) -> bool:
    """Whether `fit` trains fused full batches through `StaticEpoch` on `device` (CUDA: yes)."""
    return device.type == "cuda"


def _history(logged: list[tuple[int, Tensor, Tensor | None]], members: int) -> pd.DataFrame:
    """The long history table (epoch, member, loss, train_acc) from (epoch, loss (E,), acc (E,) or None)."""
    rows: list[dict] = []
    for epoch, loss, acc in logged:
        acc_vals = acc.cpu().tolist() if acc is not None else [float("nan")] * members
        for m, (l_val, a_val) in enumerate(zip(loss.cpu().tolist(), acc_vals)):
            rows.append({"epoch": epoch, "member": m, "loss": l_val, "train_acc": a_val})
    return pd.DataFrame(rows)
