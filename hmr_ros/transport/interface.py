"""The transport interface the node is written against, and the QoS profiles it speaks.

Two implementations: `RclpyTransport` (a normal rclpy node, where ROS 2 is installed) and
`DdsTransport` (the built-in ROS 2 transport on cyclonedds, wire-compatible with ROS 2 nodes).
Both carry the same message objects (`hmr_ros.transport.types.make`) and call callbacks from the
thread that spins them, one at a time, like rclpy's single-threaded executor.
"""

from __future__ import annotations

import abc
import logging
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional

from . import types

__all__ = [
    "QoSProfile", "QOS_DEFAULT", "QOS_SENSOR_DATA", "QOS_TRANSIENT_LOCAL", "QOS_PRESETS",
    "qos_from_string", "Publisher", "Subscription", "Timer", "Transport", "TransportError",
]


class TransportError(RuntimeError):
    """A transport that cannot be created or used (missing rclpy, bad QoS, closed transport)."""


@dataclass(frozen=True)
class QoSProfile:
    """The ROS 2 QoS policies the node uses (a subset of rclpy.qos.QoSProfile)."""

    reliability: str = "reliable"   # "reliable" | "best_effort"
    durability: str = "volatile"    # "volatile" | "transient_local"
    history: str = "keep_last"      # "keep_last" | "keep_all"
    depth: int = 10

    def __post_init__(self) -> None:
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability must be reliable or best_effort, not {self.reliability!r}")
        if self.durability not in ("volatile", "transient_local"):
            raise ValueError(f"durability must be volatile or transient_local, not {self.durability!r}")
        if self.history not in ("keep_last", "keep_all"):
            raise ValueError(f"history must be keep_last or keep_all, not {self.history!r}")
        if self.history == "keep_last" and not 1 <= int(self.depth) <= 100_000:
            raise ValueError(f"depth must be in [1, 100000] for keep_last, not {self.depth}")

    def with_overrides(self, **changes: Any) -> "QoSProfile":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def __str__(self) -> str:
        depth = f"({self.depth})" if self.history == "keep_last" else ""
        return f"{self.reliability}/{self.durability}/{self.history}{depth}"


#: rmw_qos_profile_default: reliable, volatile, keep last 10.
QOS_DEFAULT = QoSProfile()
#: rmw_qos_profile_sensor_data: best effort, volatile, keep last 5.
QOS_SENSOR_DATA = QoSProfile("best_effort", "volatile", "keep_last", 5)
#: Latched topics (faces, robot_description style): reliable, transient local, keep last 1.
QOS_TRANSIENT_LOCAL = QoSProfile("reliable", "transient_local", "keep_last", 1)
QOS_PRESETS: Dict[str, QoSProfile] = {
    "default": QOS_DEFAULT, "sensor_data": QOS_SENSOR_DATA, "transient_local": QOS_TRANSIENT_LOCAL,
}


def qos_from_string(text: str) -> QoSProfile:
    """``"sensor_data"``, ``"default"``, ``"transient_local"``, or ``"reliable,keep_last,3"``
    style comma-separated policies on top of the default profile."""
    text = text.strip()
    if text in QOS_PRESETS:
        return QOS_PRESETS[text]
    changes: Dict[str, Any] = {}
    for token in filter(None, (t.strip() for t in text.split(","))):
        if token in ("reliable", "best_effort"):
            changes["reliability"] = token
        elif token in ("volatile", "transient_local"):
            changes["durability"] = token
        elif token in ("keep_last", "keep_all"):
            changes["history"] = token
        elif token.isdigit():
            changes["depth"] = int(token)
        else:
            raise ValueError(f"unknown QoS token {token!r} in {text!r}; use a preset "
                             f"({', '.join(QOS_PRESETS)}) or reliable|best_effort, "
                             "volatile|transient_local, keep_last|keep_all, depth")
    return QOS_DEFAULT.with_overrides(**changes)


class Publisher(abc.ABC):
    """Publishes messages (or already serialised CDR bytes) of one type on one topic."""

    topic: str
    type_name: str
    qos: QoSProfile

    @abc.abstractmethod
    def publish(self, msg: Any) -> None:
        """Send ``msg`` (a message of ``type_name``, or ``bytes`` holding its CDR encoding)."""

    @abc.abstractmethod
    def subscription_count(self) -> int:
        """Readers currently matched (lets a node skip work nobody listens to)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove the publisher from the graph."""


