"""Writing rosbag2 bags (MCAP by default, sqlite3 on request) that ROS 2 tools open.

Each connection stores its message definition (``ros2msg`` text with dependencies, and the
RIHS01 hash), so ``ros2 bag info/play``, Foxglove, and a reader with an empty type store decode
this package's messages without having them installed. Offered QoS is recorded per topic, so a
transient-local topic (mesh faces) replays latched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

from hmr_ros.transport import cdr, types
from hmr_ros.transport.interface import QOS_DEFAULT, QoSProfile

from .reader import BagError

__all__ = ["BagWriter", "STORAGES"]

STORAGES = ("mcap", "sqlite3")


def _rosbags_qos(profile: QoSProfile) -> Any:
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)

    return Qos(
        history=QosHistory.KEEP_LAST if profile.history == "keep_last" else QosHistory.KEEP_ALL,
        depth=int(profile.depth),
        reliability=(QosReliability.RELIABLE if profile.reliability == "reliable"
                     else QosReliability.BEST_EFFORT),
        durability=(QosDurability.TRANSIENT_LOCAL if profile.durability == "transient_local"
                    else QosDurability.VOLATILE),
        deadline=QosTime(0, 0), lifespan=QosTime(0, 0),
        liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=QosTime(0, 0),
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """``with BagWriter(out) as bag: bag.add_topic(...); bag.write(topic, t_ns, msg)``.

    ``out`` must not exist (rosbag2 refuses to overwrite); messages may be message objects or
    CDR bytes (as received from the wire).
    """

    def __init__(self, path: Any, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise BagError(f"{path}: storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: already exists (rosbag2 never overwrites a bag)")
        self.storage = storage
        self._writer: Any = None
        self._connections: Dict[str, Tuple[Any, str]] = {}
        self.count = 0

    def __enter__(self) -> "BagWriter":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()

    def add_topic(self, topic: str, type_name: str, qos: QoSProfile = QOS_DEFAULT) -> None:
        type_name = types.normalize_type_name(type_name)
        if topic in self._connections:
            if self._connections[topic][1] != type_name:
                raise BagError(f"{self.path}: topic {topic} already holds "
                               f"{self._connections[topic][1]}, not {type_name}")
            return
        conn = self._writer.add_connection(topic, type_name, typestore=types.typestore(),
                                           offered_qos_profiles=[_rosbags_qos(qos)])
        self._connections[topic] = (conn, type_name)

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        if topic not in self._connections:
            raise BagError(f"{self.path}: add_topic({topic!r}, ...) before writing to it")
        conn, type_name = self._connections[topic]
        data = bytes(msg) if isinstance(msg, (bytes, bytearray, memoryview)) else bytes(
            cdr.serialize(msg, type_name))
        self._writer.write(conn, int(timestamp_ns), data)
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
