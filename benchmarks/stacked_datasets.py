"""Students of K datasets trained as one ensemble, against a loop over datasets and a per-seed loop.

An experiment with K teachers (datasets) and S students per teacher trains K * S students, each on
its own teacher's soft labels and its own dataset's inputs. Three ways, same work, full batch:
  per-seed  one `nn.Sequential` + `torch.optim.Adam` per student, one after another: the plain
            PyTorch loop a per-seed script runs (`ensemble_speed.run_loop`, once per dataset);
  datasets  `memkd.distillation.train_students` once per dataset, its S students as one ensemble sharing
            the dataset's inputs (what memkd did before it stacked datasets);
  stacked   one `train_students` call for all K * S students, inputs (K * S, N, D) per member
            (what `memkd.students.distill` does now).
Every s/epoch is the marginal cost of one more epoch (`ensemble_speed.marginal_epoch_time`):
median over --repeats of (run of 1 + epochs minus run of 1) / epochs, all K * S students.
`of mm` = the real training FLOPs per second over a large fp32 torch.mm's rate, in the same run.

Run:  .venv/bin/python benchmarks/stacked_datasets.py [--shapes smoke,quick] [--datasets 8] [--students 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble_speed import (  # noqa: E402  (a sibling script, not a package)
    HIDDEN_LAYERS,
    LR,
    SHAPES,
    TEMPERATURE,
    Shape,
    make_data,
    marginal_epoch_time,
    matmul_rate,
    real_flops,
    run_loop,
)

from memkd.distillation import train_students  # noqa: E402


def datasets_data(shape: Shape, datasets: int) -> tuple[Tensor, Tensor]:
    """Per-dataset inputs (K, N, D) and soft labels (K, N, C), one draw per dataset."""
    draws = [make_data(shape, seed=k) for k in range(datasets)]
    return torch.stack([x for x, _ in draws]), torch.stack([p for _, p in draws])


def run_per_seed(x: Tensor, probs: Tensor, shape: Shape, students: int, epochs: int) -> None:
    for k in range(x.shape[0]):
        run_loop(x[k], probs[k], shape, students, epochs, seed=k)


def run_dataset_loop(x: Tensor, probs: Tensor, shape: Shape, students: int, epochs: int) -> None:
    for k in range(x.shape[0]):
        train_students(
            x[k],
            probs[k].expand(students, -1, -1),
            kind="soft",
            classes=shape.classes,
            width=shape.width,
            members=students,
            lrs=LR,
            epochs=epochs,
            temperatures=TEMPERATURE,
            hidden_layers=HIDDEN_LAYERS,
            seed=k,
        )


def run_stacked(x: Tensor, probs: Tensor, shape: Shape, students: int, epochs: int) -> None:
    k = x.shape[0]
    train_students(
        x.repeat_interleave(students, dim=0),
        probs.repeat_interleave(students, dim=0),
        kind="soft",
        classes=shape.classes,
        width=shape.width,
        members=k * students,
        lrs=LR,
        epochs=epochs,
        temperatures=TEMPERATURE,
        hidden_layers=HIDDEN_LAYERS,
        seed=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="smoke,quick")
    parser.add_argument("--datasets", type=int, default=8)
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per run (default: the shape's)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    peak = matmul_rate()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, torch.mm {peak:.0f} GFLOP/s; "
        f"{args.datasets} datasets x {args.students} students"
    )
    print(
        f"{'shape':6} {'per-seed s/ep':>14} {'datasets s/ep':>14} {'stacked s/ep':>13} "
        f"{'stacked/per-seed':>17} {'stacked/datasets':>17} {'of mm':>6}"
    )
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        epochs, repeats = args.epochs or shape.epochs, args.repeats or shape.repeats
        x, probs = datasets_data(shape, args.datasets)
        times = {}
        for label, fn in (("per-seed", run_per_seed), ("datasets", run_dataset_loop), ("stacked", run_stacked)):
            wall, _ = marginal_epoch_time(
                lambda e: fn(x, probs, shape, args.students, e), epochs, repeats, shape.warmup
            )
            times[label] = wall
        rate = real_flops(shape, args.datasets * args.students) / times["stacked"] / 1e9
        print(
            f"{name:6} {times['per-seed']:14.5f} {times['datasets']:14.5f} {times['stacked']:13.5f} "
            f"{times['per-seed'] / times['stacked']:16.1f}x {times['datasets'] / times['stacked']:16.2f}x "
            f"{rate / peak:6.0%}"
        )


if __name__ == "__main__":
    main()
