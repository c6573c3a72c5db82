"""The 2D-keypoint input of the keypoint-conditioned VisHMR (a deviation from paper 000).

Why: a regressor trained on synthetic renders alone does not transfer to camera images (the
bundled image-only model was no better than a constant pose on real footage), while 2D
keypoints from a detector trained on real photographs look the same in both worlds. DPMesh
(paper 004) conditions its mesh regressor on detected keypoints the same way.

Input contract, shared by training and the runtime: ``(B, 17, 3)`` COCO-17 points
(``hmr_ros.body.keypoints``) in **crop-normalised** coordinates -- ``-1`` and ``+1`` are the
crop's edges, the same frame as the training contract's ``keypoints2d`` -- and a confidence in
``[0, 1]``; a point the detector did not give has confidence 0 (its x, y are ignored).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hmr_ros.body.keypoints import NUM_COCO17

#: crop-normalised coordinates are clipped to this range (a wrist far outside the crop still
#: says "far to the left", but must not dominate the embedding)
COORD_LIMIT = 2.0


class KeypointEncoder(nn.Module):
    """(B, 17, 3) keypoints -> (B, dim) embedding. Each point enters as (x c, y c, c), so a
    missing point (c = 0) contributes exactly nothing, whatever its coordinates."""

    def __init__(self, dim: int = 128, hidden: int = 256, num_points: int = NUM_COCO17):
        super().__init__()
        self.num_points = num_points
        self.net = nn.Sequential(
            nn.Linear(3 * num_points, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, dim),
        )
        self.dim = dim

    def forward(self, keypoints: Tensor) -> Tensor:
        conf = keypoints[..., 2:3].clamp(0.0, 1.0)
        xy = keypoints[..., :2].clamp(-COORD_LIMIT, COORD_LIMIT)
        x = torch.cat([xy * conf, conf], dim=-1)  # B x 17 x 3
        return self.net(x.flatten(1))


def keypoints_to_crop(keypoints: np.ndarray, centre: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Image-pixel keypoints (N, 17, 3) -> crop-normalised (N, 17, 3) for square crops of side
    ``size`` (N,) centred at ``centre`` (N, 2) -- the runtime's :class:`CropGeometry`. Non-finite
    points get confidence 0."""
    kp = np.asarray(keypoints, np.float32).copy()
    c = np.asarray(centre, np.float32)[:, None, :]
    s = np.asarray(size, np.float32)[:, None, None]
    kp[..., :2] = (kp[..., :2] - c) / (0.5 * s)
    bad = ~np.isfinite(kp).all(axis=-1)
    kp[bad] = 0.0
    kp[..., 2] = np.clip(kp[..., 2], 0.0, 1.0)
    return kp


def no_keypoints(batch: int) -> np.ndarray:
    """The input for persons without detected keypoints: every confidence 0."""
    return np.zeros((batch, NUM_COCO17, 3), np.float32)
