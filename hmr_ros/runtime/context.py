"""OCHMR's context at run time: each person's local and global body-centre maps in the
coordinates of their crop (NumPy only: the pipeline builds them from its boxes or keypoints,
training from the renders' people boxes, so both see the same maps)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["centre_maps", "crop_box"]


def crop_box(geometry) -> tuple:
    """The image region (x0, y0, x1, y1) a square crop shows (`CropGeometry`: pixel centres at
    integers, so the crop's outer edges lie half a pixel beyond them, as `crop_keypoints`)."""
    half = 0.5 * geometry.size
    return (geometry.cx - half - 0.5, geometry.cy - half - 0.5,
            geometry.cx + half - 0.5, geometry.cy + half - 0.5)


def _person_centres(boxes: np.ndarray, keypoints: Optional[np.ndarray],
                    min_keypoint_confidence: float) -> np.ndarray:
    """N x 2 image-pixel centres: the mean of a person's confident keypoints (when at least two
    are), else the box centre."""
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:4])
    if keypoints is not None:
        if keypoints.ndim != 3 or keypoints.shape[0] != boxes.shape[0] or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must be N x K x 3 (x, y, confidence) for the N boxes, "
                             f"got {keypoints.shape} for {boxes.shape[0]} boxes")
        confident = keypoints[:, :, 2] >= min_keypoint_confidence
        for i in np.nonzero(confident.sum(axis=1) >= 2)[0]:
            centres[i] = keypoints[i, confident[i], :2].mean(axis=0)
    return centres


def centre_maps(boxes: Sequence, crop_boxes: Sequence, size: int,
                keypoints: Optional[Sequence] = None, sigma: float = 0.04,
                min_keypoint_confidence: float = 0.3) -> np.ndarray:
    """Context maps of every person's crop: N x 2 x size x size float32 (NumPy).

    ``boxes``: N x 4 person boxes (x0, y0, x1, y1) in image pixels, all people in the frame.
    ``crop_boxes``: N x 4, the image region (x0, y0, x1, y1) each person's crop shows; the map
    covers it linearly (pixel centres at (j + 0.5) / size of the region, like the crop resize).
    ``keypoints``: optional N x K x 3 (x, y, confidence) image pixels; a person with >= 2 keypoints
    above ``min_keypoint_confidence`` is centred at their mean (the torso, not the box, which
    an outstretched arm skews), otherwise at the box centre.

    Channel 0 (local) is a Gaussian at person i's own centre; channel 1 (global) the per-pixel
    maximum of the Gaussians of all N people (CenterNet-style, so overlapping people stay separate
    peaks of height 1). ``sigma`` is the Gaussian's standard deviation as a fraction of the crop
    side, so a centre looks the same at any map resolution. Centres outside a crop contribute
    their tails only.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    crops = np.asarray(crop_boxes, dtype=np.float64).reshape(-1, 4)
    if crops.shape[0] != boxes.shape[0]:
        raise ValueError(f"need one crop box per person box, got {crops.shape[0]} crops for "
                         f"{boxes.shape[0]} boxes")
    if size < 1 or sigma <= 0:
        raise ValueError(f"size must be >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    if np.any(crops[:, 2] <= crops[:, 0]) or np.any(crops[:, 3] <= crops[:, 1]):
        raise ValueError("every crop box needs x1 > x0 and y1 > y0")
    kps = None if keypoints is None else np.asarray(keypoints, dtype=np.float64)
    centres = _person_centres(boxes, kps, min_keypoint_confidence)  # N x 2 image px
    n = boxes.shape[0]
    out = np.zeros((n, 2, size, size), dtype=np.float32)
    if n == 0:
        return out
    grid = (np.arange(size) + 0.5) / size  # map pixel centres in crop-normalised [0, 1]
    for i in range(n):
        x0, y0, x1, y1 = crops[i]
        # every person's centre in crop i's normalised coordinates
        u = (centres[:, 0] - x0) / (x1 - x0)
        v = (centres[:, 1] - y0) / (y1 - y0)
        gx = np.exp(-(grid[None, :] - u[:, None]) ** 2 / (2 * sigma ** 2))  # N x size
        gy = np.exp(-(grid[None, :] - v[:, None]) ** 2 / (2 * sigma ** 2))
        gaussians = gy[:, :, None] * gx[:, None, :]  # N x size(y) x size(x)
        out[i, 0] = gaussians[i]
        out[i, 1] = gaussians.max(axis=0)
    return out
