"""Batched affine crops: one frame, every person's square crop, normalised, in one call.

The regressors' preprocessing as a kernel, so a GPU frame never leaves the device between
decoding and stage A. Bilinear sampling with pixel centres at integer coordinates (OpenCV's
``warpAffine`` convention); outside the image reads black.
"""

from __future__ import annotations

import numpy as np

from . import _arrays as A
from ._ext import ext


def crop_affine(image, affines, size: int, mean, std):
    """image (H, W, 3) uint8 RGB; affines (N, 2, 3) float32 mapping crop pixel (x, y, 1) to
    image pixel -> (N, 3, size, size) float32 ``(x / 255 - mean) / std``. Image and output on
    the same device (NumPy or CUDA); ``affines`` is a small host array moved as needed."""
    op = "crop_affine"
    img = A.arg(op, "image", image, (np.uint8,))
    dims: dict = {}
    A.check_shape(op, "image", img, ("H", "W", 3), dims)
    aff = np.ascontiguousarray(np.asarray(affines, np.float32))
    if aff.ndim != 3 or aff.shape[1:] != (2, 3) or not np.isfinite(aff).all():
        raise A.KernelError(f"{op}: affines must be finite with shape (N, 2, 3), got "
                            f"{aff.shape}")
    size = int(size)
    if not 1 <= size <= 4096:
        raise A.KernelError(f"{op}: size must be in [1, 4096], got {size}")
    mean = [float(x) for x in mean]
    std = [float(x) for x in std]
    if len(mean) != 3 or len(std) != 3 or min(abs(s) for s in std) == 0:
        raise A.KernelError(f"{op}: mean and std need 3 values each, std non-zero")
    N = aff.shape[0]
    out = A.empty_like_device(img, (N, 3, size, size), np.float32)
    affines_dev = A.to_device(img, aff)
    args = (N, dims["H"], dims["W"], size, img.ptr, A.ptr(affines_dev), mean, std, A.ptr(out))
    if img.cuda:
        ext().cuda_crop_affine(*args, A.stream_of(img))
    else:
        ext().cpu_crop_affine(*args)
    return out
