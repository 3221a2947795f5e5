"""Weight snapshots through shared memory, read by another process while being written:
every copy a reader keeps is one whole snapshot."""

import multiprocessing
import time

import numpy as np

from console.shared_weights import SharedWeights

LAYOUT = [((512, 512), "float32"), ((512,), "float32"), ((64, 8), "float64")]


def read_while_written(name, layout, results, ready, stop):
    reader = SharedWeights.attach(name, layout)
    ready.set()
    reads = torn = 0
    steps = set()
    while not stop.is_set():
        snapshot = reader.read()
        if snapshot is None:
            continue
        step, arrays = snapshot
        reads += 1
        steps.add(step)
        torn += any(not np.all(a == step) for a in arrays)
    reader.close()
    results.put((reads, torn, len(steps)))


def test_a_reader_in_another_process_never_keeps_a_torn_snapshot():
    writer = SharedWeights.create(LAYOUT)
    context = multiprocessing.get_context("spawn")
    results, ready, stop = context.Queue(), context.Event(), context.Event()
    reader = context.Process(target=read_while_written,
                             args=(writer.name, writer.layout, results, ready, stop))
    reader.start()
    try:
        assert ready.wait(60)
        step, until = 0, time.monotonic() + 1.5
        while time.monotonic() < until:
            step += 1
            writer.publish(step, [np.full(shape, step, dtype) for shape, dtype in LAYOUT])
            # the trainer publishes once a step, not back to back: a writer that never pauses
            # can keep a slower reader retrying for the whole test on a loaded machine (seen
            # in CI: 1 read in 1.5 s)
            time.sleep(0.001)
        stop.set()
        reads, torn, distinct = results.get(timeout=60)
        reader.join(30)
    finally:
        writer.close()
    assert torn == 0
    assert reads > 0 and distinct > 1, "the reader saw the snapshots change"
