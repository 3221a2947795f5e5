"""Exact resume: kill -9, SIGTERM, rescale, broker restart; poison messages to the DLQ.

Every test checks the sample ledger: each produced id is in exactly one applied update of
the model that survives (steps after the checkpoint a run resumed from were rolled back)."""

import os
import random
import signal
import time

import pulsar
import pytest

from hvd_online.state.run_dir import RunLayout
from streams.pulsar.broker import EmbeddedBroker, free_port
from tests.integration.harness import (
    kill_a_rank_mid_stream,
    ledger_size,
    newest_checkpoint_step,
    produced_ids,
    rank_pids,
    read_ledger,
    run_ranks,
    start_producer,
    start_ranks,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


def test_kill_9_a_rank_then_resume_trains_every_sample_exactly_once(broker, topic, tmp_path):
    m = 12000
    config = write_config(tmp_path, broker.url, topic,
                          extra="[checkpoint]\nevery_steps = 8\n")
    first = tmp_path / "ledger-1"
    ranks = start_ranks(config, f"train.max_samples={m}", log_path=tmp_path / "run1.log",
                        ledger=first)
    try:  # the stream starts once both ranks step, so the kill lands in the middle of it
        ranks.wait_for_ranks_stepping(2)
        producer = start_producer(config, m, rate=3000, log_path=tmp_path / "producer.log")
        wait_until(lambda: ledger_size(first) > 1500, 120, "training to start")
        time.sleep(random.uniform(0.2, 1.5))
        kill_a_rank_mid_stream(ranks, producer)
    finally:
        ranks.stop()
    resumed_from = newest_checkpoint_step(tmp_path)
    second = tmp_path / "ledger-2"
    run = run_ranks(config, f"train.max_samples={m}", ledger=second)
    producer.wait(60)
    assert run.returncode == 0
    assert f"resuming from step {resumed_from}" in run.output
    ids = read_ledger(first, up_to_step=resumed_from) + read_ledger(second)
    assert len(ids) == m and sorted(ids) == produced_ids(m)
    assert run.summaries[0]["weights_sha256"] == run.summaries[1]["weights_sha256"]


def test_sigterm_saves_all_ranks_exit_0_and_resume_continues(broker, topic, tmp_path):
    m = 9000
    config = write_config(tmp_path, broker.url, topic)
    producer = start_producer(config, m, rate=3000, log_path=tmp_path / "producer.log")
    first = tmp_path / "ledger-1"
    ranks = start_ranks(config, log_path=tmp_path / "run1.log",
                        ledger=first)
    try:
        wait_until(lambda: ledger_size(first) > 1000, 120, "training to start")
        pids = rank_pids(ranks.process)
        os.kill(pids[1], signal.SIGTERM)  # one rank is enough: the flag reaches all
        assert ranks.wait(60) == 0
    finally:
        ranks.stop()
    summaries = RunLayout(tmp_path / "run").summaries()
    assert [s["stopped"] for s in summaries.values()] == ["sigterm", "sigterm"]
    saved = newest_checkpoint_step(tmp_path)
    assert read_ledger(first) == read_ledger(first, up_to_step=saved)  # nothing after the save
    second = tmp_path / "ledger-2"
    run = run_ranks(config, f"train.max_samples={m}", ledger=second)
    producer.wait(60)
    assert run.returncode == 0 and f"resuming from step {saved}" in run.output
    ids = read_ledger(first) + read_ledger(second)
    assert sorted(ids) == produced_ids(m)


def test_rescale_2_to_1_to_2_ranks_loses_and_repeats_nothing(broker, topic, tmp_path):
    m = 9000
    config = write_config(tmp_path, broker.url, topic)
    producer = start_producer(config, m, rate=0, log_path=tmp_path / "producer.log")
    producer.wait(60)
    ledgers = []
    for i, (np_, upto) in enumerate([(2, m // 3), (1, 2 * m // 3), (2, m)]):
        ledger = tmp_path / f"ledger-{i}"
        run = run_ranks(config, f"train.max_samples={upto}", np=np_,
                        ledger=ledger)
        assert run.returncode == 0
        assert sorted(run.summaries) == list(range(np_))
        if np_ == 1:
            assert run.owned_partitions() == {0: [0, 1, 2, 3]}
        ledgers.append(ledger)
    ids = [i for ledger in ledgers for i in read_ledger(ledger)]
    assert len(ids) == m and sorted(ids) == produced_ids(m)


def test_broker_restart_mid_run_loses_nothing(topic, tmp_path):
    m = 9000
    with EmbeddedBroker(tmp_path / "own-broker", port=free_port()) as own:
        config = write_config(tmp_path, own.url, topic)
        producer = start_producer(config, m, rate=2000, log_path=tmp_path / "producer.log")
        ledger = tmp_path / "ledger"
        ranks = start_ranks(config, f"train.max_samples={m}", log_path=tmp_path / "run.log",
                            ledger=ledger)
        try:
            wait_until(lambda: ledger_size(ledger) > 1000, 120, "training to start")
            own.stop()
            time.sleep(3)
            own.start()
            assert ranks.wait(240) == 0
            assert producer.wait(120) == 0
        finally:
            ranks.stop()
            producer.stop()
    ids = read_ledger(ledger)
    assert len(ids) == m and sorted(ids) == produced_ids(m)


def test_poison_messages_go_to_the_dead_letter_topic_and_training_goes_on(broker, topic,
                                                                           tmp_path):
    import numpy as np

    from examples.mlp.model import MLPRegression
    from examples.mlp.producer import generate
    from streams.codecs import RecordCodec
    from streams.pulsar.producer import PartitionedProducer
    from streams.pulsar.pulsar_source import message_position
    from streams.pulsar.topics import dead_letter_topic

    good_count = 16000
    config = write_config(tmp_path, broker.url, topic)
    schema = MLPRegression(inputs=16).schema
    codec = RecordCodec(schema)
    rows = np.concatenate([next(generate(schema, chunk=good_count))])
    good = codec.encode_many(rows)
    nan_row, inf_row = rows[:1].copy(), rows[:1].copy()
    nan_row["x"][0, 3] = np.nan
    inf_row["y"][0] = np.inf
    kinds = {
        "truncated": lambda i: good[i][:-3],
        "padded": lambda i: good[i] + b"\0\0",
        "empty": lambda i: b"",
        "nan": lambda i: codec.encode_many(nan_row)[0],
        "inf": lambda i: codec.encode_many(inf_row)[0],
    }
    rng = random.Random(3)
    client = pulsar.Client(broker.url)
    producer = PartitionedProducer(client, topic, 4)
    bad_sent = 0
    for i, payload in enumerate(good):
        producer.send(payload, key=int(rows["id"][i]))
        # ~5% of all messages are bad, mixed in everywhere but the stream's tail
        if i < good_count * 0.9 and rng.random() < 0.058:
            kind = rng.choice(sorted(kinds))
            producer.send(kinds[kind](i), partition=rng.randrange(4))
            bad_sent += 1
    producer.close()
    assert 0.04 < bad_sent / (good_count + bad_sent) < 0.06

    run = run_ranks(config, f"train.max_samples={good_count}")
    assert run.returncode == 0
    rejected = sum(sum(s["rejected"].values()) for s in run.summaries.values())
    assert rejected == bad_sent

    reader = client.subscribe(dead_letter_topic(topic), "test-dlq",
                              initial_position=pulsar.InitialPosition.Earliest)
    reasons = {}  # by message id: pulsar-lite redelivers duplicates to a lagging consumer
    try:
        while True:
            message = reader.receive(timeout_millis=3000)
            reasons[message_position(message.message_id())] = message.properties()["reason"]
            reader.acknowledge(message)
    except pulsar.Timeout:
        pass
    client.close()
    assert len(reasons) == bad_sent
    assert {r.split(":")[0] for r in reasons.values()} == {
        "wrong size", "non-finite value (NaN or inf) in a float field"}
    losses = run.losses()
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 / 2, "the model still learns"
