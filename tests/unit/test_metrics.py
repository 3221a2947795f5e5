"""RunMetrics: step reports in, Prometheus text out (parsed back with Prometheus' parser)."""

from prometheus_client.parser import text_string_to_metric_families

from console.metrics import RunMetrics
from hvd_online.training.reports import StepReport


def values(metrics: RunMetrics) -> dict[tuple, float]:
    text = metrics.render().decode()
    return {(s.name, *sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def report(step: int, samples: int, **extra) -> dict:
    return StepReport(step=step, count=32, samples_total=samples, loss=0.5, metric=0.1,
                      applied=True, elapsed_s=1.0, samples_per_s=32.0, **extra).as_json()


def test_counters_follow_running_totals_and_never_go_down():
    metrics = RunMetrics(serving_version=lambda: 3)
    metrics.observe(report(10, 320, rejected_by_reason={"wrong size": 2}, duplicates_total=5))
    metrics.observe(report(11, 352, rejected_by_reason={"wrong size": 3, "other": 1},
                           duplicates_total=5, drift=True, drift_action="boost"))
    seen = values(metrics)
    assert seen[("hvd_online_samples_total",)] == 352
    assert seen[("hvd_online_steps_total",)] == 11
    assert seen[("hvd_online_dead_letters_total", ("reason", "wrong size"))] == 3
    assert seen[("hvd_online_dead_letters_total", ("reason", "other"))] == 1
    assert seen[("hvd_online_duplicates_dropped_total",)] == 5
    assert seen[("hvd_online_drift_events_total", ("action", "detected"))] == 1
    assert seen[("hvd_online_drift_events_total", ("action", "boost"))] == 1
    assert seen[("hvd_online_serving_version",)] == 3
    assert seen[("hvd_online_checkpoint_age_seconds",)] == -1
    # a resume from an older checkpoint reports smaller totals: counters hold, then go on
    metrics.observe(report(8, 256, checkpoint="/runs/ckpt-8"))
    metrics.observe(report(12, 400))
    seen = values(metrics)
    assert seen[("hvd_online_samples_total",)] == 400
    assert seen[("hvd_online_steps_total",)] == 12
    assert 0 <= seen[("hvd_online_checkpoint_age_seconds",)] < 5
    assert seen[("hvd_online_loss",)] == 0.5


def test_join_figures_become_gauges_and_counters():
    metrics = RunMetrics(serving_version=lambda: 0)
    join = {"step": {"joined": 10.0, "expired": 1.0, "predictions": 12.0},
            "pending": {"events": 7.0, "labels": 2.0}, "totals": {"late_events": 4.0},
            "label_delays": {"le_0.1s": 3.0}}
    metrics.observe(report(1, 32, join=join))
    metrics.observe(report(2, 64, join={**join, "step": {**join["step"], "joined": 5.0},
                                        "pending": {"events": 3.0, "labels": 2.0},
                                        "totals": {"late_events": 6.0}}))
    seen = values(metrics)
    assert seen[("hvd_online_join_joined_total",)] == 15  # per-step counts add up
    assert seen[("hvd_online_join_late_events_total",)] == 6  # running totals follow
    assert seen[("hvd_online_join_pending_events",)] == 3
    assert not any("le_0.1s" in name for name, *_ in seen)


def test_partition_gauges_use_base_units():
    metrics = RunMetrics(serving_version=lambda: 0)
    metrics.observe(report(1, 32, partition_backlog=[4, 0], partition_lag_ms=[2500, 0]))
    seen = values(metrics)
    assert seen[("hvd_online_partition_lag_seconds", ("partition", "0"))] == 2.5
    assert seen[("hvd_online_partition_backlog_messages", ("partition", "1"))] == 0


def test_dynamic_tables_become_labelled_gauges_and_counters():
    metrics = RunMetrics(serving_version=lambda: 0)
    counts = {"size": 10, "capacity": 50, "inserts": 12, "evictions": 2, "default_hits": 5,
              "full": 0}
    metrics.observe(report(1, 32, tables={"user": counts}))
    metrics.observe(report(2, 64, tables={"user": {**counts, "size": 11, "inserts": 14}}))
    seen = values(metrics)
    assert seen[("hvd_online_table_rows", ("table", "user"))] == 11
    assert seen[("hvd_online_table_capacity_rows", ("table", "user"))] == 50
    assert seen[("hvd_online_table_inserts_total", ("table", "user"))] == 14  # running totals
    assert seen[("hvd_online_table_evictions_total", ("table", "user"))] == 2
