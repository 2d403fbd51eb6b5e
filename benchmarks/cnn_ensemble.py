"""Speed of the CNN ensemble: grouped convs vs torch.func.vmap vs a loop of plain CNNs, one per seed.

The work is one epoch of chapter 10's CNN students (or teachers): full batch, soft labels (T = 5,
the released code's convention) or hard labels for teachers, forward + backward + Adam step, every
member on its own images, at the chapter's shapes on the 8x8 digits:

    smoke-students   E = 60  (5 settings x 3 teachers x 2 teacher kinds x 2 seeds), N = 60
    quick-students   E = 100 (5 x 5 x 2 x 2), N = 120
    quick-teachers   E = 25  (5 x 5), N = 200, hard labels

**ensemble**: `memkd.distillation.train_students` / `train_teacher` with a
`memkd.models.cnn.CNNFamily` (`fit` + `BatchedAdam`) with `backend="grouped"` and `backend="vmap"`. **loop**: `EnsembleCNN.member(i)`
(a plain nn.Sequential of nn.Conv2d, nn.MaxPool2d, nn.Linear) with `torch.optim.Adam`, one
member after another. s/epoch = (run of 1 + epochs) minus (run of 1 epoch), over epochs, best of
`--runs`. The script also prints max |logits(ensemble) - logits(loop)| for 3 members after the run.

Run: .venv/bin/python benchmarks/cnn_ensemble.py [--shapes smoke-students,quick-students,quick-teachers]
     [--epochs 20] [--runs 3] [--threads 2] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from memkd.distillation import train_students, train_teacher
from memkd.models.cnn import CNNFamily, EnsembleCNN
from memkd.losses import soft_targets

SHAPES = {  # name: (members, images per member, width, head_width, kind)
    "smoke-students": (60, 60, 8, 64, "soft"),
    "quick-students": (100, 120, 8, 128, "soft"),
    "quick-teachers": (25, 200, 8, 128, "hard"),
}
IMAGE, CLASSES, T, LR = (1, 8, 8), 10, 5.0, 3e-3
CLOCK = time.perf_counter


def make_data(e: int, n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(e, n, 64, generator=gen)
    logits = 3 * torch.randn(e, n, CLASSES, generator=gen)
    return x, logits


def run_ensemble(backend: str, e: int, n: int, width: int, head: int, kind: str, epochs: int, x, logits):
    family = CNNFamily(IMAGE, CLASSES, width=width, head_width=head, backend=backend)
    start = CLOCK()  # includes building the ensemble, which per_epoch's difference cancels
    if kind == "soft":
        model, _ = train_students(
            x,
            kind="soft",
            teacher_logits=logits,
            family=family,
            members=e,
            lrs=LR,
            epochs=epochs,
            temperatures=T,
            seed=0,
        )
    else:
        model = train_teacher(
            x, logits.argmax(-1), family, max_epochs=epochs, lr=LR, seed=0, require_memorization=False
        ).model
    return CLOCK() - start, model


def run_loop(e: int, n: int, width: int, head: int, kind: str, epochs: int, x, logits):
    template = EnsembleCNN(e, IMAGE, CLASSES, width=width, head_width=head, seed=0)
    nets = [template.member(i) for i in range(e)]
    targets = soft_targets(logits, T) if kind == "soft" else logits.argmax(-1)
    start = CLOCK()
    for i, net in enumerate(nets):
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        for _ in range(epochs):
            opt.zero_grad()
            out = net(x[i])
            if kind == "soft":
                loss = -(targets[i] * torch.log_softmax(out, -1)).sum(-1).mean()
            else:
                loss = F.cross_entropy(out, targets[i])
            loss.backward()
            opt.step()
    return CLOCK() - start, nets


def per_epoch(fn, epochs: int, runs: int) -> tuple[float, object]:
    """Marginal seconds per epoch: (1 + epochs) minus 1 epoch, best of `runs`."""
    best, result = float("inf"), None
    fn(1)  # warm-up: first calls pay for kernel selection and allocation
    for _ in range(runs):
        t1, _ = fn(1)
        tn, result = fn(1 + epochs)
        best = min(best, (tn - t1) / epochs)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU time (with --threads 1, what an idle core would take "
        "on a machine shared with other work)",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs, best of {args.runs}, "
        f"{args.clock} clock"
    )
    print(
        "| shape | E, N, width, head | loop s/epoch | grouped s/epoch | vmap s/epoch | loop / grouped "
        "| loop / vmap | max abs logit diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.shapes.split(","):
        e, n, width, head, kind = SHAPES[name]
        x, logits = make_data(e, n)
        grouped, model = per_epoch(
            lambda ep: run_ensemble("grouped", e, n, width, head, kind, ep, x, logits), args.epochs, args.runs
        )
        vmapped, _ = per_epoch(
            lambda ep: run_ensemble("vmap", e, n, width, head, kind, ep, x, logits), args.epochs, args.runs
        )
        loop, nets = per_epoch(lambda ep: run_loop(e, n, width, head, kind, ep, x, logits), args.epochs, args.runs)
        with torch.no_grad():
            diff = max(float((model(x)[i] - nets[i](x[i])).abs().max()) for i in range(3))
        print(
            f"| {name} | {e}, {n}, {width}, {head} | {loop:.4f} | {grouped:.4f} | {vmapped:.4f} | "
            f"{loop / grouped:.2f}x | {loop / vmapped:.2f}x | {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
