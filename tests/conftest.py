"""Shared test fixtures and helpers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# No test reaches the Hugging Face hub: set before transformers (or huggingface_hub) is first imported,
# which reads it once. Chapter 15's loader is tested on a GPT-2 the tests save to disk themselves.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def execute_chapter_at_smoke(notebook: Path, tmp_path: Path) -> Path:
    """Execute a chapter with papermill at the smoke profile (one torch thread per kernel: tiny
    nets); return its results folder."""
    papermill = Path(sys.executable).parent / "papermill"
    results = tmp_path / "results"
    subprocess.run(
        [
            str(papermill),
            str(notebook),
            str(tmp_path / "out.ipynb"),
            "-p",
            "profile",
            "smoke",
            "-p",
            "results_dir",
            str(results),
            "--execution-timeout",
            "300",
            "-k",
            "python3",
        ],
        check=True,
        cwd=ROOT,
        timeout=900,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return results


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one intra-op thread, and far faster on a CPU shared with
    other work. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
