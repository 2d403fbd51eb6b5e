"""Speed of E soft-label students trained as one batched ensemble against a loop of plain models.

What is timed, for E students (default 20) on the same data, full batch, same epochs, T=20:
  loop      one `nn.Sequential` (2 hidden ReLU layers) + `torch.optim.Adam` per student, one
            student after another (the way a per-seed script trains them);
  ensemble  `memkd.distillation.train_students(..., kind="soft")`, the library's real entry point: its
            full-batch fast path `memkd.models.fused_mlp.FusedCrossEntropy` (stacked weights, batched
            matmuls into buffers allocated once, no autograd) and `BatchedAdam`;
  vmap      optional (--vmap): `torch.func.vmap(grad(...))` over `functional_call` of the plain
            module, stacked parameters, the same batched Adam update;
and a large fp32 `torch.mm` (4096 x 4096) for the machine's matmul rate, in the same run.

Training FLOPs per epoch count 3x the forward matmuls: 3 * 2 * N * E * sum(in * out) (forward,
grad wrt inputs, grad wrt weights; the first layer needs no grad wrt inputs, so this
over-counts the work). Every s/epoch is the wall time of all E students for one more epoch:
a run of 1 + epochs minus a run of 1 epoch, over `epochs`, median over --repeats (so building
the models and the final logits, paid once per run by both paths, are left out). The 3x count
is the usual training convention; the real work is smaller by the first layer's input gradient (at
the paper's shapes the real count is 79% of it). `ceiling` = loop s/epoch over the time the real
FLOPs take at the torch.mm rate: no implementation of these FLOPs can beat it on this machine.

Run:  .venv/bin/python benchmarks/ensemble_speed.py [--shapes smoke,quick,paper] [--epochs N] [--phases]
Targets (2-core CPU): >= 30x at smoke, >= 5x at quick, >= 1.3x and >= 60% of the
matmul rate at paper shapes. Measured on the idle 2-core machine (2026-11-29): about 9x, 1.7x
and 1.0x at 100% of torch.mm (3x count), against ceilings of about 41x, 2.7x and 1.3x; tables
and the reasons in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from memkd.losses import soft_targets
from memkd.models.mlp import EnsembleMLP
from memkd.distillation import train_students
from memkd.train import BatchedAdam


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: D input dim, C classes, N student samples, P width, default epochs."""

    input_dim: int  # D
    classes: int  # C
    samples: int  # N, the student's training part (full batch)
    width: int  # P, both hidden layers
    epochs: int  # timed epochs per run by default (kept small where an epoch is slow)
    warmup: int  # untimed epochs before the timed runs (allocator, MKL and autograd warm-up)
    repeats: int  # timed runs per path; the median is reported


SHAPES = {
    "smoke": Shape(input_dim=100, classes=10, samples=120, width=50, epochs=100, warmup=2, repeats=3),
    "quick": Shape(input_dim=250, classes=50, samples=750, width=125, epochs=20, warmup=2, repeats=3),
    "paper": Shape(input_dim=1000, classes=100, samples=6000, width=500, epochs=2, warmup=1, repeats=2),
}
TEMPERATURE = 20.0  # T of the teacher's soft labels
LR = 3e-3  # students' Adam learning rate (the value does not change the cost)
HIDDEN_LAYERS = 2


def forward_flops(shape: Shape, members: int) -> float:
    """2 * N * E * sum(in * out) over the three matmuls of one forward pass."""
    d, p, c = shape.input_dim, shape.width, shape.classes
    sizes = [d] + [p] * HIDDEN_LAYERS + [c]
    return 2.0 * shape.samples * members * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def real_flops(shape: Shape, members: int) -> float:
    """Matmul FLOPs one training epoch must do: 3 x forward, less layer 1's input gradient."""
    return 3 * forward_flops(shape, members) - 2.0 * shape.samples * members * shape.input_dim * shape.width


