"""Local SGD (`train.sync_every = 4`) on two real Horovod ranks: each sample is trained once,
also across a kill -9 and a resume, and the ranks end with equal weights."""

import random
import time

import pytest

from tests.integration.harness import (
    kill_a_rank_mid_stream,
    ledger_size,
    newest_checkpoint_step,
    produced_ids,
    read_ledger,
    run_ranks,
    start_producer,
    start_ranks,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

K = 4


def test_local_sgd_survives_kill_9_exactly_once_and_ends_in_sync(broker, topic, tmp_path):
    m = 12000
    config = write_config(tmp_path, broker.url, topic,
                          extra="[checkpoint]\nevery_steps = 6\n")
    settings = (f"train.max_samples={m}", f"train.sync_every={K}")
    first = tmp_path / "ledger-1"
    ranks = start_ranks(config, *settings, log_path=tmp_path / "run1.log",
                        ledger=first)
    try:
        ranks.wait_for_ranks_stepping(2)
        producer = start_producer(config, m, rate=3000, log_path=tmp_path / "producer.log")
        wait_until(lambda: ledger_size(first) > 1500, 120, "training to start")
        time.sleep(random.uniform(0.2, 1.5))
        kill_a_rank_mid_stream(ranks, producer)
    finally:
        ranks.stop()
    resumed_from = newest_checkpoint_step(tmp_path)
    assert resumed_from % K == 0, "checkpoints are taken at averaging steps only"
    second = tmp_path / "ledger-2"
    run = run_ranks(config, *settings, ledger=second)
    producer.wait(60)
    assert run.returncode == 0, run.output[-3000:]
    assert f"resuming from step {resumed_from}" in run.output
    ids = read_ledger(first, up_to_step=resumed_from) + read_ledger(second)
    assert len(ids) == m and sorted(ids) == produced_ids(m)
    summaries = run.summaries
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    assert summaries[0]["samples_total"] == summaries[1]["samples_total"] == m
    losses = run.losses()
    assert len(losses) > 5
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, "prequential loss falls"
