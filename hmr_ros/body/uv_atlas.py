"""UV atlas of any SMPL-layout body: 24 cylindrical part charts tiled on a 5x5 grid.

The IUV head predicts (U, V) in this atlas and the visibility kernel counts texels per part, so
the atlas must come from the body model alone (no licensed UV data): part ``i`` owns grid cell
``i`` (row ``i // 5``, column ``i % 5``; cell 24 stays empty). Inside its cell a vertex is placed
by cylindrical projection around its part's bone axis (``skeleton.bone_axes``): the angle around
the axis gives ``u``, the position along the axis gives ``v``. A margin inside each cell keeps
charts apart, so distinct parts never share a texel.

Texel convention (DESIGN.md §4): ``col = round(u*(S-1))``, ``row = round(v*(S-1))`` -- rows
index v, columns index u; rounding is half up, as in the ``iuv_warp`` kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict

import numpy as np

from .constants import NUM_JOINTS
from .skeleton import bone_axes, cross_section_frames

if TYPE_CHECKING:
    from .model import BodyModel

__all__ = ["GRID", "MARGIN", "UVAtlas", "build_uv_atlas", "atlas_part_map", "texel_index",
           "chart_placement", "atlas_part_labels"]

GRID = 5  #: cells per side of the atlas grid
MARGIN = 0.1  #: empty border on each side of a chart, as a fraction of its cell
#: a vertex closer to its part's axis than this fraction of the part's median radius is a
#: "pole": its angle is meaningless, so triangles take its u from their other vertices.
_POLE_FRACTION = 0.05


def texel_index(uv: np.ndarray, size: int) -> np.ndarray:
    """(row, col) texel of each (u, v): N x 2 -> N x 2 int64 (row from v, col from u)."""
    idx = np.floor(np.asarray(uv, np.float64) * (size - 1) + 0.5).astype(np.int64)
    return np.clip(idx[:, ::-1], 0, size - 1)


@dataclass(frozen=True, eq=False)
class UVAtlas:
    """Per-vertex atlas coordinates and the triangles that draw the charts.

    ``uv``: V x 2 float32 in [0, 1]; ``part``: V part ids; ``local``: V x 2 chart coordinates
    (u = angle around the bone / 2pi, v = position along the bone), ``faces``: the model's faces
    whose three vertices lie in one part (faces across parts belong to no chart and are skipped).
    """

    uv: np.ndarray
    local: np.ndarray
    pole: np.ndarray  # V bool: vertices on their part's axis
    part: np.ndarray
    faces: np.ndarray
    _maps: Dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def part_map(self, size: int) -> np.ndarray:
        """Part id per texel of the size x size atlas, -1 where empty (cached per size).

        A texel gets a part when its square touches one of the part's chart triangles, so any
        (u, v) on a chart rounds to a texel of that part; vertices of faces that belong to no
        chart (faces across parts, zero-area faces) still get their own texel. Charts are
        0.2 cells apart, so below S = 27 a texel can be reachable from two charts (the later
        part wins): use S >= 32.
        """
        size = int(size)
        if size < 2:
            raise ValueError(f"atlas size must be >= 2, got {size}")
        if size not in self._maps:
            part_map = _rasterise_charts(self, size)
            rows, cols = texel_index(self.uv, size).T
            part_map[rows, cols] = self.part
            part_map.setflags(write=False)
            self._maps[size] = part_map
        return self._maps[size]


def build_uv_atlas(model: "BodyModel") -> UVAtlas:
    """Project every vertex into its part's chart (cylindrical projection around the bone)."""
    verts = model.v_template.astype(np.float64)  # V x 3
    part = np.asarray(model.part, np.int64)  # V
    joints = model.rest_joints  # 24 x 3
    frames = cross_section_frames(bone_axes(joints))  # 24 x 3 x 3 rows d1, d2, n
    # 1. Coordinates in each vertex's part frame: (x, y) across the bone, h along it
    rel = np.einsum("vk,vck->vc", verts - joints[part], frames[part])  # V x 3
    theta = np.arctan2(rel[:, 1], rel[:, 0])  # V, in [-pi, pi]
    radius = np.hypot(rel[:, 0], rel[:, 1])
    local = np.empty((len(verts), 2))
    pole = np.zeros(len(verts), dtype=bool)
    local[:, 0] = (theta + np.pi) / (2 * np.pi)  # seam on the -d1 side
    for i in range(NUM_JOINTS):
        sel = part == i
        if not np.any(sel):
            continue
        h = rel[sel, 2]
        span = max(h.max() - h.min(), 1e-9)
        local[sel, 1] = (h - h.min()) / span
        pole[sel] = radius[sel] < _POLE_FRACTION * np.median(radius[sel])
    local = np.clip(local, 0.0, 1.0)
    # 2. Local chart -> the part's cell, inside the margin
    uv = (_cell_origin(part) + MARGIN + (1 - 2 * MARGIN) * local) / GRID
    faces = np.asarray(model.faces, np.int64)
    same = (part[faces[:, 0]] == part[faces[:, 1]]) & (part[faces[:, 1]] == part[faces[:, 2]])
    return UVAtlas(
        uv=uv.astype(np.float32), local=local, pole=pole, part=part, faces=faces[same]
    )


