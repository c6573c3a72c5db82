"""CDR (XCDR1, little endian) codec for ROS 2 messages, with a one-copy path for arrays.

ROS 2 over DDS writes every message as plain CDR with a 4-byte encapsulation header
(``00 01 00 00``): fields in .msg order, each aligned to its own size (8-byte types to 8),
strings as a uint32 length that counts the terminating NUL, sequences as a uint32 count. Stock
cyclonedds-python packs ``sequence<primitive>`` one element at a time and decodes it to a Python
list (45 ms for a VGA image); here a primitive array or sequence is one ``memcpy`` from / into a
NumPy array, and decoding gives a zero-copy NumPy view of the received bytes. The bytes are
identical to `rosbags`' ``serialize_cdr`` (the test oracle) and to the stock serialiser.

Each message type is compiled once into three Python functions (size, write, read), generated
from its parsed .msg definition, so small messages (headers, ids) cost a few microseconds.

Decoding never trusts its input: every length and count is checked against the bytes that are
left, and any inconsistency is a `CdrError` naming the type and the offset.
"""

from __future__ import annotations

import struct
import threading
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from .types import PRIMITIVE_DTYPES, Nodetype, fields_of, message_class, normalize_type_name

__all__ = ["CdrError", "serialize", "deserialize", "serialized_size", "HEADER_LE"]

#: Encapsulation header of little-endian plain CDR (XCDR1), what rmw_cyclonedds writes.
HEADER_LE = b"\x00\x01\x00\x00"
_ACCEPTED_HEADERS = (b"\x00\x01",)  # CDR_LE; options (last 2 bytes) carry padding hints only

_STRUCTS = {
    name: struct.Struct("<" + code) for name, code in {
        "bool": "?", "byte": "B", "char": "B", "int8": "b", "uint8": "B", "int16": "h",
        "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
        "float32": "f", "float64": "d"}.items()
}
_U32 = _STRUCTS["uint32"]


class CdrError(ValueError):
    """A sample that is not a valid CDR encoding of the expected type (or a value that cannot be
    encoded)."""


def _is_primitive(node) -> bool:
    return node[0] == Nodetype.BASE and node[1][0] in PRIMITIVE_DTYPES


def _is_string(node) -> bool:
    return node[0] == Nodetype.BASE and node[1][0] in ("string", "wstring")


