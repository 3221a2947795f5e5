"""The run directory's disk fills up mid-run (a small tmpfs): the checkpoint write fails with
a clear error, leaves nothing half-written, and the previous checkpoint stays intact and
usable. Training goes on (the documented choice: README "Across hosts"), but nothing after
the last durable checkpoint is acknowledged, so a kill -9 on the full disk and a resume
still train every sample exactly once."""

import os
import subprocess
import time

import pytest

from hvd_online.state.checkpoint import list_checkpoints, load_latest_checkpoint
from tests.integration.harness import (
    kill_a_rank_mid_stream,
    ledger_size,
    produced_ids,
    read_ledger,
    run_ranks,
    start_producer,
    start_ranks,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path):
    """tmp_path/run on an 8 MiB tmpfs of its own."""
    run = tmp_path / "run"
    run.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(run)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield run
    finally:
        subprocess.run(["umount", "-l", str(run)], check=False)


def fill(directory) -> int:
    """Write a file until the disk refuses; its size."""
    written = 0
    try:
        with open(directory / "filler", "wb", buffering=0) as f:
            while True:
                written += f.write(b"\0" * 65536)
    except OSError:
        pass
    return written


def test_a_full_disk_fails_the_checkpoint_cleanly_and_loses_nothing(broker, topic, tmp_path,
                                                                    small_disk):
    m = 30000
    config = write_config(tmp_path, broker.url, topic,
                          extra="[checkpoint]\nevery_steps = 10\n[serving]\nexport_every_s = 0\n")
    first = tmp_path / "ledger-1"
    ranks = start_ranks(config, f"train.max_samples={m}", log_path=tmp_path / "run1.log",
                        ledger=first)
    try:
        ranks.wait_for_ranks_stepping(2)
        producer = start_producer(config, m, rate=2000, log_path=tmp_path / "producer.log")
        wait_until(lambda: list_checkpoints(small_disk / "checkpoints"), 120, "a checkpoint")
        assert fill(small_disk) > 0
        full_at = time.monotonic()
        wait_until(lambda: "CHECKPOINT FAILED" in ranks.output, 60, "a checkpoint to fail")
        print(f"disk full -> checkpoint failure reported: {time.monotonic() - full_at:.1f} s")
        durable = load_latest_checkpoint(small_disk / "checkpoints")
        assert durable is not None and durable.skipped_newer == 0
        trained = ledger_size(first)
        wait_until(lambda: ledger_size(first) > trained + 2000, 60, "training to go on")
        assert "No space left on device" in ranks.output
        assert not list((small_disk / "checkpoints").glob(".*tmp*")), "no half-written dir"
        after = load_latest_checkpoint(small_disk / "checkpoints")
        assert after is not None and after.state.step == durable.state.step
        kill_a_rank_mid_stream(ranks, producer)
    finally:
        ranks.stop()
    (small_disk / "filler").unlink()
    second = tmp_path / "ledger-2"
    run = run_ranks(config, f"train.max_samples={m}", ledger=second)
    producer.wait(60)
    assert run.returncode == 0, run.output[-3000:]
    assert f"resuming from step {durable.state.step}" in run.output
    ids = read_ledger(first, up_to_step=durable.state.step) + read_ledger(second)
    assert len(ids) == m and sorted(ids) == produced_ids(m)


def test_a_stop_whose_checkpoint_fails_exits_non_zero(broker, topic, tmp_path, small_disk):
    config = write_config(tmp_path, broker.url, topic, extra="[serving]\nexport_every_s = 0\n")
    ranks = start_ranks(config, "train.max_samples=2000", log_path=tmp_path / "run.log")
    ranks.wait_for_ranks_stepping(2)
    assert fill(small_disk) > 0  # the final checkpoint cannot be written
    producer = start_producer(config, 2000, rate=0, log_path=tmp_path / "producer.log")
    try:
        assert ranks.wait(120) != 0
    finally:
        ranks.stop()
    producer.wait(60)
    assert "stopped (max_samples) without a final checkpoint" in ranks.output
    assert not list_checkpoints(small_disk / "checkpoints")
