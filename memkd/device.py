"""Pick the accelerator: cuda, then mps, then cpu, unless the caller names one."""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """The devices this machine can run on, e.g. ["cpu"] or ["cpu", "cuda:0", "cuda:1"] or ["cpu", "mps"]."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def _check_available(device: torch.device) -> torch.device:
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
        raise ValueError(
            f"The 'device' parameter asks for {str(device)!r}, which this machine does not have. "
            f"Available devices: {', '.join(available_devices())} (or 'auto' to pick the best)."
        )
    return device


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a torch.device; "auto" (or None/"") picks cuda, then mps, then cpu.

    A named cuda or mps device this machine lacks raises ValueError listing the available ones.
    """
    if isinstance(device, torch.device):
        return _check_available(device)
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
        raise ValueError(
            f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'. Got {device!r} instead."
        ) from err
    return _check_available(parsed)
