"""Test-wide settings: one torch thread (tiny ops thrash when threads are oversubscribed) and
a fixed global seed so every test starts from the same RNG state."""

import signal

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _interactive_sigint():
    """Under nohup (or any launcher that ignores SIGINT) paramgen rightly leaves the ignored
    signal alone, and the tests of Ctrl-C would see nothing: give them the interactive default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        yield
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        yield
