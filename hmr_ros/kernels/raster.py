"""Triangle rasterisation (z-buffer, perspective-correct barycentrics) on the CPU.

The synthetic-data renderer's core: one pass over a concatenated scene mesh gives per pixel the
nearest face, its barycentrics and depth; colours, IUV and part labels are then interpolated
from per-vertex attributes with :func:`interpolate`. Camera frame is OpenCV's (x right, y down,
z forward); pixel centres are at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

import numpy as np

from . import _arrays as A
from ._ext import ext


def rasterize(vertices, faces, K, height: int, width: int, near: float = 0.01):
    """-> (face_id (H, W) int32, -1 where empty; bary (H, W, 3) float32; depth (H, W) float32,
    0 where empty). vertices (N, 3) float32 in the camera frame; faces (F, 3) int32; K (3, 3)
    pinhole intrinsics. Faces with a vertex nearer than ``near`` (or behind the camera) are
    skipped; both windings are drawn."""
    op = "rasterize"
    v = A.arg(op, "vertices", vertices, (np.float32,))
    f = A.arg(op, "faces", faces, (np.int32,))
    dims: dict = {}
    A.check_shape(op, "vertices", v, ("N", 3), dims)
    A.check_shape(op, "faces", f, ("F", 3), dims)
    if v.cuda or f.cuda:
        raise A.KernelError(f"{op}: only the CPU rasteriser exists; pass NumPy arrays")
    height, width = int(height), int(width)
    if not (1 <= height <= 16384 and 1 <= width <= 16384):
        raise A.KernelError(f"{op}: image size must be within 1..16384, got {height}x{width}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise A.KernelError(f"{op}: K must be finite 3x3 intrinsics with fx, fy > 0, got {K}")
    if dims["F"] and (faces.min() < 0 or faces.max() >= dims["N"]):
        raise A.KernelError(f"{op}: faces index vertices outside [0, {dims['N']})")
    face_id = np.full((height, width), -1, np.int32)
    bary = np.zeros((height, width, 3), np.float32)
    depth = np.zeros((height, width), np.float32)
    ext().cpu_rasterize(dims["N"], dims["F"], height, width, float(K[0, 0]), float(K[1, 1]),
                        float(K[0, 2]), float(K[1, 2]), float(near), v.ptr, f.ptr,
                        A.ptr(face_id), A.ptr(bary), A.ptr(depth))
    return face_id, bary, depth


def interpolate(attributes: np.ndarray, faces: np.ndarray, face_id: np.ndarray,
                bary: np.ndarray) -> np.ndarray:
    """Per-vertex attributes (N, C) -> per-pixel (H, W, C) with the barycentrics; 0 where empty."""
    attributes = np.asarray(attributes)
    hit = face_id >= 0
    out = np.zeros(face_id.shape + attributes.shape[1:], np.float32)
    corners = attributes[faces[face_id[hit]]]  # P x 3 x C
    out[hit] = np.einsum("pk,pkc->pc", bary[hit], corners.reshape(corners.shape[0], 3, -1)
                         ).reshape((-1,) + attributes.shape[1:])
    return out
