"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one intra-op thread, and far faster on a CPU shared with
    other work. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
