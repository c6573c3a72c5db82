"""Minimal PNG writer and reader (stdlib ``zlib`` + ``struct``): no imaging dependency.

The contact sheet is the only image the package writes, and 8-bit RGB / grey PNGs take twenty
lines; Pillow/OpenCV would be a dependency for nothing. ``read_png`` reads back what
``write_png`` writes (8-bit grey/RGB/RGBA, non-interlaced, all five row filters) and checks
every chunk's CRC, so tests can verify files byte-for-byte.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Union

import numpy as np

__all__ = ["write_png", "read_png", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: Union[str, Path], image: np.ndarray, level: int = 6) -> Path:
    """Write an H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA) uint8 array as PNG."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"write_png needs uint8, got {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in _COLOR_TYPES or 0 in img.shape[:2]:
        raise ValueError(f"write_png needs H x W, H x W x 3 or H x W x 4, got {image.shape}")
    h, w, c = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * c)], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    data = (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(data)
    return path


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    a, b, c = (x.astype(np.int16) for x in (a, b, c))
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)


def read_png(path: Union[str, Path]) -> np.ndarray:
    """Read an 8-bit non-interlaced grey/RGB/RGBA PNG -> H x W (x C) uint8; raises
    ``ValueError`` on a bad signature, CRC or layout."""
    data = Path(path).read_bytes()
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file (bad signature)")
    pos, header, idat = 8, None, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"PNG chunk {kind!r}: CRC mismatch")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = header
    channels = {v: k for k, v in _COLOR_TYPES.items()}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG layout (depth {depth}, colour type {ctype})")
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    stride = w * channels
    if raw.size != h * (stride + 1):
        raise ValueError(f"PNG data has {raw.size} bytes, expected {h * (stride + 1)}")
    rows = raw.reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        kind, line = rows[y, 0], rows[y, 1:].copy()
        if kind == 1 or kind == 3 or kind == 4:  # filters depending on the left neighbour
            for x in range(stride):
                left = line[x - channels] if x >= channels else 0
                up = prev[x]
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (int(left) + int(up)) // 2
                else:
                    ul = prev[x - channels] if x >= channels else 0
                    pred = _paeth(np.array(left), np.array(up), np.array(ul))
                line[x] = (int(line[x]) + int(pred)) & 0xFF
        elif kind == 2:
            line = (line.astype(np.uint16) + prev).astype(np.uint8)
        elif kind != 0:
            raise ValueError(f"PNG row {y}: unknown filter {kind}")
        out[y] = line
        prev = line
    return out.reshape(h, w, channels) if channels > 1 else out.reshape(h, w)
