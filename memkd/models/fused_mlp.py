"""Full-batch training of an `EnsembleMLP` without autograd (cross-entropy, similarity matching): the fast
path of `fit`.

Shape letters (see `memkd`): E members, N samples, D input dimension, P hidden width, C classes.

Why by hand. Autograd allocates every activation and gradient afresh at each step. On a CPU a
fresh tensor of a few MB or more is slow to fill (the allocator hands back new pages, which fault
in on first touch: a ReLU over a fresh (20, 6000, 500) tensor runs at about 5 GB/s instead of
30), and each small op costs dispatcher time, which dominates at the `smoke` shapes. This step
keeps every activation and gradient in buffers allocated once, and lays all parameters (and
their gradients) out in one flat (E, F) tensor, so that `BatchedAdam` updates every layer with a
handful of ops. Activations are stored feature-major (E, features, N), and with a shared input
layer 1 is a single GEMM over all members. It computes the same loss, accuracy and gradients as
`soft_cross_entropy` / `hard_cross_entropy` (`FusedCrossEntropy`) or `similarity_mse`
(`FusedSimilarity`) + `loss.sum().backward()` (tested to float rounding), for any depth and for the
relu, tanh and linear activations; `FusedMLPObjective` holds what they share.

It lives beside `memkd.models.mlp` because it knows the MLP's layers; the model-free part of the
fast path (the epoch without host synchronisation, its CUDA graph) is `memkd.fused`, which `fit`
uses for any objective that fills its own gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from memkd.config import invalid
from memkd.models.mlp import EnsembleMLP


def flatten_parameters(
    model: EnsembleMLP,
) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
    """Move `model`'s parameters into one flat (E, F) tensor, in place, stored feature-major.

    Each weight is stored as an (E, out, in) block and each bias as an (E, out) block of `flat`;
    the module's parameters become views of them with their usual shapes, (E, in, out) and
    (E, 1, out), so the module keeps working as before. Returns (flat, grad, weights_t,
    weight_grads_t, biases_t, bias_grads_t): `grad` (E, F) is zero, the others are views into
    `flat` / `grad`, weights (E, out, in) and biases (E, out, 1), one per layer.
    """
    members = model.members
    dtype, device = model.weights[0].dtype, model.weights[0].device
    sizes = [w[0].numel() for w in model.weights] + [b[0].numel() for b in model.biases]
    flat = torch.empty(members, sum(sizes), dtype=dtype, device=device)
    grad = torch.zeros_like(flat)
    views: dict[str, list[Tensor]] = {"w": [], "gw": [], "b": [], "gb": []}
    offset = 0
    for kind, params in (("w", model.weights), ("b", model.biases)):
        for p in params:
            out, fan_in = p.shape[2], p.shape[1]
            block = slice(offset, offset + fan_in * out)
            stored = flat[:, block].view(members, out, fan_in)  # (E, out, in); (E, out, 1) for biases
            stored.copy_(p.detach().transpose(1, 2))
            p.data = stored.transpose(1, 2)  # the module's (E, in, out) / (E, 1, out) view
            views[kind].append(stored)
            views["g" + kind].append(grad[:, block].view(members, out, fan_in))
            offset += fan_in * out
    return flat, grad, views["w"], views["gw"], views["b"], views["gb"]


class FusedMLPObjective:
    """What every full-batch objective of an `EnsembleMLP` without autograd shares: the flat
    parameters, the activation buffers, the forward pass and the backward pass from the gradient
    of the loss with respect to the logits. A subclass says what the loss is:
    `_loss_and_logit_gradient(logits (E, C, N))` returns (loss (E,), train_acc (E,) or None) and
    leaves d(loss_e)/d(logits) (E, C, N) in `self.logit_grad`.

    model : the EnsembleMLP to train (its parameters become views of `self.flat`).
    x : (N, D) shared by all members, or (E, N, D).
    Calling it returns the subclass's (loss, acc) and leaves d(sum of losses)/d(params) in
    `self.flat.grad`.

    Activations are kept feature-major, (E, features, N), so that every matmul writes rows of
    length N or of the layer's input width: CPU batched GEMMs whose output rows are short (the
    C = 10 logits of the smoke profile) run several times slower (measured in
    benchmarks/README.md).
    """

    fills_gradients = True

    def __init__(self, model: EnsembleMLP, x: Tensor) -> None:
        if not all(p.requires_grad for p in model.parameters()):
            raise invalid(
                "model",
                type(self).__name__,
                must=f"have every parameter trainable: {type(self).__name__} trains every "
                "parameter; a model with frozen parameters (requires_grad=False) "
                "needs the autograd path (fit with a plain objective)",
                shown="a model with frozen parameters",
            )
        self.model, self.activation = model, model.activation
        (self.flat, self.grad, self.weights, self.weight_grads, self.biases, self.bias_grads) = flatten_parameters(
            model
        )
        e, n, c = model.members, x.shape[-2], model.classes
        dtype, device = self.flat.dtype, self.flat.device
        self.x = x  # (N, D) or (E, N, D)
        self.x_t = x.transpose(-1, -2).contiguous()  # (D, N) or (E, D, N)
        outs = [w.shape[1] for w in self.weights]
        new = lambda size: torch.empty(e, size, n, dtype=dtype, device=device)
        self.acts = [new(size) for size in outs]  # post-activation hidden layers, then logits
        self.logit_grad = new(c)  # d loss / d logits (E, C, N), filled by the subclass
        self.gradient_buffers = [new(outs[0]), new(outs[0])] if len(outs) > 1 else []
        # A shared x makes layer 1 one GEMM over all members: (E * out, D) @ (D, N)
        self.shared_input = x.dim() == 2
        if self.shared_input:
            self.first_weight = torch.empty(e * outs[0], x.shape[-1], dtype=dtype, device=device)
            self.first_bias = torch.empty(e * outs[0], 1, dtype=dtype, device=device)
            self.first_weight_grad = torch.empty_like(self.first_weight)

    def _loss_and_logit_gradient(self, logits: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def parameters(self) -> list[Tensor]:
        """What the optimizer updates: the single flat (E, F) parameter tensor."""
        return [self.flat]

    def __call__(self, idx: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if idx is not None:
            raise invalid(
                "idx",
                type(self).__name__,
                f"None: {type(self).__name__} is full batch only (`fit` must get batch_size=None)",
                shown="a batch of indices",
            )
        with torch.no_grad():
            logits = self._forward()
            loss, acc = self._loss_and_logit_gradient(logits)
            self._backward()
        self.flat.grad = self.grad
        return loss, acc

    def _inputs(self, layer: int) -> Tensor:
        """The (E, in, N) input of `layer` (the shared x is broadcast, not copied)."""
        if layer > 0:
            return self.acts[layer - 1]
        return self.x_t.expand(self.model.members, *self.x_t.shape) if self.x_t.dim() == 2 else self.x_t

    def _inputs_sample_major(self, layer: int) -> Tensor:
        """The same input as (E, N, in)."""
        if layer > 0:
            return self.acts[layer - 1].transpose(1, 2)
        return self.x.expand(self.model.members, *self.x.shape) if self.x.dim() == 2 else self.x

    def _forward(self) -> Tensor:
        """Logits (E, C, N)."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if i == 0 and self.shared_input:
                self.first_weight.view_as(w).copy_(w)
                self.first_bias.view_as(b).copy_(b)
                h = self.acts[0]
                torch.addmm(self.first_bias, self.first_weight, self.x_t, out=h.view(-1, h.shape[-1]))
            else:
                h = torch.baddbmm(b, w, self._inputs(i), out=self.acts[i])
            if i < last:
                if self.activation == "relu":
                    h.relu_()
                elif self.activation == "tanh":
                    h.tanh_()
        return self.acts[last]

    def _backward(self) -> None:
        grad_out = self.logit_grad  # d loss / d (output of the current layer), (E, out, N)
        for i in range(len(self.weights) - 1, -1, -1):
            if i == 0 and self.shared_input:
                torch.mm(grad_out.view(-1, grad_out.shape[-1]), self.x, out=self.first_weight_grad)
                self.weight_grads[0].copy_(self.first_weight_grad.view_as(self.weight_grads[0]))
            else:
                torch.bmm(grad_out, self._inputs_sample_major(i), out=self.weight_grads[i])
            torch.sum(grad_out, dim=2, keepdim=True, out=self.bias_grads[i])
            if i == 0:
                break
            grad_in = self.gradient_buffers[i % 2]
            torch.bmm(self.weights[i].transpose(1, 2), grad_out, out=grad_in)
            self._activation_backward(grad_in, self.acts[i - 1], spare=self.gradient_buffers[(i + 1) % 2])
            grad_out = grad_in

    def _activation_backward(self, grad: Tensor, post_activation: Tensor, spare: Tensor) -> None:
        """grad *= act'(pre-activation), written from the post-activation values, in place."""
        if self.activation == "relu":
            torch.ops.aten.threshold_backward.grad_input(grad, post_activation, 0.0, grad_input=grad)
        elif self.activation == "tanh":  # 1 - tanh^2
            torch.mul(post_activation, post_activation, out=spare)
            grad.mul_(spare.neg_().add_(1.0))