def atlas_part_map(model: "BodyModel", size: int) -> np.ndarray:
    """Part id per texel of the model's size x size atlas, -1 where empty (cached)."""
    return model.atlas_part_map(size)


def chart_placement(num_parts: int = 24):
    """Where each part's chart sits in the atlas: ``atlas_uv = offsets[part] + scale * local``
    for chart-local coordinates in [0, 1]^2. Returns (offsets num_parts x 2, scale)."""
    offsets = (_cell_origin(np.arange(num_parts)) + MARGIN) / GRID
    return offsets, (1 - 2 * MARGIN) / GRID


def atlas_part_labels(iuv: np.ndarray, num_parts: int = 24,
                      fg_threshold: float = 0.5) -> np.ndarray:
    """Atlas IUV (..., 3, h, w) -> part label per pixel (..., h, w): 0 = background, 1 + part id.

    The inverse of ``chart_placement``'s cell layout: the part is the grid cell (U, V) falls in
    (cells past ``num_parts``, and pixels with a NaN U or V, are background). Works for
    predicted and ground-truth IUV alike.
    """
    iuv = np.asarray(iuv, np.float32)
    col = np.clip(np.floor(np.nan_to_num(iuv[..., 1, :, :]) * GRID), 0, GRID - 1)
    row = np.clip(np.floor(np.nan_to_num(iuv[..., 2, :, :]) * GRID), 0, GRID - 1)
    part = (row * GRID + col).astype(np.int64)
    defined = np.isfinite(iuv[..., 1, :, :]) & np.isfinite(iuv[..., 2, :, :])
    fg = (iuv[..., 0, :, :] > fg_threshold) & (part < num_parts) & defined
    return np.where(fg, part + 1, 0)


