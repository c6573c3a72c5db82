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
from typing import Any, Dict, Optional

__all__ = ["add_node_arguments", "run_node", "parse_overrides"]


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    from hmr_ros.transport.cli import add_transport_arguments

    parser.add_argument("--params", default=None, metavar="YAML",
                        help="ROS 2 parameter file (<node>: {ros__parameters: ...} or /**)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a parameter override (YAML value syntax), repeatable")
    parser.add_argument("--namespace", default="", help="node namespace")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C / SIGTERM)")
    parser.add_argument("--print-params", action="store_true",
                        help="print the parameter table (markdown) and exit")
    parser.add_argument("--no-autostart", action="store_true",
                        help="stay unconfigured until a lifecycle manager (ros2 lifecycle set "
                             "/hmr_node configure) brings the node up")
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
    from .params import markdown_table, read_params_yaml

    if args.print_params:
        print(markdown_table())
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    name = args.node_name or "hmr_node"
    values: Dict[str, Any] = read_params_yaml(args.params, name) if args.params else {}
    values.update(parse_overrides(args.param))
    args.node_name = name
    from hmr_ros.transport.cli import open_cli_transport

    return serve(open_cli_transport(args, name, args.namespace, values), duration=args.duration,
                 autostart=not args.no_autostart)


def serve(transport: Any, *, duration: Optional[float] = None, autostart: bool = True) -> int:
    """Run the node on ``transport`` until Ctrl-C, SIGTERM or ``duration``: configured and
    activated at once (``autostart``), or, on a managed rclpy node, when a lifecycle manager
    says so (``ros2 lifecycle set /hmr_node configure``)."""
    from .node import HmrNode
    from .params import declare

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    try:
        config = declare(transport)
        node = HmrNode(transport, config)
        hooks = {"configure": node.configure, "activate": node.activate,
                 "deactivate": node.deactivate, "cleanup": node.cleanup,
                 "shutdown": node.shutdown}
        if getattr(transport, "managed", False):  # rclpy LifecycleNode: its services
            transport.set_lifecycle_hooks(hooks)
            driver = transport
        elif hasattr(transport, "create_service"):  # built-in transport: ours
            from .lifecycle import LifecycleServer

            driver = LifecycleServer(transport, node, hooks)
        else:
            driver = None
        if autostart:
            if driver is not None:
                driver.trigger("configure")
                driver.trigger("activate")
            else:
                node.configure()
                node.activate()
        end = None if duration is None else time.monotonic() + duration
        transport.spin(until=lambda: stop.is_set() or (end is not None and time.monotonic() >= end))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if node is not None:
            node.shutdown()
            snap = node.stats.snapshot()
            print(f"frames received {snap['received']}, processed {snap['processed']}, "
                  f"dropped {snap['dropped']}, skipped {sum(snap['skipped'].values())}, "
                  f"persons {snap['persons']}", flush=True)
        transport.close()
    return 0


def ros_main(argv=None) -> int:
    """``ros2 run hmr_ros hmr_node`` / launch files: ROS arguments (``--ros-args``), rclpy
    where it is importable (a managed node; ``--no-autostart``, what the launch file's
    ``autostart:=false`` passes, leaves it unconfigured for a lifecycle manager), else the
    built-in transport with the same arguments."""
    import sys

    from hmr_ros.transport import open_transport
    from hmr_ros.transport.rclpy_transport import rclpy_available

    from .ros_args import split_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    plain, ros = split_ros_args(argv)
    parser = argparse.ArgumentParser(prog="hmr_node", description="the hmr_ros node")
    parser.add_argument("--transport", choices=("auto", "rclpy", "dds"), default="auto")
    parser.add_argument("--no-autostart", action="store_true",
                        help="wait for lifecycle transitions (ros2 lifecycle set ...)")
    opts = parser.parse_args(plain)
    logging.basicConfig(level=getattr(logging, (ros.log_level or "info").upper(), logging.INFO),
                        format="[%(levelname)s] [%(name)s]: %(message)s")
    name = ros.node_name or "hmr_node"
    kind = opts.transport
    if kind == "auto":
        kind = "rclpy" if rclpy_available() else "dds"
    try:
        if kind == "rclpy":
            from hmr_ros.transport.rclpy_transport import RclpyTransport

            transport = RclpyTransport("hmr_node", args=["hmr_node", *argv], managed=True)
        else:
            transport = open_transport("dds", name, ros.namespace or "",
                                       parameters=ros.parameters_for(name), remaps=ros.remaps)
        return serve(transport, autostart=not opts.no_autostart)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"hmr_node: error: {exc}", file=sys.stderr)
        return 1
