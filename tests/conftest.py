"""Test-wide settings: one torch thread (tiny ops thrash when threads are oversubscribed) and
a fixed global seed so every test starts from the same RNG state."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