def make_data(shape: Shape, seed: int = 0) -> tuple[Tensor, Tensor]:
    """x (N, D) uniform in [-1, 1]; soft targets (N, C) = sigma_T of a random teacher's logits.

    An untrained teacher is enough here: the cost of training does not depend on the targets.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape.samples, shape.input_dim, generator=gen) * 2 - 1
    teacher = EnsembleMLP(1, shape.input_dim, shape.width, shape.classes, HIDDEN_LAYERS, seed=seed + 1)
    with torch.no_grad():
        probs = soft_targets(teacher(x)[0] * 10, TEMPERATURE)  # (N, C)
    return x, probs


def timed(fn, repeats: int, warmup=None) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds of `repeats` calls of fn, after one untimed call of `warmup` (default fn).

    CPU time (all of this process's threads) is the steadier number on a shared machine: other
    users' work does not count in it, though their cache and memory traffic still does.
    """
    (warmup or fn)()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def marginal_epoch_time(train, epochs: int, repeats: int, warmup: int) -> tuple[float, float]:
    """(wall, CPU) seconds per training epoch, without the one-off costs of a run.

    train(k) trains the E students for k epochs from scratch (building the models and the
    optimizer, and computing the final logits, are part of every call). Each repeat times
    train(1 + epochs) and train(1); their difference over `epochs` is the cost of one more
    epoch, which is what thousands of training epochs pay. The median over repeats is returned,
    after one untimed train(warmup).
    """
    train(warmup)
    wall, cpu = [], []
    for _ in range(repeats):
        (long_wall,), (long_cpu,) = timed(lambda: train(1 + epochs), 1, warmup=lambda: None)
        (short_wall,), (short_cpu,) = timed(lambda: train(1), 1, warmup=lambda: None)
        wall.append((long_wall - short_wall) / epochs)
        cpu.append((long_cpu - short_cpu) / epochs)
    return statistics.median(wall), statistics.median(cpu)


# --- the three ways to train E students ---------------------------------------------------------


def run_loop(x: Tensor, probs: Tensor, shape: Shape, members: int, epochs: int, seed: int = 0) -> Tensor:
    """E plain students one after another; returns their final logits (E, N, C).

    Each student starts from the same weights as member i of `EnsembleMLP(seed=seed)`, so the
    result can be checked against the ensemble's; building the plain models is part of the time.
    """
    init = EnsembleMLP(members, shape.input_dim, shape.width, shape.classes, HIDDEN_LAYERS, seed=seed)
    outs = []
    for i in range(members):
        model = init.member(i).to(x.device)  # nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        for _ in range(epochs):
            opt.zero_grad()
            loss = -(probs * F.log_softmax(model(x), dim=-1)).sum(dim=-1).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            outs.append(model(x))
    return torch.stack(outs)


def run_ensemble(x: Tensor, probs: Tensor, shape: Shape, members: int, epochs: int, seed: int = 0) -> Tensor:
    """memkd's batched ensemble through its public entry point; returns final logits (E, N, C)."""
    model, _ = train_students(
        x,
        probs,
        kind="soft",
        classes=shape.classes,
        width=shape.width,
        members=members,
        lrs=LR,
        epochs=epochs,
        temperatures=TEMPERATURE,
        hidden_layers=HIDDEN_LAYERS,
        seed=seed,
    )
    with torch.no_grad():
        return model(x)


def run_vmap(x: Tensor, probs: Tensor, shape: Shape, members: int, epochs: int, seed: int = 0) -> Tensor:
    """torch.func: vmap(grad(loss)) over stacked parameters of the plain module, batched Adam."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    init = EnsembleMLP(members, shape.input_dim, shape.width, shape.classes, HIDDEN_LAYERS, seed=seed)
    singles = [init.member(i) for i in range(members)]
    params, _ = stack_module_state(singles)  # name -> (E, ...)
    base = singles[0]

    def loss_fn(p: dict, xb: Tensor, pb: Tensor) -> Tensor:
        out = functional_call(base, p, (xb,))  # (N, C) for one member
        return -(pb * F.log_softmax(out, dim=-1)).sum(dim=-1).mean()

    grads_fn = vmap(grad(loss_fn), in_dims=(0, None, None))
    names = list(params)
    opt = BatchedAdam([params[k] for k in names], LR)
    for _ in range(epochs):
        grads = grads_fn(params, x, probs)
        for k in names:
            params[k].grad = grads[k]
        opt.step()
    with torch.no_grad():
        return vmap(lambda p, xb: functional_call(base, p, (xb,)), in_dims=(0, None))(params, x)


def fused_phases(x: Tensor, probs: Tensor, shape: Shape, members: int, epochs: int) -> dict[str, float]:
    """Milliseconds per epoch of each phase of the fused step (forward, loss, backward, Adam)."""
    from memkd.models.fused_mlp import FusedCrossEntropy

    model = EnsembleMLP(members, shape.input_dim, shape.width, shape.classes, HIDDEN_LAYERS, seed=0)
    step = FusedCrossEntropy(model, x, probs, probs.argmax(dim=-1), TEMPERATURE)
    opt = BatchedAdam(step.parameters(), LR)
    phases = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "adam": 0.0}
    for epoch in range(epochs + 1):  # the first epoch is a warm-up
        with torch.no_grad():
            t0 = time.perf_counter()
            logits = step._forward()
            t1 = time.perf_counter()
            step._loss_and_logit_gradient(logits)
            t2 = time.perf_counter()
            step._backward()
            t3 = time.perf_counter()
        step.flat.grad = step.grad
        opt.step()
        t4 = time.perf_counter()
        if epoch:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name] += 1e3 * seconds / epochs
    return phases


def matmul_rate(n: int = 4096, repeats: int = 3) -> float:
    """GFLOP/s of an (n x n) @ (n x n) fp32 torch.mm, median of `repeats` after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    wall, _ = timed(lambda: torch.mm(a, b), repeats)
    return 2.0 * n**3 / statistics.median(wall) / 1e9


