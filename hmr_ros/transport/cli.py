"""Command-line options shared by every ``hmr-ros`` command that joins the ROS 2 graph."""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

__all__ = ["add_transport_arguments", "open_cli_transport"]


def add_transport_arguments(parser: argparse.ArgumentParser, default: str = "dds") -> None:
    """Options shared by every command that joins the ROS 2 graph."""
    g = parser.add_argument_group("transport")
    g.add_argument("--transport", choices=("auto", "rclpy", "dds"), default=default,
                   help=f"rclpy, dds (built-in, no ROS install needed) or auto (default {default})")
    g.add_argument("--domain-id", type=int, default=None,
                   help="ROS domain id (default: $ROS_DOMAIN_ID, else 0)")
    g.add_argument("--ros-distro", default=None,
                   help="graph layout of the peers: humble, iron, jazzy, ... "
                        "(default: $ROS_DISTRO, else jazzy)")
    g.add_argument("--loopback", action="store_true",
                   help="built-in transport only: stay on 127.0.0.1 (no multicast)")
    g.add_argument("--node-name", default=None, help="node name on the graph")


def open_cli_transport(args: argparse.Namespace, default_name: str, namespace: str = "",
                       parameters: Optional[Dict[str, Any]] = None) -> Any:
    """The transport the options of `add_transport_arguments` ask for."""
    from . import open_transport
    from .dds import loopback_config

    options: Dict[str, Any] = {}
    if args.transport != "rclpy":
        options = {"domain_id": args.domain_id, "ros_distro": args.ros_distro}
        if args.loopback:
            options["config"] = loopback_config()
    if args.transport == "auto" and options:
        from .rclpy_transport import rclpy_available

        if rclpy_available():
            options = {}
    return open_transport(args.transport, args.node_name or default_name, namespace,
                          parameters=parameters, **options)
