"""The temperature window's students (chapter 12, the published Fig 4a's grid): one ensemble against a
loop of separate runs, the share of the matmul peak it reaches, and the exact solve beside Adam.

What is timed, at the quick profile's shapes (C = 2, rho = 0.8, d = 100, 5 teachers x 5 sizes, 9
temperatures; --paper-shape for d = 1000, 20 sizes x 5 teachers, 40 temperatures):
- ensemble: every student of every teacher and temperature in one `memkd.models.linear.LinearEnsemble`
  (the students of one teacher share its inputs: one (K, N, D) @ (K, D, M * O) GEMM per epoch);
- loop: the same students one at a time, each its own 1 x 1 ensemble on its own teacher's data (what a
  per-run script does); timed on a subset of students and scaled to all of them;
- exact: `memkd.models.linear.solve_soft_labels` for every student at once (batched pseudo-inverse).
The rate is the model's useful FLOPs (6 N D M O per epoch, forward and two backward products) over the
wall time, next to a large square float32 torch.mm on the same machine. Seconds per epoch are
measured over `--epochs` and scaled to the profile's budget.

Run:  .venv/bin/python benchmarks/linear_window.py [--paper-shape] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memkd.config import make_config  # noqa: E402
from memkd.experiments.temperature_window import WindowConfig  # noqa: E402
from memkd.data.linear import make_linear_data, student_mask  # noqa: E402
from memkd.distillation import train_students  # noqa: E402
from memkd.models.linear import LinearFamily, soft_labels, solve_soft_labels  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def mm_rate(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a square float32 torch.mm of size n (the best of `repeats`)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def students(x: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor, epochs: int, lr: float, seeds: list[int]):
    """The soft-label students of K teachers x M, through `memkd.distillation.train_students` (E = K * M members)."""
    k, m, n, c = probs.shape
    model, _ = train_students(
        x,
        probs.reshape(k * m, n, c),
        kind="soft",
        members=k * m,
        lrs=lr,
        epochs=epochs,
        family=LinearFamily(x.shape[-1], c, k),
        seed=seeds,
        mask=mask.reshape(k * m, n),
    )
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-shape", action="store_true", help="d = 1000, 20 sizes, 40 temperatures")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=20, help="epochs timed (scaled to the budget)")
    parser.add_argument("--loop-students", type=int, default=6, help="students timed in the per-run loop")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = make_config(
        WindowConfig, "temperature_window", "paper" if args.paper_shape else "quick", {"class_counts": (2,)}
    )
    c, d = 2, cfg.input_dim
    pcs = [pc for pc in cfg.per_class(c) for _ in range(cfg.teachers)]
    k, temps = len(pcs), list(cfg.temperatures)
    m = len(temps)
    data = make_linear_data(pcs, c, d, list(range(k)), fresh=10, device=device)
    x = data.x.float()
    w_teacher = torch.randn(k, d, c, dtype=torch.float64, device=device)  # cost does not depend on the teacher
    t = torch.tensor([temps] * k, dtype=torch.float64, device=device)
    probs = soft_labels(w_teacher, data.x, t, torch.float32)
    mask = student_mask(data, [cfg.rhos[0]] * m)
    n_max = x.shape[1]
    useful = 6 * n_max * d * c * k * m  # FLOPs per epoch of the ensemble (padded rows included)

    students(x, probs, mask, 2, cfg.lr, list(range(k * m)))  # warm-up
    _sync(device)
    start = time.perf_counter()
    students(x, probs, mask, args.epochs, cfg.lr, list(range(k * m)))
    _sync(device)
    ensemble = (time.perf_counter() - start) / args.epochs

    picks = [(i * k // args.loop_students, j % m) for j, i in enumerate(range(args.loop_students))]
    _sync(device)
    start = time.perf_counter()
    for i, j in picks:
        n_i = c * data.per_class[i]  # a per-run script holds only its own dataset
        students(
            x[i : i + 1, :n_i],
            probs[i : i + 1, j : j + 1, :n_i],
            mask[i : i + 1, j : j + 1, :n_i],
            args.epochs,
            cfg.lr,
            [i * m + j],
        )
    _sync(device)
    loop = (time.perf_counter() - start) / args.epochs / len(picks) * k * m

    _sync(device)
    start = time.perf_counter()
    solve_soft_labels(data.x, probs, mask, c)
    _sync(device)
    exact = time.perf_counter() - start

    peak = mm_rate(device)
    shape = "paper" if args.paper_shape else "quick"
    print(
        "| shape | students | epochs (budget) | ensemble s/epoch | loop s/epoch (scaled) | ensemble / loop speed-up "
        "| ensemble GFLOP/s | torch.mm GFLOP/s | share of mm | exact solve, all students (s) | Adam budget (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {shape}: d={d}, {k} teachers, {m} T, N_max={n_max} | {k * m} | {cfg.epochs} | {ensemble:.4f} | {loop:.4f} | "
        f"{loop / ensemble:.1f}x | {useful / ensemble / 1e9:.1f} | {peak / 1e9:.0f} | {useful / ensemble / peak:.0%} | "
        f"{exact:.2f} | {ensemble * cfg.epochs:.1f} |"
    )


if __name__ == "__main__":
    main()
