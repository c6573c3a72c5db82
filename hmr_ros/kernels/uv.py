"""IUV feature warping to the UV atlas and per-part visibility (paper 000, eq. 1).

Texel convention (DESIGN.md §4): (u, v) lands on ``col = floor(u*(S-1) + 0.5)``,
``row = floor(v*(S-1) + 0.5)``, with u and v clamped to [0, 1]; pixels whose I, U or V is NaN
count as background.
"""

from __future__ import annotations

import numpy as np

from . import _arrays as A
from ._ext import ext


def iuv_warp(features, iuv, size: int, fg_threshold: float = 0.5):
    """Splat image features into a ``size`` x ``size`` UV atlas through an IUV map.

    features (B, C, H, W) and iuv (B, 3, H, W) float32 -> (B, C+3, S, S): the mean feature of
    the pixels landing on each texel, then their mean normalised x and y in [-1, 1], then the
    occupancy (1 where at least one pixel landed). Empty texels are all zero.
    """
    op = "iuv_warp"
    f = A.arg(op, "features", features, (np.float32,))
    m = A.arg(op, "iuv", iuv, (np.float32,))
    dims: dict = {}
    A.check_shape(op, "features", f, ("B", "C", "H", "W"), dims)
    A.check_shape(op, "iuv", m, ("B", 3, "H", "W"), dims)
    size = int(size)
    if not 1 <= size <= 4096:
        raise A.KernelError(f"{op}: size must be in [1, 4096], got {size}")
    if not np.isfinite(fg_threshold):
        raise A.KernelError(f"{op}: fg_threshold must be finite, got {fg_threshold}")
    cuda = A.same_device(op, f, m)
    B, C, H, W = dims["B"], dims["C"], dims["H"], dims["W"]
    args = (B, C, H, W, size, float(fg_threshold), f.ptr, m.ptr)
    if cuda:
        out = A.empty_like_device(f, (B, C + 3, size, size), np.float32)
        work = A.empty_like_device(f, (max(1, ext().cuda_iuv_warp_workspace_floats(B, H, W)),),
                                   np.float32)
        ext().cuda_iuv_warp(*args, A.ptr(out), A.ptr(work), A.stream_of(f))
    else:
        out = A.empty_like_device(f, (B, C + 3, size, size), np.float32, zero=True)
        ext().cpu_iuv_warp(*args, A.ptr(out))
    return out


def part_visibility(occupancy, atlas_part_map, num_parts: int = 24):
    """Eq. 1: ``ω_i = min(1, 2 * covered_i / total_i)`` per body part.

    occupancy (B, S, S) float32 (a texel counts as covered when > 0.5); atlas_part_map (S, S)
    integer part ids, -1 where no part (a CUDA int32 map is used in place; host maps are copied
    to the occupancy's device). Parts without texels get ω = 0. Returns (B, num_parts).
    """
    op = "part_visibility"
    occ = A.arg(op, "occupancy", occupancy, (np.float32,))
    dims: dict = {}
    A.check_shape(op, "occupancy", occ, ("B", "S", "S"), dims)
    num_parts = int(num_parts)
    if not 1 <= num_parts <= 4096:
        raise A.KernelError(f"{op}: num_parts must be in [1, 4096], got {num_parts}")
    pm = atlas_part_map
    if hasattr(pm, "__cuda_array_interface__") and occ.cuda:  # already on the device: no copy
        pma = A.arg(op, "atlas_part_map", pm, (np.int32,))
        A.check_shape(op, "atlas_part_map", pma, ("S", "S"), dims)
    else:
        if hasattr(pm, "__cuda_array_interface__") and hasattr(pm, "cpu"):
            pm = pm.cpu()
        pm = np.asarray(pm)
        if pm.shape != (dims["S"], dims["S"]) or not np.issubdtype(pm.dtype, np.integer):
            raise A.KernelError(f"{op}: atlas_part_map must be integer with shape "
                                f"({dims['S']}, {dims['S']}), got {pm.dtype.name} {pm.shape}")
        pm = A.to_device(occ, np.ascontiguousarray(pm, dtype=np.int32))
    B, S = dims["B"], dims["S"]
    out = A.empty_like_device(occ, (B, num_parts), np.float32)
    args = (B, S, num_parts, occ.ptr, A.ptr(pm), A.ptr(out))
    if occ.cuda:
        ext().cuda_part_visibility(*args, A.stream_of(occ))
    else:
        ext().cpu_part_visibility(*args)
    return out
