"""Message contents for the transport and bag tests: hypothesis strategies built from the .msg
definitions, and deterministic examples (same seed -> same message in every process)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from hmr_ros.transport import types

#: every type the node reads or writes (issue: "the types the node reads and writes")
NODE_TYPES = [
    "std_msgs/msg/Header", "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/CameraInfo", "vision_msgs/msg/Detection2DArray",
    "geometry_msgs/msg/Vector3", "geometry_msgs/msg/TransformStamped", "tf2_msgs/msg/TFMessage",
    "visualization_msgs/msg/MarkerArray", "diagnostic_msgs/msg/DiagnosticArray",
    "sensor_msgs/msg/JointState", "hri_msgs/msg/IdsList",
    "hri_msgs/msg/NormalizedRegionOfInterest2D", "hri_msgs/msg/Skeleton2D",
    *types.package_types(),
]
GRAPH_TYPES = ["rmw_dds_common/msg/ParticipantEntitiesInfo",
               "rmw_dds_common_humble/msg/ParticipantEntitiesInfo"]

_INT_RANGES = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
# byte: octet (0..255) in ROS 2; rosbags' scalar packing is signed, so the shared range is 0..127
_UINT_BITS = {"uint8": 8, "byte": 7, "char": 8, "uint16": 16, "uint32": 32, "uint64": 64}
_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                max_size=12)


def _primitive(prim: str) -> st.SearchStrategy:
    if prim == "bool":
        return st.booleans()
    if prim in _INT_RANGES:
        b = _INT_RANGES[prim]
        return st.integers(-(2 ** (b - 1)), 2 ** (b - 1) - 1)
    if prim in _UINT_BITS:
        return st.integers(0, 2 ** _UINT_BITS[prim] - 1)
    if prim == "float32":
        return st.floats(width=32, allow_nan=False)
    if prim == "float64":
        return st.floats(allow_nan=False)
    if prim == "string":
        return _text
    raise AssertionError(prim)


def _field(node, seq_max: int) -> st.SearchStrategy:
    kind, details = node
    if kind == types.Nodetype.BASE:
        return _primitive(details[0])
    if kind == types.Nodetype.NAME:
        return message_strategy(details, seq_max)
    sub, count = details
    if kind == types.Nodetype.ARRAY:
        size = st.just(count)
    else:
        size = st.integers(0, seq_max if sub[0] == types.Nodetype.NAME else 4 * seq_max)
    if sub[0] == types.Nodetype.BASE and sub[1][0] in types.PRIMITIVE_DTYPES:
        dtype = types.PRIMITIVE_DTYPES[sub[1][0]]
        return size.flatmap(lambda n: st.lists(_primitive(sub[1][0]), min_size=n, max_size=n)
                            ).map(lambda v: np.asarray(v, dtype))
    return size.flatmap(lambda n: st.lists(_field(sub, max(0, seq_max - 1)), min_size=n,
                                           max_size=n))


def message_strategy(type_name: str, seq_max: int = 3) -> st.SearchStrategy:
    fields = types.fields_of(type_name)
    return st.fixed_dictionaries({f: _field(node, seq_max) for f, node in fields}).map(
        lambda values: types.make(type_name, **values))


def example_message(type_name: str, seed: int = 0, seq_len: int = 2) -> Any:
    """A deterministic message with every field set (sequences of ``seq_len`` elements)."""
    rng = np.random.default_rng([seed, sum(map(ord, type_name))])
    return _example(type_name, rng, seq_len)


def _example_value(node, rng, seq_len: int) -> Any:
    kind, details = node
    if kind == types.Nodetype.BASE:
        prim = details[0]
        if prim == "string":
            return "".join(rng.choice(list("abcxyz_é漢"), size=int(rng.integers(0, 8))))
        if prim == "bool":
            return bool(rng.integers(2))
        if prim.startswith("float"):
            return float(np.float32(rng.normal())) if prim == "float32" else float(rng.normal())
        return int(rng.integers(0, 100))
    if kind == types.Nodetype.NAME:
        return _example(details, rng, seq_len)
    sub, count = details
    n = count if kind == types.Nodetype.ARRAY else seq_len
    if sub[0] == types.Nodetype.BASE and sub[1][0] in types.PRIMITIVE_DTYPES:
        dtype = types.PRIMITIVE_DTYPES[sub[1][0]]
        return (rng.normal(size=n) * 10).astype(dtype)
    return [_example_value(sub, rng, max(0, seq_len - 1)) for _ in range(n)]


def _example(type_name: str, rng, seq_len: int) -> Any:
    return types.make(type_name, **{f: _example_value(node, rng, seq_len)
                                    for f, node in types.fields_of(type_name)})
