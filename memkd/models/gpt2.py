"""GPT-2 sequence classifiers batched along an ensemble axis, and the `transformers` checkpoints they load.

`EnsembleGPT2` is GPT-2 (Radford et al., 2019) as `transformers.GPT2ForSequenceClassification` computes
it: token and learned position embeddings, L pre-LayerNorm blocks (causal self-attention with H heads,
an MLP of width 4W with the tanh GELU), a final LayerNorm, and a bias-free head read at the LAST
position (the texts are left-padded, so the last position is always a real token; padded keys are
masked). Its parameters are stacked (E, ...), so E members train as one batched model, each on its
own sequences; dropout (the checkpoint's 0.1) acts while the module is in training mode. The tests
check that member i equals the `transformers` model it was copied from.

Why not `torch.func.vmap` over the `transformers` model: members read different sequences, and the
library's attention-mask and last-token code branches on the values of the input ids, which `vmap`
cannot batch (with transformers 5.25.0, vmap over per-member ids raises "data-dependent control flow";
with ids shared by all members it runs). A hand-stacked model keeps one code path for the CPU profiles
(from scratch) and the paper's (the pretrained checkpoint, copied into every member).

Initialization from scratch as `transformers` does it: weights N(0, 0.02), the two output
projections of each block N(0, 0.02 / sqrt(2 L)), biases 0, LayerNorms 1 and 0.

`load_checkpoint` is the only place that reaches `transformers` (an optional extra: `pip install
"memkd[lm]"`): a model name on the Hugging Face hub or a local folder written by `save_pretrained`
(the model and its tokenizer); an unreachable checkpoint is refused with the knob's name.

Shapes: E members, N sequences, S positions, V vocabulary, W width, L layers, H heads, Dh = W / H,
C classes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memkd.config import invalid

INIT_STD = 0.02  # transformers' GPT2Config.initializer_range
LN_EPS = 1e-5  # GPT2Config.layer_norm_epsilon

# Stacked parameter names -> their shape after (E,), and the transformers name of layer l's tensor.
BLOCK = {  # per layer, stacked (E, L, ...)
    "ln1_w": "h.{l}.ln_1.weight",
    "ln1_b": "h.{l}.ln_1.bias",
    "attn_w": "h.{l}.attn.c_attn.weight",
    "attn_b": "h.{l}.attn.c_attn.bias",  # (W, 3W), (3W,)
    "proj_w": "h.{l}.attn.c_proj.weight",
    "proj_b": "h.{l}.attn.c_proj.bias",  # (W, W), (W,)
    "ln2_w": "h.{l}.ln_2.weight",
    "ln2_b": "h.{l}.ln_2.bias",
    "fc_w": "h.{l}.mlp.c_fc.weight",
    "fc_b": "h.{l}.mlp.c_fc.bias",  # (W, 4W), (4W,)
    "out_w": "h.{l}.mlp.c_proj.weight",
    "out_b": "h.{l}.mlp.c_proj.bias",  # (4W, W), (W,)
}
TOP = {"wte": "wte.weight", "wpe": "wpe.weight", "lnf_w": "ln_f.weight", "lnf_b": "ln_f.bias"}
BODY = tuple(TOP) + tuple(BLOCK)  # everything but the classification head


@dataclass(frozen=True)
class GPT2Shape:
    """The sizes of one GPT-2: vocabulary V, positions, width W, layers L, heads H, classes C, dropout."""

    vocab: int
    positions: int
    width: int
    layers: int
    heads: int
    classes: int
    dropout: float = 0.1  # transformers' GPT2Config default (embeddings, attention, residuals)

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise invalid("heads", "GPT2Shape", f"a divisor of the width ({self.width})", self.heads)


def _draw(shape: GPT2Shape, seed: int) -> dict[str, Tensor]:
    """One member's parameters (no E axis), drawn as transformers initializes GPT-2."""
    gen = torch.Generator().manual_seed(int(seed))
    v, s, w, layers, c = shape.vocab, shape.positions, shape.width, shape.layers, shape.classes

    def normal(*dims: int, std: float = INIT_STD) -> Tensor:
        return torch.randn(*dims, generator=gen) * std

    proj = INIT_STD / math.sqrt(2 * layers)
    return {
        "wte": normal(v, w),
        "wpe": normal(s, w),  # (V, W), (S, W)
        "ln1_w": torch.ones(layers, w),
        "ln1_b": torch.zeros(layers, w),
        "attn_w": normal(layers, w, 3 * w),
        "attn_b": torch.zeros(layers, 3 * w),
        "proj_w": normal(layers, w, w, std=proj),
        "proj_b": torch.zeros(layers, w),
        "ln2_w": torch.ones(layers, w),
        "ln2_b": torch.zeros(layers, w),
        "fc_w": normal(layers, w, 4 * w),
        "fc_b": torch.zeros(layers, 4 * w),
        "out_w": normal(layers, 4 * w, w, std=proj),
        "out_b": torch.zeros(layers, w),
        "lnf_w": torch.ones(w),
        "lnf_b": torch.zeros(w),
        "score": normal(w, c),  # (W, C): the head, stored transposed against transformers' (C, W)
    }


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """LayerNorm over W with per-member affine parameters. x (E, N, S, W); weight, bias (E, W)."""
    x = F.layer_norm(x, x.shape[-1:], eps=LN_EPS)
    return x * weight[:, None, None, :] + bias[:, None, None, :]


