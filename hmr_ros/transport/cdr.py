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

import itertools
import struct
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

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
#: a uint32 length or count written at offset p: padding to 4 first, by p & 3
_LEN = [struct.Struct("<" + "x" * ((4 - r) % 4) + "I") for r in range(4)]
_ZEROS = [bytes(n) for n in range(8)]


class CdrError(ValueError):
    """A sample that is not a valid CDR encoding of the expected type (or a value that cannot be
    encoded)."""


def _is_primitive(node) -> bool:
    return node[0] == Nodetype.BASE and node[1][0] in PRIMITIVE_DTYPES


def _is_string(node) -> bool:
    return node[0] == Nodetype.BASE and node[1][0] in ("string", "wstring")


class _Compiler:
    """Generates and caches the three functions of every type.

    Nested messages are flattened into their parent's functions (``m.header.stamp.sec``), so
    consecutive scalars merge into one ``struct`` call across message boundaries and no Python
    call is spent per nested message; only sequences and arrays of messages call the element
    type's own functions.
    """

    def __init__(self) -> None:
        self._funcs: Dict[str, Tuple[Callable, Callable, Callable]] = {}
        self._lock = threading.RLock()

    def get(self, name: str) -> Tuple[Callable, Callable, Callable]:
        """The functions of a type; ``name`` in any accepted spelling (cached per spelling)."""
        funcs = self._funcs.get(name)
        if funcs is None:
            with self._lock:
                canonical = normalize_type_name(name)
                funcs = self._funcs.get(canonical) or self._compile(canonical)
                self._funcs[name] = funcs
        return funcs

    def _compile(self, name: str) -> Tuple[Callable, Callable, Callable]:
        env: Dict[str, Any] = {
            "np": np, "U32": _U32, "CdrError": CdrError, "TYPE": name,
            "_read_string": _read_string, "_array_bytes": _array_bytes, "_count": _count,
            "ndarray": np.ndarray, "LEN": _LEN, "Z": _ZEROS,
            "_struct_rows_bytes": _struct_rows_bytes,
        }
        size_lines, write_lines, read_lines = [], [], []
        counter = itertools.count()
        top = self._struct(name, "m", "", env, size_lines, write_lines, read_lines, counter)
        src = "\n".join([
            "def size(m, p):", *size_lines, "    return p",
            "def write(out, p, m):", *write_lines, "    return p",
            "def read(data, p, end):", *read_lines, f"    return {top}, p",
        ])
        exec(compile(src, f"<cdr {name}>", "exec"), env)  # noqa: S102 - generated from .msg
        funcs = (env["size"], env["write"], env["read"])
        self._funcs[name] = funcs
        return funcs

    def _struct(self, name, path, label, env, size, write, read, counter) -> str:
        """Emit the fields of message type ``name`` found at ``path``; returns the local that
        holds the decoded message in ``read``."""
        values: List[str] = []
        run: List[Tuple[str, str, str, str]] = []  # (local, path, label, primitive)

        def flush() -> None:
            if run:
                self._scalar_run(run, env, size, write, read)
                run.clear()

        for field, node in fields_of(name):
            var = f"v{next(counter)}"
            fpath, flabel = f"{path}.{field}", f"{label}.{field}" if label else field
            if node[0] == Nodetype.BASE and not _is_string(node):
                run.append((var, fpath, flabel, node[1][0]))
                values.append(var)
                continue
            flush()
            if node[0] == Nodetype.NAME:
                values.append(self._struct(node[1], fpath, flabel, env, size, write, read,
                                           counter))
            else:
                self._field(var, fpath, flabel, node, env, size, write, read)
                values.append(var)
        flush()
        obj = f"v{next(counter)}"
        env[f"C_{obj}"] = message_class(name)
        read.append(f"    {obj} = C_{obj}({', '.join(values)})")
        return obj

    @staticmethod
    def _scalar_run(run, env, size, write, read) -> None:
        """Consecutive scalars as one ``struct`` call. Their padding depends only on where the
        run starts modulo 8 (the largest alignment), so one Struct per start residue is built
        here and picked at run time with ``p & 7``."""
        key = run[0][0]
        variants = []
        for start in range(8):
            offset, fmt = start, "<"
            for *_, prim in run:
                a = _STRUCTS[prim].size
                pad = (-offset) % a
                fmt += "x" * pad + _STRUCTS[prim].format[1:]
                offset += pad + a
            variants.append(struct.Struct(fmt))
        env[f"R_{key}"] = variants
        env[f"RS_{key}"] = [v.size for v in variants]
        values = ", ".join(path for _, path, _, _ in run)
        targets = ", ".join(var for var, _, _, _ in run)
        size.append(f"    p += RS_{key}[p & 7]")
        write.append(f"    st = R_{key}[p & 7]; out.append(st.pack({values})); p += st.size")
        read.append(f"    st = R_{key}[p & 7]")
        read.append(f"    if p + st.size > end: raise CdrError(f'{{TYPE}}.{run[0][2]}: truncated at {{p}}')")
        read.append(f"    {targets}, = st.unpack_from(data, p); p += st.size")

    def _struct_array(self, var, get, label, sub, count, is_seq, homogeneous, env, size, write,
                      read) -> None:
        """Sequences and arrays of messages made of one numeric type (points, colours): as a
        list of messages, or as an (N, k) NumPy array written in one piece (RViz markers carry
        tens of thousands of points)."""
        prim, k = homogeneous
        dtype = PRIMITIVE_DTYPES[prim]
        a = dtype.itemsize
        w = k * a
        n = f"n_{var}"
        env[f"D_{var}"] = dtype
        env[f"F_{var}"] = self.get(sub[1])
        align = f"(p + {a - 1}) & -{a}" if a > 1 else "p"
        if is_seq:
            size.append(f"    e_ = {get}; {n} = e_.size // {k} if e_.__class__ is ndarray else len(e_)")
            size.append("    p = ((p + 3) & -4) + 4")
            if a > 4:
                size.append(f"    if {n}: p = {align}")
        else:
            size.append(f"    {n} = {count}")
            if a > 1:
                size.append(f"    p = {align}")
        size.append(f"    p += {n} * {w}")
        write.append(f"    e_ = {get}")
        write.append("    if e_.__class__ is ndarray:")
        write.append(f"        b = _struct_rows_bytes(e_, D_{var}, {k}, TYPE, '{label}'); nb = len(b)")
        if is_seq:
            write.append(f"        st = LEN[p & 3]; out.append(st.pack(nb // {w})); p += st.size")
            if a > 4:
                write.append(f"        if nb: q = {align}; out.append(Z[q - p]); p = q")
        else:
            write.append(f"        if nb != {count * w}: raise CdrError("
                         f"f'{{TYPE}}.{label}: array needs {count} elements, got {{nb // {w}}}')")
            if a > 1:
                write.append(f"        q = {align}; out.append(Z[q - p]); p = q")
        write.append("        out.append(b); p += nb")
        write.append("    else:")
        if is_seq:
            write.append("        st = LEN[p & 3]; out.append(st.pack(len(e_))); p += st.size")
        else:
            write.append(f"        if len(e_) != {count}: raise CdrError("
                         f"f'{{TYPE}}.{label}: array needs {count} elements, got {{len(e_)}}')")
        write.append(f"        for e in e_: p = F_{var}[1](out, p, e)")
        if is_seq:
            read.append("    p = (p + 3) & -4")
            read.append(f"    if p + 4 > end: raise CdrError(f'{{TYPE}}.{label}: truncated at {{p}}')")
            read.append(f"    {n} = U32.unpack_from(data, p)[0]; p += 4")
        else:
            read.append(f"    {n} = {count}")
        read.append(f"    if {n} > end - p: raise CdrError("
                    f"f'{{TYPE}}.{label}: count {{{n}}} exceeds the {{end - p}} bytes left at {{p}}')")
        read.append(f"    {var} = []")
        read.append(f"    for _ in range({n}):")
        read.append(f"        e, p = F_{var}[2](data, p, end); {var}.append(e)")

    def _field(self, var, get, label, node, env, size, write, read) -> None:
        """A string, an array or a sequence at ``get``; decoded into the local ``var``."""
        kind, details = node
        if _is_string(node):
            size.append(f"    p = ((p + 3) & -4) + 5 + len({get}.encode())")
            write.append(f"    b = {get}.encode(); st = LEN[p & 3]")
            write.append("    out.append(st.pack(len(b) + 1) + b + b'\\0'); p += st.size + len(b) + 1")
            read.append("    p = (p + 3) & -4")
            read.append(f"    if p + 4 > end: raise CdrError(f'{{TYPE}}.{label}: truncated at {{p}}')")
            read.append("    n = U32.unpack_from(data, p)[0]; p += 4")
            read.append(f"    if n == 0 or n > end - p: raise CdrError(f'{{TYPE}}.{label}: string "
                        "length {n} does not fit in the {end - p} bytes left at {p}')")
            read.append(f"    {var} = str(data[p:p + n - 1], 'utf-8'); p += n")
            return
        sub, count = details
        is_seq = kind == Nodetype.SEQUENCE
        n = f"n_{var}"
        homogeneous = _homogeneous(sub[1]) if sub[0] == Nodetype.NAME else None
        if homogeneous is not None:
            self._struct_array(var, get, label, sub, count, is_seq, homogeneous, env, size,
                               write, read)
            return
        primitive = _is_primitive(sub)
        if is_seq:
            size.append(f"    {n} = _count({get}); p = ((p + 3) & -4) + 4")
            if not primitive:
                write.append(f"    {n} = len({get}); st = LEN[p & 3]; out.append(st.pack({n})); "
                             "p += st.size")
            read.append("    p = (p + 3) & -4")
            read.append(f"    if p + 4 > end: raise CdrError(f'{{TYPE}}.{label}: truncated at {{p}}')")
            read.append(f"    {n} = U32.unpack_from(data, p)[0]; p += 4")
        else:
            for lines in (size, read):
                lines.append(f"    {n} = {count}")
            if not primitive:
                write.append(f"    if len({get}) != {count}: raise CdrError("
                             f"f'{{TYPE}}.{label}: array needs {count} elements, got {{len({get})}}')")
        if primitive:
            dtype = PRIMITIVE_DTYPES[sub[1][0]]
            a = dtype.itemsize
            env[f"D_{var}"] = dtype
            align = f"p = (p + {a - 1}) & -{a}" if a > 1 else ""
            if is_seq and a <= 4:
                align = ""  # the uint32 count left p 4-aligned already
            guard = f"if {n}: " if is_seq else ""
            for lines in (size, read):
                if align:
                    lines.append(f"    {guard}{align}")
            size.append(f"    p += {n} * {a}")
            # The bytes first: an ndarray of the right dtype is sent from its own memory (a
            # C-contiguous one casts; anything else goes through _array_bytes, which converts
            # or copies); the count follows from their length.
            write.append(f"    a = {get}")
            write.append(f"    if a.__class__ is ndarray and a.dtype is D_{var}:")
            write.append("        try: b = a.data.cast('B')")
            write.append(f"        except (TypeError, ValueError): b = _array_bytes(a, D_{var}, TYPE, '{label}')")
            write.append(f"    else: b = _array_bytes(a, D_{var}, TYPE, '{label}')")
            write.append("    nb = len(b)")
            if is_seq:
                write.append(f"    st = LEN[p & 3]; out.append(st.pack(nb // {a})); p += st.size")
                if align:
                    write.append(f"    if nb: q = {align[4:]}; out.append(Z[q - p]); p = q")
            else:
                write.append(f"    if nb != {count * a}: raise CdrError("
                             f"f'{{TYPE}}.{label}: array needs {count} elements, got {{nb // {a}}}')")
                if align:
                    write.append(f"    q = {align[4:]}; out.append(Z[q - p]); p = q")
            write.append("    out.append(b); p += nb")
            read.append(f"    if {n} * {a} > end - p: raise CdrError("
                        f"f'{{TYPE}}.{label}: {{{n}}} elements do not fit in the {{end - p}} bytes left at {{p}}')")
            read.append(f"    {var} = np.frombuffer(data, D_{var}, {n}, p); p += {n} * {a}")
            return
        # strings or messages, element by element; every element takes >= 1 byte
        if _is_string(sub):
            size.append(f"    for e in {get}: p = ((p + 3) & -4) + 5 + len(e.encode())")
            write.append(f"    for e in {get}:")
            write.append("        b = e.encode(); st = LEN[p & 3]")
            write.append("        out.append(st.pack(len(b) + 1) + b + b'\\0'); p += st.size + len(b) + 1")
            elem_read = f"_read_string(data, p, end, TYPE, '{label}')"
        else:
            env[f"F_{var}"] = self.get(sub[1])
            size.append(f"    for e in {get}: p = F_{var}[0](e, p)")
            write.append(f"    for e in {get}: p = F_{var}[1](out, p, e)")
            elem_read = f"F_{var}[2](data, p, end)"
        read.append(f"    if {n} > end - p: raise CdrError("
                    f"f'{{TYPE}}.{label}: count {{{n}}} exceeds the {{end - p}} bytes left at {{p}}')")
        read.append(f"    {var} = []")
        read.append(f"    for _ in range({n}):")
        read.append(f"        e, p = {elem_read}; {var}.append(e)")


