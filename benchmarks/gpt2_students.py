"""CPU time per GPT-2 student (chapter 15's quick shapes): one ensemble of E students, a loop of E
one-member ensembles, and (with transformers installed) a loop of transformers' GPT2ForSequenceClassification.

Every path trains E soft-label students (T = 20, AdamW lr 5e-4, batch 32, the same data) for `--epochs`
mini-batch epochs on N_s = 320 triples of one cell of the quick profile. Prints, per path, wall and CPU
seconds per student and per epoch (CPU time counts every thread of this process).

Run: python benchmarks/gpt2_students.py [--members 10] [--epochs 5] [--cell number/99] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from memkd.config import make_config
from memkd.data.triples import vocabulary
from memkd.experiments.language_model import LanguageModelConfig, draws, parse_cell, train_members
from memkd.losses import soft_targets
from memkd.models.gpt2 import EnsembleGPT2, GPT2Shape


def timed(run) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def hf_loop(shape: GPT2Shape, tokens, mask, targets, epochs: int, members: int) -> None:
    """The released notebook's loop (transformers' model, torch's AdamW), one student after another."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    cfg = GPT2Config(
        vocab_size=shape.vocab,
        n_positions=shape.positions,
        n_embd=shape.width,
        n_layer=shape.layers,
        n_head=shape.heads,
        num_labels=shape.classes,
        pad_token_id=shape.vocab - 1,
    )
    for e in range(members):
        torch.manual_seed(e)
        model = GPT2ForSequenceClassification(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.0, eps=1e-6)
        for _ in range(epochs):
            for idx in torch.randperm(tokens.shape[1]).split(32):
                opt.zero_grad()
                logits = model(input_ids=tokens[e, idx], attention_mask=mask[e, idx].long()).logits
                (-(targets[e, idx] * logits.log_softmax(-1)).sum(-1).mean()).backward()
                opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cell", default="number/99")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = make_config(
        LanguageModelConfig, "gpt2_students", "quick", dict(teachers=2, cells=[args.cell], student_start_cells=[])
    )
    tokenization, high = parse_cell(args.cell)
    data = draws(cfg, tokenization, high)[0]
    n_s = int(0.8 * cfg.triples)
    e = args.members
    tokens = data.tokens[:n_s].expand(e, -1, -1).contiguous()
    mask = data.mask[:n_s].expand(e, -1, -1).contiguous()
    shape = GPT2Shape(
        vocabulary(tokenization, high), tokens.shape[-1], cfg.widths[0], cfg.layers, cfg.heads, cfg.classes, cfg.dropout
    )
    targets = soft_targets(torch.randn(e, n_s, cfg.classes) * 20, 20.0)
    kw = dict(
        soft=True, lr=5e-4, epochs=args.epochs, batch_size=32, seed=0, max_grad_norm=None, progress=False, desc=""
    )
    paths = {
        "ensemble": lambda: train_members(EnsembleGPT2(e, shape, list(range(e))), tokens, mask, targets, **kw),
        "loop of one-member ensembles": lambda: [
            train_members(EnsembleGPT2(1, shape, [i]), tokens[i : i + 1], mask[i : i + 1], targets[i : i + 1], **kw)
            for i in range(e)
        ],
    }
    try:
        import transformers  # noqa: F401

        paths["loop of transformers models"] = lambda: hf_loop(shape, tokens, mask, targets, args.epochs, e)
    except ImportError:
        pass
    print(
        f"cell {args.cell}: E = {e} students, N_s = {n_s}, S = {tokens.shape[-1]}, W = {shape.width}, "
        f"L = {shape.layers}, {args.epochs} epochs of batch 32, {args.threads} thread(s)"
    )
    print("| path | wall s / student | CPU s / student | CPU s / student-epoch |")
    print("|---|---|---|---|")
    for name, run in paths.items():
        wall, cpu = timed(run)
        print(f"| {name} | {wall / e:.2f} | {cpu / e:.2f} | {cpu / e / args.epochs:.3f} |")


if __name__ == "__main__":
    main()