class EnsembleGPT2(nn.Module):
    """E GPT-2 sequence classifiers with stacked parameters (see the module docstring).

    shape : the sizes of every member; seed : one int per member (member i equals a one-member
        ensemble seeded seed[i]) or one int (member i seeded seed + i).
    """

    def __init__(self, members: int, shape: GPT2Shape, seed: int | Sequence[int] = 0) -> None:
        super().__init__()
        seeds = (
            [int(seed) + i for i in range(members)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
        )
        if len(seeds) != members:
            raise invalid("seed", "EnsembleGPT2", f"an int or one seed per member ({members})", f"{len(seeds)} seeds")
        self.members, self.shape = members, shape
        drawn = [_draw(shape, s) for s in seeds]
        for name in drawn[0]:
            setattr(self, name, nn.Parameter(torch.stack([d[name] for d in drawn])))

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """tokens int64 (N, S) shared by all members or (E, N, S) one set per member; mask bool of
        the same shape (True at real tokens; None: all real) -> logits at the last position (E, N, C)."""
        e, p = self.members, self.shape
        if tokens.dim() == 2:
            tokens = tokens.expand(e, *tokens.shape)
            mask = None if mask is None else mask.expand(e, *mask.shape)
        n, s = tokens.shape[1:]
        drop = p.dropout if self.training else 0.0
        members = torch.arange(e, device=tokens.device).view(e, 1, 1)
        x = self.wte[members, tokens] + self.wpe[:, None, :s, :]  # (E, N, S, W)
        x = F.dropout(x, drop, self.training)
        allowed = torch.ones(s, s, dtype=torch.bool, device=tokens.device).tril()  # (S, S) causal
        allowed = allowed.expand(e, n, 1, s, s)
        if mask is not None:
            allowed = allowed & mask[:, :, None, None, :]  # (E, N, 1, S, S): padded keys masked
        hide = torch.finfo(x.dtype).min  # as transformers: finite, so a fully masked (padded) query is no NaN
        dh = p.width // p.heads
        for layer in range(p.layers):
            h = _layer_norm(x, self.ln1_w[:, layer], self.ln1_b[:, layer])
            qkv = torch.einsum("ensw,ewk->ensk", h, self.attn_w[:, layer]) + self.attn_b[:, None, None, layer]
            q, k, v = (t.reshape(e, n, s, p.heads, dh).transpose(2, 3) for t in qkv.split(p.width, dim=-1))
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)  # (E, N, H, S, S)
            weights = F.dropout(scores.masked_fill(~allowed, hide).softmax(dim=-1), drop, self.training)
            z = (weights @ v).transpose(2, 3).reshape(e, n, s, p.width)  # (E, N, S, W)
            z = torch.einsum("ensw,ewk->ensk", z, self.proj_w[:, layer]) + self.proj_b[:, None, None, layer]
            x = x + F.dropout(z, drop, self.training)
            h = _layer_norm(x, self.ln2_w[:, layer], self.ln2_b[:, layer])
            h = F.gelu(
                torch.einsum("ensw,ewk->ensk", h, self.fc_w[:, layer]) + self.fc_b[:, None, None, layer],
                approximate="tanh",
            )  # (E, N, S, 4W)
            h = torch.einsum("ensk,ekw->ensw", h, self.out_w[:, layer]) + self.out_b[:, None, None, layer]
            x = x + F.dropout(h, drop, self.training)
        last = _layer_norm(x[:, :, -1:, :], self.lnf_w, self.lnf_b)[:, :, 0, :]  # (E, N, W)
        return torch.einsum("enw,ewc->enc", last, self.score)

    @torch.no_grad()
    def copy_member(
        self, index: int, source: "EnsembleGPT2", source_index: int, names: Sequence[str] | None = None
    ) -> None:
        """Set member `index`'s parameters `names` (default: all) to `source`'s member `source_index`'s."""
        for name in names or [n for n, _ in self.named_parameters()]:
            getattr(self, name)[index].copy_(getattr(source, name)[source_index])

    @torch.no_grad()
    def load_hf(self, index: int, model: Any, head: bool = True) -> None:
        """Copy a `transformers` GPT2ForSequenceClassification into member `index` (its head too
        when `head`). Embeddings beyond the ensemble's positions are cut."""
        state = model.state_dict()
        prefix = "transformer."
        for name, hf in TOP.items():
            value = state[prefix + hf]
            getattr(self, name)[index].copy_(value[: getattr(self, name).shape[1]] if name == "wpe" else value)
        for name, hf in BLOCK.items():
            for layer in range(self.shape.layers):
                getattr(self, name)[index, layer].copy_(state[prefix + hf.format(l=layer)])
        if head:
            self.score[index].copy_(state["score.weight"].T)

    def extra_repr(self) -> str:
        p = self.shape
        return f"members={self.members}, vocab={p.vocab}, width={p.width}, layers={p.layers}, heads={p.heads}, classes={p.classes}"


