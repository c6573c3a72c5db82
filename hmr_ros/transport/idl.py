"""cyclonedds-python IDL types generated from the .msg definitions.

The built-in transport needs a cyclonedds ``IdlStruct`` per topic type: it gives the DDS topic
its type name (``sensor_msgs::msg::dds_::Image_``, what rmw_cyclonedds and Fast DDS match on)
and the XTypes type information Cyclone announces in discovery. The structs are final and
keyless (the IdlStruct default), so they are written as XCDR1 like rmw's; an appendable or
mutable type would switch to XCDR2 and never match a ROS 2 reader.

Samples themselves go through `hmr_ros.transport.cdr` (the one-copy codec). The stock path of
the structs (``to_idl`` + ``IdlStruct.serialize``) remains for the byte-compatibility tests and
the speed baseline in ``benchmarks/bench_transport.py``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as idl_types

from .types import (PRIMITIVE_DTYPES, Nodetype, dds_type_name, fields_of, message_class,
                    normalize_type_name)

__all__ = ["idl_struct", "service_idl_struct", "to_idl", "from_idl"]

_PRIMITIVES = {
    "bool": bool, "byte": idl_types.byte, "char": idl_types.uint8,
    "int8": idl_types.int8, "uint8": idl_types.uint8, "int16": idl_types.int16,
    "uint16": idl_types.uint16, "int32": idl_types.int32, "uint32": idl_types.uint32,
    "int64": idl_types.int64, "uint64": idl_types.uint64, "float32": idl_types.float32,
    "float64": idl_types.float64,
}


def _idl_type(node) -> Any:
    kind, details = node
    if kind == Nodetype.BASE:
        prim, bound = details
        if prim == "string":
            return idl_types.bounded_str[bound] if bound else str
        if prim not in _PRIMITIVES:
            raise TypeError(f"no IDL mapping for ROS type {prim!r}")
        return _PRIMITIVES[prim]
    if kind == Nodetype.NAME:
        return idl_struct(details)
    sub, count = details
    if kind == Nodetype.ARRAY:
        return idl_types.array[_idl_type(sub), count]
    return idl_types.sequence[_idl_type(sub), count] if count else idl_types.sequence[_idl_type(sub)]


@lru_cache(maxsize=None)
def idl_struct(type_name: str) -> type:
    """The IdlStruct class of a ROS 2 message type (rmw naming, final, keyless)."""
    name = normalize_type_name(type_name)
    fields = {field: _idl_type(node) for field, node in fields_of(name)}
    return make_idl_struct(name.split("/")[-1] + "_", dds_type_name(name), fields)


@lru_cache(maxsize=None)
def service_idl_struct(half_type: str) -> type:
    """The DDS type of a service request or reply as rmw_cyclonedds sends it: its 16-byte
    request header (client id, sequence number) followed by the message's fields, under the
    message's own type name (rmw matches services by name; its samples carry the header)."""
    name = normalize_type_name(half_type)
    fields = {"rmw_client_id_": idl_types.uint64, "rmw_sequence_number_": idl_types.int64}
    fields.update({field: _idl_type(node) for field, node in fields_of(name)})
    return make_idl_struct(name.split("/")[-1] + "_with_header_", dds_type_name(name), fields)


def to_idl(msg: Any, type_name: str) -> IdlStruct:
    """A rosbags-style message as an instance of `idl_struct` (the stock, element-wise path)."""
    name = normalize_type_name(type_name)
    cls = idl_struct(name)
    values = {}
    for field, node in fields_of(name):
        values[field] = _to_idl_value(getattr(msg, field), node)
    return cls(**values)


def _to_idl_value(value: Any, node) -> Any:
    kind, details = node
    if kind == Nodetype.BASE:
        return value
    if kind == Nodetype.NAME:
        return to_idl(value, details)
    sub = details[0]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return [_to_idl_value(v, sub) for v in value]


def from_idl(sample: IdlStruct, type_name: str) -> Any:
    """An IdlStruct sample as a rosbags-style message (NumPy arrays for numeric fields)."""
    name = normalize_type_name(type_name)
    values = []
    for field, node in fields_of(name):
        value = getattr(sample, field)
        kind, details = node
        if kind == Nodetype.NAME:
            value = from_idl(value, details)
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            sub = details[0]
            if sub[0] == Nodetype.BASE and sub[1][0] in PRIMITIVE_DTYPES:
                dtype = PRIMITIVE_DTYPES[sub[1][0]]
                if isinstance(value, (bytes, bytearray)):  # stock decodes octet arrays as bytes
                    value = np.frombuffer(value, dtype).copy()
                else:
                    value = np.asarray(value, dtype)
            elif sub[0] == Nodetype.NAME:
                value = [from_idl(v, sub[1]) for v in value]
            else:
                value = list(value)
        values.append(value)
    return message_class(name)(*values)
