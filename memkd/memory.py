"""How much memory a batched ensemble needs to train, and how many members fit at once.

Shape letters (see `memkd`): E members, N samples, D input dimension, P hidden width, C classes, L hidden layers.
The estimate counts what the full-batch training path keeps alive (float32): parameters with
their gradients and Adam's three buffers, activations and their gradients (about three copies of
each hidden layer), a per-member copy of the inputs when members see different data, and soft
targets. It is meant to be a slight over-estimate, to refuse a run that cannot fit before
allocating anything, and to split an ensemble into chunks that do fit.
"""

from __future__ import annotations

import os

import torch

BYTES = 4  # float32
HEADROOM = 0.8  # use at most this fraction of what is free


def training_bytes_per_member(n: int, d: int, width: int, classes: int, hidden_layers: int = 2,
                              own_inputs: bool = False, soft_targets: bool = True) -> int:
    """Bytes that one member of an EnsembleMLP needs while it trains on N samples."""
    params = d * width + (hidden_layers - 1) * width * width + width * classes + hidden_layers * width + classes
    buffers = 5 * params  # parameter, gradient, Adam's two moments, scratch
    activations = 3 * n * (hidden_layers * width + 2 * classes)
    inputs = 2 * n * d if own_inputs else 0  # the inputs and their feature-major copy
    targets = n * classes if soft_targets else n
    return BYTES * (buffers + activations + inputs + targets)


def free_bytes(device: torch.device | str) -> int:
    """Memory free for tensors on `device`: the CUDA free memory, else the host's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not on this platform (Windows): assume 8 GB
        return 8 * 2**30


def members_per_chunk(members: int, bytes_per_member: int, device: torch.device | str,
                      knobs: str = "students, datasets or the widths") -> int:
    """How many of `members` to train at once on `device` (all of them when they fit).

    Raises MemoryError naming `knobs` when not even one member fits.
    """
    budget = int(free_bytes(device) * HEADROOM)
    if bytes_per_member > budget:
        raise MemoryError(
            f"One ensemble member needs about {bytes_per_member / 2**30:.1f} GiB to train, but only "
            f"{budget / 2**30:.1f} GiB can be used on {torch.device(device)}. Reduce {knobs} "
            "(or run on a device with more memory).")
    return max(1, min(members, budget // max(1, bytes_per_member)))
