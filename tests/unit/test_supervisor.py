"""The supervisor of `hvd-online run --hosts`, with stand-in launches (small real processes)
and a scripted probe in place of ssh ports."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from hvd_online.commands import supervisor
from hvd_online.commands.supervisor import HostSlots, Supervisor, parse_hosts

#: a launch that runs until kill -15, then exits 0 (as ranks do after their checkpoint)
RUNS = ("import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "time.sleep(60)\n")


#: a stand-in horovodrun: one rank as its child (HOROVOD_RANK in its environment, like a rank
#: on this machine); kill -15 to the rank ends both with 0, kill -15 to horovodrun itself ends
#: it with 1 (the real one leaves the ranks behind ssh with exit 255, no checkpoint)
HOROVODRUN = ("import os, signal, subprocess, sys\n"
              "rank = subprocess.Popen([sys.executable, '-c', " + repr(RUNS + "# hvd_online.cli")
              + "], env={**os.environ, 'HOROVOD_RANK': '0'})\n"
              "signal.signal(signal.SIGTERM, lambda *_: (rank.kill(), sys.exit(1)))\n"
              "sys.exit(rank.wait())\n")


@pytest.fixture(autouse=True)
def fast_probes(monkeypatch):
    monkeypatch.setattr(supervisor, "PROBE_S", 0.05)


def catches_sigterm(pid: int) -> bool:
    """The process has a kill -15 handler in place (its caught-signals mask says so)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def wait_for_launch(script, number: int = 1, catching: bool = True) -> None:
    """Until launch `number` runs and, `catching`, it and the rank it started (if any) have
    their kill -15 handlers in place."""
    def ready() -> bool:
        if len(script.processes) < number:
            return False
        launch = script.processes[number - 1]
        if not catching:
            return True
        # the launcher first: it installs its handler after starting its rank, so once it
        # catches, its rank (if any) is among its children
        if not catches_sigterm(launch.pid):
            return False
        try:
            ranks = psutil.Process(launch.pid).children()
        except psutil.Error:  # it ended already
            return False
        return all(catches_sigterm(r.pid) for r in ranks)

    deadline = time.monotonic() + 30
    while not ready():
        assert time.monotonic() < deadline, "the launch never got its kill -15 handler"
        time.sleep(0.01)


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


class Script:
    """Records every launch; `answering` is what the probe says about each host."""

    def __init__(self, hosts: str, codes: list[str]) -> None:
        self.hosts = parse_hosts(hosts)
        self.answering = {h.host: True for h in self.hosts}
        self.codes = codes
        self.launches: list[list[str]] = []
        self.processes: list[subprocess.Popen] = []

    def launch(self, hosts: list[HostSlots], number: int, go=None) -> subprocess.Popen:
        assert number == len(self.launches) + 1
        self.launches.append([str(h) for h in hosts])
        process = python(self.codes[min(len(self.launches), len(self.codes)) - 1])
        self.processes.append(process)
        return process

    def probe(self, host: str, port: int) -> bool:
        assert port == 22
        return self.answering[host]

    def supervisor(self, max_restarts: int) -> Supervisor:
        return Supervisor(self.hosts, self.launch, max_restarts, probe=self.probe)


def test_parse_hosts():
    assert parse_hosts("a:2, b") == [HostSlots("a", 2), HostSlots("b", 1)]
    assert str(HostSlots("a", 2)) == "a:2"
    for bad in ("", "a:x", ":2", "a:0", "a:-1"):
        with pytest.raises(ValueError, match="--hosts"):
            parse_hosts(bad)


def test_a_finished_launch_is_not_relaunched():
    script = Script("a:1,b:1", ["raise SystemExit(0)"])
    assert script.supervisor(3).run() == 0
    assert script.launches == [["a:1", "b:1"]]


def test_failures_are_relaunched_up_to_max_restarts_then_the_code_is_returned(caplog):
    script = Script("a:1,b:1", ["raise SystemExit(7)"])
    assert script.supervisor(2).run() == 7
    assert len(script.launches) == 3
    assert "gave up after 2 restart(s) in a row" in caplog.text


def test_one_failure_then_success():
    script = Script("a:1", ["raise SystemExit(1)", "raise SystemExit(0)"])
    assert script.supervisor(1).run() == 0
    assert len(script.launches) == 2


def test_a_lost_host_stops_the_launch_and_the_next_runs_without_it(caplog):
    script = Script("a:1,b:2", [RUNS, "raise SystemExit(0)"])
    watched = script.supervisor(3)

    def cut_b_once_running():
        wait_for_launch(script)
        script.answering["b"] = False

    threading.Thread(target=cut_b_once_running, daemon=True).start()
    assert watched.run() == 0
    assert script.launches == [["a:1", "b:2"], ["a:1"]]
    assert script.processes[0].returncode is not None
    assert "host b lost" in caplog.text
    assert "hosts lost: b" in caplog.text


