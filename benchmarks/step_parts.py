"""Parts of one training step, another way against the library's: Adam and the transformer's attention.

- Adam: `BatchedAdam.apply` (the library's: about nine element-wise passes over every tensor) against
  torch's fused Adam kernel (`torch._fused_adamw_`, called once per run of members sharing a learning
  rate), on a flat (E, F) parameter as the fused MLP lays it out (E = 20: chapter 02's quick students).
  The library does not use the kernel: see benchmarks/README.md.
- The transformer: one full-batch forward + backward of E members (the teacher clock's quick shapes) through
  `memkd.models.transformer.functional_forward` against `einsum_forward`, the earlier version kept here
  (keys and values by two einsums, attention over the 3 positions by einsums, which run as batched
  GEMMs of 3 x 1 matrices).
Run: python benchmarks/step_parts.py [--repeats 30]. Prints milliseconds per call, and the largest
difference of the two transformers' logits.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from memkd.data.tokens import make_modular_addition
from memkd.models.transformer import EnsembleTransformer, functional_forward
from memkd.train import BatchedAdam

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transformer_ensemble import timed  # noqa: E402  (a sibling script: ms per call after one warm-up)


def einsum_forward(p: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The transformer's forward before 2026-12-07 (per-member tokens (E, N, S) -> logits (E, N, C))."""
    heads, d_head = p["w_q"].shape[-2], p["w_q"].shape[-1]
    members = torch.arange(p["embed"].shape[0]).view(-1, 1, 1)
    resid = p["embed"][members, tokens] + p["pos"].unsqueeze(-3)
    last = resid[..., -1, :]
    q = torch.einsum("...nm,...mhd->...nhd", last, p["w_q"])
    k = torch.einsum("...nsm,...mhd->...nshd", resid, p["w_k"])
    v = torch.einsum("...nsm,...mhd->...nshd", resid, p["w_v"])
    scores = torch.einsum("...nhd,...nshd->...nhs", q, k) / math.sqrt(d_head)
    z = torch.einsum("...nhs,...nshd->...nhd", scores.softmax(dim=-1), v)
    last = last + z.reshape(*z.shape[:-2], heads * d_head) @ p["w_o"]
    last = last + torch.relu(last @ p["w_in"] + p["b_in"]) @ p["w_out"] + p["b_out"]
    return last @ p["unembed"]


def fused_adam(opt: BatchedAdam, lrs: list[float]) -> None:
    """One AdamW step of `opt`'s tensors through torch's fused kernel, once per run of equal learning rates."""
    step = torch.tensor(1.0)
    start = 0
    for end in range(1, len(lrs) + 1):
        if end < len(lrs) and lrs[end] == lrs[start]:
            continue
        part = slice(start, end)
        torch._fused_adamw_(
            [p[part] for p in opt.params],
            [p.grad[part] for p in opt.params],
            [m[part] for m in opt.exp_avg],
            [v[part] for v in opt.exp_avg_sq],
            [],
            [step] * len(opt.params),
            lr=lrs[start],
            beta1=opt.betas[0],
            beta2=opt.betas[1],
            weight_decay=0.1,
            eps=opt.eps,
            amsgrad=False,
            maximize=False,
        )
        start = end


def adam_rows(repeats: int) -> list[str]:
    rows = []
    for members, size, rates in ((20, 37_550, 1), (100, 37_550, 2), (10, 200_000, 1)):
        flat = torch.randn(members, size)
        flat.grad = torch.randn(members, size)
        lrs = [1e-3 * (1 + i * rates // members) for i in range(members)]  # `rates` runs of members
        opt = BatchedAdam([flat], lr=lrs, weight_decay=0.1, decoupled=True)
        nine = timed(lambda: opt.apply(0.5, 0.5), repeats)
        fused = timed(lambda: fused_adam(opt, lrs), repeats)
        rows.append(f"| Adam, E = {members}, F = {size}, {rates} lr | {nine:.2f} | {fused:.2f} | {nine / fused:.1f}x |")
    return rows


def transformer_rows(repeats: int) -> list[str]:
    rows = []
    for members, pairs in ((90, 132), (10, 264)):
        data = make_modular_addition(23, 0.5, seed=0)
        tokens = data.tokens[data.memorized][:pairs].expand(members, -1, -1).contiguous()
        model = EnsembleTransformer(members, 23, d_model=64, heads=4, d_mlp=256, seed=list(range(members)))
        params = dict(model.named_parameters())
        targets = torch.softmax(torch.randn(members, pairs, 23), -1)

        def step(forward):
            def run():
                loss = -(targets * forward(params, tokens).log_softmax(-1)).sum(-1).mean(-1).sum()
                for p in params.values():
                    p.grad = None
                loss.backward()

            return run

        old, new = timed(step(einsum_forward), repeats), timed(step(functional_forward), repeats)
        with torch.no_grad():
            gap = (einsum_forward(params, tokens) - functional_forward(params, tokens)).abs().max().item()
        rows.append(
            f"| transformer step, E = {members}, N = {pairs} (max logit gap {gap:.1e}) | {old:.1f} | {new:.1f} "
            f"| {old / new:.2f}x |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| part | library / before (ms) | fused kernel / now (ms) | speed-up |\n|---|---|---|---|")
    for row in adam_rows(args.repeats) + transformer_rows(args.repeats):
        print(row, flush=True)


if __name__ == "__main__":
    main()
