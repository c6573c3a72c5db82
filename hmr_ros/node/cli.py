"""``hmr-ros node``: the node without ``ros2 launch`` (built-in transport by default, or rclpy).

Parameters come from a ROS 2 parameter file (``--params``, the same YAML ``ros2 launch`` uses)
and ``-p name:=value`` overrides. The node is configured and activated at start, and shuts
down cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Any, Dict

__all__ = ["add_node_arguments", "run_node", "parse_overrides"]


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    from hmr_ros.bag.cli import add_transport_arguments

    parser.add_argument("--params", default=None, metavar="YAML",
                        help="ROS 2 parameter file (<node>: {ros__parameters: ...} or /**)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a parameter override (YAML value syntax), repeatable")
    parser.add_argument("--namespace", default="", help="node namespace")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C / SIGTERM)")
    parser.add_argument("--print-params", action="store_true",
                        help="print the parameter table (markdown) and exit")
    add_transport_arguments(parser, default="dds")


def parse_overrides(items) -> Dict[str, Any]:
    import yaml

    values: Dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"-p expects NAME:=VALUE, got {item!r}")
        values[name.strip()] = yaml.safe_load(text) if text.strip() else ""
    return values


def run_node(args: argparse.Namespace) -> int:
    from .params import declare, markdown_table, read_params_yaml

    if args.print_params:
        print(markdown_table())
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    name = args.node_name or "hmr_node"
    values: Dict[str, Any] = read_params_yaml(args.params, name) if args.params else {}
    values.update(parse_overrides(args.param))
    args.node_name = name
    transport = _open(args, values)
    from .node import HmrNode

    node = None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        config = declare(transport)
        node = HmrNode(transport, config)
        node.configure()
        node.activate()
        end = None if args.duration is None else time.monotonic() + args.duration
        transport.spin(until=lambda: stop.is_set() or (end is not None and time.monotonic() >= end))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if node is not None:
            node.shutdown()
            snap = node.stats.snapshot()
            print(f"frames received {snap['received']}, processed {snap['processed']}, "
                  f"dropped {snap['dropped']}, skipped {sum(snap['skipped'].values())}, "
                  f"persons {snap['persons']}")
        transport.close()
    return 0


def _open(args: argparse.Namespace, values: Dict[str, Any]) -> Any:
    """The transport of ``args`` with the node's parameter values."""
    from hmr_ros.transport import open_transport
    from hmr_ros.transport.dds import loopback_config

    options: Dict[str, Any] = {}
    if args.transport != "rclpy":
        options = {"domain_id": args.domain_id, "ros_distro": args.ros_distro}
        if args.loopback:
            options["config"] = loopback_config()
    if args.transport == "auto":
        from hmr_ros.transport.rclpy_transport import rclpy_available

        if rclpy_available():
            options = {}
    return open_transport(args.transport, args.node_name, args.namespace, parameters=values,
                          **options)
