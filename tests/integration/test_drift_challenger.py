"""kill -9 while a drift challenger is running (horovodrun -np 2, real broker): the restart
brings the challenger back from the checkpoint on both ranks, it goes on to replace the model,
and the sample ledger shows every sample trained exactly once."""

import re
import time

import pytest

from hvd_online.state.checkpoint import load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from tests.integration.harness import (
    kill_a_rank_mid_stream,
    read_ledger,
    run_ranks,
    start_producer,
    start_ranks,
    wait_until,
    write_drift_config,
)

pytestmark = pytest.mark.integration

M = 14000
DRIFT_AT = 4000


def step_of(pattern: str, text: str) -> int | None:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else None


def test_kill_9_while_a_challenger_runs_restores_it_and_keeps_exactly_once(broker, topic,
                                                                          tmp_path):
    config = write_drift_config(tmp_path, broker.url, topic)
    first, second = tmp_path / "ledger-1", tmp_path / "ledger-2"
    ranks = start_ranks(config, f"train.max_samples={M}", log_path=tmp_path / "run1.log",
                        ledger=first)
    try:
        ranks.wait_for_ranks_stepping(2)
        producer = start_producer(config, M, rate=1500, log_path=tmp_path / "producer.log")

        def checkpoint_with_challenger() -> bool:
            started = step_of(r"drift response at step (\d+): challenger model started",
                              ranks.output)
            saved = [int(s) for s in re.findall(r"checkpoint step (\d+)", ranks.output)]
            return started is not None and any(s > started for s in saved)

        wait_until(checkpoint_with_challenger, 120, "a checkpoint while a challenger runs")
        assert "challenger promoted" not in ranks.output
        kill_a_rank_mid_stream(ranks, producer)
    finally:
        ranks.stop()
    started_at = time.monotonic()
    assert "challenger promoted" not in ranks.output, "the kill came before the promotion"
    checkpoint = load_latest_checkpoint(RunLayout(tmp_path / "run").checkpoints)
    assert checkpoint is not None and checkpoint.state.operators["drift"]["trial"] is not None
    assert set(checkpoint.extra) == {"drift.weights", "drift.optimizer"}

    second_run = run_ranks(config, f"train.max_samples={M}", ledger=second, timeout=240)
    assert producer.wait(60) == 0
    assert second_run.returncode == 0
    resumed_from = checkpoint.state.step
    assert f"resuming from step {resumed_from}" in second_run.output, "mid-challenge"

    summaries = second_run.summaries
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    assert summaries[0]["drift_events"] == summaries[1]["drift_events"], "every rank acts alike"
    actions = [action for _, _, action in summaries[0]["drift_events"] if action]
    assert actions[0] == "promoted", "the restored challenger won (no new one was started)"
    print(f"restart to the end of the run: {time.monotonic() - started_at:.1f} s; "
          f"events after resume: {summaries[0]['drift_events']}")

    ids = read_ledger(first, up_to_step=resumed_from) + read_ledger(second)
    assert len(ids) == M and sorted(ids) == list(range(M))
