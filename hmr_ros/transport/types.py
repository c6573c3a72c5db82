"""The ROS 2 message types both transports and the bag layer speak, from .msg text.

One type store holds them all: `rosbags`' ROS 2 Jazzy store (common_interfaces, tf2_msgs,
rmw_dds_common, ...), the third-party definitions in ``definitions/`` (vision_msgs 4.x, hri_msgs)
and this package's own ``msg/``. A new message is one .msg file: everything else (the CDR codec,
the DDS type, the RIHS01 hash, the bag connection) is derived from the parsed definition.

Messages are `rosbags` dataclasses: numeric arrays and sequences are NumPy arrays, strings are
``str``, nested messages are dataclasses, sequences of messages or strings are lists. `make`
builds one with every field defaulted (zeros, empty strings, empty arrays), as rclpy does.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype
from rosbags.typesys.store import Typestore

__all__ = [
    "PACKAGE", "MessageTypeError", "Nodetype", "PRIMITIVE_DTYPES", "typestore", "make",
    "message_class", "fields_of", "constants_of", "msg_dir", "package_types", "type_hash",
    "dds_type_name", "normalize_type_name",
]

PACKAGE = "hmr_ros"
#: Store-only package names that go on the wire under another package's DDS type names:
#: Humble's graph layout, and the Request / Response halves of services (rosbags' store
#: keeps message types only; rmw sends ``pkg::srv::dds_::Srv_Request_``).
DDS_PACKAGE_ALIASES = {"rmw_dds_common_humble": ("rmw_dds_common", "msg"),
                       "lifecycle_msgs_srv": ("lifecycle_msgs", "srv")}
_DEFINITIONS = Path(__file__).resolve().parent / "definitions"

#: ROS primitive type name -> NumPy dtype (little-endian: CDR as written by ROS 2 on x86 / ARM).
PRIMITIVE_DTYPES: Dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_), "byte": np.dtype(np.uint8), "char": np.dtype(np.uint8),
    "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8),
    "int16": np.dtype("<i2"), "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"), "uint32": np.dtype("<u4"),
    "int64": np.dtype("<i8"), "uint64": np.dtype("<u8"),
    "float32": np.dtype("<f4"), "float64": np.dtype("<f8"),
}


class MessageTypeError(KeyError):
    """A message type name that the type store does not know."""

    def __str__(self) -> str:  # KeyError quotes its argument; say it plainly
        return str(self.args[0])


def msg_dir() -> Path:
    """This package's ``msg/`` folder: the source tree's (editable installs), else the installed
    ``share/hmr_ros/msg`` of a pip install (``sys.prefix``) or of a colcon install (ament index,
    or the prefix above ``lib/pythonX.Y/site-packages``)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "msg", Path(sys.prefix) / "share" / PACKAGE / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "msg")
    except Exception:  # noqa: BLE001 - no ROS install, or the package is not in the index
        pass
    if len(here.parents) > 5:
        candidates.append(here.parents[5] / "share" / PACKAGE / "msg")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.msg")):
            return path
    raise FileNotFoundError(
        f"hmr_ros message definitions not found (looked in {', '.join(map(str, candidates))})")


def _msg_files() -> Iterator[Tuple[str, Path]]:
    for pkg_dir in sorted(p for p in _DEFINITIONS.iterdir() if p.is_dir()):
        for path in sorted((pkg_dir / "msg").glob("*.msg")):
            yield f"{pkg_dir.name}/msg/{path.stem}", path
    for path in sorted(msg_dir().glob("*.msg")):
        yield f"{PACKAGE}/msg/{path.stem}", path


@lru_cache(maxsize=None)
def typestore() -> Typestore:
    """The process-wide type store (built once; types are immutable after registration)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types: Dict[str, Any] = {}
    for name, path in _msg_files():
        types.update(get_types_from_msg(path.read_text(), name))
    store.register(types)
    return store


def package_types() -> List[str]:
    """Names of this package's own message types."""
    return sorted(name for name, _ in _msg_files() if name.startswith(PACKAGE + "/"))


def normalize_type_name(name: str) -> str:
    """``sensor_msgs/Image`` or ``sensor_msgs/msg/Image`` -> ``sensor_msgs/msg/Image``."""
    parts = name.strip().split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise MessageTypeError(f"not a ROS 2 message type name: {name!r} (want pkg/msg/Type)")
    return "/".join(parts)


def fields_of(name: str) -> List[Tuple[str, Tuple[Nodetype, Any]]]:
    """The parsed field list ``[(field, (nodetype, details)), ...]`` of a type, in .msg order."""
    name = normalize_type_name(name)
    try:
        return list(typestore().fielddefs[name][1])
    except KeyError:
        raise MessageTypeError(f"unknown message type {name!r}; known packages: "
                               f"{', '.join(sorted({n.split('/')[0] for n in typestore().fielddefs}))}"
                               ) from None


def constants_of(name: str) -> Dict[str, Any]:
    """The constants of a type (``TRACKING_NEW`` -> 0, ...)."""
    return {c[0]: c[2] for c in typestore().fielddefs[normalize_type_name(name)][0]}


def message_class(name: str) -> type:
    """The dataclass of a type (keyword construction, every field required)."""
    name = normalize_type_name(name)
    fields_of(name)  # clear error for unknown names
    return typestore().types[name]


def _default(node: Tuple[Nodetype, Any]) -> Any:
    kind, details = node
    if kind == Nodetype.BASE:
        prim = details[0]
        if prim == "string":
            return ""
        if prim == "bool":
            return False
        return 0.0 if prim.startswith("float") else 0
    if kind == Nodetype.NAME:
        return make(details)
    sub, count = details
    if kind == Nodetype.ARRAY:
        if sub[0] == Nodetype.BASE and sub[1][0] in PRIMITIVE_DTYPES:
            return np.zeros(count, PRIMITIVE_DTYPES[sub[1][0]])
        return [_default(sub) for _ in range(count)]
    if sub[0] == Nodetype.BASE and sub[1][0] in PRIMITIVE_DTYPES:  # SEQUENCE
        return np.zeros(0, PRIMITIVE_DTYPES[sub[1][0]])
    return []


_MAKE_PLANS: Dict[str, Tuple[type, Tuple[Tuple[str, Tuple[Nodetype, Any]], ...], frozenset]] = {}


def make(type_name: str, /, **values: Any) -> Any:
    """A message of type ``type_name`` with the given fields and every other field defaulted."""
    plan = _MAKE_PLANS.get(type_name)
    if plan is None:  # once per spelling of a type name: the node builds messages per frame
        fields = tuple(fields_of(type_name))
        plan = (message_class(type_name), fields, frozenset(f for f, _ in fields))
        _MAKE_PLANS[type_name] = plan
    cls, fields, names = plan
    if not names.issuperset(values):
        unknown = sorted(set(values) - names)
        raise TypeError(f"{type_name} has no field(s) {unknown}; fields: {[f for f, _ in fields]}")
    return cls(**{f: values[f] if f in values else _default(node) for f, node in fields})


def type_hash(name: str) -> str:
    """The type's ``RIHS01_<sha256>`` hash (REP-2011), as Iron and later advertise it."""
    return typestore().hash_rihs01(normalize_type_name(name))


def dds_type_name(name: str) -> str:
    """``sensor_msgs/msg/Image`` -> ``sensor_msgs::msg::dds_::Image_`` (rmw naming)."""
    pkg, sub, short = normalize_type_name(name).split("/")
    pkg, sub = DDS_PACKAGE_ALIASES.get(pkg, (pkg, sub))
    return f"{pkg}::{sub}::dds_::{short}_"
