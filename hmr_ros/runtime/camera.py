"""From a crop's weak-perspective camera to a full-frame translation (CLIFF-style).

The regressor predicts ``(s, tx, ty)`` per crop with ``x_crop = s * (X_xy + (tx, ty))`` in
crop-normalised coordinates ([-1, 1] across the crop). A crop of ``b`` image pixels centred at
``(cx, cy)`` seen by a pinhole camera with focal ``f`` and principal point ``(px, py)`` then
places the body at

    t_z = 2 f / (b s),   t_x = tx + 2 (cx - px) / (b s),   t_y = ty + 2 (cy - py) / (b s)

in the camera frame (metres, OpenCV axes). Without camera_info the focal length is assumed to be
the image diagonal in pixels (CLIFF's estimate) with the principal point at the centre, and the
result says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    assumed: bool = False  # True when no camera_info was given

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)

    @classmethod
    def from_matrix(cls, K) -> "Intrinsics":
        K = np.asarray(K, np.float64).reshape(3, 3)
        return cls(K[0, 0], K[1, 1], K[0, 2], K[1, 2])


def _plausible(K: np.ndarray, width: int, height: int) -> bool:
    """Finite, focal lengths of 1 px to 1e6 px, principal point within a few image sizes of
    the image: anything else (a zeroed or garbage camera_info) would put people at infinity
    or overflow float32 downstream."""
    if not np.isfinite(K).all():
        return False
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    size = max(width, height, 1)
    return (1.0 <= fx <= 1e6 and 1.0 <= fy <= 1e6 and -5 * size <= cx <= 6 * size
            and -5 * size <= cy <= 6 * size)


def resolve_intrinsics(K: Optional[np.ndarray], width: int, height: int) -> Intrinsics:
    """The given intrinsics when usable, else the assumed ones (flagged)."""
    if K is not None:
        K = np.asarray(K, np.float64)
        if K.size == 9 and _plausible(K.reshape(3, 3), width, height):
            return Intrinsics.from_matrix(K)
    f = float(np.hypot(width, height))
    return Intrinsics(f, f, width / 2.0, height / 2.0, assumed=True)


def crop_to_full_translation(cam: np.ndarray, centers: np.ndarray, sizes: np.ndarray,
                             intr: Intrinsics) -> np.ndarray:
    """(N, 3) crop cameras (s, tx, ty), (N, 2) crop centres and (N,) crop sizes in pixels ->
    (N, 3) camera-frame translations in metres."""
    cam = np.asarray(cam, np.float64)
    s = np.maximum(cam[:, 0], 1e-6)  # a non-positive scale means "very far", not a flip
    bs = sizes * s
    f = 0.5 * (intr.fx + intr.fy)
    return np.stack([cam[:, 1] + 2 * (centers[:, 0] - intr.cx) / bs,
                     cam[:, 2] + 2 * (centers[:, 1] - intr.cy) / bs,
                     2 * f / bs], axis=1)


def project(points: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixels."""
    z = np.maximum(points[..., 2], 1e-6)
    return np.stack([intr.fx * points[..., 0] / z + intr.cx,
                     intr.fy * points[..., 1] / z + intr.cy], axis=-1)
