"""A standby launch's rank builds its model and traces its step before Horovod starts
(hvd_online/commands/train.py `start_world`), in a fresh interpreter of its own: the world
fixture of the other unit tests has Horovod started already."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: a rank of a 2-rank world, as horovodrun would start it, with a sparse-gradient model
#: (DynamicEmbedding: Horovod's grouped allreduce asks the process set's size for those)
STANDBY_RANK = """
import json, sys
import numpy as np
import horovod.tensorflow as hvd
from hvd_online.config import load_config_text
from hvd_online.sync import collectives
from hvd_online.training.trainer import prepare_training
from tests.unit.kit import Ratings

out = {}
planned = collectives.planned_world()
out["planned"] = [planned.rank, planned.size, planned.local_rank, planned.local_size]
config = load_config_text('[stream]\\ntopic = "t"\\npartitions = 2\\n', [])
template = Ratings()
try:
    prepare_training(config, template, planned.size)
    out["unguarded"] = "traced"
except ValueError as err:
    out["unguarded"] = str(err)
with collectives.tracing_before_init(planned.size):
    core = prepare_training(config, template, planned.size)
try:
    hvd.global_process_set.size()
    out["size_after"] = "answered"
except ValueError:
    out["size_after"] = "not initialised"
import os
for name in ("RANK", "SIZE", "LOCAL_RANK", "LOCAL_SIZE"):  # no horovodrun: a world of one
    del os.environ[f"HOROVOD_{name}"]
world = collectives.init_world(pinned=True)
x = np.array([[1, 2], [3, 4]], np.int64)
y = np.array([1.0, 2.0], np.float32)
for length in (3, 7):  # traced before the input was known: any stats length
    outcome = core.synchroniser.step(x, y, lambda n=length: np.ones(n, np.float32))
    out.setdefault("stats", []).append(len(outcome.summed))
out["applied"] = outcome.applied
print(json.dumps(out))
"""


def test_a_standby_rank_traces_its_step_before_horovod_starts_and_then_trains():
    env = {**os.environ, "HOROVOD_RANK": "0", "HOROVOD_SIZE": "2", "HOROVOD_LOCAL_RANK": "0",
           "HOROVOD_LOCAL_SIZE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", STANDBY_RANK], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["planned"] == [0, 2, 0, 1]
    # without the guard, Horovod 0.28.1 refuses to trace sparse gradients before init
    assert "not been initialized" in out["unguarded"].lower(), out["unguarded"]
    assert out["size_after"] == "not initialised", "the guard undid its stand-in"
    # Horovod then starts (a world of one here: horovodrun is not around) and the step that
    # was traced for two ranks runs: 3 loss/metric/count sums + the stats given
    assert out["stats"] == [6, 10]
    assert out["applied"] is True
