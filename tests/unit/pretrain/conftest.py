"""Pretrain tests run tiny models; one torch thread keeps them fast and steady on a shared 2-core
machine, where two OpenMP threads competing with another process's load slow small ops ~100-fold."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
