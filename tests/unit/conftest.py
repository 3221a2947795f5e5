import pytest

from hvd_online import distributed


@pytest.fixture(scope="session")
def world():
    """One in-process rank (Horovod initialised once, world size 1)."""
    return distributed.init_world(threads=1)
