"""The console process on its own, without ranks: save/stop reach the training side through
its queue, weights through shared memory, and a console process that dies never makes the
training side wait."""

import json
import signal
import urllib.request

import numpy as np
import pytest

from hvd_online.config import load_config
from hvd_online.model.template import build_model, load_template
from hvd_online.observers.console_link import start_console
from hvd_online.state.run_dir import RunLayout
from hvd_online.sync.control import Controls, Flag
from hvd_online.training.reports import StepReport
from tests.integration.harness import REPO, wait_until

pytestmark = pytest.mark.integration


def report(step: int, **extra) -> StepReport:
    return StepReport(step=step, count=8, samples_total=8 * step, loss=0.5, metric=0.1,
                      applied=True, elapsed_s=1.0, samples_per_s=8.0, **extra)


@pytest.fixture
def link(tmp_path):
    config = load_config(REPO / "examples" / "mlp" / "config.toml",
                         ["console.port=0", "console.grpc_port=0", 'console.token="tok"',
                          f'run.dir="{tmp_path}"'])
    template = load_template(config.model.template, config.model.params)
    model = build_model(template, "")
    controls = Controls()
    started = start_console(config, RunLayout(tmp_path), controls, model.get_weights)
    started.wait_until_serving()
    yield started, controls, model
    started.close()


def post(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_controls_and_weights_cross_the_process_boundary(link):
    console, controls, model = link
    console(report(1, checkpoint="/ckpt-1"))  # publishes the weights of step 1
    predict = f"{console.url}v1/models/model:predict"
    reply = wait_until(lambda: _try(predict), 30, "the first weights in the console process")
    assert reply["model_version"] == "1"
    expected = model(np.full((1, 16), 0.1, np.float32)).numpy()
    np.testing.assert_allclose(np.asarray(reply["predictions"]), expected, rtol=1e-5)
    post(f"{console.url}api/save", {}, token="tok")
    wait_until(lambda: (console(report(2)), Flag.SAVE in controls.take())[1], 10,
               "save to come back to the training side")


def _try(url: str):
    try:
        return post(url, {"instances": [[0.1] * 16]})
    except Exception:  # noqa: BLE001 - 503 until the first weights arrive
        return None


def test_a_killed_console_is_replaced_by_its_standby_with_the_history(link, tmp_path):
    console, _, _ = link
    rows = [{"step": s, "count": 8, "elapsed_s": float(s), "time_s": 100.0 + s, "loss": 0.5}
            for s in (1, 2, 3)]  # rank 0's metrics log, as the MetricsLog observer writes it
    RunLayout(tmp_path).metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    wait_until(lambda: console.standby.ready.poll(0), 120, "the standby to be loaded")
    killed = console.active.process
    killed.kill()
    killed.join()
    assert killed.exitcode == -signal.SIGKILL
    step = iter(range(4, 100_000))
    # the training side goes on reporting; the standby takes over at a report
    wait_until(lambda: (console(report(next(step))), _status(console.url))[1], 30,
               "the standby console answering")
    assert console.takeovers == 1 and console.active.process is not killed
    history = json.loads(urllib.request.urlopen(f"{console.url}api/history").read())
    assert [p["step"] for p in history["points"]][:3] == [1, 2, 3]
    assert console.standby is not None and console.standby.process.is_alive()  # a new one


def _status(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}api/status", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_a_dead_console_process_never_blocks_training(tmp_path):
    config = load_config(REPO / "examples" / "mlp" / "config.toml",
                         ["console.port=0", "console.grpc_port=0", "console.standby=false",
                          f'run.dir="{tmp_path}"'])
    template = load_template(config.model.template, config.model.params)
    console = start_console(config, RunLayout(tmp_path), Controls(),
                            build_model(template, "").get_weights)
    console.wait_until_serving()
    assert console.standby is None
    console.active.process.kill()
    console.active.process.join()
    for step in range(1, 3001):  # more than the queue holds: the rest is dropped, not waited on
        console(report(step))
    assert console.dropped > 0
    assert console.standby is not None  # a new console process is on its way
    console.close()
    assert not console.active.process.is_alive()
