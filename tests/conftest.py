import itertools

import pytest

from streams.pulsar.broker import EmbeddedBroker

_topics = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One real pulsar-lite broker process for the integration tests (fresh topic per test)."""
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture
def topic(request):
    return f"{request.node.name[:40]}-{next(_topics)}".replace("[", "-").replace("]", "")