def check(x: Tensor, probs: Tensor, shape: Shape, use_vmap: bool, members: int = 3) -> str:
    """Max |logit difference| between the loop, the ensemble (and vmap): 3 members, 5 epochs."""
    loop = run_loop(x, probs, shape, members, 5)
    msg = f"ensemble {float((run_ensemble(x, probs, shape, members, 5) - loop).abs().max()):.1e}"
    if use_vmap:
        msg += f", vmap {float((run_vmap(x, probs, shape, members, 5) - loop).abs().max()):.1e}"
    return msg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="smoke,quick,paper", help="comma-separated: smoke, quick, paper")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per run (default per shape)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per path (default per shape)")
    parser.add_argument("--members", type=int, default=20, help="E, students per ensemble")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--vmap", action="store_true", help="also time the torch.func vmap variant")
    parser.add_argument("--phases", action="store_true", help="also time each phase of the fused step")
    parser.add_argument("--no-check", action="store_true", help="skip the loop-vs-ensemble logits check")
    args = parser.parse_args()
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        raise ValueError(f"ensemble_speed: --shapes must name some of {tuple(SHAPES)}. Got {unknown} instead.")
    e = args.members
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, E={e}, T={TEMPERATURE:g}, "
        f"full batch, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    mm_before = matmul_rate()
    rows = []
    for name in names:
        shape = SHAPES[name]
        epochs = args.epochs or shape.epochs
        repeats = args.repeats or shape.repeats
        x, probs = make_data(shape)
        torch.manual_seed(0)
        paths = {"loop": run_loop, "ensemble": run_ensemble}
        if args.vmap:
            paths["vmap"] = run_vmap
        per_epoch, cpu_per_epoch = {}, {}
        for label, fn in paths.items():
            per_epoch[label], cpu_per_epoch[label] = marginal_epoch_time(
                lambda k: fn(x, probs, shape, e, k), epochs, repeats, shape.warmup
            )
        note = "" if args.no_check else check(x, probs, shape, args.vmap)
        if args.phases:
            parts = fused_phases(x, probs, shape, e, epochs)
            print(f"  {name} fused step, ms/epoch: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
        rows.append((name, shape, epochs, repeats, per_epoch, cpu_per_epoch, note))
        print(f"  done {name}: " + ", ".join(f"{k} {v:.4f} s/epoch" for k, v in per_epoch.items()), flush=True)
    mm = max(mm_before, matmul_rate())  # measured before and after the shapes; the better one

    print(f"\nlarge fp32 torch.mm 4096x4096: {mm:.0f} GFLOP/s (best of before/after)\n")
    vcol = " vmap s/ep | vmap x |" if args.vmap else ""
    print(
        f"| shape | N, D, P, C | epochs x runs | loop s/epoch | ensemble s/epoch | speedup |{vcol} "
        "ensemble GFLOP/s | of torch.mm | speedup in CPU time | ceiling |"
    )
    print("|---|---|---|---|---|---|" + ("---|---|" if args.vmap else "") + "---|---|---|---|")
    for name, shape, epochs, repeats, t, c, _ in rows:
        gflops = 3 * forward_flops(shape, e) / t["ensemble"] / 1e9
        v = f" {t['vmap']:.4f} | {t['loop'] / t['vmap']:.2f}x |" if args.vmap else ""
        print(
            f"| {name} | {shape.samples}, {shape.input_dim}, {shape.width}, {shape.classes} | "
            f"{epochs} x {repeats} | {t['loop']:.4f} | {t['ensemble']:.4f} | "
            f"{t['loop'] / t['ensemble']:.1f}x |{v} {gflops:.1f} | {gflops / mm:.0%} | "
            f"{c['loop'] / c['ensemble']:.1f}x | {t['loop'] * mm * 1e9 / real_flops(shape, e):.1f}x |"
        )
    print(
        "\nceiling: the loop's s/epoch over the time the epoch's real matmul FLOPs take at the "
        "torch.mm rate,\nthe largest speed-up any implementation of the same FLOPs could reach here."
    )
    if not args.no_check:
        print(
            "\nmax |logits - loop's| (3 members, 5 epochs): " + "; ".join(f"{name}: {row[-1]}" for name, *row in rows)
        )


if __name__ == "__main__":
    main()
