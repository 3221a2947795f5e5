"""`hvd-online run`: everything on one machine with one command.

Starts the embedded broker (unless a URL is configured), publishes the config's [produce]
stream concurrently, and runs `horovodrun -np N` training against it; stops the broker at
the end. Exit status is training's.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from hvd_online.config import Config
from hvd_online.layout import RunLayout
from streams.broker import EmbeddedBroker
from streams.lifetime import die_with_parent

log = logging.getLogger(__name__)


def horovodrun_command(num_proc: int, rank_argv: list[str]) -> list[str]:
    horovodrun = str(Path(sys.executable).with_name("horovodrun"))
    return [horovodrun, "-np", str(num_proc), "-H", f"localhost:{num_proc}", "--gloo",
            sys.executable, "-m", "hvd_online.cli", *rank_argv]


def run_command(config_path: str, overrides: list[str], config: Config, num_proc: int,
                produce: bool = True) -> int:
    with ExitStack() as stack:
        url = config.stream.url
        if not url:
            broker = EmbeddedBroker(RunLayout.of(config).broker_data,
                                    port=config.stream.embedded_port)
            stack.enter_context(broker)
            url = broker.url
            log.info("embedded pulsar-lite broker at %s", url)
        common = [config_path, *[a for o in overrides for a in ("--set", o)], "--url", url]
        producer = None
        if produce and config.produce.generator:
            producer = subprocess.Popen([sys.executable, "-m", "hvd_online.cli", "produce",
                                         *common], preexec_fn=die_with_parent())
            stack.callback(_stop, producer)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log.info("starting %d ranks: horovodrun -np %d", num_proc, num_proc)
        # horovodrun's own middlemen end the ranks when horovodrun ends
        ranks = subprocess.Popen(horovodrun_command(num_proc, ["train", *common]), env=env,
                                 preexec_fn=die_with_parent())
        stack.callback(_stop, ranks)
        # kill -15 on this command reaches the ranks (they checkpoint, then exit 0); the
        # broker is stopped on the way out
        signal.signal(signal.SIGTERM, lambda *_: ranks.send_signal(signal.SIGTERM))
        code = ranks.wait()
        if producer is not None and producer.poll() is None and code == 0:
            producer.wait()
        if producer is not None and producer.returncode not in (0, None):
            log.error("producer exited with %s", producer.returncode)
            code = code or 1
        log.info("training exited with %d", code)
        return code
    return 1


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
