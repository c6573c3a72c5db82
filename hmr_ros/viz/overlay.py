"""Draw recovered meshes over the image they came from, parts coloured by visibility.

Each person's mesh (camera frame) is rasterised with the image's intrinsics through the same
z-buffer as the synthetic renderer, shaded by its normal, tinted per part from red (ω = 0,
occluded) to green (ω = 1, visible) and alpha-blended over the image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hmr_ros import kernels as K


#: a part whose visibility was not predicted (a regressor without a visibility head)
UNKNOWN_VISIBILITY_RGB = (0.55, 0.65, 0.85)


def visibility_colors(omega: np.ndarray) -> np.ndarray:
    """(24,) ω in [0, 1] -> (24, 3) RGB floats, red (occluded) to green (visible); a NaN ω (not
    predicted) is a neutral blue-grey, not "occluded"."""
    omega = np.asarray(omega, np.float64)
    w = np.clip(np.nan_to_num(omega, nan=0.0), 0.0, 1.0)[:, None]
    colors = (1 - w) * np.array([0.9, 0.15, 0.1]) + w * np.array([0.15, 0.85, 0.25])
    colors[~np.isfinite(omega)] = UNKNOWN_VISIBILITY_RGB
    return colors


def draw_overlay(image: np.ndarray, persons: Sequence, faces: np.ndarray, part: np.ndarray,
                 intrinsics: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """RGB uint8 image with every person's mesh drawn over it (nearest surface wins)."""
    h, w = image.shape[:2]
    if not persons:
        return image.copy()
    n_v = persons[0].vertices.shape[0]
    verts = np.concatenate([p.vertices for p in persons]).astype(np.float32)
    all_faces = np.concatenate([faces + i * n_v for i in range(len(persons))]).astype(np.int32)
    face_id, _, _ = K.rasterize(verts, all_faces, np.asarray(intrinsics, np.float32), h, w)
    hit = face_id >= 0
    out = image.astype(np.float64) / 255.0
    if not hit.any():
        return image.copy()
    f = face_id[hit]
    person = f // len(faces)
    local = f % len(faces)
    tri = verts[all_faces[f]]  # P x 3 x 3
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    shade = 0.35 + 0.65 * np.abs(normal[:, 2])  # light from the camera, both sides lit
    colors = np.stack([visibility_colors(p.visibility) for p in persons])  # N x 24 x 3
    face_part = part[faces[local, 0]]
    tint = colors[person, face_part] * shade[:, None]
    out[hit] = (1 - alpha) * out[hit] + alpha * tint
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_labels(image: np.ndarray, persons: Sequence, labels: Sequence[str]) -> np.ndarray:
    """Each person's label (its body id) above its box, in place; returns the image."""
    import cv2

    for person, label in zip(persons, labels):
        if not label:
            continue
        x0, y0 = (int(round(float(v))) for v in np.nan_to_num(person.bbox[:2]))
        org = (max(0, x0), max(12, y0 - 4))
        cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return image