def _cell_origin(part: np.ndarray) -> np.ndarray:
    """(u, v) corner of each part's cell in cell units: N -> N x 2 (column, row)."""
    part = np.asarray(part)
    return np.stack([part % GRID, part // GRID], axis=-1).astype(np.float64)


def _rasterise_charts(atlas: UVAtlas, size: int) -> np.ndarray:
    """Draw every chart triangle into a size x size part map (-1 = empty)."""
    faces = atlas.faces
    local = atlas.local[faces]  # F x 3 x 2
    pole = atlas.pole[faces]  # F x 3
    keep = ~pole.all(axis=1)
    local, pole, faces = local[keep], pole[keep], faces[keep]
    # 1. Unwrap u around the seam relative to the first non-pole vertex, so a triangle crossing
    #    the seam becomes one triangle sticking out of [0, 1] instead of one spanning the chart
    u = local[..., 0]  # F x 3
    ref = u[np.arange(len(u)), np.argmax(~pole, axis=1)]  # F
    u = ref[:, None] + (u - ref[:, None] + 0.5) % 1.0 - 0.5
    # 2. Poles sit on the axis: give them the mean u of the triangle's other vertices
    mean_u = np.sum(np.where(pole, 0.0, u), axis=1) / np.sum(~pole, axis=1)  # F
    u = np.where(pole, mean_u[:, None], u)
    local = np.stack([u, local[..., 1]], axis=-1)
    part = atlas.part[faces[:, 0]]  # F
    # 3. Seam triangles are drawn a second time shifted by one turn; the chart clip keeps the
    #    part of each copy that lies inside the chart
    shift = np.where(u.min(axis=1) < 0, 1.0, np.where(u.max(axis=1) > 1, -1.0, 0.0))
    wrap = shift != 0
    shifted = local[wrap].copy()
    shifted[..., 0] += shift[wrap, None]
    local = np.concatenate([local, shifted])  # T x 3 x 2
    part = np.concatenate([part, part[wrap]])  # T
    # 4. Chart coordinates -> texel coordinates (x = column from u, y = row from v)
    cell = _cell_origin(part)[:, None, :]  # T x 1 x 2
    tri = (cell + MARGIN + (1 - 2 * MARGIN) * local) / GRID * (size - 1)  # T x 3 x 2
    # texels a point of the chart rectangle can round to
    lo = np.ceil((cell[:, 0] + MARGIN) / GRID * (size - 1) - 0.5).astype(np.int64)  # T x 2
    hi = np.floor((cell[:, 0] + 1 - MARGIN) / GRID * (size - 1) + 0.5).astype(np.int64)
    out = np.full((size, size), -1, dtype=np.int32)
    _fill_triangles(out, tri, part, lo, hi)
    return out


def _fill_triangles(
    out: np.ndarray, tri: np.ndarray, label: np.ndarray, clip_lo: np.ndarray, clip_hi: np.ndarray
) -> None:
    """Set ``out[row, col] = label`` for every texel square the triangle touches, within clip.

    Conservative rasterisation (separating axes: the bounding box, then each edge's normal), so
    every point of a chart rounds to a texel of its part. Vectorised over triangles: they are
    grouped by bounding-box size (powers of two) and each group tests a k x k block at once.

    tri: T x 3 x 2 texel coordinates (x=col, y=row); label: T; clip_lo, clip_hi: T x 2 (x, y)
    """
    lo = np.maximum(np.ceil(tri.min(axis=1) - 0.5).astype(np.int64), clip_lo)  # T x 2
    hi = np.minimum(np.floor(tri.max(axis=1) + 0.5).astype(np.int64), clip_hi)  # T x 2
    extent = (hi - lo).max(axis=1) + 1  # T
    area = _cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # T, twice the signed area
    valid = (hi >= lo).all(axis=1) & (np.abs(area) > 1e-12)
    # edge k runs opposite vertex k; its edge function is 1 at vertex k, 0 on the edge
    start = tri[:, [1, 2, 0]]  # T x 3 x 2
    edge = tri[:, [2, 0, 1]] - start  # T x 3 x 2
    # how much the edge function can grow from a texel centre to the texel square's corners
    slack = 0.5 * np.abs(edge).sum(axis=-1) / np.abs(area)[:, None]  # T x 3
    bucket = np.where(valid, np.ceil(np.log2(np.maximum(extent, 1))), -1).astype(np.int64)
    for b in np.unique(bucket[bucket >= 0]):
        idx = np.nonzero(bucket == b)[0]
        grid = np.arange(1 << int(b))
        xs = lo[idx, 0, None, None] + grid[None, None, :]  # Tb x 1 x k
        ys = lo[idx, 1, None, None] + grid[None, :, None]  # Tb x k x 1
        inside = (xs <= hi[idx, 0, None, None]) & (ys <= hi[idx, 1, None, None])  # Tb x k x k
        for e in range(3):
            s0 = start[idx, e, None, None]  # Tb x 1 x 1 x 2
            d = edge[idx, e, None, None]
            w = d[..., 0] * (ys - s0[..., 1]) - d[..., 1] * (xs - s0[..., 0])  # Tb x k x k
            inside &= w / area[idx, None, None] + slack[idx, e, None, None] >= -1e-9
        t, r, c = np.nonzero(inside)
        out[ys[t, r, 0], xs[t, 0, c]] = label[idx][t]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z component of the 2D cross product: ... x 2, ... x 2 -> ..."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
