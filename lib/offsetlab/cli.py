"""The ``offsetlab`` command.

    offsetlab broker up [--kind auto|kafka|tansu|testcontainers|external] [--nodes N] [--set key=value ...]
    offsetlab run ...      the suite runner (offsetlab.lab.suite)
    offsetlab chaos ...    the bus reliability run (offsetlab.lab.chaos)
    offsetlab bench ...    bus vs the raw client under it (offsetlab.lab.bench)

Subcommands live beside what they drive; this module only wires them (imports are lazy, so
``offsetlab broker up`` does not import pandas).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

#: subcommand -> module with ``add_arguments(parser)`` and ``main(args) -> int``
SUBCOMMANDS = {
    "run": "offsetlab.lab.suite",
    "chaos": "offsetlab.lab.chaos",
    "bench": "offsetlab.lab.bench",
}


def _parse_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def broker_up(args: argparse.Namespace) -> int:
    from offsetlab.brokers import BrokerError, start_broker

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with start_broker(args.kind, settings=dict(args.set) or None,
                          bootstrap_servers=args.bootstrap_servers, port=args.port,
                          nodes=args.nodes) as broker:
            print(f"kind: {broker.kind}")
            print(f"version: {broker.version}")
            print(f"bootstrap: {broker.bootstrap_servers}")
            print(f"cold start: {broker.cold_start_s:.1f} s")
            if broker.log_path:
                print(f"log: {broker.log_path}")
            for node_id, address in getattr(broker, "addresses", {}).items():
                print(f"node {node_id}: {address} log: {broker.log_paths[node_id]}")
            print("Ctrl-C or SIGTERM stops it.", flush=True)
            while not stop.wait(0.5):
                if not broker.running:
                    print("broker (or a node of the cluster) exited on its own; see its log",
                          file=sys.stderr)
                    return 1
            print("stopping ...", flush=True)
    except (BrokerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from offsetlab.brokers import KINDS

    parser = argparse.ArgumentParser(prog="offsetlab", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    broker = sub.add_parser("broker", help="run a broker").add_subparsers(dest="action", required=True)
    up = broker.add_parser("up", help="run one broker in the foreground until Ctrl-C")
    up.add_argument("--kind", choices=KINDS, default="kafka")
    up.add_argument("--bootstrap-servers", default=None, help="for --kind external/auto")
    up.add_argument("--port", type=int, default=None, help="listener port (default: a free one)")
    up.add_argument("--nodes", type=int, default=1,
                    help="kind kafka: 3 or more starts a KRaft cluster (RF 3, min.insync.replicas 2)")
    up.add_argument("--set", type=_parse_setting, action="append", default=[], metavar="KEY=VALUE",
                    help="broker setting (kind kafka), e.g. group.initial.rebalance.delay.ms=0")
    up.set_defaults(func=broker_up)
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        p = sub.add_parser(name, help=(mod.__doc__ or "").strip().split("\n")[0])
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # the readiness probe's refused connections are expected while a broker starts
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    if args.command == "broker":
        logging.getLogger("offsetlab").setLevel(logging.INFO)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