def hf_shape(model: Any, positions: int) -> GPT2Shape:
    """The `GPT2Shape` of a transformers GPT-2 (reading `positions` tokens, at most its own)."""
    cfg = model.config
    return GPT2Shape(
        vocab=cfg.vocab_size,
        positions=min(positions, cfg.n_positions),
        width=cfg.n_embd,
        layers=cfg.n_layer,
        heads=cfg.n_head,
        classes=cfg.num_labels,
        dropout=cfg.resid_pdrop,
    )


def hub_offline() -> bool:
    """Whether $HF_HUB_OFFLINE asks `transformers` never to reach the hub (then only local files load)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_checkpoint(checkpoint: str, classes: int, owner: str = "load_checkpoint") -> tuple[Any, Any]:
    """A `transformers` GPT2ForSequenceClassification with `classes` outputs (a new, randomly
    initialized head) and its GPT2Tokenizer (pad = eos, left padding), from `checkpoint`: a model
    name on the Hugging Face hub (e.g. "gpt2", downloaded on first use) or a local folder holding
    both, written by `save_pretrained`. With $HF_HUB_OFFLINE set, only local files are read.

    Raises ImportError without `transformers` (the `lm` extra) and ValueError naming `checkpoint`
    when it cannot be read (no such folder, no network, no such model).
    """
    try:
        from transformers import GPT2ForSequenceClassification, GPT2Tokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as err:  # the optional extra
        raise ImportError(f'{owner} needs the optional dependency transformers: pip install "memkd[lm]"') from err
    local = os.path.isdir(checkpoint)
    quiet = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights newly initialized": the head is new on purpose
    try:
        tokenizer = GPT2Tokenizer.from_pretrained(checkpoint, local_files_only=local or hub_offline())
        model = GPT2ForSequenceClassification.from_pretrained(
            checkpoint, num_labels=classes, local_files_only=local or hub_offline(), ignore_mismatched_sizes=True
        )  # a head of C classes
    except (OSError, ValueError, EnvironmentError) as err:
        where = (
            "this folder could not be read as one"
            if local
            else (
                "it could not be fetched from the Hugging Face hub (no network, $HF_HUB_OFFLINE set, or no such model)"
            )
        )
        raise invalid(
            "checkpoint",
            owner,
            "a model name that can be downloaded here, or the path of a local folder "
            "holding a GPT-2 model and its tokenizer written by save_pretrained (e.g. "
            'checkpoint="/data/gpt2" after GPT2ForSequenceClassification.from_pretrained("gpt2")'
            '.save_pretrained("/data/gpt2") and the same for GPT2Tokenizer on a machine with network); '
            f"{where}: {type(err).__name__}",
            checkpoint,
        ) from err
    finally:
        hf_logging.set_verbosity(quiet)
    tokenizer.padding_side = "left"
    tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
