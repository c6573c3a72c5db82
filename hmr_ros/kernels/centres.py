"""Body-centre peaks of a bottom-up regressor's centre heatmap (InstanceHMR, ROMP, CenterNet).

At run time the people are the local maxima of the predicted body-centre map: max-pool NMS,
then the best ``max_peaks`` per image. As a kernel so that a GPU heatmap stays on the GPU
between the network and the sampling of its parameter maps.

Rules (identical on CPU and CUDA, and in the NumPy ``centre_peaks_reference``):

- a pixel is a peak when its value is >= ``threshold`` and it is the maximum of its
  ``window`` x ``window`` neighbourhood, clipped at the borders;
- ties: among equal maxima in a window the pixel with the smallest flat index (row-major) wins,
  so a plateau gives one peak (its first pixel in row-major order, for convex plateaus), not
  every pixel as ``heatmap == max_pool(heatmap)`` would;
- NaN is never a peak and never suppresses a neighbour; +inf is a peak like any other value;
- peaks are ranked by score descending, then flat index ascending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _arrays as A
from ._ext import ext


@dataclass(frozen=True)
class CentrePeaks:
    """The peaks of B heatmaps, on the heatmap's device; slots ``count[b]:`` of image b are
    unused (score 0, index -1, xy -1)."""

    count: object   # (B,) int32
    scores: object  # (B, K) float32
    xy: object      # (B, K, 2) float32: column, row in heatmap pixels
    index: object   # (B, K) int32: row * w + column


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def centre_peaks(heatmap, threshold: float = 0.3, max_peaks: int = 16,
                 window: int = 3) -> CentrePeaks:
    """Top ``max_peaks`` local maxima of ``heatmap`` (B, 1, h, w) or (B, h, w) float32, NumPy or
    CUDA, with ``window`` x ``window`` max-pool NMS (module docstring for the rules).

    A non-contiguous NumPy heatmap is copied; a non-contiguous CUDA one is an error (call
    ``.contiguous()``), so a GPU copy is never made behind the caller's back.
    """
    op = "centre_peaks"
    if isinstance(heatmap, np.ndarray) and heatmap.dtype == np.float32:
        heatmap = np.ascontiguousarray(heatmap)
    hm = A.arg(op, "heatmap", heatmap, (np.float32,))
    if len(hm.shape) == 4 and hm.shape[1] == 1:
        B, _, H, W = hm.shape
    elif len(hm.shape) == 3:
        B, H, W = hm.shape
    else:
        raise A.KernelError(f"{op}: heatmap must have shape (B, 1, h, w) or (B, h, w), "
                            f"got {hm.shape}")
    if H < 1 or W < 1 or H * W >= 2**31:
        raise A.KernelError(f"{op}: heatmap h and w must be >= 1 with h * w < 2**31, "
                            f"got h={H}, w={W}")
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise A.KernelError(f"{op}: threshold must be finite, got {threshold}")
    if not _is_int(max_peaks) or not 1 <= max_peaks <= 256:
        raise A.KernelError(f"{op}: max_peaks must be an integer in [1, 256], got {max_peaks!r}")
    if not _is_int(window) or not 1 <= window <= 15 or window % 2 == 0:
        raise A.KernelError(f"{op}: window must be an odd integer in [1, 15], got {window!r}")
    K = int(max_peaks)
    count = A.empty_like_device(hm, (B,), np.int32)
    scores = A.empty_like_device(hm, (B, K), np.float32)
    xy = A.empty_like_device(hm, (B, K, 2), np.float32)
    index = A.empty_like_device(hm, (B, K), np.int32)
    args = (B, H, W, int(window), K, threshold, hm.ptr, A.ptr(count), A.ptr(scores), A.ptr(xy),
            A.ptr(index))
    if hm.cuda:
        scratch = A.empty_like_device(hm, (max(1, B * H * W),), np.int64)
        ext().cuda_centre_peaks(*args, A.ptr(scratch), A.stream_of(hm))
    else:
        ext().cpu_centre_peaks(*args)
    return CentrePeaks(count, scores, xy, index)


def centre_peaks_reference(heatmap: np.ndarray, threshold: float = 0.3, max_peaks: int = 16,
                           window: int = 3) -> CentrePeaks:
    """The rules above in plain NumPy (sliding windows, no loops over pixels): the tests'
    oracle and the benchmark's baseline. No validation; NumPy in, NumPy out."""
    from numpy.lib.stride_tricks import sliding_window_view

    hm = np.asarray(heatmap, np.float32)
    B, H, W = hm.shape[0], hm.shape[-2], hm.shape[-1]
    hm = hm.reshape(B, H, W)
    r, K = window // 2, max_peaks
    values = np.where(np.isnan(hm), -np.inf, hm)  # NaN never wins a window
    padded = np.pad(values, ((0, 0), (r, r), (r, r)), constant_values=-np.inf)
    windows = sliding_window_view(padded, (window, window), axis=(1, 2))
    # argmax returns the first maximum in row-major window order, which is flat-index order;
    # padding is -inf and so never ties with a value >= a finite threshold
    first_max = windows.reshape(B, H, W, window * window).argmax(-1)
    is_peak = (first_max == r * window + r) & (values >= threshold)
    count = np.zeros(B, np.int32)
    scores = np.zeros((B, K), np.float32)
    xy = np.full((B, K, 2), -1.0, np.float32)
    index = np.full((B, K), -1, np.int32)
    for b in range(B):
        flat = np.flatnonzero(is_peak[b])
        s = hm[b].ravel()[flat]
        best = flat[np.lexsort((flat, -s))[:K]]  # score descending, then index ascending
        n = len(best)
        count[b] = n
        scores[b, :n] = hm[b].ravel()[best]
        index[b, :n] = best
        xy[b, :n, 0], xy[b, :n, 1] = best % W, best // W
    return CentrePeaks(count, scores, xy, index)
