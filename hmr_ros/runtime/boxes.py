"""Person boxes: where they come from doesn't matter here, only that they are sane.

Boxes arrive from a detector message, a bottom-up model or the whole frame. Before cropping they
are validated (finite), clipped to the image, filtered by score and minimum size, and capped at
``max_persons`` (highest scores kept), each step with a reason that can be logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixels (x0, y0) top-left to (x1, y1) bottom-right, with a score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> Tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1], np.float64)


def whole_frame(width: int, height: int) -> Box:
    return Box(0.0, 0.0, float(width), float(height), 1.0)


def select_boxes(boxes: Sequence[Box], width: int, height: int, score_threshold: float = 0.5,
                 min_size: float = 16.0, max_persons: int = 5,
                 dropped: Optional[List[str]] = None) -> List[Box]:
    """Clipped, filtered boxes, best first. Reasons for dropped boxes go into ``dropped``."""
    kept = []
    for i, b in enumerate(boxes):
        values = np.array([b.x0, b.y0, b.x1, b.y1, b.score], np.float64)
        if not np.isfinite(values).all():
            _note(dropped, f"box {i}: non-finite values {values.tolist()}")
            continue
        x0, x1 = sorted((b.x0, b.x1))
        y0, y1 = sorted((b.y0, b.y1))
        x0, x1 = max(0.0, x0), min(float(width), x1)
        y0, y1 = max(0.0, y0), min(float(height), y1)
        if b.score < score_threshold:
            _note(dropped, f"box {i}: score {b.score:.2f} < {score_threshold}")
            continue
        if x1 - x0 < min_size or y1 - y0 < min_size:
            _note(dropped, f"box {i}: {x1 - x0:.0f}x{y1 - y0:.0f} px inside the image, "
                           f"below min_size {min_size:g}")
            continue
        kept.append(Box(x0, y0, x1, y1, float(b.score)))
    kept.sort(key=lambda b: -b.score)
    if len(kept) > max_persons:
        _note(dropped, f"{len(kept) - max_persons} box(es) over max_persons={max_persons}")
        kept = kept[:max_persons]
    return kept


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """Pairwise intersection over union, (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    A = np.stack([x.as_array() for x in a])[:, None]
    B = np.stack([x.as_array() for x in b])[None]
    iw = np.clip(np.minimum(A[..., 2], B[..., 2]) - np.maximum(A[..., 0], B[..., 0]), 0, None)
    ih = np.clip(np.minimum(A[..., 3], B[..., 3]) - np.maximum(A[..., 1], B[..., 1]), 0, None)
    inter = iw * ih
    area = lambda X: (X[..., 2] - X[..., 0]) * (X[..., 3] - X[..., 1])  # noqa: E731
    return inter / np.maximum(area(A) + area(B) - inter, 1e-9)


def _note(dropped, text):
    if dropped is not None:
        dropped.append(text)
