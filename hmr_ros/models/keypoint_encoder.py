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
