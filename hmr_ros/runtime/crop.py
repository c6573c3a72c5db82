"""Person crops: a square around each box, with context, warped to the model's input size.

All persons of a frame are cropped into one batch. The affine transform of each crop is kept:
the camera conversion and 2D keypoints map back to the full image through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .boxes import Box


@dataclass(frozen=True)
class CropGeometry:
    """Square crop: centre (cx, cy) and side ``size`` in image pixels, mapped to ``out`` px."""

    cx: float
    cy: float
    size: float
    out: int

    def crop_to_image(self) -> np.ndarray:
        """2x3 affine mapping crop pixel coordinates to image pixel coordinates, pixel centres
        at integers on both sides (the crop kernel's convention): crop pixel ``u`` covers
        ``[u, u + 1)`` of the crop's ``out`` pixels, i.e. image ``x0 + (u + 0.5) s - 0.5``
        with ``x0 = cx - size / 2``, as a resize of the square would place it."""
        s = self.size / self.out
        return np.array([[s, 0.0, self.cx - 0.5 * self.size + 0.5 * s - 0.5],
                         [0.0, s, self.cy - 0.5 * self.size + 0.5 * s - 0.5]])

    def image_to_crop(self) -> np.ndarray:
        """Inverse of :meth:`crop_to_image`."""
        s = self.out / self.size
        t = self.crop_to_image()[:, 2]
        return np.array([[s, 0.0, -t[0] * s], [0.0, s, -t[1] * s]])

    def normalised_to_image(self, xy: np.ndarray) -> np.ndarray:
        """Crop-normalised coordinates in [-1, 1] -> image pixels."""
        return np.stack([self.cx + 0.5 * self.size * xy[..., 0],
                         self.cy + 0.5 * self.size * xy[..., 1]], axis=-1)


def square_geometry(box: Box, out: int, context: float = 1.2) -> CropGeometry:
    cx, cy = box.center
    return CropGeometry(cx, cy, max(box.width, box.height) * context, out)


def crop_batch(image, geometries: Sequence[CropGeometry], mean, std, placement=None):
    """(N, 3, out, out) float32 crops of an RGB uint8 image, normalised ``(x/255 - mean)/std``,
    in one kernel call (``hmr_ros.kernels.crop_affine``; a CUDA image stays on the GPU).

    With a device-resident ``placement`` (the runner's), the frame is uploaded once and cropped
    on its stream, so the crops are already where stage A reads them.
    Pixels outside the image are black (0 before normalisation), like zero padding."""
    from hmr_ros.kernels import crop_affine

    out = geometries[0].out if geometries else 1
    affines = np.stack([g.crop_to_image() for g in geometries]) if geometries else \
        np.zeros((0, 2, 3))
    affines = affines.astype(np.float32)
    if placement is None or not placement.device_resident:
        return crop_affine(image, affines, out, mean, std)
    with placement.scope():
        return crop_affine(placement.upload(image, "image", dtype=np.uint8), affines, out,
                           mean, std)
