"""The fused full-batch path against autograd, both through `train_students` (E=20, soft labels).

Times the marginal epoch like ensemble_speed.py, for fused=False (autograd through
EnsembleMLP.forward) and fused=True (memkd.models.fused_mlp.FusedCrossEntropy), on the same data.

Run:  .venv/bin/python benchmarks/fused_vs_autograd.py [smoke,quick,paper]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from ensemble_speed import SHAPES, make_data, marginal_epoch_time  # noqa: E402

from memkd.distillation import train_students  # noqa: E402


def main(names: list[str]) -> None:
    for name in names:
        shape = SHAPES[name]
        x, probs = make_data(shape)
        per_epoch = {}
        for fused in (False, True):

            def train(epochs: int, fused: bool = fused) -> None:
                model, _ = train_students(
                    x,
                    probs,
                    kind="soft",
                    classes=shape.classes,
                    width=shape.width,
                    members=20,
                    lrs=3e-3,
                    epochs=epochs,
                    temperatures=20.0,
                    fused=fused,
                )
                with torch.no_grad():
                    model(x)

            per_epoch[fused] = marginal_epoch_time(train, shape.epochs, shape.repeats, shape.warmup)[0]
        print(
            f"{name}: autograd {per_epoch[False]:.4f} s/epoch, fused {per_epoch[True]:.4f} s/epoch, "
            f"{per_epoch[False] / per_epoch[True]:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main((sys.argv[1] if len(sys.argv) > 1 else "smoke,quick,paper").split(","))
