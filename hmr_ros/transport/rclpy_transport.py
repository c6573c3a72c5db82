"""The transport on rclpy, for robots with a ROS 2 install.

The node keeps its message objects (`hmr_ros.transport.types`) on both transports: here they
cross rclpy as CDR bytes, ``Publisher.publish(bytes)`` (rclpy's ``publish_raw``) out and
``create_subscription(..., raw=True)`` in, encoded by the same codec as the built-in transport.
So the node's code and its tests are the same on both, and no per-field conversion between
rclpy's generated classes and ours is needed. rclpy still needs each type's Python type support
(``rosidl_runtime_py.utilities.get_message``): the ROS packages of the types must be installed
(sensor_msgs, vision_msgs, hri_msgs, and this package's interfaces built by colcon).
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Dict, List, Optional

from . import cdr, types
from .interface import QOS_DEFAULT, Publisher, QoSProfile, Subscription, Timer, Transport
from .interface import TransportError, coerce_parameter

__all__ = ["RclpyTransport", "rclpy_available"]


def rclpy_available() -> bool:
    """True when rclpy (a sourced ROS 2 install) can be imported."""
    try:
        import rclpy  # noqa: F401
        from rosidl_runtime_py.utilities import get_message  # noqa: F401
    except ImportError:
        return False
    return True


def _import_rclpy():
    try:
        import rclpy
        import rclpy.qos as rqos
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from rosidl_runtime_py.utilities import get_message
    except ImportError as exc:
        raise TransportError(
            f"rclpy is not importable ({exc}); source a ROS 2 install (e.g. "
            "/opt/ros/jazzy/setup.bash) or use the built-in transport (--transport dds)") from exc
    return rclpy, rqos, Node, Parameter, get_message


def _rclpy_qos(rqos: Any, profile: QoSProfile) -> Any:
    return rqos.QoSProfile(
        reliability=(rqos.ReliabilityPolicy.RELIABLE if profile.reliability == "reliable"
                     else rqos.ReliabilityPolicy.BEST_EFFORT),
        durability=(rqos.DurabilityPolicy.TRANSIENT_LOCAL
                    if profile.durability == "transient_local"
                    else rqos.DurabilityPolicy.VOLATILE),
        history=(rqos.HistoryPolicy.KEEP_LAST if profile.history == "keep_last"
                 else rqos.HistoryPolicy.KEEP_ALL),
        depth=int(profile.depth),
    )


class _RclpyPublisher(Publisher):
    def __init__(self, node: Any, pub: Any, topic: str, type_name: str, qos: QoSProfile) -> None:
        self._node, self._pub = node, pub
        self.topic, self.type_name, self.qos = topic, type_name, qos

    def publish(self, msg: Any) -> None:
        if self._pub is None:
            raise TransportError(f"publisher on {self.topic} is closed")
        if isinstance(msg, (bytes, bytearray, memoryview)):
            data = bytes(msg)  # rclpy's publish_raw takes bytes only
        else:
            data = cdr.serialize(msg, self.type_name)
        self._pub.publish(data)

    def subscription_count(self) -> int:
        return 0 if self._pub is None else self._pub.get_subscription_count()

    def wait_for_acks(self, timeout_s: float) -> bool:
        """rclpy >= Iron: ``Publisher.wait_for_all_acked``."""
        from rclpy.duration import Duration

        if self._pub is None or not hasattr(self._pub, "wait_for_all_acked"):
            raise TransportError("this rclpy cannot wait for acknowledgements (needs Iron+)")
        return bool(self._pub.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9))))

    def close(self) -> None:
        if self._pub is not None:
            self._node.destroy_publisher(self._pub)
            self._pub = None


class _RclpySubscription(Subscription):
    """rclpy hands raw CDR bytes to `Subscription.deliver`."""

    def __init__(self, transport: "RclpyTransport", topic: str, type_name: str, qos: QoSProfile,
                 callback: Callable[[Any], None], raw: bool) -> None:
        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._transport = transport
        self._init_delivery(transport.logger, callback, raw)
        self.handle: Any = None

    def close(self) -> None:
        if self.handle is not None:
            self._transport.node.destroy_subscription(self.handle)
            self.handle = None


class _RclpyTimer(Timer):
    def __init__(self, node: Any, timer: Any) -> None:
        self._node, self._timer = node, timer

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._node.destroy_timer(self._timer)
            self._timer = None


def _managed_node_class():
    """An rclpy LifecycleNode whose transitions run hooks set later (`set_lifecycle_hooks`)."""
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

    class ManagedNode(LifecycleNode):
        hooks: Dict[str, Callable[[], None]] = {}

        def _run(self, name: str) -> Any:
            hook = self.hooks.get(name)
            try:
                if hook is not None:
                    hook()
            except Exception:  # noqa: BLE001 - a failed transition, reported to the manager
                self.get_logger().error(f"{name} failed:\n{traceback.format_exc()}")
                return TransitionCallbackReturn.FAILURE
            return TransitionCallbackReturn.SUCCESS

        def on_configure(self, state):  # noqa: ARG002 - rclpy's signature
            return self._run("configure")

        def on_activate(self, state):  # noqa: ARG002
            return self._run("activate")

        def on_deactivate(self, state):  # noqa: ARG002
            return self._run("deactivate")

        def on_cleanup(self, state):  # noqa: ARG002
            return self._run("cleanup")

        def on_shutdown(self, state):  # noqa: ARG002
            return self._run("shutdown")

        def on_error(self, state):  # noqa: ARG002
            return self._run("shutdown")

    return ManagedNode


class RclpyTransport(Transport):
    """A ROS 2 node through rclpy (initialises rclpy if the process has not). ``args``: the
    process's ROS arguments (remaps, parameter files, ``__node``; None = rclpy reads
    ``sys.argv``); ``managed``: a lifecycle node (``ros2 lifecycle``), whose transitions run the
    hooks of `set_lifecycle_hooks`; ``signal_handlers``: rclpy's own SIGINT / SIGTERM handlers
    (they shut the context down under the caller; off, Ctrl-C is Python's KeyboardInterrupt as
    on the built-in transport)."""

    def __init__(self, node_name: str, namespace: str = "", *,
                 parameters: Optional[Dict[str, Any]] = None,
                 args: Optional[List[str]] = None, managed: bool = False,
                 signal_handlers: bool = True) -> None:
        rclpy, self._rqos, Node, Parameter, self._get_message = _import_rclpy()
        self._rclpy = rclpy
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            options = {}
            if not signal_handlers:
                from rclpy.signals import SignalHandlerOptions

                options["signal_handler_options"] = SignalHandlerOptions.NO
            rclpy.init(args=args, **options)
        overrides = [Parameter(k, value=v) for k, v in (parameters or {}).items()]
        cls = _managed_node_class() if managed else Node
        self.managed = managed
        self.node = cls(node_name, namespace=namespace or None, parameter_overrides=overrides,
                        allow_undeclared_parameters=False)
        self.node_name = self.node.get_name()
        self.namespace = self.node.get_namespace()
        self.logger = _RclpyLogger(self.node.get_logger())
        self._closed = False

    def set_lifecycle_hooks(self, hooks: Dict[str, Callable[[], None]]) -> None:
        """configure / activate / deactivate / cleanup / shutdown -> callables (managed)."""
        self.node.hooks = dict(hooks)

    def trigger(self, transition: str) -> None:
        """Run a lifecycle transition from here (autostart), as a manager would."""
        getattr(self.node, f"trigger_{transition}")()

    def _msg_class(self, type_name: str) -> Any:
        try:
            return self._get_message(type_name)
        except (AttributeError, ModuleNotFoundError, ValueError) as exc:
            pkg = type_name.split("/")[0]
            raise TransportError(f"rclpy has no type support for {type_name} ({exc}); install "
                                 f"or build the ROS package {pkg!r} and source it") from exc

    def create_publisher(self, topic: str, type_name: str,
                         qos: QoSProfile = QOS_DEFAULT) -> Publisher:
        type_name = types.normalize_type_name(type_name)
        pub = self.node.create_publisher(self._msg_class(type_name), topic,
                                         _rclpy_qos(self._rqos, qos))
        return _RclpyPublisher(self.node, pub, pub.topic_name, type_name, qos)

    def create_subscription(self, topic: str, type_name: str, callback: Callable[[Any], None],
                            qos: QoSProfile = QOS_DEFAULT, *, raw: bool = False) -> Subscription:
        type_name = types.normalize_type_name(type_name)
        sub = _RclpySubscription(self, topic, type_name, qos, callback, raw)
        sub.handle = self.node.create_subscription(
            self._msg_class(type_name), topic, sub.deliver, _rclpy_qos(self._rqos, qos),
            raw=True)
        sub.topic = sub.handle.topic_name
        return sub

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        errors = [0]

        def guarded() -> None:  # as on the built-in transport: a timer bug is logged, not fatal
            try:
                callback()
            except Exception:  # noqa: BLE001
                errors[0] += 1
                if errors[0] <= 5 or errors[0] % 100 == 0:
                    self.logger.error("timer callback raised (%d so far):\n%s", errors[0],
                                      traceback.format_exc())

        return _RclpyTimer(self.node, self.node.create_timer(period_s, guarded))

    def declare_parameter(self, name: str, default: Any, description: str = "") -> Any:
        from rcl_interfaces.msg import ParameterDescriptor

        # dynamic typing: `-p rate:=3` for a float parameter must not abort the node; the value
        # is converted to the default's type here, with a clear error if it cannot be
        param = self.node.declare_parameter(
            name, default, ParameterDescriptor(description=description, dynamic_typing=True))
        return coerce_parameter(name, param.value, default)

    def get_parameter(self, name: str) -> Any:
        return self.node.get_parameter(name).value

    def now(self) -> Any:
        ns = self.node.get_clock().now().nanoseconds
        return types.make("builtin_interfaces/msg/Time", sec=ns // 1_000_000_000,
                          nanosec=ns % 1_000_000_000)

    def spin_once(self, timeout_s: float = 0.1) -> None:
        self._rclpy.spin_once(self.node, timeout_sec=timeout_s)

    @property
    def closed(self) -> bool:
        return self._closed or not self._rclpy.ok()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.node.destroy_node()
        if self._owns_context and self._rclpy.ok():
            self._rclpy.shutdown()


class _RclpyLogger:
    """rclpy's logger behind the `logging.Logger` methods the node uses (%-style args)."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def _fmt(self, msg: str, args: Any) -> str:
        return msg % args if args else msg

    def debug(self, msg: str, *args: Any) -> None:
        self._logger.debug(self._fmt(msg, args))

    def info(self, msg: str, *args: Any) -> None:
        self._logger.info(self._fmt(msg, args))

    def warning(self, msg: str, *args: Any) -> None:
        self._logger.warning(self._fmt(msg, args))

    def error(self, msg: str, *args: Any) -> None:
        self._logger.error(self._fmt(msg, args))

