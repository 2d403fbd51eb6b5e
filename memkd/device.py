"""Pick the accelerator: cuda, then mps, then cpu, unless the caller names one."""

from __future__ import annotations

import torch

from memkd.config import invalid


def available_devices() -> list[str]:
    """The devices this machine can run on, e.g. ["cpu"] or ["cpu", "cuda:0", "cuda:1"] or ["cpu", "mps"]."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def _check_available(device: torch.device, owner: str) -> torch.device:
    """Return `device` when this machine has it; else a ValueError naming the knob and what exists."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ok = count > 0 and (device.index is None or device.index < count)
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        ok = mps is not None and mps.is_available()
    else:
        return device
    if not ok:
        raise invalid(
            "device",
            owner,
            must=f"name a device this machine has. Available devices: {', '.join(available_devices())} "
            "(or 'auto' to pick the best)",
            got=str(device),
        )
    return device


def resolve_device(device: str | torch.device | None = "auto", owner: str = "memkd") -> torch.device:
    """Return a torch.device; "auto" (or None/"") picks cuda, then mps, then cpu.

    A named cuda or mps device this machine lacks raises ValueError listing the available ones;
    `owner` is what the user gave the device to (an experiment, a chapter, a notebook), named
    in the message.
    """
    if isinstance(device, torch.device):
        return _check_available(device, owner)
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise invalid("device", owner, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'", device) from err
    return _check_available(parsed, owner)


def set_tf32(enabled: bool) -> bool:
    """Let float32 matmuls and cuDNN convolutions on CUDA run on TF32 tensor cores (True), or keep
    them in full fp32 (False); returns whether TF32 matmuls were allowed before.

    memkd's default is full fp32 (PyTorch's own default for matmuls) until the effect of TF32 on
    held-out accuracy is measured at the paper's shapes (`benchmarks/gpu_check.sh` prints it).
    TF32 keeps fp32's range with a 10-bit mantissa; Ampere and later GPUs run it several times
    faster. CPU and MPS are not affected. Uses the `fp32_precision` settings where torch has
    them (torch >= 2.9; mixing them with the legacy `allow_tf32` flags is an error there).
    """
    if not isinstance(enabled, bool):
        raise invalid("enabled", "set_tf32", "a bool (True or False)", enabled)
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):
        previous = matmul.fp32_precision == "tf32"
        matmul.fp32_precision = "tf32" if enabled else "ieee"
        cudnn.conv.fp32_precision = "tf32" if enabled else "ieee"
    else:  # older torch
        previous = bool(matmul.allow_tf32)
        matmul.allow_tf32 = enabled
        cudnn.allow_tf32 = enabled
    return previous


def tf32_enabled() -> bool:
    """Whether float32 matmuls on CUDA may use TF32 (see `set_tf32`)."""
    matmul = torch.backends.cuda.matmul
    return matmul.fp32_precision == "tf32" if hasattr(matmul, "fp32_precision") else bool(matmul.allow_tf32)
