"""Pinhole intrinsics of the synthetic crops and the weak-perspective crop camera.

Frames: the *camera frame* is OpenCV's (x right, y down, z forward, metres); pixel (col, row)
has its centre at (col + 0.5, row + 0.5), so ``K`` maps a point to continuous pixel coordinates
``u = fx·X/Z + cx`` with the image spanning [0, W] x [0, H].

Crop camera (the package's one convention, ``hmr_ros.models.camera``): a square crop with centre
``(bx, by)`` and side ``L`` pixels has normalised coordinates ``x_n = (u - bx) / (L/2)`` in
[-1, 1] (y down) and ``x_n ≈ s · (X_xy + (tx, ty))`` for the posed LBS joints ``X`` (no
translation added). Linearising the pinhole projection at the depth ``Tz`` of the SMPL
translation ``T`` gives the *exact, invertible* pair used everywhere in the synthetic data:

    s  = 2 f / (L · Tz)
    tx = Tx + (cx - bx) · Tz / f          ty = Ty + (cy - by) · Tz / f

and back (CLIFF's crop-to-full conversion) with the runtime's
``hmr_ros.runtime.camera.crop_to_full_translation``, the one inverse (the tests check that it
undoes this module's ``transl_to_crop_cam``).

Weak perspective ignores each point's depth offset from ``Tz``; projecting with ``K`` is the
exact GT (``keypoints2d``), the crop camera is the regression target.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = [
    "intrinsics",
    "project",
    "transl_to_crop_cam",
    "pixels_to_crop_normalised",
]


def intrinsics(size: int, fov_deg: float, principal_offset: Tuple[float, float] = (0.0, 0.0)
               ) -> np.ndarray:
    """3 x 3 float64 K of a square ``size`` image with the given field of view (square pixels).

    ``principal_offset`` moves the principal point from the image centre, in pixels.
    """
    f = 0.5 * size / np.tan(0.5 * np.deg2rad(fov_deg))
    return np.array([[f, 0.0, 0.5 * size + principal_offset[0]],
                     [0.0, f, 0.5 * size + principal_offset[1]],
                     [0.0, 0.0, 1.0]])


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) -> continuous pixel coordinates (..., 2)."""
    p = np.asarray(points, np.float64)
    z = p[..., 2:3]
    uv = p[..., :2] / z
    K = np.asarray(K, np.float64)
    return np.stack([K[0, 0] * uv[..., 0] + K[0, 1] * uv[..., 1] + K[0, 2],
                     K[1, 1] * uv[..., 1] + K[1, 2]], axis=-1)


def transl_to_crop_cam(transl: np.ndarray, K: np.ndarray, crop_centre: Tuple[float, float],
                       crop_size: float) -> np.ndarray:
    """SMPL translation (..., 3) in the camera frame -> weak-perspective (s, tx, ty) (..., 3)."""
    t = np.asarray(transl, np.float64)
    f, cx, cy = float(K[0, 0]), float(K[0, 2]), float(K[1, 2])
    tz = t[..., 2]
    s = 2.0 * f / (crop_size * tz)
    tx = t[..., 0] + (cx - crop_centre[0]) * tz / f
    ty = t[..., 1] + (cy - crop_centre[1]) * tz / f
    return np.stack([s, tx, ty], axis=-1)


def pixels_to_crop_normalised(points: np.ndarray, crop_centre: Tuple[float, float],
                              crop_size: float) -> np.ndarray:
    """Pixel coordinates (..., 2) -> crop-normalised [-1, 1] coordinates (..., 2)."""
    return (np.asarray(points, np.float64) - np.asarray(crop_centre)) / (0.5 * crop_size)
