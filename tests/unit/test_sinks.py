"""The publish callbacks of the predictions and dead-letter sinks count failures, and only
failures (pulsar-client 3.x hands them `pulsar.Result.Ok` on success, not the string "Ok")."""

import logging

import pulsar
import pytest

from streams.codecs import Rejected
from streams.pulsar.dead_letter import DeadLetterSink
from streams.pulsar.predictions import PredictionSink
from streams.source import Record


class AnsweringProducer:
    """Stands in for a pulsar Producer: every send is answered at once with `result`."""

    def __init__(self, result):
        self.result = result

    def send_async(self, payload, callback, **_options):
        callback(self.result, None)

    def flush(self):
        pass

    def close(self):
        pass

class Client:
    def __init__(self, result):
        self.result = result

    def create_producer(self, topic, **_options):
        return AnsweringProducer(self.result)

@pytest.mark.parametrize(("result", "failed"), [(pulsar.Result.Ok, 0), (pulsar.Result.Timeout, 3)])
def test_prediction_publishes_count_only_failures(result, failed, caplog):
    sink = PredictionSink(Client(result), "clicks")
    with caplog.at_level(logging.ERROR):
        sink.publish([1, 2, 3], [b"a", b"b", b"c"])
    assert (sink.sent, sink.failed) == (3, failed)
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == failed

@pytest.mark.parametrize(("result", "failed"), [(pulsar.Result.Ok, 0), (pulsar.Result.Timeout, 1)])
def test_dead_letter_publishes_count_only_failures(result, failed, caplog):
    sink = DeadLetterSink(Client(result), "samples")
    with caplog.at_level(logging.ERROR):
        sink.send(Record(0, (1, 2, -1), b"xx"), Rejected(0, "wrong size: 2 bytes, expected 8"))
    assert (sink.total, sink.failed) == (1, failed)
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == failed