def _homogeneous(name: str) -> Optional[Tuple[str, int]]:
    """(primitive, count) when every leaf field of message ``name`` is the same numeric
    primitive (geometry_msgs/Point: float64 x 3, std_msgs/ColorRGBA: float32 x 4), else None.
    Such a message packs without padding, so a sequence of them is one block of numbers."""
    prims: List[str] = []
    for _, node in fields_of(name):
        if node[0] == Nodetype.NAME:
            inner = _homogeneous(node[1])
            if inner is None:
                return None
            prims += [inner[0]] * inner[1]
        elif _is_primitive(node) and node[1][0] != "bool":
            prims.append(node[1][0])
        else:
            return None
    if not prims or len(set(PRIMITIVE_DTYPES[p] for p in prims)) != 1:
        return None
    return prims[0], len(prims)


def _struct_rows_bytes(value: np.ndarray, dtype: np.dtype, k: int, type_name: str, field: str):
    """The bytes of an (N, k) array standing for N messages of k numbers each."""
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[1] != k:
        raise CdrError(f"{type_name}.{field}: an array for these messages must be (N, {k}), "
                       f"got {arr.shape}")
    return _array_bytes(arr, dtype, type_name, field)


def _count(value: Any) -> int:
    """Elements of a sequence value (all of a multi-dimensional array: it is sent flat)."""
    return value.size if isinstance(value, np.ndarray) else len(value)


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
    if type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous:
        return value.data.cast("B")  # the common case: no conversion, no copy
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
    return 4 + _COMPILER.get(type_name)[0](msg, 0)