class Subscription(abc.ABC):
    """Delivers the messages of one topic to a callback; counts what it had to drop.

    Both transports receive CDR bytes and hand them to `deliver`, which decodes defensively:
    an oversized or malformed sample, or a callback that raises, is counted and logged (the
    first few times, then every 100th), never raised into the transport's spin loop.
    """

    topic: str
    type_name: str
    qos: QoSProfile

    def _init_delivery(self, logger: Any, callback: Callable[[Any], None], raw: bool,
                       max_sample_bytes: Optional[int] = None) -> None:
        self._logger, self._callback, self._raw = logger, callback, raw
        self._max_bytes = max_sample_bytes
        self.received = 0
        self.dropped_malformed = 0
        self.dropped_oversized = 0
        self.callback_errors = 0

    def _log_drop(self, count: int, message: str) -> None:
        if count <= 5 or count % 100 == 0:
            self._logger.warning("%s (%d so far)", message, count)

    def deliver(self, data: bytes) -> None:
        """Decode one received sample (unless raw) and run the callback on it."""
        from . import cdr

        self.received += 1
        if self._max_bytes is not None and len(data) > self._max_bytes:
            self.dropped_oversized += 1
            self._log_drop(self.dropped_oversized, f"{self.topic}: dropped a {len(data)}-byte "
                                                   f"sample, over the {self._max_bytes}-byte limit")
            return
        if self._raw:
            message = data
        else:
            try:
                message = cdr.deserialize(data, self.type_name)
            except cdr.CdrError as exc:
                self.dropped_malformed += 1
                self._log_drop(self.dropped_malformed,
                               f"{self.topic}: dropped a malformed sample: {exc}")
                return
        try:
            self._callback(message)
        except Exception:  # noqa: BLE001 - a callback bug must not stop the node
            self.callback_errors += 1
            if self.callback_errors <= 5 or self.callback_errors % 100 == 0:
                self._logger.error("callback on %s raised (%d so far):\n%s", self.topic,
                                   self.callback_errors, traceback.format_exc())

    @abc.abstractmethod
    def close(self) -> None:
        """Remove the subscription from the graph."""


class Timer(abc.ABC):
    """Calls a callback periodically from the spinning thread."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop calling the callback."""


class Transport(abc.ABC):
    """A ROS 2 node's view of the middleware: endpoints, timers, logger, parameters, clock."""

    node_name: str
    namespace: str
    logger: logging.Logger

    @abc.abstractmethod
    def create_publisher(self, topic: str, type_name: str,
                         qos: QoSProfile = QOS_DEFAULT) -> Publisher:
        """A publisher; ``topic`` is resolved against the node's namespace like rclpy does."""

    @abc.abstractmethod
    def create_subscription(self, topic: str, type_name: str, callback: Callable[[Any], None],
                            qos: QoSProfile = QOS_DEFAULT, *, raw: bool = False) -> Subscription:
        """A subscription; ``raw`` hands the callback the CDR bytes instead of a message."""

    @abc.abstractmethod
    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        """A periodic timer (wall clock)."""

    @abc.abstractmethod
    def declare_parameter(self, name: str, default: Any, description: str = "") -> Any:
        """Declare a parameter and return its value (the override given at start, else
        ``default``), converted to the default's type."""

    @abc.abstractmethod
    def get_parameter(self, name: str) -> Any:
        """A declared parameter's value."""

    @abc.abstractmethod
    def now(self) -> Any:
        """The current time as a ``builtin_interfaces/msg/Time``."""

    @abc.abstractmethod
    def spin_once(self, timeout_s: float = 0.1) -> None:
        """Wait up to ``timeout_s`` for work, then run due callbacks."""

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the graph and free the middleware's resources."""

    def spin(self, until: Optional[Callable[[], bool]] = None) -> None:
        """Run callbacks until ``until()`` is true or the transport is closed."""
        while not self.closed and not (until and until()):
            self.spin_once(0.1)

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True after `close`."""

    @staticmethod
    def message(type_name: str, /, **fields: Any) -> Any:
        """A message of ``type_name`` with every field not given defaulted."""
        return types.make(type_name, **fields)

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def coerce_parameter(name: str, value: Any, default: Any) -> Any:
    """A parameter override converted to the type of its default, or a clear error."""
    if default is None or value is None:
        return value
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind in (int, float, str):
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return kind(value)
        if kind in (list, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return list(value)
    except (TypeError, ValueError):
        raise TransportError(f"parameter {name!r}: {value!r} is not a valid "
                             f"{kind.__name__} (default {default!r})") from None
    return value
