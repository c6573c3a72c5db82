"""ROS 2 transport: message types from .msg text, a one-copy CDR codec, and one `Transport`
interface with two implementations, rclpy (`RclpyTransport`) and the built-in ROS 2 transport on
cyclonedds (`DdsTransport`, wire-compatible with ROS 2 nodes, no ROS install needed).

The node imports only this package's interface: `open_transport` picks the implementation.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .interface import (QOS_DEFAULT, QOS_PRESETS, QOS_SENSOR_DATA, QOS_TRANSIENT_LOCAL, Publisher,
                        QoSProfile, Subscription, Timer, Transport, TransportError,
                        qos_from_string)
from .types import make, package_types

__all__ = [
    "QOS_DEFAULT", "QOS_PRESETS", "QOS_SENSOR_DATA", "QOS_TRANSIENT_LOCAL", "Publisher",
    "QoSProfile", "Subscription", "Timer", "Transport", "TransportError", "qos_from_string",
    "make", "package_types", "open_transport", "TRANSPORTS",
]

TRANSPORTS = ("auto", "rclpy", "dds")


def open_transport(kind: str, node_name: str, namespace: str = "", *,
                   parameters: Optional[Dict[str, Any]] = None, **options: Any) -> Transport:
    """``kind``: ``rclpy``, ``dds`` (built-in), or ``auto`` (rclpy where importable, else dds).
    ``options`` go to `DdsTransport` (domain_id, ros_distro, config)."""
    if kind not in TRANSPORTS:
        raise TransportError(f"unknown transport {kind!r}; choose one of {', '.join(TRANSPORTS)}")
    if kind == "auto":
        from .rclpy_transport import rclpy_available

        kind = "rclpy" if rclpy_available() else "dds"
    if kind == "rclpy":
        from .rclpy_transport import RclpyTransport

        # hmr-ros parses its own command line (``-p name:=value`` included): rcl gets none of it,
        # and Ctrl-C / SIGTERM stay the CLI's to handle, as on the built-in transport
        return RclpyTransport(node_name, namespace, parameters=parameters, args=[node_name],
                              signal_handlers=False)
    from .dds import DdsTransport

    return DdsTransport(node_name, namespace, parameters=parameters, **options)