def serialize(msg: Any, type_name: str, *, pad: bool = False) -> bytes:
    """``msg`` as CDR bytes with the encapsulation header; ``pad`` rounds the length up to a
    multiple of 4 (what a DDS writer sends). Raises `CdrError` for values that do not fit.

    The message is written as a list of pieces (packed scalars, and the arrays' own memory)
    joined once: every array is copied exactly once, into the result."""
    write_fn = _COMPILER.get(type_name)[1]
    out = [HEADER_LE]
    try:
        end = write_fn(out, 0, msg)
    except (struct.error, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, CdrError):
            raise
        raise CdrError(f"{type_name}: cannot encode message: {exc}") from exc
    if pad and end & 3:
        out.append(_ZEROS[4 - (end & 3)])
    return b"".join(out)


def deserialize(data: Any, type_name: str) -> Any:
    """A message from CDR bytes (header included). Numeric arrays are read-only NumPy views of
    ``data``. Raises `CdrError` for anything that is not a valid encoding of ``type_name``."""
    name = type_name
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
    except UnicodeDecodeError as exc:
        raise CdrError(f"{name}: a string is not UTF-8 ({exc.reason} at byte {exc.start})"
                       ) from None
    except (struct.error, ValueError, TypeError, IndexError, OverflowError, MemoryError) as exc:
        raise CdrError(f"{name}: malformed sample: {exc}") from None
    return msg


def compile_all(names: List[str]) -> None:
    """Compile the codecs of ``names`` now (first use otherwise compiles lazily)."""
    for name in names:
        _COMPILER.get(name)
