import pytest

from hvd_online.sync import collectives


@pytest.fixture(scope="session")
def world():
    """One in-process rank (Horovod initialised once, world size 1)."""
    return collectives.init_world(threads=1)
