"""Pulsar I/O for hvd-online: per-partition sources, codecs, batching windows, producers,
and the embedded broker. Nothing here imports TensorFlow or Horovod."""

from streams.errors import StreamsError

__all__ = ["StreamsError"]
