"""Provenance: the facts that trace a number back to the build that made it.

`collect()` returns a flat, JSON-serialisable dict: the memkd version, the git commit of
the checkout (with whether its tracked files were clean), the Python and torch versions,
the device with its model name, the thread count, the platform and the host name.

Git is read without the git binary: the commit comes from ``.git/HEAD`` (following a
symbolic ref, ``packed-refs`` and ``.git`` files of worktrees/submodules); cleanliness
needs ``git status`` and is ``None`` when the binary is missing or fails. Nothing here
raises: a fact that cannot be found is ``None``.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import torch

import memkd

__all__ = ["collect", "git_commit", "git_clean", "device_name", "find_git_dir"]


def find_git_dir(start: str | os.PathLike[str]) -> Path | None:
    """Return the git directory of the checkout holding `start`, or None.

    Walks up from `start`; a ``.git`` directory is returned as is, a ``.git`` file
    (``gitdir: <path>``, as worktrees and submodules use) is followed.
    """
    try:
        here = Path(start).resolve()
    except OSError:
        return None
    for folder in (here, *here.parents):
        dot_git = folder / ".git"
        try:
            if dot_git.is_dir():
                return dot_git
            if dot_git.is_file():
                text = dot_git.read_text(encoding="utf-8").strip()
                if text.startswith("gitdir:"):
                    target = Path(text[len("gitdir:") :].strip())
                    if not target.is_absolute():
                        target = (folder / target).resolve()
                    return target if target.is_dir() else None
        except OSError:
            return None
    return None


def _common_dir(git_dir: Path) -> Path:
    """The directory holding refs: a worktree's ``commondir`` points there."""
    common = git_dir / "commondir"
    try:
        if common.is_file():
            target = Path(common.read_text(encoding="utf-8").strip())
            return target if target.is_absolute() else (git_dir / target).resolve()
    except OSError:
        pass
    return git_dir


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    """The commit a ref such as ``refs/heads/main`` points at, or None."""
    for base in (git_dir, _common_dir(git_dir)):
        loose = base / ref
        try:
            if loose.is_file():
                return loose.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    packed = _common_dir(git_dir) / "packed-refs"
    try:
        lines = packed.read_text(encoding="utf-8").splitlines() if packed.is_file() else []
    except OSError:
        return None
    for line in lines:
        if line.startswith(("#", "^")):
            continue
        parts = line.split()
        if len(parts) == 2 and parts[1] == ref:
            return parts[0]
    return None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def git_commit(git_dir: Path | None) -> str | None:
    """The full commit hash HEAD points at in `git_dir`, or None when it cannot be read."""
    if git_dir is None:
        return None
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if head.startswith("ref:"):
        sha = _resolve_ref(git_dir, head[len("ref:") :].strip())
    else:
        sha = head
    return sha if sha and _is_sha(sha) else None


def git_clean(work_tree: Path | None, timeout: float = 10.0) -> bool | None:
    """True when `git status` shows no change to tracked files; None without a git binary.

    Untracked files do not count (a build writes its outputs into the tree).
    """
    if work_tree is None or shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(work_tree), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() == ""


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), sysctl (macOS) or `platform`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin" and shutil.which("sysctl"):
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """A human name for `device`: the GPU model, "Apple MPS", or the CPU model."""
    try:
        if device.type == "cuda" and torch.cuda.is_available():
            return torch.cuda.get_device_name(device)
    except (RuntimeError, AssertionError, ValueError):
        pass
    if device.type == "mps":
        return "Apple MPS"
    if device.type == "cpu":
        return _cpu_name()
    return str(device)


def _as_device(device: str | torch.device | None) -> torch.device | None:
    """memkd.device.resolve_device, or None when `device` names no usable device."""
    from memkd.device import resolve_device

    try:
        return resolve_device(device)
    except (ValueError, RuntimeError, TypeError):
        return None


def collect(device: str | torch.device | None = None) -> dict:
    """Return the build's provenance as a flat JSON-serialisable dict.

    Keys: memkd_version, git_commit (None outside a git checkout), git_clean (bool, or None
    when unknown), python, torch, device (e.g. "cuda:0", "cpu"), device_name (GPU model,
    "Apple MPS" or CPU model), threads (torch.get_num_threads()), platform, hostname.

    `device` is what the run used; None or "auto" records the device memkd would pick (a
    device this machine lacks is recorded as given, with device_name None). The git
    checkout is the one holding the memkd package, else the current directory.
    """
    dev = _as_device(device)
    work_tree: Path | None = None
    git_dir: Path | None = None
    for start in (Path(memkd.__file__).parent, Path.cwd()):
        git_dir = find_git_dir(start)
        if git_dir is not None:
            work_tree = start
            break
    try:
        host = socket.gethostname()
    except OSError:
        host = None
    return {
        "memkd_version": memkd.__version__,
        "git_commit": git_commit(git_dir),
        "git_clean": git_clean(work_tree) if git_dir is not None else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(dev) if dev is not None else str(device),
        "device_name": device_name(dev) if dev is not None else None,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "hostname": host,
    }
