"""Speed of the transformer ensemble: hand-batched einsums vs torch.func.vmap vs a loop of members.

One full-batch forward + backward of E students on the memorized part of modular addition.
Run: python benchmarks/transformer_ensemble.py [--members 10] [--modulus 59] [--threads 1]
Prints milliseconds per step for each path and the speed-up over the loop.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

from memkd.data.tokens import make_modular_addition
from memkd.models.transformer import EnsembleTransformer, functional_forward


def timed(step, repeats: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--modulus", type=int, default=59)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = make_modular_addition(args.modulus, args.fraction, seed=0)
    tokens, labels = data.tokens[data.memorized], data.labels[data.memorized]
    model = EnsembleTransformer(args.members, args.modulus, seed=0)

    def batched():
        loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), labels.repeat(args.members))
        loss.backward()

    singles = [model.member(i) for i in range(args.members)]
    stacked, _ = stack_module_state(singles)
    for t in stacked.values():
        t.requires_grad_(True)
    # vmap over the same last-position maths, parameters without the E axis
    vmapped_fn = vmap(functional_forward, in_dims=(0, None))
    # vmap over the plain module (every position) through functional_call
    base = singles[0]
    module_fn = vmap(lambda p, x: functional_call(base, p, (x,)), in_dims=(0, None))

    def run_vmap(fn):
        def step():
            out = fn(stacked, tokens)  # (E, N, K)
            torch.nn.functional.cross_entropy(out.flatten(0, 1), labels.repeat(args.members)).backward()

        return step

    def loop():
        for single in singles:
            torch.nn.functional.cross_entropy(single(tokens), labels).backward()

    rows = {
        "hand-batched einsums (last position only)": timed(batched, args.repeats),
        "vmap(functional_forward) (last position only)": timed(run_vmap(vmapped_fn), args.repeats),
        "vmap(functional_call(Transformer)) (all positions)": timed(run_vmap(module_fn), args.repeats),
        "loop over plain Transformer members": timed(loop, args.repeats),
    }
    print(f"E={args.members}, modulus={args.modulus}, N={len(tokens)}, threads={args.threads}")
    for name, ms in rows.items():
        print(f"{name:55s} {ms:8.1f} ms/step   {rows['loop over plain Transformer members'] / ms:5.2f}x loop")


if __name__ == "__main__":
    main()
