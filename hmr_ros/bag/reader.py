"""Reading rosbag2 (sqlite3, MCAP) and ROS 1 bags as ROS 2 CDR samples of our types.

Everything downstream (the node's pipeline, ``hmr-ros play``, evaluation) sees one form: a
`BagMessage` with the topic, the ROS 2 type name, the receive time and the sample as ROS 2 CDR
bytes, decodable with `hmr_ros.transport.cdr`. rosbag2 samples whose type definition equals ours
pass through untouched; ROS 1 samples, and rosbag2 samples of an older definition of a type,
are decoded with the bag's own definitions and rebuilt field by field (``seq`` of a ROS 1
header is dropped, fields we lack are defaulted). Types we do not know at all are registered
from the bag's stored definitions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

import numpy as np

from hmr_ros.transport import cdr, types

__all__ = ["BagError", "BagMessage", "BagReader", "TopicSummary"]

log = logging.getLogger(__name__)


class BagError(RuntimeError):
    """A bag that cannot be opened or read; the message names the file."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    type_name: str
    timestamp_ns: int
    data: bytes  #: ROS 2 CDR, encapsulation header included

    def decode(self) -> Any:
        return cdr.deserialize(self.data, self.type_name)


@dataclass(frozen=True)
class TopicSummary:
    topic: str
    type_name: str
    count: int
    durability: str  #: "volatile" or "transient_local" (as recorded; volatile if unknown)
    reliability: str


