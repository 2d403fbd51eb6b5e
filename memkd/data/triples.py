"""Random "facts" for a language model: triples of whole numbers with random labels, and their tokens.

The published version's GPT-2 notebook memorizes "sentences" of three integers drawn uniformly from
1..`high` (e.g. "234 300 3"), each with a label drawn uniformly from C classes. Here: the draw
(`random_triples`, uniform labels as released, or exactly N / C of each class), and three ways to turn a
triple into tokens, each left-padded so that the last position is always the triple's last token:

- `number_tokens`: one token per number (id = the number; vocabulary high + 1), S = 3, no padding;
- `digit_tokens`: one token per decimal digit (ids 0-9), a separator (id 10) between numbers, padding
  id 11 on the left (vocabulary 12), S = 3 * digits(high) + 2: numbers share their digit pieces;
- `gpt2_tokens`: the text "a b c" through a Hugging Face GPT-2 tokenizer with pad = eos, left padding,
  truncation at `max_length` (the released notebook: 10).

Shapes: N triples, S positions. triples int64 (N, 3), labels int64 (N,), tokens int64 (N, S), mask
bool (N, S) (True at real tokens).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from memkd.config import invalid

TOKENIZATIONS = ("number", "digits", "gpt2")
DIGIT_SEPARATOR, DIGIT_PAD = 10, 11  # digit_tokens' ids beside the ten digits


def random_triples(count: int, high: int, classes: int, seed: int, balanced: bool = False) -> tuple[Tensor, Tensor]:
    """`count` triples of integers uniform in [1, high] and their labels in [0, classes).

    balanced : False: labels uniform and independent (the released notebook); True: exactly
        count / classes of each class in random order (count must be a multiple of classes).
    Returns (triples (N, 3) int64, labels (N,) int64).

    >>> t, y = random_triples(6, 1000, 3, seed=0, balanced=True)
    >>> t.shape, sorted(y.tolist())
    (torch.Size([6, 3]), [0, 0, 1, 1, 2, 2])
    """
    if balanced and count % classes:
        raise invalid("count", "random_triples", f"a multiple of classes ({classes}) when balanced=True", count)
    gen = torch.Generator().manual_seed(int(seed))
    triples = torch.randint(1, high + 1, (count, 3), generator=gen)
    if balanced:
        labels = torch.arange(classes).repeat_interleave(count // classes)[torch.randperm(count, generator=gen)]
    else:
        labels = torch.randint(0, classes, (count,), generator=gen)
    return triples, labels


def number_tokens(triples: Tensor) -> tuple[Tensor, Tensor]:
    """One token per number (its own id): tokens (N, 3) and an all-True mask (N, 3)."""
    return triples.clone(), torch.ones_like(triples, dtype=torch.bool)


def digit_width(high: int) -> int:
    """Decimal digits of the largest number, `high`."""
    return len(str(int(high)))


def digit_tokens(triples: Tensor, high: int) -> tuple[Tensor, Tensor]:
    """One token per decimal digit, DIGIT_SEPARATOR between numbers, DIGIT_PAD on the left.

    Returns tokens (N, S) and mask (N, S) with S = 3 * digit_width(high) + 2.

    >>> tok, mask = digit_tokens(torch.tensor([[12, 3, 100]]), high=100)
    >>> tok.tolist(), mask.sum().item()
    ([[11, 11, 11, 1, 2, 10, 3, 10, 1, 0, 0]], 8)
    """
    length = 3 * digit_width(high) + 2
    rows = []
    for a, b, c in triples.tolist():
        seq: list[int] = []
        for i, number in enumerate((a, b, c)):
            seq += ([DIGIT_SEPARATOR] if i else []) + [int(ch) for ch in str(number)]
        rows.append([DIGIT_PAD] * (length - len(seq)) + seq)
    tokens = torch.tensor(rows, dtype=torch.int64).view(-1, length)
    return tokens, tokens != DIGIT_PAD


def gpt2_tokens(triples: Tensor, tokenizer: Any, max_length: int = 10) -> tuple[Tensor, Tensor]:
    """The text "a b c" of each triple through a GPT-2 tokenizer, as the released notebook calls it:
    pad = eos, left padding to `max_length`, truncation. Returns tokens (N, S) and mask (N, S)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = [" ".join(map(str, t)) for t in triples.tolist()]
    out = tokenizer(texts, max_length=max_length, padding="max_length", truncation=True, return_tensors="pt")
    return out["input_ids"].to(torch.int64), out["attention_mask"].to(torch.bool)


def tokenize(
    triples: Tensor, tokenization: str, high: int, tokenizer: Any = None, max_length: int = 10
) -> tuple[Tensor, Tensor]:
    """Tokens and mask of `triples` by `tokenization` (one of TOKENIZATIONS; "gpt2" needs `tokenizer`)."""
    if tokenization == "number":
        return number_tokens(triples)
    if tokenization == "digits":
        return digit_tokens(triples, high)
    if tokenization == "gpt2" and tokenizer is not None:
        return gpt2_tokens(triples, tokenizer, max_length)
    raise invalid("tokenization", "tokenize", f"one of {TOKENIZATIONS} ('gpt2' with a tokenizer)", tokenization)


def vocabulary(tokenization: str, high: int, tokenizer: Any = None) -> int:
    """The vocabulary size a from-scratch model needs for `tokenization`."""
    if tokenization == "number":
        return high + 1
    if tokenization == "digits":
        return DIGIT_PAD + 1
    return len(tokenizer)
