"""Per-face atlas geometry of a body, so a rendered pixel gets its part and (U, V) directly.

Interpolating the atlas ``uv`` of a face's three vertices is wrong on the chart seams (a face
whose corners sit at u = 0.95 and u = 0.02 would interpolate across the whole chart) and at the
poles (a vertex on the bone axis has no meaningful angle). This module pre-unwraps every face's
*local* chart coordinates exactly as ``hmr_ros.body.uv_atlas`` does when it rasterises the part
map (u relative to the first non-pole corner, poles take the mean u of the others), so a pixel's
interpolated local u wraps back into [0, 1) and lands on a texel that the atlas part map assigns
to the pixel's own part. Every face of an atlas chart lies in one part (argmax skinning weight
per vertex); faces spanning parts fall back to their first corner's part and chart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmr_ros.body import BodyModel
from hmr_ros.body.uv_atlas import GRID, MARGIN

__all__ = ["BodySurface"]


@dataclass(frozen=True, eq=False)
class BodySurface:
    """face_part F int64; corner_local F x 3 x 2 unwrapped chart coordinates (u may leave
    [0, 1] on seam faces); cell_origin 24 x 2 (column, row) of each part's atlas cell."""

    face_part: np.ndarray
    corner_local: np.ndarray
    cell_origin: np.ndarray

    @classmethod
    def from_body(cls, body: BodyModel) -> "BodySurface":
        atlas = body.uv_atlas()
        faces = np.asarray(body.faces, np.int64)
        local = atlas.local[faces].astype(np.float64)  # F x 3 x 2
        pole = atlas.pole[faces]  # F x 3
        part = np.asarray(atlas.part, np.int64)[faces[:, 0]]
        u = local[..., 0]
        ref = u[np.arange(len(u)), np.argmax(~pole, axis=1)]
        u = ref[:, None] + (u - ref[:, None] + 0.5) % 1.0 - 0.5
        n_free = np.sum(~pole, axis=1)
        mean_u = np.sum(np.where(pole, 0.0, u), axis=1) / np.maximum(n_free, 1)
        u = np.where(pole & (n_free > 0)[:, None], mean_u[:, None], u)
        local = np.stack([u, local[..., 1]], axis=-1)
        origin = np.stack([np.arange(24) % GRID, np.arange(24) // GRID], axis=-1).astype(float)
        return cls(part, local, origin)

    def pixel_local(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Chart coordinates (u around the bone, v along it; N x 2 in [0, 1]) of points given
        by body face index (N) and barycentrics (N x 3)."""
        local = np.einsum("nk,nkc->nc", bary.astype(np.float64), self.corner_local[face])
        local[:, 0] %= 1.0
        return np.clip(local, 0.0, 1.0, out=local)

    def local_to_atlas(self, local: np.ndarray, part: np.ndarray) -> np.ndarray:
        """Chart coordinates (N x 2) of parts (N) -> atlas (U, V) in [0, 1], N x 2 float32."""
        uv = (self.cell_origin[part] + MARGIN + (1 - 2 * MARGIN) * local) / GRID
        return uv.astype(np.float32)

    def pixel_uv(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Atlas (U, V) of points given by body face index (N) and barycentrics (N x 3)."""
        return self.local_to_atlas(self.pixel_local(face, bary), self.face_part[face])
