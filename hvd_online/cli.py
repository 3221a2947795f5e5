"""The `hvd-online` command.

    hvd-online run CONFIG -np 2        laptop: embedded broker + producer + horovodrun
    hvd-online run CONFIG --hosts a:1,b:1 --url pulsar://host:6650   across hosts, healing
    horovodrun -np N -H ... hvd-online train CONFIG --url pulsar://host:6650
    hvd-online produce CONFIG --url pulsar://host:6650 [--count N] [--rate R]
    hvd-online serve CONFIG --url pulsar://host:6650   a serving replica, apart from the job
    hvd-online export CONFIG --out model.keras [--checkpoint DIR]
    hvd-online check CONFIG            the whole config, template and schemas; no broker
    hvd-online broker --data-dir DIR [--port P]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hvd_online.config import Config, load_config
from hvd_online.config.arguments import add_config_arguments
from hvd_online.errors import CONFIG_ERROR_EXIT, ConfigError, HvdOnlineError, TemplateError
from streams.errors import AssignmentError, StreamsError

if TYPE_CHECKING:
    from hvd_online.commands.run import RankPlan

log = logging.getLogger(__name__)


def _config_args(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--url", help="Pulsar URL (stream.url); omit for the embedded broker")
    parser.add_argument("--run-dir", help="run directory (run.dir)")


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, help="window.batch_size")
    parser.add_argument("--lr", type=float, help="train.learning_rate")
    parser.add_argument("--max-samples", type=int, help="train.max_samples")
    parser.add_argument("--max-steps", type=int, help="train.max_steps")
    parser.add_argument("--idle-timeout", type=float, help="train.idle_timeout_s")
    parser.add_argument("--console-host", help="console.host (default 127.0.0.1)")
    parser.add_argument("--console-port", type=int, help="console.port")
    parser.add_argument("--no-console", action="store_true", help="console.enabled = false")


_FLAG_KEYS = {
    "url": "stream.url", "run_dir": "run.dir", "batch_size": "window.batch_size",
    "lr": "train.learning_rate", "max_samples": "train.max_samples",
    "max_steps": "train.max_steps", "idle_timeout": "train.idle_timeout_s",
    "console_host": "console.host", "console_port": "console.port",
    "rest_port": "serving.rest_port", "grpc_port": "serving.grpc_port",
    "serving_host": "serving.host", "replicas": "serving.replicas",
}


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """--set values and the named flags, as SECTION.KEY=VALUE overrides (flags win)."""
    overrides = list(args.overrides)
    for attr, key in _FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if getattr(args, "no_console", False):
        overrides.append("console.enabled=false")
    return overrides


def load_with_flags(args: argparse.Namespace) -> Config:
    return load_config(args.config, collect_overrides(args))


def rank_plan(args: argparse.Namespace, config: Config) -> RankPlan:
    from hvd_online.commands.run import RankPlan
    from hvd_online.commands.supervisor import LOCAL, parse_hosts

    if not args.hosts:
        return RankPlan.local(args.num_proc, args.max_restarts or 0)
    try:
        hosts = parse_hosts(args.hosts)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not config.stream.url and any(h.host not in LOCAL for h in hosts):
        msg = ("--hosts on other machines needs --url: a broker they all reach (e.g. "
               "`hvd-online broker --host ADDRESS` on one of them)")
        raise ConfigError(msg)
    restarts = 3 if args.max_restarts is None else args.max_restarts
    return RankPlan(hosts, restarts, args.network_interface, args.ssh_identity_file,
                    args.ssh_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hvd-online", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train on this rank (run under horovodrun)")
    _config_args(train)
    _train_args(train)

    check = sub.add_parser("check", help="check the config, template and schemas without "
                           "starting anything; print the resolved config")
    _config_args(check)
    _train_args(check)

    run = sub.add_parser("run", help="one command on one machine: embedded broker (unless "
                         "--url), the config's producer, and horovodrun -np N training")
    _config_args(run)
    _train_args(run)
    run.add_argument("-np", "--num-proc", type=int, default=2,
                     help="ranks on this machine (default 2; ignored with --hosts)")
    run.add_argument("--no-produce", action="store_true", help="do not run [produce]")
    run.add_argument("--hosts", metavar="HOST:SLOTS,...",
                     help="run ranks on these hosts over ssh, and heal: relaunch on the "
                     "hosts that answer when one is lost (README: Across hosts)")
    run.add_argument("--max-restarts", type=int,
                     help="relaunches in a row after a failure (default 3 with --hosts, "
                     "else 0)")
    run.add_argument("--network-interface", help="horovodrun --network-interface (the NIC "
                     "the ranks reach each other on, e.g. eth0)")
    run.add_argument("--ssh-identity-file", help="horovodrun --ssh-identity-file")
    run.add_argument("--ssh-port", type=int, default=22, help="hosts' ssh port (default 22)")

    run.add_argument("--replicas", type=int, help="serving replicas to start beside the "
                     "job (serving.replicas, default 1; 0: none)")

    serve = sub.add_parser("serve", help="a serving replica: TF-Serving's REST and gRPC "
                           "APIs on the newest model version, apart from the training job")
    _config_args(serve)
    serve.add_argument("--index", type=int, default=0, help="this replica's number: its "
                       "ports are serving.rest_port/grpc_port + index (default 0)")
    serve.add_argument("--serving-host", help="serving.host (default 127.0.0.1)")
    serve.add_argument("--rest-port", type=int, help="serving.rest_port (0: a free one)")
    serve.add_argument("--grpc-port", type=int, help="serving.grpc_port (0: a free one)")

    produce = sub.add_parser("produce", help="publish the config's [produce] generator")
    _config_args(produce)
    produce.add_argument("--count", type=int, help="records to send (produce.count)")
    produce.add_argument("--rate", type=float, help="records/s, 0 = unlimited (produce.rate)")

    export = sub.add_parser("export", help="write a checkpoint as .keras or SavedModel")
    _config_args(export)
    export.add_argument("--out", required=True, help="OUT.keras, or a SavedModel directory")
    export.add_argument("--checkpoint", help="checkpoint directory (default: newest valid)")

    broker = sub.add_parser("broker", help="run the embedded pulsar-lite broker in the "
                            "foreground")
    broker.add_argument("--data-dir", required=True)
    broker.add_argument("--port", type=int, default=6650)
    broker.add_argument("--host", default="127.0.0.1")
    return parser


def _check(args: argparse.Namespace) -> int:
    from hvd_online.commands.check import check_command

    return check_command(load_with_flags(args))


def _train(args: argparse.Namespace) -> int:
    from hvd_online.commands.check import check_training_config
    from hvd_online.commands.train import train_command

    config = load_with_flags(args)
    code = train_command(config, check_training_config(config))
    end_rank(code)
    return code  # not reached


def end_rank(code: int) -> None:
    """A rank that finished its work (final checkpoint, summary, everything closed) leaves
    without the interpreter's finalisation: native libraries' destructors (TensorFlow, Gloo,
    the Pulsar client) have nothing left to do there, and are where exits crash. Seen in a CI
    run: a rank wrote its final checkpoint, then died by a signal (ssh exit 255), and the
    supervisor relaunched a finished job."""
    from hvd_online.sync import collectives

    collectives.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    from hvd_online.commands.check import check_training_config
    from hvd_online.commands.run import run_command

    config = load_with_flags(args)
    plan = rank_plan(args, config)
    check_training_config(config)  # before a broker, a producer or a rank starts
    return run_command(args.config, collect_overrides(args), config, plan,
                       produce=not args.no_produce)


def _serve(args: argparse.Namespace) -> int:
    from hvd_online.commands.check import check_training_config
    from hvd_online.commands.serve import serve_command

    config = load_with_flags(args)
    check_training_config(config)  # the same template and schemas the trainer builds
    return serve_command(config, args.index)


def _produce(args: argparse.Namespace) -> int:
    from hvd_online.commands.produce import produce

    config = load_with_flags(args)
    if not config.stream.url:
        log.error("produce needs --url (or stream.url): the broker must already run")
        return 2
    produce(config, config.stream.url, args.count, args.rate)
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hvd_online.commands.export import export_model

    export_model(load_with_flags(args), Path(args.out),
                 Path(args.checkpoint) if args.checkpoint else None)
    return 0


def _broker(args: argparse.Namespace) -> int:
    import signal

    from streams.pulsar.broker import EmbeddedBroker

    # kill -15 must stop the broker child too (it runs in its own session)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.host in ("0.0.0.0", "::", ""):  # noqa: S104 - the check itself
        log.error("--host must be an address the clients can reach: pulsar-lite "
                  "advertises it to them in topic lookups")
        return 2
    with EmbeddedBroker(args.data_dir, port=args.port, host=args.host) as broker:
        print(f"pulsar-lite broker at {broker.url} (Ctrl-C stops it)", flush=True)
        while broker.process and broker.process.poll() is None:
            time.sleep(0.5)
    return 0


COMMANDS = {"check": _check, "train": _train, "run": _run, "serve": _serve,
            "produce": _produce,
            "export": _export, "broker": _broker}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The ranks and the producer run as `python -m hvd_online.cli`, with the working
    # directory first on sys.path; the `hvd-online` script is given the same path, so a
    # template's imports (`from examples.word2vec.corpus import ...`) resolve in its
    # checks as they do in the ranks.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout)
    # TensorFlow logs "Assets written to ..." at INFO for every SavedModel (each serving
    # version): the serving observer's own line says what was written
    logging.getLogger("tensorflow").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, TemplateError, AssignmentError) as err:
        # permanent: the same config fails the same way, so nobody should retry it
        log.error("config error: %s", err)
        return CONFIG_ERROR_EXIT
    except (HvdOnlineError, StreamsError) as err:
        log.error("%s", err)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
