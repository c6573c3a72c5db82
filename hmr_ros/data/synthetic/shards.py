"""Deterministic ``.npz`` shards: byte-identical for identical arrays, memory-mappable.

``np.savez`` stamps every member with the current time, so two runs with the same seed would
write different bytes. ``save_npz`` writes the same zip layout with a fixed timestamp (numpy's
``np.load`` reads it unchanged). Stored (uncompressed) shards can be memory-mapped member by
member (``open_npz_mmap``): a dataset then reads one sample without touching the rest of the
shard, which is what random-access training needs. Deflated shards are ~3-5x smaller but must be
decompressed whole (``np.load``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Dict, Mapping, Union

import numpy as np

__all__ = ["save_npz", "open_npz_mmap", "load_npz"]

_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: Union[str, Path], arrays: Mapping[str, np.ndarray],
             compress: bool = False) -> Path:
    """Write ``arrays`` (sorted by name) as an npz, atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(tmp, "w", compression=method, allowZip64=True) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arrays[name]),
                                          allow_pickle=False)
    os.replace(tmp, path)
    return path


def open_npz_mmap(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Read-only memory maps of every member of a *stored* npz (raises ``ValueError`` for a
    compressed one: use :func:`load_npz`)."""
    path = Path(path)
    out: Dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: member {info.filename} is compressed; cannot mmap")
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: bad local header for {info.filename}")
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"{path}: unsupported npy version {version}")
            offset = fh.tell()
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if int(np.prod(shape)) == 0:
                out[key] = np.zeros(shape, dtype)
                continue
            out[key] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                 order="F" if fortran else "C")
    return out


def load_npz(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Every member of an npz (stored or compressed) read into memory."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
