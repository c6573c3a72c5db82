"""Drawing 2D keypoints (COCO-17) on images: what the detector saw, for overlays and checks."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from hmr_ros.body.keypoints import COCO17_EDGES

#: left limbs warm, right limbs cool, the midline white (RGB)
_LEFT, _RIGHT, _MID = (255, 140, 0), (0, 170, 255), (255, 255, 255)


def _edge_color(a: int, b: int):
    if a % 2 == 1 and b % 2 == 1 and a > 0:
        return _LEFT
    if a % 2 == 0 and b % 2 == 0 and a > 0:
        return _RIGHT
    return _MID


def draw_coco17(image: np.ndarray, keypoints: Sequence[np.ndarray],
                boxes: Optional[Sequence[np.ndarray]] = None, min_confidence: float = 0.3,
                thickness: int = 2) -> np.ndarray:
    """Draw each person's (17, 3) keypoints (x, y, confidence) on an RGB uint8 ``image`` in
    place; limbs whose two ends are below ``min_confidence`` are left out."""
    import cv2

    for i, kp in enumerate(keypoints):
        kp = np.asarray(kp, np.float64)
        if boxes is not None and i < len(boxes):
            x0, y0, x1, y1 = (int(round(v)) for v in boxes[i])
            cv2.rectangle(image, (x0, y0), (x1, y1), (0, 255, 0), 1)
        for a, b in COCO17_EDGES:
            if min(kp[a, 2], kp[b, 2]) < min_confidence or not np.isfinite(kp[[a, b], :2]).all():
                continue
            cv2.line(image, (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1])),
                     _edge_color(a, b), thickness, cv2.LINE_AA)
        for j in range(len(kp)):
            if kp[j, 2] >= min_confidence and np.isfinite(kp[j, :2]).all():
                cv2.circle(image, (int(kp[j, 0]), int(kp[j, 1])), thickness + 1, (255, 0, 0), -1)
    return image
