"""Structure tests run single-threaded (the machine is shared). Model helpers (randomised BatchNorm
statistics, killing a fraction of each group's channels) are in :mod:`edgekd.testing.models`."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
