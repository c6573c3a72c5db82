"""Ground-truth per-part visibility (paper eq. 1) from a rendered IUV, with the package kernels.

Each person's *visible* pixels (foreground = pixels where that person is the nearest surface,
so other people and occluders in front remove them) are splatted into the S x S atlas with
``kernels.iuv_warp`` (a dummy 1-channel feature: only the occupancy channel is used), then
``kernels.part_visibility`` gives ``ω_i = min(1, 2·covered_i / total_i)`` with the body's atlas
part map. The factor 2 makes a fully visible part (about half of its surface faces the camera)
reach 1. Because texels are only covered by pixels, a part spanning few pixels (a hand at 96 px)
cannot cover many texels: ω is a resolution-dependent quantity, exactly like the ω the model
computes from its predicted IUV.
"""

from __future__ import annotations

import numpy as np

from hmr_ros import kernels as K

__all__ = ["iuv_visibility"]


def iuv_visibility(iuv: np.ndarray, atlas_part_map: np.ndarray) -> np.ndarray:
    """iuv: B x 3 x H x W float32 (I in {0, 1}, U, V in [0, 1]); atlas_part_map: S x S int
    (-1 empty)  ->  B x 24 float32 visibility in [0, 1]."""
    iuv = np.asarray(iuv, np.float32)
    size = int(atlas_part_map.shape[0])
    # only the occupancy is used, so background rows/columns can be dropped: the warp then
    # touches the people's bounding box instead of the whole image
    rows = np.flatnonzero(iuv[:, 0].any(axis=(0, 2)))
    cols = np.flatnonzero(iuv[:, 0].any(axis=(0, 1)))
    if len(rows) == 0:
        return np.zeros((iuv.shape[0], 24), np.float32)
    iuv = np.ascontiguousarray(iuv[:, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    dummy = np.zeros((iuv.shape[0], 1) + iuv.shape[2:], np.float32)
    occupancy = np.ascontiguousarray(K.iuv_warp(dummy, iuv, size)[:, -1])
    return np.asarray(K.part_visibility(occupancy, atlas_part_map), np.float32)
