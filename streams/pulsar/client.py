"""One way to open a Pulsar client for the whole project."""

from __future__ import annotations

from typing import Any

import pulsar


def connect(url: str, **client_options: Any) -> pulsar.Client:
    """A client that logs warnings and errors only, through the C++ console logger.

    Not a Python `logging` logger: with one, pulsar-client aborts the interpreter now and
    then at exit ("terminate called without an active exception"; apache/pulsar-client-python
    issue 256) - seen here as a producer exiting with SIGABRT after a clean close.
    """
    options = {"logger": pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn), **client_options}
    return pulsar.Client(url, **options)