class FusedCrossEntropy(FusedMLPObjective):
    """Full-batch cross-entropy on soft or hard targets (`soft_cross_entropy` / `hard_cross_entropy`).

    model, x : as `FusedMLPObjective`.
    targets : probabilities (N, C) or (E, N, C) (soft labels, possibly not summing to one after
        logit surgery), or integer labels (N,) or (E, N) (hard labels: one-hot targets).
    labels : (N,) or (E, N), what `accuracy` compares the argmax with.
    temperatures : (E,) or a float; used only with `soften_student` (q = softmax(z / T)).
    Calling it returns (loss (E,), train_acc (E,)).
    """

    def __init__(
        self,
        model: EnsembleMLP,
        x: Tensor,
        targets: Tensor,
        labels: Tensor,
        temperatures: Tensor | float = 1.0,
        soften_student: bool = False,
    ) -> None:
        super().__init__(model, x)
        e, n, c = model.members, x.shape[-2], model.classes
        dtype, device = self.flat.dtype, self.flat.device
        self.labels = labels
        if targets.dtype in (torch.int64, torch.int32):  # hard labels: one-hot targets
            targets = torch.nn.functional.one_hot(targets.long(), c).to(dtype)
        self.targets = targets.transpose(-1, -2).contiguous()  # (C, N) or (E, C, N)
        self.target_mass = self.targets.sum(dim=-2, keepdim=True)  # (..., 1, N): 1 unless surgery
        # (E, 1, 1): one T per member, dividing the student's logits (z' = z / T) only with soften_student
        self.temperature = (
            torch.as_tensor(temperatures, dtype=dtype, device=device).expand(e).view(e, 1, 1)
            if soften_student
            else None
        )
        # d loss_e / d z = (softmax(z') * mass - p) / (N T_e)  (T_e = 1 without soften_student)
        self.scale = (1.0 / self.temperature if soften_student else torch.ones(e, 1, 1, dtype=dtype, device=device)) / n
        self.log_q = self.logit_grad  # log softmax(z'), then (in place) d loss / d logits

    def _loss_and_logit_gradient(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """loss (E,) and accuracy (E,); leaves d loss / d logits (E, C, N) in `self.log_q`."""
        # max(...).indices is argmax (the first maximum on ties), 2-3x faster over dim 1 on a CPU
        acc = (logits.max(dim=1).indices == self.labels).float().mean(dim=-1)
        z = logits if self.temperature is None else torch.mul(logits, 1.0 / self.temperature, out=self.log_q)
        torch.sub(z, torch.logsumexp(z, dim=1, keepdim=True), out=self.log_q)
        n = logits.shape[-1]
        loss = -(self.targets * self.log_q).sum(dim=(1, 2)) / n
        g = self.log_q.exp_()  # softmax(z')
        g.mul_(self.target_mass).sub_(self.targets).mul_(self.scale)
        return loss, acc


class FusedSimilarity(FusedMLPObjective):
    """Full-batch similarity matching (`memkd.losses.similarity_mse`): the student's outputs are
    C-dimensional embeddings whose pairwise cosine similarities should equal the teacher's.

    model, x : as `FusedMLPObjective`.
    teacher_similarity : (N, N) or (E, N, N), the teacher's cosine similarities on the N samples.
    Calling it returns (loss (E,), None): the loss is the mean squared difference over the N x N
    pairs, and there is no training accuracy.

    The gradient, for unit outputs u_i = f_i / max(|f_i|, eps), S = U U^T and G = d loss / d S =
    2 (S - R) / N^2: d loss / d u_j = sum_i (G_ij + G_ji) u_i = 2 sum_i G_ij u_i (S and R are
    symmetric), and d loss / d f_j = (d u_j - u_j <u_j, d u_j>) / |f_j| (the projection drops where
    |f_j| < eps, as `torch.nn.functional.normalize`'s clamp makes the norm a constant there).
    Feature-major, U is (E, C, N) and S (E, N, N): one GEMM for S and one for U G (its speed against
    autograd: benchmarks/fused_vs_autograd.py).
    """

    EPS = 1e-12  # `cosine_similarity_matrix`'s normalize eps

    def __init__(self, model: EnsembleMLP, x: Tensor, teacher_similarity: Tensor) -> None:
        super().__init__(model, x)
        e, n = model.members, x.shape[-2]
        if teacher_similarity.shape[-2:] != (n, n):
            raise invalid(
                "teacher_similarity",
                "FusedSimilarity",
                f"an (N, N) or (E, N, N) matrix with N = {n} (the number of training samples)",
                shown=f"shape {tuple(teacher_similarity.shape)}",
            )
        dtype, device = self.flat.dtype, self.flat.device
        self.teacher_similarity = teacher_similarity.to(dtype)
        self.unit = torch.empty(e, model.classes, n, dtype=dtype, device=device)  # U, feature-major
        self.residual = torch.empty(e, n, n, dtype=dtype, device=device)  # S - R
        self.norm = torch.empty(e, 1, n, dtype=dtype, device=device)

    def _loss_and_logit_gradient(self, logits: Tensor) -> tuple[Tensor, None]:
        """loss (E,) and no accuracy; leaves d loss / d logits (E, C, N) in `self.logit_grad`."""
        n = logits.shape[-1]
        torch.linalg.vector_norm(logits, dim=1, keepdim=True, out=self.norm)
        denominator = self.norm.clamp_min(self.EPS)
        torch.div(logits, denominator, out=self.unit)
        torch.bmm(self.unit.transpose(1, 2), self.unit, out=self.residual)  # S = U U^T, (E, N, N)
        self.residual.sub_(self.teacher_similarity)
        loss = torch.linalg.vector_norm(self.residual, dim=(1, 2)).square_().div_(n * n)  # no (E, N, N) temporary
        # S and R are symmetric, so G + G^T = 2 G (to float rounding) and d loss / d U = 2 U G: one GEMM
        self.residual.mul_(4.0 / (n * n))
        grad_unit = torch.bmm(self.unit, self.residual, out=self.logit_grad)
        # d f_j = (d u_j - u_j <u_j, d u_j> [|f_j| >= eps]) / max(|f_j|, eps)
        along = (self.unit * grad_unit).sum(dim=1, keepdim=True).mul_(self.norm >= self.EPS)
        grad_unit.addcmul_(self.unit, along, value=-1.0).div_(denominator)
        return loss, None


__all__ = ["FusedCrossEntropy", "FusedMLPObjective", "FusedSimilarity", "flatten_parameters"]
