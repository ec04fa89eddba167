import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny models: see `one_torch_thread` in tests/conftest.py. Module scope so that module-scoped
    fixtures that train (set up before function-scoped ones) run on one thread too."""
    yield
