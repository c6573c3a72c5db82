"""Crop geometry shared by the real-image loaders: the affine crop warp and what it does to labels.

**Crop convention.** Image pixel coordinates have x right, y down, and pixel ``(i, j)``'s centre
at integer ``(x=j, y=i)`` (the OpenCV / SPIN convention for ``center`` and keypoints). A person box
is a centre ``c`` (pixels) and a side ``b`` (pixels; SPIN's ``scale`` is ``b / 200``). A crop of
``L`` pixels maps an image point ``p`` to

    crop pixel  q = (L / b) · F · Rot(r) · (p - c) + (L - 1) / 2
    normalised  n = (2 / b) · F · Rot(r) · (p - c)          ∈ [-1, 1] inside the crop

where ``n = 2 (q + 0.5) / L - 1`` is the crop-normalised coordinate of ``camera.py`` ((-1, -1) =
top-left corner of the crop, (1, 1) = bottom-right; independent of L), ``Rot(r)`` =
``[[cos r, -sin r], [sin r, cos r]]`` in pixel axes (clockwise on screen for r > 0), and
``F = diag(-1, 1)`` for a horizontal flip (else identity): flip *after* rotation.

**Labels.** The camera frame is x right, y down, z forward, so the same in-plane rotation of the
image is ``Rz(r)`` (the same 2 x 2 block) in 3D: the global orientation becomes ``Rz(r) @ R_root``
and 3D points ``Rz(r) @ X`` (exact for weak perspective, the model's camera). A flip mirrors the
scene by ``M = diag(-1, 1, 1)`` and swaps left and right (``FLIP_PERMUTATION``):

* 3D joints: ``X'_j = M X_{perm(j)}``;
* rotation matrices (relative, and the camera-frame root alike): ``R'_j = M R_{perm(j)} M``. The
  root maps body to camera; both frames are mirrored by M (the SMPL rest body is left/right
  symmetric in x), hence M on both sides. Children: ``M R M`` is the rotation of the mirrored
  part in its mirrored parent frame;
* axis-angle: ``M R M`` is the rotation about ``det(M) · M a = (a_x, -a_y, -a_z)`` by the same
  angle (an axis is a pseudo-vector), so ``a'_j = (a_x, -a_y, -a_z)_{perm(j)}``;
* 2D keypoints (normalised): ``n'_j = (-n_x, n_y)_{perm(j)}``;
* per-part values (confidence, visibility): ``v'_j = v_{perm(j)}``.

Every flip function is an involution (``perm`` is its own inverse and ``M² = I``) -- tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from hmr_ros.body.constants import FLIP_PERMUTATION

__all__ = [
    "MIRROR",
    "crop_matrix",
    "flip_axis_angle",
    "flip_joints3d",
    "flip_keypoints2d",
    "flip_per_part",
    "flip_rotmats",
    "read_image",
    "rotate_points3d",
    "rotate_root",
    "rotation_z",
    "to_crop_normalised",
    "warp_crop",
]

MIRROR = np.diag([-1.0, 1.0, 1.0])
#: (M R M)_ij = m_i R_ij m_j
_MIRROR_SIGNS = np.outer(np.diag(MIRROR), np.diag(MIRROR))

try:  # OpenCV is the fast path; a NumPy bilinear warp is the fallback
    import cv2  # type: ignore

    cv2.setNumThreads(1)  # DataLoader workers parallelise already
except ImportError:  # pragma: no cover - depends on the environment
    cv2 = None


# --------------------------------------------------------------------------------------------
# Crop warp
# --------------------------------------------------------------------------------------------


def _rot2(deg: float) -> np.ndarray:
    r = np.deg2rad(deg)
    return np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])


def rotation_z(deg: float) -> np.ndarray:
    """3 x 3 rotation about the camera z axis matching ``Rot(deg)`` in pixel axes."""
    out = np.eye(3)
    out[:2, :2] = _rot2(deg)
    return out


def _linear(box_size: float, rotation_deg: float, flip: bool) -> np.ndarray:
    """2 x 2: (2 / b) · F · Rot(r)  (image pixels -> normalised crop coordinates)."""
    f = np.diag([-1.0 if flip else 1.0, 1.0])
    return (2.0 / float(box_size)) * f @ _rot2(rotation_deg)


def crop_matrix(center, box_size: float, crop_size: int, rotation_deg: float = 0.0,
                flip: bool = False) -> np.ndarray:
    """2 x 3 affine image pixel -> crop pixel (``q = A [p; 1]``), see the module docs."""
    lin = _linear(box_size, rotation_deg, flip) * (crop_size / 2.0)  # (L / b) F Rot
    c = np.asarray(center, np.float64).reshape(2)
    return np.concatenate([lin, ((crop_size - 1) / 2.0 - lin @ c)[:, None]], axis=1)


def to_crop_normalised(points, center, box_size: float, rotation_deg: float = 0.0,
                       flip: bool = False) -> np.ndarray:
    """Image pixel points ... x 2 -> crop-normalised ... x 2 (before any joint permutation)."""
    p = np.asarray(points, np.float64)
    c = np.asarray(center, np.float64).reshape(2)
    return (p - c) @ _linear(box_size, rotation_deg, flip).T


def warp_crop(image: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """Bilinear affine crop of an H x W x C uint8 image, zeros outside: L x L x C uint8.

    OpenCV's ``warpAffine`` when installed, else an equivalent NumPy implementation (same
    pixel-centre convention; results agree to rounding).
    """
    if cv2 is not None:
        out = cv2.warpAffine(np.ascontiguousarray(image), matrix.astype(np.float64),
                             (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.reshape(crop_size, crop_size, -1) if out.ndim == 2 else out
    return warp_crop_numpy(image, matrix, crop_size)


def warp_crop_numpy(image: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """Pure-NumPy bilinear ``warp_crop`` (the fallback; also tested against OpenCV)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]  # crop pixel -> image pixel
    qy, qx = np.mgrid[0:crop_size, 0:crop_size].astype(np.float64)
    px = inv[0, 0] * qx + inv[0, 1] * qy + inv[0, 2]
    py = inv[1, 0] * qx + inv[1, 1] * qy + inv[1, 2]
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    out = np.zeros((crop_size, crop_size, img.shape[2]), np.float64)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                        (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        vals = np.zeros_like(out)
        vals[ok] = img[yi[ok], xi[ok]]
        out += wgt * vals
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def read_image(path: Union[str, Path]) -> np.ndarray:
    """H x W x 3 uint8 RGB (OpenCV, else Pillow); a clear error for a missing/unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if cv2 is not None:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot decode image {path}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover
        raise ImportError("reading images needs opencv-python-headless or Pillow") from exc
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------------------------
# Labels under rotation and flip
# --------------------------------------------------------------------------------------------


def rotate_root(rotmats: np.ndarray, rotation_deg: float) -> np.ndarray:
    """... x 24 x 3 x 3 relative rotations: the root (camera frame) becomes ``Rz(r) @ R_root``."""
    out = np.array(rotmats, np.float64, copy=True)
    out[..., 0, :, :] = rotation_z(rotation_deg) @ out[..., 0, :, :]
    return out


def rotate_points3d(points: np.ndarray, rotation_deg: float) -> np.ndarray:
    """... x N x 3 camera-frame points -> ``Rz(r) @ X``."""
    return np.asarray(points, np.float64) @ rotation_z(rotation_deg).T


def flip_rotmats(rotmats: np.ndarray) -> np.ndarray:
    """... x 24 x 3 x 3 (relative or absolute) -> ``M R_{perm(j)} M``."""
    r = np.asarray(rotmats)
    return r[..., FLIP_PERMUTATION, :, :] * _MIRROR_SIGNS


def flip_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """... x 24 x 3 (or ... x 72) axis-angle -> ``(a_x, -a_y, -a_z)_{perm(j)}``."""
    a = np.asarray(axis_angle)
    flat = a.shape[-1] == 72
    a = a.reshape(a.shape[:-1] + (24, 3)) if flat else a
    out = a[..., FLIP_PERMUTATION, :] * np.array([1.0, -1.0, -1.0])
    return out.reshape(out.shape[:-2] + (72,)) if flat else out


def flip_joints3d(joints: np.ndarray) -> np.ndarray:
    """... x 24 x 3 -> ``M X_{perm(j)}``."""
    j = np.asarray(joints)
    return j[..., FLIP_PERMUTATION, :] * np.array([-1.0, 1.0, 1.0])


def flip_keypoints2d(keypoints: np.ndarray) -> np.ndarray:
    """... x 24 x 2 crop-normalised -> ``(-x, y)_{perm(j)}`` (for already-normalised points)."""
    k = np.asarray(keypoints)
    return k[..., FLIP_PERMUTATION, :] * np.array([-1.0, 1.0])


def flip_per_part(values: np.ndarray) -> np.ndarray:
    """... x 24 per-part values (confidences, visibility) -> ``v_{perm(j)}``."""
    return np.asarray(values)[..., FLIP_PERMUTATION]