class _Compiler:
    """Generates and caches the three functions of every type."""

    def __init__(self) -> None:
        self._funcs: Dict[str, Tuple[Callable, Callable, Callable]] = {}
        self._lock = threading.RLock()

    def get(self, name: str) -> Tuple[Callable, Callable, Callable]:
        funcs = self._funcs.get(name)
        if funcs is None:
            with self._lock:
                funcs = self._funcs.get(name) or self._compile(name)
        return funcs

    def _compile(self, name: str) -> Tuple[Callable, Callable, Callable]:
        fields = fields_of(name)
        env: Dict[str, Any] = {
            "np": np, "U32": _U32, "CdrError": CdrError, "cls": message_class(name),
            "TYPE": name, "_string_bytes": _string_bytes, "_read_string": _read_string,
            "_array_bytes": _array_bytes, "_count": _count,
        }
        size_lines, write_lines, read_lines = [], [], []
        for index, (field, node) in enumerate(fields):
            self._field(index, field, node, env, size_lines, write_lines, read_lines)
        names = ", ".join(f"v{i}" for i in range(len(fields)))
        src = "\n".join([
            "def size(m, p):", *(["    pass"] if not size_lines else size_lines), "    return p",
            "def write(buf, p, m):", *(["    pass"] if not write_lines else write_lines),
            "    return p",
            "def read(data, p, end):", *(["    pass"] if not read_lines else read_lines),
            f"    return cls({names}), p",
        ])
        exec(compile(src, f"<cdr {name}>", "exec"), env)  # noqa: S102 - generated from .msg
        funcs = (env["size"], env["write"], env["read"])
        self._funcs[name] = funcs
        return funcs

    def _field(self, i, field, node, env, size, write, read) -> None:
        kind, details = node
        get = f"m.{field}"
        if kind == Nodetype.BASE and not _is_string(node):
            prim = details[0]
            st = _STRUCTS[prim]
            a = st.size
            env[f"S{i}"] = st
            align = f"p = (p + {a - 1}) & -{a}" if a > 1 else None
            for lines in (size, write, read):
                if align:
                    lines.append("    " + align)
            size.append(f"    p += {a}")
            write.append(f"    S{i}.pack_into(buf, p, {get}); p += {a}")
            read.append(f"    if p + {a} > end: raise CdrError(f'{{TYPE}}.{field}: truncated at {{p}}')")
            conv = "bool" if prim == "bool" else ""
            read.append(f"    v{i} = {conv}(S{i}.unpack_from(data, p)[0]); p += {a}")
        elif _is_string(node):
            size.append(f"    p = ((p + 3) & -4) + 5 + len(_string_bytes({get}))")
            write.append(f"    p = (p + 3) & -4; b = _string_bytes({get}); n = len(b)")
            write.append("    U32.pack_into(buf, p, n + 1); buf[p + 4:p + 4 + n] = b; p += 5 + n")
            read.append(f"    v{i}, p = _read_string(data, p, end, TYPE, '{field}')")
        elif kind == Nodetype.NAME:
            env[f"F{i}"] = self.get(details)
            size.append(f"    p = F{i}[0]({get}, p)")
            write.append(f"    p = F{i}[1](buf, p, {get})")
            read.append(f"    v{i}, p = F{i}[2](data, p, end)")
        else:  # ARRAY or SEQUENCE
            sub, count = details
            is_seq = kind == Nodetype.SEQUENCE
            if is_seq:
                size.append(f"    n{i} = _count({get}); p = ((p + 3) & -4) + 4")
                write.append(f"    n{i} = _count({get}); p = (p + 3) & -4; U32.pack_into(buf, p, n{i}); p += 4")
                read.append("    p = (p + 3) & -4")
                read.append(f"    if p + 4 > end: raise CdrError(f'{{TYPE}}.{field}: truncated at {{p}}')")
                read.append(f"    n{i} = U32.unpack_from(data, p)[0]; p += 4")
            else:
                size.append(f"    n{i} = {count}")
                write.append(f"    n{i} = {count}")
                read.append(f"    n{i} = {count}")
                write.append(f"    if _count({get}) != {count}: raise CdrError("
                             f"f'{{TYPE}}.{field}: array needs {count} elements, got {{_count({get})}}')")
            if _is_primitive(sub):
                dtype = PRIMITIVE_DTYPES[sub[1][0]]
                a = dtype.itemsize
                env[f"D{i}"] = dtype
                align = f"p = (p + {a - 1}) & -{a}" if a > 1 else ""
                guard = f"if n{i}: " if is_seq else ""
                for lines in (size, write, read):
                    if align:
                        lines.append(f"    {guard}{align}")
                size.append(f"    p += n{i} * {a}")
                write.append(f"    b = _array_bytes({get}, D{i}, TYPE, '{field}'); "
                             f"buf[p:p + len(b)] = b; p += len(b)")
                read.append(f"    if n{i} * {a} > end - p: raise CdrError("
                            f"f'{{TYPE}}.{field}: {{n{i}}} elements do not fit in the {{end - p}} bytes left at {{p}}')")
                read.append(f"    v{i} = np.frombuffer(data, D{i}, n{i}, p); p += n{i} * {a}")
            else:
                # strings or messages, element by element; every element takes >= 1 byte
                if _is_string(sub):
                    size.append(f"    for e in {get}: p = ((p + 3) & -4) + 5 + len(_string_bytes(e))")
                    write.append(f"    for e in {get}:")
                    write.append("        p = (p + 3) & -4; b = _string_bytes(e); n = len(b)")
                    write.append("        U32.pack_into(buf, p, n + 1); buf[p + 4:p + 4 + n] = b; p += 5 + n")
                    elem_read = f"_read_string(data, p, end, TYPE, '{field}')"
                else:
                    env[f"F{i}"] = self.get(sub[1])
                    size.append(f"    for e in {get}: p = F{i}[0](e, p)")
                    write.append(f"    for e in {get}: p = F{i}[1](buf, p, e)")
                    elem_read = f"F{i}[2](data, p, end)"
                read.append(f"    if n{i} > end - p: raise CdrError("
                            f"f'{{TYPE}}.{field}: count {{n{i}}} exceeds the {{end - p}} bytes left at {{p}}')")
                read.append(f"    v{i} = []")
                read.append(f"    for _ in range(n{i}):")
                read.append(f"        e, p = {elem_read}; v{i}.append(e)")


