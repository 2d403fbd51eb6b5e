"""The model-free part of `fit`'s full-batch fast path: the epoch without host synchronisation.

Shape letters (see `memkd`): E members.

`fit` trains an objective that fills its own gradients (`fills_gradients = True`, e.g.
`memkd.models.fused_mlp.FusedCrossEntropy`, which sits beside the model it serves) through
`StaticEpoch`: the first-perfect bookkeeping (`PerfectTracker`) and Adam's step with its step count
on the device (`adam_step_on_device`), captured in a CUDA graph on CUDA. Nothing here knows a
model: an objective is anything with `parameters()` and a call `(None) -> (loss (E,), acc (E,))`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


# --- the epoch without host synchronisation, and its CUDA graph -----------------------------------


class PerfectTracker:
    """Which members reached 100% training accuracy, and when, kept on the device (no host sync).

    first_perfect : (E,) long, the first epoch at 100% (-1: not yet).
    active : (E,) bool, members still training (only cleared with `freeze`).
    With `remember_stop` (a host that reads `active` only every few epochs), stopped_at (0-dim
    long) is the first epoch at whose end no member was active (-1: none yet), and
    loss_at_stop / acc_at_stop (E,) are what that epoch reported.
    """

    def __init__(self, members: int, device: torch.device, *, freeze: bool, remember_stop: bool) -> None:
        self.freeze, self.remember_stop = freeze, remember_stop and freeze
        self.active = torch.ones(members, dtype=torch.bool, device=device)
        self.first_perfect = torch.full((members,), -1, dtype=torch.long, device=device)
        self.stopped_at = torch.full((), -1, dtype=torch.long, device=device)
        self.loss_at_stop = torch.zeros(members, device=device)
        self.acc_at_stop = torch.zeros(members, device=device)

    def mark(self, acc: Tensor, epoch: int | Tensor) -> None:
        """Members with acc (E,) == 1 that were not perfect yet record `epoch`; freeze them."""
        newly = (acc >= 1.0) & (self.first_perfect < 0)
        self.first_perfect.copy_(torch.where(newly, epoch, self.first_perfect))
        if self.freeze:
            self.active &= acc < 1.0

    def end_epoch(self, epoch: int | Tensor, loss: Tensor, acc: Tensor | None) -> None:
        """With `remember_stop`: if this epoch is the first with no active member, remember it."""
        if not self.remember_stop:
            return
        just = (self.stopped_at < 0) & ~self.active.any()
        self.stopped_at.copy_(torch.where(just, epoch, self.stopped_at))
        self.loss_at_stop.copy_(torch.where(just, loss.detach().float(), self.loss_at_stop))
        if acc is not None:
            self.acc_at_stop.copy_(torch.where(just, acc.detach().float(), self.acc_at_stop))


def adam_step_on_device(opt, steps: Tensor, active: Tensor | None) -> None:
    """`BatchedAdam.step` with the step count `steps` (0-dim float64, already counting this step)
    on the device, so that the same kernels serve every step (capturable in a CUDA graph).

    The bias corrections are computed in float64 from `steps` and rounded to float32, as the
    eager step rounds its Python floats; the numbers agree with it to float rounding.
    """
    beta1, beta2 = opt.betas
    bias1 = (1 - torch.pow(beta1, steps)).float()
    bias2_sqrt = (1 - torch.pow(beta2, steps)).sqrt().float()
    opt.apply(bias1, bias2_sqrt, active)


class StaticEpoch:
    """One full-batch epoch of `fit` (the fused step, the first-perfect bookkeeping, Adam) that
    never waits for the device and reuses the same tensors every time: on CUDA it is captured
    in a CUDA graph after `warmup` eager epochs and then replayed, one launch per epoch.

    objective : an objective that fills its gradients (`memkd.models.fused_mlp`); opt : its BatchedAdam (state at step 0);
    tracker : the PerfectTracker of `fit`; track / freeze as `fit`'s record_first_perfect or
    freeze_when_perfect / freeze_when_perfect.
    capture : try to capture (CUDA only). If capture fails (an op that cannot be captured, an
    old driver), a warning says so and the epochs run eagerly, with the same numbers.
    Calling it runs one epoch and returns (loss (E,), train_acc (E,)); on the graph these are
    the same tensors every epoch, overwritten by the next call.
    Why a CUDA graph rather than torch.compile: the step already keeps every tensor in buffers
    allocated once, which is exactly what a graph needs, and capture costs milliseconds, where
    compiling costs tens of seconds per shape and needs a compiler toolchain (Triton) that not
    every runtime has; the launch overhead of the ~40 small kernels is what a graph removes.
    """

    def __init__(
        self, objective: Any, opt, tracker: PerfectTracker, *, track: bool, freeze: bool, capture: bool, warmup: int = 3
    ) -> None:
        device = objective.parameters()[0].device
        self.objective, self.opt, self.tracker = objective, opt, tracker
        self.track, self.freeze = track, freeze
        self.capture_wanted = capture and device.type == "cuda"
        self.warmup = warmup
        self.epoch = torch.zeros((), dtype=torch.long, device=device)  # epochs done
        self.steps = torch.full((), float(opt.step_count), dtype=torch.float64, device=device)
        self.eager_epochs = 0
        self.graph = None
        self.captured: tuple[Tensor, Tensor] | None = None
        self.capture_error: str | None = None

    @torch.no_grad()
    def step(self) -> tuple[Tensor, Tensor]:
        """One epoch, eagerly (also what the graph records)."""
        self.epoch.add_(1)
        loss, acc = self.objective(None)
        if self.track:
            self.tracker.mark(acc, self.epoch - 1)  # perfect before this epoch's step
        self.steps.add_(1)
        adam_step_on_device(self.opt, self.steps, self.tracker.active if self.freeze else None)
        self.tracker.end_epoch(self.epoch, loss, acc)
        return loss, acc

    def _capture(self) -> bool:
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self.step()
        except (RuntimeError, AssertionError) as err:  # capture refused: run eagerly from here
            import warnings

            torch.cuda.synchronize()
            self.capture_error = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"memkd: CUDA graph capture of the training step failed ({self.capture_error}); "
                "training continues eagerly with the same numbers.",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        self.graph, self.captured = graph, out
        return True

    def __call__(self) -> tuple[Tensor, Tensor]:
        if self.graph is None and self.capture_wanted and self.eager_epochs >= self.warmup:
            self.capture_wanted = self._capture()
        if self.graph is not None:
            self.graph.replay()
            return self.captured
        self.eager_epochs += 1
        return self.step()
