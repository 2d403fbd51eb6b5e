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
from typing import Sequence, TypeVar

import torch

BYTES = 4  # float32
HEADROOM = 0.8  # use at most this fraction of what is free


def training_bytes_per_member(
    n: int,
    d: int,
    width: int,
    classes: int,
    hidden_layers: int = 2,
    own_inputs: bool = False,
    soft_targets: bool = True,
) -> int:
    """Bytes that one member of an EnsembleMLP needs while it trains on N samples."""
    sizes = [d] + [width] * hidden_layers + [classes]  # hidden_layers = 0: the linear map D -> C
    params = sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
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


def format_bytes(n: float) -> str:
    """A size as people read it: "512 B", "3.2 KiB", "7.5 TiB", "17.3 EiB"."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    size, i = float(n), 0
    while abs(size) >= 1024 and i < len(units) - 1:
        size, i = size / 1024, i + 1
    return f"{int(size)} B" if i == 0 else f"{size:.1f} {units[i]}"


def usable_bytes(device: torch.device | str) -> int:
    """What a run may use on `device`: HEADROOM of what is free."""
    return int(free_bytes(device) * HEADROOM)


def require_one_fits(bytes_per_member: int, device: torch.device | str, what: str, knobs: str) -> None:
    """Raise MemoryError, before anything is allocated, when not even one member of `what`
    (e.g. "a student of width 1000000000 (the 'student_widths' parameter of logit_distillation)")
    fits on `device`; the message names `knobs`, the sizes needed and usable."""
    budget = usable_bytes(device)
    if bytes_per_member > budget:
        raise MemoryError(
            f"{what} needs about {format_bytes(bytes_per_member)} to train, but only {format_bytes(budget)} "
            f"can be used on {torch.device(device)}. Reduce {knobs} (or run on a device with more memory)."
        )


Item = TypeVar("Item")


def chunks(items: "Sequence[Item] | int", size: int | None) -> list[Sequence[Item]]:
    """Consecutive chunks of at most `size` of `items` (one chunk of all when `size` is None or 0): the one
    loop over an ensemble's members in chunks (sizes from `members_per_chunk` or a `chunk` knob). An int
    n stands for range(n); a range gives ranges, a list lists.

    >>> chunks(5, 2)
    [range(0, 2), range(2, 4), range(4, 5)]
    >>> chunks(["a", "b", "c"], None)
    [['a', 'b', 'c']]
    """
    seq = range(items) if isinstance(items, int) else items
    step = size or len(seq) or 1
    return [seq[i : i + step] for i in range(0, len(seq), step)]


def members_per_chunk(
    members: int, bytes_per_member: int, device: torch.device | str, knobs: str = "students, teachers or the widths"
) -> int:
    """How many of `members` to train at once on `device` (all of them when they fit).

    Raises MemoryError naming `knobs` when not even one member fits.
    """
    require_one_fits(bytes_per_member, device, "One ensemble member", knobs)
    budget = usable_bytes(device)
    return max(1, min(members, budget // max(1, bytes_per_member)))


def check_run_fits(
    device: torch.device | str,
    experiment: str,
    *,
    samples: int,
    dim: int,
    classes: int,
    hidden_layers: int,
    teacher_width: int,
    student_widths: tuple[int, ...],
    student_samples: int,
    own_inputs: bool,
    similarity: bool = False,
) -> None:
    """Refuse, before the first epoch, a run in which one teacher (N = `samples`) or one student
    of the widest of `student_widths` (on `student_samples`) cannot train on `device`: MemoryError
    naming the knob of `experiment` to reduce and the sizes in readable units."""
    teacher = training_bytes_per_member(samples, dim, teacher_width, classes, hidden_layers, own_inputs=True)
    require_one_fits(
        teacher,
        device,
        f"A teacher of width {teacher_width} on {samples} samples of dimension {dim}",
        f"the 'teacher_width' parameter of {experiment} or the dataset size (classes, per_class, input_dim)",
    )
    width, n = max(student_widths), student_samples
    student = training_bytes_per_member(n, dim, width, classes, hidden_layers, own_inputs=own_inputs)
    student += BYTES * 3 * n * n if similarity else 0  # the similarity students' (N_tr, N_tr) matrices
    require_one_fits(
        student,
        device,
        f"A student of width {width} on {n} samples of dimension {dim}",
        f"the 'student_widths' parameter of {experiment} (its largest value is {width})",
    )