class BagReader:
    """``with BagReader(path) as bag: for m in bag.messages(topics): ...``"""

    def __init__(self, path: Any) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag")
        self._reader: Any = None
        self._convert: Dict[str, bool] = {}
        self._seq_header_types: set = set()
        self._ros1_header_store: Any = None

    def __enter__(self) -> "BagReader":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        from rosbags.highlevel import AnyReader

        try:
            self._reader = AnyReader([self.path], default_typestore=types.typestore())
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several error types
            self._reader = None
            raise BagError(f"{self.path}: cannot open bag: {exc}") from exc
        self.is_ros1 = bool(getattr(self._reader, "is2", True) is False)
        try:
            for conn in self._reader.connections:
                self._convert.setdefault(conn.msgtype, self._needs_conversion(conn.msgtype))
        except Exception as exc:  # noqa: BLE001 - a connection without a usable definition
            self.close()
            raise BagError(f"{self.path}: cannot use the bag's message definitions: "
                           f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    def _needs_conversion(self, msgtype: str) -> bool:
        store = types.typestore()
        if msgtype not in store.fielddefs:
            self._register(msgtype)
            return self.is_ros1
        if self.is_ros1:
            return True
        try:
            return self._reader.typestore.hash_rihs01(msgtype) != store.hash_rihs01(msgtype)
        except Exception:  # noqa: BLE001 - a definition rosbags cannot hash: convert to be safe
            return True

    def _register(self, msgtype: str) -> None:
        """Add a type (and what it references) that only the bag defines to our store."""
        bag_store = self._reader.typestore
        missing = {}
        todo = [msgtype]
        while todo:
            name = todo.pop()
            if name in missing or name in types.typestore().fielddefs:
                continue
            missing[name] = bag_store.fielddefs[name]
            for _, (kind, details) in bag_store.fielddefs[name][1]:
                sub = details if kind == types.Nodetype.NAME else (
                    details[0][1] if kind in (types.Nodetype.ARRAY, types.Nodetype.SEQUENCE)
                    and details[0][0] == types.Nodetype.NAME else None)
                if sub:
                    todo.append(sub)
        types.typestore().register(missing)

    @property
    def duration_ns(self) -> int:
        return int(self._reader.end_time - self._reader.start_time) if self._reader else 0

    @property
    def start_time_ns(self) -> int:
        return int(self._reader.start_time)

    def topics(self) -> List[TopicSummary]:
        """Topics with their types, counts and recorded QoS."""
        out: Dict[str, TopicSummary] = {}
        for conn in self._require().connections:
            durability, reliability = "volatile", "reliable"
            profiles = getattr(conn.ext, "offered_qos_profiles", None) or []
            if isinstance(profiles, str):  # older metadata: a YAML string
                durability = "transient_local" if "durability: 1" in profiles else "volatile"
                reliability = "best_effort" if "reliability: 2" in profiles else "reliable"
            elif profiles:
                durability = ("transient_local" if "TRANSIENT_LOCAL" in str(profiles[0].durability)
                              else "volatile")
                reliability = ("best_effort" if "BEST_EFFORT" in str(profiles[0].reliability)
                               else "reliable")
            prev = out.get(conn.topic)
            count = conn.msgcount + (prev.count if prev else 0)
            out[conn.topic] = TopicSummary(conn.topic, conn.msgtype, count, durability, reliability)
        return sorted(out.values(), key=lambda s: s.topic)

    def _require(self) -> Any:
        if self._reader is None:
            raise BagError(f"{self.path}: bag is not open")
        return self._reader

    def messages(self, topics: Optional[Iterable[str]] = None) -> Iterator[BagMessage]:
        """Samples in receive-time order (only ``topics`` if given). A sample that cannot be
        converted is logged and skipped; a bag that breaks while reading raises `BagError`."""
        reader = self._require()
        wanted = set(topics) if topics else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted:
            unknown = wanted - {c.topic for c in reader.connections}
            if unknown:
                raise BagError(f"{self.path}: no topic(s) {sorted(unknown)}; the bag has "
                               f"{sorted({c.topic for c in reader.connections})}")
        skipped = 0
        try:
            for conn, timestamp, raw in reader.messages(connections=conns):
                try:
                    data = self._to_ros2_cdr(conn.msgtype, raw)
                except Exception as exc:  # noqa: BLE001 - one bad sample, not a bad bag
                    skipped += 1
                    if skipped <= 5 or skipped % 100 == 0:
                        log.warning("%s: skipped a %s sample on %s at %d: %s (%d so far)",
                                    self.path, conn.msgtype, conn.topic, timestamp, exc, skipped)
                    continue
                yield BagMessage(conn.topic, conn.msgtype, int(timestamp), data)
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated chunks, bad sqlite pages, ...
            raise BagError(f"{self.path}: bag is corrupt or truncated: "
                           f"{type(exc).__name__}: {exc}") from exc

    def _to_ros2_cdr(self, msgtype: str, raw: bytes) -> bytes:
        if not self._convert.get(msgtype, False):
            cdr.deserialize(raw, msgtype)  # validates: never hand on bytes we cannot read
            return bytes(raw)
        obj = self._deserialize_bag_sample(raw, msgtype)
        return bytes(cdr.serialize(convert_message(obj, msgtype), msgtype))

    def _deserialize_bag_sample(self, raw: bytes, msgtype: str) -> Any:
        """The sample with the bag's own definitions. A ROS 1 bag whose connection headers give
        ``std_msgs/Header`` without ``seq`` (what ``rosbags.convert`` writes when handed a ROS 2
        type store) still carries ``seq`` on the wire, as every ROS 1 serializer writes it: when
        the declared definitions do not fit, such a sample is read with the ROS 1 Header."""
        if msgtype in self._seq_header_types:
            return self._seq_header_store().deserialize_ros1(raw, msgtype)
        try:
            return self._reader.deserialize(raw, msgtype)
        except Exception:
            if not self.is_ros1 or self._bag_header_has_seq():
                raise
            try:
                obj = self._seq_header_store().deserialize_ros1(raw, msgtype)
            except Exception:  # noqa: BLE001 - neither fits: report the declared one's error
                pass
            else:
                log.warning("%s: %s samples carry a ROS 1 Header seq that the bag's definition "
                            "lacks (a ROS 1 bag converted with a ROS 2 type store); reading them "
                            "with the ROS 1 std_msgs/Header", self.path, msgtype)
                self._seq_header_types.add(msgtype)
                return obj
            raise

    def _bag_header_has_seq(self) -> bool:
        header = self._reader.typestore.fielddefs.get("std_msgs/msg/Header")
        return header is None or any(name == "seq" for name, _ in header[1])

    def _seq_header_store(self) -> Any:
        if self._ros1_header_store is None:
            from rosbags.typesys import Stores, get_typestore

            store = get_typestore(Stores.EMPTY)
            store.register({**self._reader.typestore.fielddefs, "std_msgs/msg/Header":
                            get_typestore(Stores.ROS1_NOETIC).fielddefs["std_msgs/msg/Header"]})
            self._ros1_header_store = store
        return self._ros1_header_store


def _field_names(obj: Any) -> List[str]:
    fields = getattr(type(obj), "__dataclass_fields__", None)
    return [n for n in fields if not n.startswith("__")] if fields else []


def convert_message(obj: Any, type_name: str) -> Any:
    """Rebuild ``obj`` (a message of another definition of ``type_name``) as our type: fields
    matched by name (else case-insensitively: ROS 1 ``CameraInfo.K`` is ROS 2 ``k``), missing
    ones defaulted, extra ones (ROS 1 ``seq``) dropped."""
    values = {}
    by_lower_name = {name.lower(): name for name in _field_names(obj)}
    for field, (kind, details) in types.fields_of(type_name):
        if hasattr(obj, field):
            value = getattr(obj, field)
        elif field.lower() in by_lower_name:  # ROS 1 spelling (CameraInfo's D, K, R, P)
            value = getattr(obj, by_lower_name[field.lower()])
        else:
            continue
        if kind == types.Nodetype.NAME:
            value = convert_message(value, details)
        elif kind in (types.Nodetype.ARRAY, types.Nodetype.SEQUENCE):
            sub = details[0]
            if sub[0] == types.Nodetype.NAME:
                value = [convert_message(v, sub[1]) for v in value]
            elif sub[1][0] in types.PRIMITIVE_DTYPES:
                value = np.asarray(value, types.PRIMITIVE_DTYPES[sub[1][0]])
            else:
                value = list(value)
        values[field] = value
    return types.make(type_name, **values)
