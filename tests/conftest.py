import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))


@pytest.fixture(autouse=True)
def fresh_plugin_manager():
    """Each test gets a fresh plugin manager built from the installed entry points."""
    from gradguide import plugins

    pm, problems = plugins.new_plugin_manager()
    with plugins.use_plugin_manager(pm, problems):
        yield pm


@pytest.fixture
def shared_dir():
    if not os.path.isdir(SHARED):
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {SHARED}: CI must have ../shared beside the clone")
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP oversubscription on busy CI cores.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
