"""TF-Serving versions from a real 2-rank run: a reader polling the model base path during
training loads every version it sees (never a partial one); a restart removes the versions
its checkpoint rolled back and goes on writing newer ones."""

import shutil
import threading
import time

import pytest

from hvd_online.observers.serving import versions
from hvd_online.state.checkpoint import load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout
from tests.integration.harness import produce_from, run_ranks, write_config

pytestmark = pytest.mark.integration
M = 40000


class Poller(threading.Thread):
    """What TF-Serving does: list the base path, load each new numbered directory."""

    def __init__(self, base):
        super().__init__(daemon=True)
        self.base, self.loaded, self.failures = base, [], []
        self.done = threading.Event()

    def run(self):
        import numpy as np
        import tensorflow as tf

        while not self.done.is_set():
            for version in versions(self.base):
                if version in self.loaded:
                    continue
                try:
                    signature = tf.saved_model.load(str(self.base / str(version))) \
                        .signatures["serving_default"]
                    out = next(iter(signature(x=tf.zeros((2, 16))).values())).numpy()
                    assert out.shape == (2, 1) and np.isfinite(out).all()
                    self.loaded.append(version)
                except FileNotFoundError:
                    pass  # pruned between listing and loading: gone whole, not half
                except Exception as err:  # noqa: BLE001 - recorded, asserted below
                    self.failures.append((version, repr(err)))
            time.sleep(0.05)


def test_versions_appear_whole_and_a_restart_reconciles_them(broker, topic, tmp_path):
    config = write_config(tmp_path, broker.url, topic, extra="")
    config.write_text(config.read_text() + "[serving]\nexport_every_s = 0.5\nkeep = 4\n"
                      "[checkpoint]\nevery_steps = 40\n")
    assert produce_from(config, M) == M
    layout = RunLayout(tmp_path / "run")
    base = layout.serving("model")
    poller = Poller(base)
    poller.start()
    run = run_ranks(config, f"train.max_samples={M // 2}", "window.batch_size=32")
    poller.done.set()
    poller.join()
    assert run.returncode == 0
    assert not poller.failures, poller.failures
    assert len(poller.loaded) >= 3, "versions every 0.5 s while training"
    on_disk = versions(base)
    assert len(on_disk) <= 4
    last_checkpoint = load_latest_checkpoint(layout.checkpoints)
    assert on_disk[-1] == last_checkpoint.state.step, "the final checkpoint's version"

    # as if a kill -9 came after a version newer than the last checkpoint
    rolled_back = on_disk[-1] + 7
    shutil.copytree(base / str(on_disk[-1]), base / str(rolled_back))
    second = run_ranks(config, f"train.max_samples={M}", "window.batch_size=32")
    assert second.returncode == 0
    assert f"removed versions [{rolled_back}]" in second.output
    after = versions(base)
    assert after[-1] == load_latest_checkpoint(layout.checkpoints).state.step > rolled_back
    assert all(v > on_disk[-1] for v in after[1:]), "new versions written after the resume"
