"""Weak-perspective crop camera ``(s, tx, ty)``: the one projection convention of the package.

``x_2d = s · (X_xy + (tx, ty))`` in crop-normalised coordinates: (-1, -1) is the crop's top-left
corner, (1, 1) its bottom-right, x to the right, y down (image axes) -- the convention of SPIN,
ProHMR and CLIFF, so their camera means and conversions apply: with a crop of ``L`` pixels and a
focal length ``f`` (pixels), the equivalent perspective translation is
``(tx, ty, 2 f / (L · s))`` in the crop camera. ``X`` are the posed joints as LBS returns them
(no extra root translation).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["weak_perspective_project"]


def weak_perspective_project(points: Tensor, cam: Tensor) -> Tensor:
    """points: B x N x 3; cam: B x 3 (s, tx, ty)  ->  B x N x 2 in crop-normalised coords."""
    scale, trans = cam[:, None, :1], cam[:, None, 1:]
    return scale * (points[..., :2] + trans)
