"""The fused full-batch path against autograd, both through `train_students`.

Times the marginal epoch like ensemble_speed.py, for fused=False (autograd through
EnsembleMLP.forward) and fused=True (memkd.models.fused_mlp), on the same data:
- soft-label students (E=20, `FusedCrossEntropy`) at the smoke, quick and paper shapes;
- similarity students (`FusedSimilarity`) at chapter 03's quick shape: one teacher's 2 students on
  its largest part (alpha = 0.8 of N = 1250), D = 250, C = 50, width 125 ("similarity").

Run:  .venv/bin/python benchmarks/fused_vs_autograd.py [smoke,quick,paper,similarity]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from ensemble_speed import SHAPES, Shape, make_data, marginal_epoch_time  # noqa: E402

from memkd.distillation import train_students  # noqa: E402


SIMILARITY = Shape(input_dim=250, classes=50, samples=1000, width=125, epochs=20, warmup=2, repeats=3)


def compare(name: str, shape: Shape, x: torch.Tensor, targets: torch.Tensor, **student_knobs) -> None:
    """Print the marginal epoch of `train_students(x, targets, **student_knobs)` through autograd and fused."""
    per_epoch = {}
    for fused in (False, True):

        def train(epochs: int, fused: bool = fused) -> None:
            model, _ = train_students(
                x, targets, classes=shape.classes, width=shape.width, epochs=epochs, fused=fused, **student_knobs
            )
            with torch.no_grad():
                model(x)

        per_epoch[fused] = marginal_epoch_time(train, shape.epochs, shape.repeats, shape.warmup)[0]
    print(
        f"{name}: autograd {per_epoch[False]:.4f} s/epoch, fused {per_epoch[True]:.4f} s/epoch, "
        f"{per_epoch[False] / per_epoch[True]:.2f}x",
        flush=True,
    )


def main(names: list[str]) -> None:
    from memkd.losses import cosine_similarity_matrix

    for name in names:
        shape = SIMILARITY if name == "similarity" else SHAPES[name]
        x, probs = make_data(shape)
        if name == "similarity":  # chapter 03's students: one teacher's 2, any symmetric (N, N) target
            teacher = cosine_similarity_matrix(probs.log().unsqueeze(0))[0]
            compare(name, shape, x, teacher, kind="similarity", members=2, lrs=1e-3)
        else:
            compare(name, shape, x, probs, kind="soft", members=20, lrs=3e-3, temperatures=20.0)


if __name__ == "__main__":
    main((sys.argv[1] if len(sys.argv) > 1 else "smoke,quick,paper,similarity").split(","))
