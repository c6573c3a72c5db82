"""The built-in ROS 2 transport: a ROS 2 node on the PyPI ``cyclonedds`` package.

On the wire a ROS 2 node is a DDS participant; this one follows what rmw_cyclonedds_cpp does, so
ROS 2 nodes, ``ros2`` CLI tools, RViz and rosbag2 cannot tell it apart:

- topics ``/a/b`` are DDS topics ``rt/a/b``; types ``pkg/msg/T`` are ``pkg::msg::dds_::T_``,
  final and keyless, samples XCDR1 (``DataRepresentation`` pinned to CDR v0);
- QoS profiles map to DDS reliability, durability and history one to one;
- the participant's USER_DATA is ``enclave=/;``, each endpoint's (Iron and later) carries
  ``typehash=RIHS01_...;``, and the node announces its name, namespace and endpoint GIDs on
  ``ros_discovery_info`` (`hmr_ros.transport.graph`), so ``ros2 node list`` and
  ``ros2 topic info -v`` show it.

Samples are encoded and decoded by `hmr_ros.transport.cdr` and handed to Cyclone as raw bytes
(``ddspy_write`` / ``ddspy_take``), skipping cyclonedds-python's element-wise serialiser.
Received samples that do not decode are counted and logged, never raised into the node.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

from cyclonedds._clayer import ddspy_take, ddspy_write
from cyclonedds.core import DDSException, GuardCondition, InstanceState, ReadCondition
from cyclonedds.core import SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter, Publisher as DdsPublisherEntity
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader, Subscriber as DdsSubscriberEntity
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from . import cdr, types
from .graph import GraphAnnouncer, ros_distro_layout
from .idl import idl_struct, service_idl_struct
from .interface import QOS_DEFAULT, Publisher, QoSProfile, Subscription, Timer, Transport
from .interface import TransportError, coerce_parameter

__all__ = ["DdsTransport", "loopback_config", "dds_topic_name", "dds_qos", "resolve_topic"]

_TAKE_MASK = SampleState.Any | ViewState.Any | InstanceState.Any
_TOPIC_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Samples larger than this are dropped on receipt (a 4K RGB image is 25 MB).
DEFAULT_MAX_SAMPLE_BYTES = 256 * 1024 * 1024


def loopback_config(max_participants: int = 40) -> str:
    """A Cyclone configuration that stays on 127.0.0.1 (no multicast): for tests, and for a
    demo on one machine. Pass it as ``config=`` or in ``CYCLONEDDS_URI``."""
    return (
        "<CycloneDDS><Domain><General><Interfaces>"
        '<NetworkInterface address="127.0.0.1" multicast="false"/></Interfaces>'
        "<AllowMulticast>false</AllowMulticast>"
        # loopback's MTU is 64 KiB: big datagrams cut a VGA image into ~15 pieces, not ~700
        "<MaxMessageSize>65000B</MaxMessageSize><FragmentSize>64000B</FragmentSize></General>"
        "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{int(max_participants)}</MaxAutoParticipantIndex>"
        '<Peers><Peer address="127.0.0.1"/></Peers></Discovery>'
        "</Domain></CycloneDDS>"
    )


def resolve_topic(topic: str, node_name: str, namespace: str) -> str:
    """The fully qualified ROS topic name of ``topic`` (``~`` = the node's private namespace)."""
    if topic.startswith("~"):
        rest = topic[1:].lstrip("/")
        base = f"{namespace.rstrip('/')}/{node_name}"
        topic = f"{base}/{rest}" if rest else base
    elif not topic.startswith("/"):
        topic = f"{namespace.rstrip('/')}/{topic}"
    if not topic.startswith("/"):
        topic = "/" + topic
    tokens = topic.split("/")[1:]
    if not tokens or not all(_TOPIC_TOKEN.match(t) for t in tokens) or "__" in topic:
        raise TransportError(f"invalid ROS 2 topic name {topic!r} (tokens of letters, digits and "
                             "'_', not starting with a digit, separated by '/')")
    return topic


def dds_topic_name(ros_topic: str) -> str:
    """``/human_mesh`` -> ``rt/human_mesh`` (ROS 2 topic prefix)."""
    return "rt" + ros_topic


def dds_qos(profile: QoSProfile, *, user_data: Optional[bytes] = None) -> Qos:
    """The DDS policies of a ROS QoS profile, as rmw_cyclonedds sets them."""
    policies = [
        Policy.Reliability.Reliable(duration(milliseconds=100))
        if profile.reliability == "reliable" else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal if profile.durability == "transient_local"
        else Policy.Durability.Volatile,
        Policy.History.KeepLast(int(profile.depth)) if profile.history == "keep_last"
        else Policy.History.KeepAll,
        Policy.DataRepresentation(use_cdrv0_representation=True),
    ]
    if user_data is not None:
        policies.append(Policy.Userdata(user_data))
    return Qos(*policies)


def _delete(entity: Any) -> None:
    """Delete a cyclonedds entity now rather than at garbage collection (same code path; a
    second call, e.g. from the collector, is a no-op)."""
    try:
        entity.__del__()
    except Exception:  # noqa: BLE001 - already gone with its participant
        pass


class DdsWriter(Publisher):
    """A DataWriter whose samples are encoded by the one-copy codec."""

    def __init__(self, transport: "DdsTransport", topic: str, type_name: str, qos: QoSProfile,
                 writer: DataWriter) -> None:
        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._transport, self._writer = transport, writer
        self.published = 0

    @property
    def gid(self) -> bytes:
        return self._writer.guid.bytes

    def publish(self, msg: Any) -> None:
        writer = self._writer  # close() may clear it from another thread
        if writer is None:
            raise TransportError(f"publisher on {self.topic} is closed")
        if isinstance(msg, (bytes, bytearray, memoryview)):
            data = memoryview(msg).cast("B")
            if len(data) % 4:
                data = bytes(data) + b"\0" * (4 - len(data) % 4)
        else:
            data = cdr.serialize(msg, self.type_name, pad=True)
        ret = ddspy_write(writer._ref, data)
        if ret < 0:
            raise TransportError(f"publishing on {self.topic} failed: {DDSException(ret, '')}")
        self.published += 1

    def subscription_count(self) -> int:
        if self._writer is None:
            return 0
        return len(self._writer.get_matched_subscriptions())

    def wait_for_acks(self, timeout_s: float) -> bool:
        """Block until matched reliable readers acknowledged all samples (False on timeout)."""
        if self._writer is None:
            return False
        try:
            return bool(self._writer.wait_for_acks(duration(seconds=timeout_s)))
        except DDSException:
            return False

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._transport._forget(self, writer)


class DdsReader(Subscription):
    """A DataReader drained by the transport's spin loop (`Subscription.deliver` decodes)."""

    def __init__(self, transport: "DdsTransport", topic: str, type_name: str, qos: QoSProfile,
                 reader: DataReader, callback: Callable[[Any], None], raw: bool,
                 max_sample_bytes: int) -> None:
        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._transport, self._reader = transport, reader
        self._init_delivery(transport.logger, callback, raw, max_sample_bytes)
        self.condition = ReadCondition(reader, _TAKE_MASK)

    @property
    def gid(self) -> bytes:
        return self._reader.guid.bytes

    def drain(self, max_samples: int = 256) -> int:
        """Take what has arrived and deliver each sample; returns the number taken."""
        if self._reader is None:
            return 0
        try:
            samples = ddspy_take(self._reader._ref, _TAKE_MASK, max_samples)
        except Exception as exc:  # noqa: BLE001 - middleware refused: log, keep spinning
            self._transport.logger.error("taking samples on %s failed: %s", self.topic, exc)
            return 0
        if isinstance(samples, int):
            return 0
        for data, info in samples:
            if info.valid_data:
                self.deliver(data)
        return len(samples)

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            self._transport._forget(self, reader)


class DdsService:
    """A ROS 2 service server as rmw_cyclonedds lays it out: requests on
    ``rq/<service>Request``, replies on ``rr/<service>Reply``, each sample's CDR body preceded by
    rmw's 16-byte request header (client id, sequence number), echoed in the reply so the
    client can match it."""

    def __init__(self, transport: "DdsTransport", name: str, srv_type: str,
                 handler: Callable[[Any], Any], reader: DataReader, writer: DataWriter) -> None:
        self.name, self.srv_type = name, srv_type
        self.request_type, self.response_type = _service_halves(srv_type)
        self._transport, self._handler = transport, handler
        self._reader, self._writer = reader, writer
        self.condition = ReadCondition(reader, _TAKE_MASK)
        self.served = 0
        self.dropped_malformed = 0

    @property
    def gids(self) -> Tuple[bytes, bytes]:
        return self._reader.guid.bytes, self._writer.guid.bytes

    def drain(self, max_samples: int = 64) -> int:
        if self._reader is None:
            return 0
        samples = ddspy_take(self._reader._ref, _TAKE_MASK, max_samples)
        if isinstance(samples, int):
            return 0
        for data, info in samples:
            if not info.valid_data:
                continue
            if len(data) < 20:
                self.dropped_malformed += 1
                continue
            request_id = bytes(data[4:20])
            try:
                request = cdr.deserialize(cdr.HEADER_LE + bytes(data[20:]), self.request_type)
            except cdr.CdrError as exc:
                self.dropped_malformed += 1
                self._transport.logger.warning("service %s: dropped a malformed request: %s",
                                               self.name, exc)
                continue
            try:
                response = self._handler(request)
            except Exception:  # noqa: BLE001 - a failing handler gives no reply, not a crash
                self._transport.logger.error("service %s raised:\n%s", self.name,
                                             traceback.format_exc())
                continue
            body = cdr.serialize(response, self.response_type)[4:]
            reply = cdr.HEADER_LE + request_id + body
            reply += b"\0" * (-len(reply) % 4)
            ddspy_write(self._writer._ref, reply)
            self.served += 1
        return len(samples)


def _service_halves(srv_type: str) -> Tuple[str, str]:
    """``lifecycle_msgs/srv/GetState`` -> the store's Request / Response message types."""
    pkg, sub, name = srv_type.split("/")
    if sub != "srv":
        raise TransportError(f"not a service type: {srv_type!r} (want pkg/srv/Name)")
    store_pkg = f"{pkg}_srv"
    if types.DDS_PACKAGE_ALIASES.get(store_pkg) != (pkg, "srv"):
        raise TransportError(f"no definitions for the service type {srv_type!r} (add its "
                             f"Request/Response halves under transport/definitions/{store_pkg})")
    return f"{store_pkg}/msg/{name}_Request", f"{store_pkg}/msg/{name}_Response"


class _DdsTimer(Timer):
    def __init__(self, period_s: float, callback: Callable[[], None]) -> None:
        if not period_s > 0:
            raise TransportError(f"timer period must be > 0 s, got {period_s}")
        self.period_s, self.callback = float(period_s), callback
        self.next_due = time.monotonic() + self.period_s
        self.cancelled = False
        self.errors = 0

    def cancel(self) -> None:
        self.cancelled = True


class DdsTransport(Transport):
    """A ROS 2 node on the built-in DDS transport.

    ``domain_id`` defaults to ``ROS_DOMAIN_ID`` (else 0), ``ros_distro`` to ``ROS_DISTRO``
    (else jazzy; humble selects Humble's graph layout and no type hashes), ``config`` (Cyclone
    XML) to ``CYCLONEDDS_URI``. ``parameters`` are the overrides `declare_parameter` sees;
    ``remaps`` maps topic names to others (``ros2 run ... -r image:=/camera/image_raw``).
    """

    def __init__(self, node_name: str, namespace: str = "", *, domain_id: Optional[int] = None,
                 parameters: Optional[Dict[str, Any]] = None, ros_distro: Optional[str] = None,
                 config: Optional[str] = None,
                 max_sample_bytes: int = DEFAULT_MAX_SAMPLE_BYTES,
                 remaps: Optional[Dict[str, str]] = None) -> None:
        if not _TOPIC_TOKEN.match(node_name):
            raise TransportError(f"invalid node name {node_name!r}")
        namespace = "/" + namespace.strip("/") if namespace.strip("/") else "/"
        self.node_name, self.namespace = node_name, namespace
        self.logger = logging.getLogger(f"hmr_ros.{node_name}")
        if domain_id is None:
            domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
        if not 0 <= domain_id <= 232:
            raise TransportError(f"ROS domain id must be in [0, 232], got {domain_id}")
        self.domain_id = domain_id
        self.layout = ros_distro_layout(ros_distro or os.environ.get("ROS_DISTRO") or "jazzy")
        self._parameters_given = dict(parameters or {})
        # topic remapping as ROS does it: both sides resolved against this node's namespace
        self._remaps = {resolve_topic(src, node_name, namespace):
                        resolve_topic(dst, node_name, namespace)
                        for src, dst in (remaps or {}).items()}
        self._parameters: Dict[str, Any] = {}
        # declared by every rclpy node; the node's outputs carry image stamps, not the clock's
        self.declare_parameter("use_sim_time", False)
        self._max_sample_bytes = int(max_sample_bytes)
        self._lock = threading.RLock()
        self._spin_lock = threading.Lock()
        self._spinning_thread: Optional[int] = None
        self._closed = False
        self._close_deferred = False
        self._released = False
        self._domain = Domain(domain_id, config) if config else None
        try:
            self._participant = DomainParticipant(
                domain_id, qos=Qos(Policy.Userdata(b"enclave=/;")))
        except DDSException as exc:
            raise TransportError(f"cannot join DDS domain {domain_id}: {exc} (check "
                                 "CYCLONEDDS_URI / the network interface)") from exc
        self._ddspub = DdsPublisherEntity(self._participant)
        self._ddssub = DdsSubscriberEntity(self._participant)
        self._topics: Dict[str, Tuple[Topic, str]] = {}
        self._publishers: List[DdsWriter] = []
        self._subscriptions: List[DdsReader] = []
        self._services: List[DdsService] = []
        self._timers: List[_DdsTimer] = []
        self._waitset = WaitSet(self._participant)
        self._wake = GuardCondition(self._participant)
        self._waitset.attach(self._wake)
        self._graph = GraphAnnouncer(self, self.layout)
        self._graph.announce()
        self.logger.debug("node %s%s joined DDS domain %d (%s graph layout)",
                          namespace.rstrip("/") + "/", node_name, domain_id, self.layout.distro)

    # -- endpoints -----------------------------------------------------------------------------

    @property
    def participant(self) -> DomainParticipant:
        return self._participant

    def _topic(self, ros_topic: str, type_name: str) -> Topic:
        with self._lock:
            known = self._topics.get(ros_topic)
            if known is not None:
                if known[1] != type_name:
                    raise TransportError(f"topic {ros_topic} is already used with type {known[1]} "
                                         f"in this node, not {type_name}")
                return known[0]
            topic = Topic(self._participant, dds_topic_name(ros_topic), idl_struct(type_name))
            self._topics[ros_topic] = (topic, type_name)
            return topic

    def _resolve(self, topic: str) -> str:
        name = resolve_topic(topic, self.node_name, self.namespace)
        return self._remaps.get(name, name)

    def _endpoint_user_data(self, type_name: str) -> Optional[bytes]:
        if not self.layout.type_hashes:
            return None
        return f"typehash={types.type_hash(type_name)};".encode()

    def create_publisher(self, topic: str, type_name: str,
                         qos: QoSProfile = QOS_DEFAULT) -> DdsWriter:
        self._check_open()
        type_name = types.normalize_type_name(type_name)
        types.fields_of(type_name)
        ros_topic = self._resolve(topic)
        writer = DataWriter(self._ddspub, self._topic(ros_topic, type_name),
                            qos=dds_qos(qos, user_data=self._endpoint_user_data(type_name)))
        pub = DdsWriter(self, ros_topic, type_name, qos, writer)
        with self._lock:
            self._publishers.append(pub)
        self._graph.announce()
        return pub

    def create_subscription(self, topic: str, type_name: str, callback: Callable[[Any], None],
                            qos: QoSProfile = QOS_DEFAULT, *, raw: bool = False) -> DdsReader:
        self._check_open()
        type_name = types.normalize_type_name(type_name)
        types.fields_of(type_name)
        cdr.compile_all([type_name])
        ros_topic = self._resolve(topic)
        reader = DataReader(self._ddssub, self._topic(ros_topic, type_name),
                            qos=dds_qos(qos, user_data=self._endpoint_user_data(type_name)))
        sub = DdsReader(self, ros_topic, type_name, qos, reader, callback, raw,
                              self._max_sample_bytes)
        with self._lock:
            self._subscriptions.append(sub)
            self._waitset.attach(sub.condition)
        self._graph.announce()
        self._wake.set(True)
        return sub

    def create_service(self, name: str, srv_type: str,
                       handler: Callable[[Any], Any]) -> DdsService:
        """A service server; ``handler(request) -> response`` runs in the spinning thread."""
        self._check_open()
        request_type, response_type = _service_halves(srv_type)
        service = self._resolve(name)
        service_id = f"serviceid={os.urandom(8).hex()};".encode()
        qos = dds_qos(QOS_DEFAULT, user_data=service_id)
        reader = DataReader(self._ddssub, Topic(self._participant, f"rq{service}Request",
                                                service_idl_struct(request_type)), qos=qos)
        writer = DataWriter(self._ddspub, Topic(self._participant, f"rr{service}Reply",
                                                service_idl_struct(response_type)), qos=qos)
        srv = DdsService(self, service, srv_type, handler, reader, writer)
        with self._lock:
            self._services.append(srv)
            self._waitset.attach(srv.condition)
        self._graph.announce()
        self._wake.set(True)
        return srv

    def _forget(self, endpoint: Any, entity: Any) -> None:
        with self._lock:
            if self._released:
                return  # the transport closed first: the participant took the entity along
            if isinstance(endpoint, DdsReader):
                if endpoint not in self._subscriptions:
                    return
                self._subscriptions.remove(endpoint)
                self._waitset.detach(endpoint.condition)
                _delete(endpoint.condition)
            else:
                if endpoint not in self._publishers:
                    return
                self._publishers.remove(endpoint)
            _delete(entity)
        if not self._closed:
            self._graph.announce()

    def endpoint_gids(self) -> Tuple[List[bytes], List[bytes]]:
        """GIDs of this node's user readers and writers (what ``ros_discovery_info`` lists)."""
        with self._lock:
            return ([s.gid for s in self._subscriptions] + [v.gids[0] for v in self._services],
                    [p.gid for p in self._publishers] + [v.gids[1] for v in self._services])

    # -- timers, parameters, clock --------------------------------------------------------------

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        self._check_open()
        timer = _DdsTimer(period_s, callback)
        with self._lock:
            self._timers.append(timer)
        self._wake.set(True)
        return timer

    def declare_parameter(self, name: str, default: Any, description: str = "") -> Any:
        value = coerce_parameter(name, self._parameters_given.get(name, default), default)
        self._parameters[name] = value
        return value

    def get_parameter(self, name: str) -> Any:
        if name not in self._parameters:
            raise TransportError(f"parameter {name!r} was not declared")
        return self._parameters[name]

    def undeclared_parameters(self) -> List[str]:
        """Overrides given at start that no `declare_parameter` asked for (likely typos)."""
        return sorted(set(self._parameters_given) - set(self._parameters))

    def now(self) -> Any:
        ns = time.time_ns()
        return types.make("builtin_interfaces/msg/Time", sec=ns // 1_000_000_000,
                          nanosec=ns % 1_000_000_000)

    # -- executor -------------------------------------------------------------------------------

    def spin_once(self, timeout_s: float = 0.1) -> None:
        """Wait up to ``timeout_s`` for samples or a due timer, then run the callbacks. Returns
        at once after `close` (which waits for a running spin_once to finish first)."""
        me = threading.get_ident()
        if self._spinning_thread == me:
            raise TransportError("spin_once called from inside a callback (it would deadlock)")
        with self._spin_lock:
            if self._closed:
                return
            self._spinning_thread = me
            try:
                self._spin_once(timeout_s)
            finally:
                self._spinning_thread = None
        if self._close_deferred:
            self._release()  # close() was called from one of this spin's callbacks

    def _spin_once(self, timeout_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            timers = [t for t in self._timers if not t.cancelled]
            self._timers = timers
            subs = list(self._subscriptions)
            services = list(self._services)
        wait = max(0.0, timeout_s)
        if timers:
            wait = min(wait, max(0.0, min(t.next_due for t in timers) - now))
        if wait > 0:
            self._waitset.wait(duration(seconds=wait))
        self._wake.set(False)
        for sub in subs:
            sub.drain()
        for srv in services:
            srv.drain()
        now = time.monotonic()
        for timer in timers:
            if not timer.cancelled and timer.next_due <= now:
                # skip missed periods instead of bursting to catch up
                timer.next_due += max(1, int((now - timer.next_due) // timer.period_s) + 1) * timer.period_s
                try:
                    timer.callback()
                except Exception:  # noqa: BLE001 - a timer bug must not stop the node
                    timer.errors += 1
                    if timer.errors <= 5 or timer.errors % 100 == 0:
                        self.logger.error("timer callback raised (%d so far):\n%s",
                                          timer.errors, traceback.format_exc())

    def wake(self) -> None:
        """Make a blocked `spin_once` return now (from another thread)."""
        if not self._closed:
            self._wake.set(True)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"transport of node {self.node_name} is closed")

    def close(self) -> None:
        """Leave the graph and delete the DDS entities. Safe from any thread: from another
        thread it waits for a running spin_once to finish; from a callback it only marks the
        transport closed and the spin_once that runs the callback releases it on return."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._spinning_thread == threading.get_ident():
            self._close_deferred = True  # inside a callback: spin_once releases on return
            return
        self._wake.set(True)
        if not self._spin_lock.acquire(timeout=10.0):
            self.logger.error("a callback did not return within 10 s; closing anyway")
            self._release()
            return
        try:
            self._release()
        finally:
            self._spin_lock.release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            subs, pubs = list(self._subscriptions), list(self._publishers)
            self._subscriptions, self._publishers = [], []
            for srv in self._services:
                srv._reader = srv._writer = None
            self._services = []
        self._graph.close()
        for sub in subs:
            sub._reader = None
        for pub in pubs:
            pub._writer = None
        _delete(self._participant)
        if self._domain is not None:
            _delete(self._domain)

    # -- introspection (tests, diagnostics) --------------------------------------------------------

    @property
    def subscriptions(self) -> List[DdsReader]:
        with self._lock:
            return list(self._subscriptions)

    @property
    def publishers(self) -> List[DdsWriter]:
        with self._lock:
            return list(self._publishers)

