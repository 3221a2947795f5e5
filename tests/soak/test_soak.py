"""The randomized fault soak, shortened for CI: `python -m benchmarks.soak --minutes 3` with a
fixed seed (its first faults: kill -9 of a rank, a broker restart, a 10x burst), the producer
live throughout. Every check of benchmarks/soak/check.py holds, every fault recovered, no
process or port is left, and the report is printed (README "Soak" has a 60-minute run)."""

import json
import subprocess
import sys

import pytest

from tests.integration.harness import REPO

pytestmark = [pytest.mark.integration, pytest.mark.soak]

SEED = 31
MINUTES = 3


@pytest.mark.timeout(1200)
def test_a_seeded_fault_schedule_on_live_streams_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--minutes", str(MINUTES),
                           "--seed", str(SEED), "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=1100)
    report_lines = [line for line in done.stdout.splitlines()
                    if line.startswith(("soak", "|", "labelled", "join", "exit", "not_",
                                        "stream", "left"))]
    print("\n".join(report_lines))
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["faults"]) >= 2, "the schedule ran"
    assert report["results"]["labelled"]["ok"], report["results"]["labelled"]
    assert report["results"]["join"]["ok"], report["results"]["join"]
    assert report["not_recovered"] == [] and report["leftovers"] == []
    assert set(report["exit_codes"].values()) == {0}
    assert report["ok"] and done.returncode == 0
