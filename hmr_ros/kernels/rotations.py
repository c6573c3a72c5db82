"""Rotation conversions (axis-angle, matrix, quaternion (w, x, y, z), 6D) as compiled kernels.

Conventions, pinned in DESIGN.md §4: matrices are the interchange format; quaternions are
(w, x, y, z) with w >= 0 on output; 6D is the first two *columns* of the matrix laid out as
(R00, R10, R20, R01, R11, R21). Float32 and float64; any leading batch shape.
"""

from __future__ import annotations

import numpy as np

from . import _arrays as A
from ._ext import ext

# Must match csrc/common/rotations.h: RotationConversion.
_KINDS = {
    "axis_angle_to_matrix": (0, (3,), (3, 3)),
    "matrix_to_axis_angle": (1, (3, 3), (3,)),
    "matrix_to_quaternion": (2, (3, 3), (4,)),
    "quaternion_to_matrix": (3, (4,), (3, 3)),
    "axis_angle_to_quaternion": (4, (3,), (4,)),
    "quaternion_to_axis_angle": (5, (4,), (3,)),
    "rot6d_to_matrix": (6, (6,), (3, 3)),
    "matrix_to_rot6d": (7, (3, 3), (6,)),
}


def _convert(op: str, x):
    kind, tail_in, tail_out = _KINDS[op]
    a = A.arg(op, "input", x, (np.float32, np.float64))
    if a.shape[len(a.shape) - len(tail_in):] != tail_in or len(a.shape) < len(tail_in):
        raise A.KernelError(f"{op}: input must have shape (..., {', '.join(map(str, tail_in))}), "
                            f"got {a.shape}")
    lead = a.shape[: len(a.shape) - len(tail_in)]
    n = int(np.prod(lead, dtype=np.int64))
    out = A.empty_like_device(a, lead + tail_out, a.dtype)
    f64 = a.dtype == np.float64
    if a.cuda:
        ext().cuda_convert_rotations(kind, a.ptr, A.ptr(out), n, f64, A.stream_of(a))
    else:
        ext().cpu_convert_rotations(kind, a.ptr, A.ptr(out), n, f64)
    return out


def axis_angle_to_matrix(aa):
    """(..., 3) rotation vectors -> (..., 3, 3) matrices (Taylor series near 0)."""
    return _convert("axis_angle_to_matrix", aa)


def matrix_to_axis_angle(R):
    """(..., 3, 3) -> (..., 3) rotation vectors, angle in [0, π]."""
    return _convert("matrix_to_axis_angle", R)


def matrix_to_quaternion(R):
    """(..., 3, 3) -> (..., 4) unit quaternions (w, x, y, z), w >= 0 (Shepperd's method)."""
    return _convert("matrix_to_quaternion", R)


def quaternion_to_matrix(q):
    """(..., 4) quaternions (w, x, y, z), normalised first -> (..., 3, 3)."""
    return _convert("quaternion_to_matrix", q)


def axis_angle_to_quaternion(aa):
    """(..., 3) -> (..., 4) unit quaternions, w >= 0."""
    return _convert("axis_angle_to_quaternion", aa)


def quaternion_to_axis_angle(q):
    """(..., 4) -> (..., 3), angle in [0, π] (q and -q give the same result)."""
    return _convert("quaternion_to_axis_angle", q)


def rot6d_to_matrix(d6):
    """(..., 6) first two columns -> (..., 3, 3) by Gram-Schmidt."""
    return _convert("rot6d_to_matrix", d6)


def matrix_to_rot6d(R):
    """(..., 3, 3) -> (..., 6) = (R00, R10, R20, R01, R11, R21)."""
    return _convert("matrix_to_rot6d", R)
