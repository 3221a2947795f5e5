"""The quality benchmark, shortened: the drift stream published once, hvd-online (2 ranks,
each drift response) and River read it back, and the table's figures are sane. The full
table (README "Quality") comes from `python -m benchmarks.quality`."""

import json
import subprocess
import sys

import pytest

from tests.integration.harness import REPO

pytestmark = pytest.mark.integration


def test_quality_benchmark_shortened(tmp_path):
    out = tmp_path / "quality.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--quick", "--streams",
                           "drift", "--total", "30000", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    assert proc.returncode == 0
    result = json.loads(out.read_text())["results"]["drift"]
    assert result["drift_at"] == 15000 and result["total"] == 30000
    models = result["models"]
    assert set(models) == {"hvd-online (mark only)", "hvd-online boost", "hvd-online challenger",
                           "River LogisticRegression", "River HoeffdingAdaptiveTree"}
    for name, row in models.items():
        assert 0.5 < row["before"] <= 1 and 0 <= row["dip"] < row["before"], name
        assert row["samples_per_s"] > 0, name
    for name in ("hvd-online boost", "hvd-online challenger"):
        assert models[name]["before"] > 0.9, name
        assert models[name]["detected_after"] is not None, "the 90-degree turn is flagged"
        assert models[name]["to_recover"] is not None, name
    assert 0.9 < result["offline_before"] <= 1
    assert "River LogisticRegression" in proc.stdout  # the table was printed