def _count(value: Any) -> int:
    """Elements of a sequence value (all of a multi-dimensional array: it is sent flat)."""
    return value.size if isinstance(value, np.ndarray) else len(value)


def _string_bytes(value: str) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8")


def _read_string(data, p: int, end: int, type_name: str, field: str) -> Tuple[str, int]:
    p = (p + 3) & -4
    if p + 4 > end:
        raise CdrError(f"{type_name}.{field}: truncated at {p}")
    n = _U32.unpack_from(data, p)[0]
    p += 4
    if n == 0 or n > end - p:
        raise CdrError(f"{type_name}.{field}: string length {n} does not fit in the "
                       f"{end - p} bytes left at {p}")
    raw = data[p:p + n - 1]
    try:
        return bytes(raw).decode("utf-8"), p + n
    except UnicodeDecodeError as exc:
        raise CdrError(f"{type_name}.{field}: string is not UTF-8 ({exc.reason})") from None


def _array_bytes(value: Any, dtype: np.dtype, type_name: str, field: str):
    """The raw bytes of a numeric array as a memoryview, without a copy where possible."""
    if isinstance(value, (bytes, bytearray, memoryview)) and dtype.itemsize == 1:
        return memoryview(value).cast("B")
    arr = np.asarray(value)
    if arr.dtype != dtype:
        if arr.size and not np.can_cast(arr.dtype, dtype, casting="same_kind") and arr.dtype.kind != dtype.kind:
            raise CdrError(f"{type_name}.{field}: cannot encode {arr.dtype} values as {dtype}")
        arr = arr.astype(dtype)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return memoryview(arr).cast("B")


_COMPILER = _Compiler()


def serialized_size(msg: Any, type_name: str) -> int:
    """Bytes `serialize` produces for ``msg`` (header included, without end padding)."""
    return 4 + _COMPILER.get(normalize_type_name(type_name))[0](msg, 0)


def serialize(msg: Any, type_name: str, *, pad: bool = False) -> bytearray:
    """``msg`` as CDR bytes with the encapsulation header; ``pad`` rounds the length up to a
    multiple of 4 (what a DDS writer sends). Raises `CdrError` for values that do not fit."""
    size_fn, write_fn, _ = _COMPILER.get(normalize_type_name(type_name))
    body = size_fn(msg, 0)
    total = 4 + body
    buf = bytearray((total + 3) & -4 if pad else total)
    buf[0:4] = HEADER_LE
    try:
        end = write_fn(memoryview(buf)[4:], 0, msg)
    except (struct.error, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, CdrError):
            raise
        raise CdrError(f"{type_name}: cannot encode message: {exc}") from exc
    if end != body:  # a field changed between the two passes (another thread)
        raise CdrError(f"{type_name}: message changed while it was being encoded")
    return buf


def deserialize(data: Any, type_name: str) -> Any:
    """A message from CDR bytes (header included). Numeric arrays are read-only NumPy views of
    ``data``. Raises `CdrError` for anything that is not a valid encoding of ``type_name``."""
    name = normalize_type_name(type_name)
    _, _, read_fn = _COMPILER.get(name)
    view = memoryview(data).cast("B")
    if len(view) < 4:
        raise CdrError(f"{name}: {len(view)} bytes, shorter than the encapsulation header")
    if bytes(view[0:2]) not in _ACCEPTED_HEADERS:
        raise CdrError(f"{name}: encapsulation {bytes(view[0:2]).hex()} is not little-endian "
                       "plain CDR (0001)")
    body = view[4:]
    try:
        msg, _ = read_fn(body, 0, len(body))
    except CdrError:
        raise
    except (struct.error, ValueError, TypeError, IndexError, OverflowError, MemoryError) as exc:
        raise CdrError(f"{name}: malformed sample: {exc}") from None
    return msg


def compile_all(names: List[str]) -> None:
    """Compile the codecs of ``names`` now (first use otherwise compiles lazily)."""
    for name in names:
        _COMPILER.get(normalize_type_name(name))