def test_no_host_answering_exits_non_zero_naming_them(caplog):
    script = Script("a:1,b:1", [RUNS])
    script.answering.update(a=False, b=False)
    assert script.supervisor(3).run() == 1
    assert script.launches == []
    assert "no host answers on ssh port 22: a, b" in caplog.text


def test_a_host_that_comes_back_is_taken_back_without_counting_a_restart(caplog):
    script = Script("a:1,b:1", [RUNS, "raise SystemExit(0)"])
    script.answering["b"] = False

    def b_back_once_running():
        wait_for_launch(script)
        script.answering["b"] = True

    threading.Thread(target=b_back_once_running, daemon=True).start()
    assert script.supervisor(0).run() == 0  # max_restarts 0: the relaunch was no failure
    assert script.launches == [["a:1"], ["a:1", "b:1"]]
    assert script.processes[0].returncode == 0, "kill -15: the ranks checkpoint and exit 0"
    assert "host b answers again" in caplog.text


def test_stop_ends_the_current_launch_without_relaunch():
    script = Script("a:1", [RUNS])
    watched = script.supervisor(3)

    def stop_once_running():
        wait_for_launch(script)
        watched.stop()

    threading.Thread(target=stop_once_running, daemon=True).start()
    assert watched.run() == 0
    assert len(script.launches) == 1


def test_stop_and_taking_a_host_back_go_through_a_rank_not_horovodrun():
    """kill -15 reaches a rank on this machine (the documented stop path: every rank
    checkpoints and exits 0), so the launch ends 0 both times and nothing counts as failed."""
    script = Script("a:1,b:1", [HOROVODRUN])
    script.answering["b"] = False
    watched = script.supervisor(0)

    def b_back_then_stop():
        wait_for_launch(script)
        script.answering["b"] = True
        wait_for_launch(script, number=2)
        watched.stop()

    threading.Thread(target=b_back_then_stop, daemon=True).start()
    code = watched.run()
    assert code == 0, (code, [p.returncode for p in script.processes])
    assert script.launches == [["a:1"], ["a:1", "b:1"]]
    assert [p.returncode for p in script.processes] == [0, 0]


def test_a_planned_relaunch_never_counts_against_max_restarts(caplog):
    """Even when the launch taken down for a returning host does not end cleanly."""
    script = Script("a:1,b:1", ["import time; time.sleep(60)", "raise SystemExit(0)"])
    script.answering["b"] = False

    def b_back_once_running():
        wait_for_launch(script, catching=False)
        script.answering["b"] = True

    threading.Thread(target=b_back_once_running, daemon=True).start()
    assert script.supervisor(0).run() == 0
    assert script.launches == [["a:1"], ["a:1", "b:1"]]
    assert script.processes[0].returncode != 0
    assert "gave up" not in caplog.text


def test_a_launch_on_this_machine_only_leaves_out_the_network_interface():
    from hvd_online.commands.run import RankPlan

    plan = RankPlan(parse_hosts("localhost:2,203.0.113.7:1"), 3, network_interface="eth0",
                    ssh_port=2222)
    assert plan.options_for(parse_hosts("203.0.113.7:1")) == [
        "--network-interface", "eth0", "--ssh-port", "2222"]
    assert plan.options_for(parse_hosts("localhost:2")) == ["--ssh-port", "2222"]


def test_hosts_elsewhere_need_a_broker_url(tmp_path, caplog):
    from hvd_online.cli import main

    config = tmp_path / "config.toml"
    config.write_text('[model]\ntemplate = "x.py:T"\n[stream]\ntopic = "t"\n')
    refused = supervisor.CONFIG_ERROR_EXIT
    assert main(["run", str(config), "--hosts", "203.0.113.7:1"]) == refused
    assert "--hosts on other machines needs --url" in caplog.text
    bad_slots = ["run", str(config), "--hosts", "203.0.113.7:x", "--url", "pulsar://h:1"]
    assert main(bad_slots) == refused
    assert "is not HOST or HOST:SLOTS" in caplog.text


def test_a_launch_that_refused_its_config_is_not_relaunched(tmp_path, caplog):
    marker = tmp_path / "config-error.txt"
    # a rank finds its config wrong once running: it says so in the run directory, exits 1
    script = Script("a:1,b:1", [f"open({str(marker)!r}, 'w').write('topic has 1 partition(s) "
                                "but 2 ranks')\nraise SystemExit(1)"])
    watched = Supervisor(script.hosts, script.launch, 3, probe=script.probe,
                         config_error=lambda: marker.read_text() if marker.exists() else None)
    assert watched.run() == supervisor.CONFIG_ERROR_EXIT
    assert len(script.launches) == 1, "a relaunch would fail the same way"
    assert "training refused its config" in caplog.text and "2 ranks" in caplog.text
    # a failure without a config error is still relaunched
    marker.unlink()
    script = Script("a:1", ["raise SystemExit(1)", "raise SystemExit(0)"])
    watched = Supervisor(script.hosts, script.launch, 3, probe=script.probe,
                         config_error=lambda: marker.read_text() if marker.exists() else None)
    assert watched.run() == 0 and len(script.launches) == 2
