"""Presence in the ROS 2 graph: ``ros_discovery_info`` as rmw_dds_common defines it.

DDS discovery alone lets ``ros2 topic list`` see a participant's topics; the node itself, and
which node owns which endpoint, come from ``rmw_dds_common/msg/ParticipantEntitiesInfo`` samples
that every ROS 2 participant publishes on the DDS topic ``ros_discovery_info`` (no ``rt/``
prefix; reliable, transient local, keep last 1): the participant's GID and, per node, its name,
namespace and the GIDs (DDS GUIDs) of its readers and writers. The GID is 24 bytes, zero padded,
on Humble and 16 bytes from Iron on; Iron and later also advertise each endpoint's type hash in
its USER_DATA. `ros_distro_layout` picks the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List

from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from . import cdr, types
from .idl import idl_struct
from .interface import QOS_TRANSIENT_LOCAL, TransportError

if TYPE_CHECKING:  # pragma: no cover
    from .dds import DdsTransport

__all__ = ["GraphLayout", "ros_distro_layout", "GraphAnnouncer", "GraphObserver",
           "DISCOVERY_TOPIC", "participant_info", "parse_participant_info", "ros_type_name"]

DISCOVERY_TOPIC = "ros_discovery_info"


@dataclass(frozen=True)
class GraphLayout:
    """How one ROS 2 release lays out graph information."""

    distro: str
    info_type: str       # ParticipantEntitiesInfo type in our store
    gid_size: int        # bytes in rmw_dds_common/msg/Gid
    type_hashes: bool    # typehash=RIHS01_... in endpoint USER_DATA


_LAYOUTS: Dict[str, GraphLayout] = {
    "humble": GraphLayout("humble", "rmw_dds_common_humble/msg/ParticipantEntitiesInfo", 24, False),
    "jazzy": GraphLayout("jazzy", "rmw_dds_common/msg/ParticipantEntitiesInfo", 16, True),
}
_NEWER = ("iron", "jazzy", "kilted", "rolling")


def ros_distro_layout(distro: str) -> GraphLayout:
    """The graph layout of a ROS 2 release name (Iron and later share Jazzy's)."""
    key = distro.strip().lower()
    if key in _NEWER:
        return _LAYOUTS["jazzy"]
    if key == "humble":
        return _LAYOUTS["humble"]
    raise TransportError(f"unsupported ROS 2 distribution {distro!r}: humble, "
                         f"{', '.join(_NEWER)}")


def _gid(layout: GraphLayout, guid: bytes) -> Any:
    import numpy as np

    data = np.zeros(layout.gid_size, np.uint8)
    data[:16] = np.frombuffer(guid[:16], np.uint8)
    gid_type = layout.info_type.rsplit("/", 1)[0] + "/Gid"
    return types.make(gid_type, data=data)


def participant_info(layout: GraphLayout, participant_gid: bytes,
                     nodes: List[Dict[str, Any]]) -> Any:
    """A ParticipantEntitiesInfo message. ``nodes``: dicts with name, namespace, readers,
    writers (lists of 16-byte GUIDs)."""
    node_type = layout.info_type.rsplit("/", 1)[0] + "/NodeEntitiesInfo"
    infos = [types.make(node_type, node_namespace=n["namespace"], node_name=n["name"],
                        reader_gid_seq=[_gid(layout, g) for g in n["readers"]],
                        writer_gid_seq=[_gid(layout, g) for g in n["writers"]]) for n in nodes]
    return types.make(layout.info_type, gid=_gid(layout, participant_gid),
                      node_entities_info_seq=infos)


def parse_participant_info(data: bytes) -> Dict[str, Any]:
    """Decode a ``ros_discovery_info`` sample of either layout (tells them apart by size)."""
    errors = []
    for layout in (_LAYOUTS["jazzy"], _LAYOUTS["humble"]):
        try:
            msg = cdr.deserialize(data, layout.info_type)
        except cdr.CdrError as exc:
            errors.append(str(exc))
            continue
        used = cdr.serialized_size(msg, layout.info_type)
        if not used <= len(data) < used + 4:  # at most end padding may be left over
            errors.append(f"{layout.distro}: {len(data) - used} bytes left over")
            continue
        return {
            "layout": layout.distro,
            "gid": bytes(msg.gid.data[:16]),
            "nodes": [{"name": n.node_name, "namespace": n.node_namespace,
                       "readers": [bytes(g.data[:16]) for g in n.reader_gid_seq],
                       "writers": [bytes(g.data[:16]) for g in n.writer_gid_seq]}
                      for n in msg.node_entities_info_seq],
        }
    raise cdr.CdrError("not a ParticipantEntitiesInfo sample: " + "; ".join(errors))


class GraphAnnouncer:
    """Publishes the transport's node and endpoints on ``ros_discovery_info``."""

    def __init__(self, transport: "DdsTransport", layout: GraphLayout) -> None:
        from .dds import dds_qos

        self._transport, self._layout = transport, layout
        participant = transport.participant
        topic = Topic(participant, DISCOVERY_TOPIC, idl_struct(layout.info_type))
        # rmw_cyclonedds (Iron+) looks for a type hash on every endpoint, this one included
        user_data = (f"typehash={types.type_hash(layout.info_type)};".encode()
                     if layout.type_hashes else None)
        self._writer = DataWriter(participant, topic,
                                  qos=dds_qos(QOS_TRANSIENT_LOCAL, user_data=user_data))
        self._participant_gid = participant.guid.bytes

    def announce(self) -> None:
        """Publish the current node and endpoint lists (after every change). Serialised with
        the transport's endpoint changes, so the last sample always lists the current set."""
        with self._transport._lock:
            if self._writer is None:
                return
            readers, writers = self._transport.endpoint_gids()
            node = {"name": self._transport.node_name, "namespace": self._transport.namespace,
                    "readers": readers, "writers": writers}
            self._write(participant_info(self._layout, self._participant_gid, [node]))

    def close(self) -> None:
        """Announce that the node is gone (an empty node list), then stop."""
        with self._transport._lock:
            if self._writer is None:
                return
            self._write(participant_info(self._layout, self._participant_gid, []))
            self._writer = None

    def _write(self, msg: Any) -> None:
        from cyclonedds._clayer import ddspy_write

        ddspy_write(self._writer._ref, cdr.serialize(msg, self._layout.info_type, pad=True))


def ros_type_name(dds_name: str) -> str:
    """``sensor_msgs::msg::dds_::Image_`` -> ``sensor_msgs/msg/Image`` (others unchanged)."""
    parts = dds_name.split("::")
    if len(parts) == 4 and parts[2] == "dds_" and parts[3].endswith("_"):
        return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"
    return dds_name


def _qos_summary(qos: Any) -> Dict[str, Any]:
    """The ROS-relevant policies of a discovered endpoint's QoS (by their repr: cyclonedds
    policies are small classes without a common accessor)."""
    out: Dict[str, Any] = {"reliability": "reliable", "durability": "volatile",
                           "history": "keep_last", "depth": 1, "user_data": b""}
    for policy in qos or []:
        text = repr(policy)
        if text.startswith("Policy.Reliability.BestEffort"):
            out["reliability"] = "best_effort"
        elif text.startswith("Policy.Durability.TransientLocal"):
            out["durability"] = "transient_local"
        elif text.startswith("Policy.History.KeepAll"):
            out["history"] = "keep_all"
        elif text.startswith("Policy.History.KeepLast"):
            out["depth"] = int(policy.depth)
        elif text.startswith("Policy.Userdata"):
            out["user_data"] = bytes(policy.data)
    return out


class GraphObserver:
    """What a ROS 2 tool sees of the graph, from DDS discovery plus ``ros_discovery_info``
    (Jazzy layout): participants, publications, subscriptions and nodes. Used by
    ``hmr-ros record`` to learn topic types, and by the tests as a third process."""

    def __init__(self, participant: Any) -> None:
        from cyclonedds.builtin import (BuiltinDataReader, BuiltinTopicDcpsParticipant,
                                        BuiltinTopicDcpsPublication,
                                        BuiltinTopicDcpsSubscription)
        from cyclonedds.sub import DataReader

        from .dds import dds_qos

        self._participants = BuiltinDataReader(participant, BuiltinTopicDcpsParticipant)
        self._pubs = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
        self._subs = BuiltinDataReader(participant, BuiltinTopicDcpsSubscription)
        layout = _LAYOUTS["jazzy"]
        topic = Topic(participant, DISCOVERY_TOPIC, idl_struct(layout.info_type))
        user_data = f"typehash={types.type_hash(layout.info_type)};".encode()
        self._info = DataReader(participant, topic, qos=dds_qos(QOS_TRANSIENT_LOCAL.with_overrides(
            history="keep_all"), user_data=user_data))

    def snapshot(self) -> Dict[str, Any]:
        from cyclonedds._clayer import ddspy_read
        from cyclonedds.core import InstanceState, SampleState, ViewState

        def endpoints(reader: Any) -> List[Dict[str, Any]]:
            out = []
            for s in reader.read(N=10_000):
                if not s.topic_name.startswith("rt/"):
                    continue
                out.append({"topic": s.topic_name[2:], "type": ros_type_name(s.type_name),
                            "guid": s.key.bytes, "participant": s.participant_key.bytes,
                            **_qos_summary(s.qos)})
            return out

        participants = {}
        for s in self._participants.read(N=10_000):
            user = b""
            for policy in s.qos or []:
                if repr(policy).startswith("Policy.Userdata"):
                    user = bytes(policy.data)
            participants[s.key.bytes] = user
        latest: Dict[bytes, Dict[str, Any]] = {}
        mask = SampleState.Any | ViewState.Any | InstanceState.Any
        samples = ddspy_read(self._info._ref, mask, 10_000)
        for data, info in ([] if isinstance(samples, int) else samples):
            if not info.valid_data:
                continue
            try:
                parsed = parse_participant_info(data)
            except cdr.CdrError:
                continue
            latest[parsed["gid"]] = parsed  # samples come oldest first
        nodes = [dict(node, participant=gid) for gid, p in latest.items() for node in p["nodes"]]
        return {"participants": participants, "publications": endpoints(self._pubs),
                "subscriptions": endpoints(self._subs), "nodes": nodes}

    def topic_types(self) -> Dict[str, str]:
        """ROS topic -> type of every publication seen."""
        return {e["topic"]: e["type"] for e in self.snapshot()["publications"]}
