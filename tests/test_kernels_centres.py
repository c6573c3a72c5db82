"""centre_peaks (CPU, and CUDA under the `gpu` marker) against the NumPy sliding-window
reference, plus hand-built maps whose peaks are known and the argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.kernels import CentrePeaks, KernelError, centre_peaks
from hmr_ros.kernels.centres import centre_peaks_reference


class Device:
    """Moves test arrays to where the kernel under test runs, and back."""

    def __init__(self, name: str):
        self.name = name

    def put(self, x: np.ndarray):
        x = np.ascontiguousarray(x)
        if self.name == "cpu":
            return x
        import torch

        return torch.from_numpy(x).cuda()

    def get(self, y) -> np.ndarray:
        return y if isinstance(y, np.ndarray) else y.cpu().numpy()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def dev(request) -> Device:
    return Device(request.param)


def peaks_on(dev: Device, heatmap: np.ndarray, **kwargs) -> CentrePeaks:
    out = centre_peaks(dev.put(heatmap), **kwargs)
    return CentrePeaks(*(dev.get(getattr(out, f)) for f in ("count", "scores", "xy", "index")))


def assert_same_peaks(got: CentrePeaks, want: CentrePeaks) -> None:
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.xy, want.xy)
    assert got.count.dtype == np.int32 and got.index.dtype == np.int32
    assert got.scores.dtype == np.float32 and got.xy.dtype == np.float32


def random_map(rng, shape, levels=None, nan_fraction=0.0) -> np.ndarray:
    """Uniform [0, 1) values; ``levels`` quantises them so plateaus and ties are common."""
    hm = rng.random(shape).astype(np.float32)
    if levels:
        hm = (np.floor(hm * levels) / levels).astype(np.float32)
    hm[rng.random(shape) < nan_fraction] = np.nan
    return hm


@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (3, 1, 17, 23), (2, 1, 1, 9), (2, 1, 9, 1),
                                   (1, 1, 1, 1), (4, 12, 12)])
@pytest.mark.parametrize("window", [1, 3, 5])
@pytest.mark.parametrize("levels,nan_fraction", [(None, 0.0), (4, 0.0), (3, 0.1)])
def test_matches_reference_on_random_maps(dev, shape, window, levels, nan_fraction):
    rng = np.random.default_rng([*shape, window, levels or 0])
    hm = random_map(rng, shape, levels, nan_fraction)
    for threshold, max_peaks in ((0.0, 64), (0.3, 4), (0.9, 16)):
        want = centre_peaks_reference(hm, threshold, max_peaks, window)
        got = peaks_on(dev, hm, threshold=threshold, max_peaks=max_peaks, window=window)
        assert_same_peaks(got, want)


def test_hand_built_map(dev):
    hm = np.zeros((1, 1, 7, 9), np.float32)
    hm[0, 0, 0, 0] = 0.8    # corner peak
    hm[0, 0, 3, 4] = 0.9    # interior peak...
    hm[0, 0, 3, 3] = 0.6    # ...and a lower neighbour it suppresses
    hm[0, 0, 5, 4] = 0.7    # two rows below 0.9: a peak for window 3, not for window 5
    hm[0, 0, 5:7, 7:9] = 0.5  # 2x2 plateau: only its first pixel (row-major) is a peak
    hm[0, 0, 1, 7] = 0.2    # below the threshold
    got = peaks_on(dev, hm, threshold=0.3, max_peaks=8, window=3)
    assert got.count.tolist() == [4]
    np.testing.assert_allclose(got.scores[0, :5], [0.9, 0.8, 0.7, 0.5, 0.0])
    assert got.xy[0, :5].tolist() == [[4, 3], [0, 0], [4, 5], [7, 5], [-1, -1]]
    assert got.index[0, :5].tolist() == [3 * 9 + 4, 0, 5 * 9 + 4, 5 * 9 + 7, -1]

    got5 = peaks_on(dev, hm, threshold=0.3, max_peaks=8, window=5)
    assert got5.index[0, : got5.count[0]].tolist() == [3 * 9 + 4, 0, 5 * 9 + 7]
    got1 = peaks_on(dev, hm, threshold=0.3, max_peaks=8, window=1)  # no suppression at all
    assert got1.count.tolist() == [8]
    assert got1.index[0, :2].tolist() == [3 * 9 + 4, 0]


def test_ties_rank_by_index_and_negative_zero_equals_zero(dev):
    hm = np.array([[[0.0, -0.0, 0.0], [-0.0, 0.5, -0.0]]], np.float32)
    got = peaks_on(dev, hm, threshold=-1.0, max_peaks=6, window=1)
    assert got.index[0].tolist() == [4, 0, 1, 2, 3, 5]
    assert_same_peaks(got, centre_peaks_reference(hm, -1.0, 6, 1))


def test_nan_is_never_a_peak_and_never_suppresses(dev):
    hm = np.full((1, 1, 3, 3), np.nan, np.float32)
    hm[0, 0, 2, 2] = 0.4
    got = peaks_on(dev, hm, threshold=0.0, max_peaks=4, window=3)
    assert got.count.tolist() == [1] and got.index[0, 0] == 8
    assert peaks_on(dev, np.full((2, 4, 4), np.nan, np.float32)).count.tolist() == [0, 0]


def test_infinity_is_a_peak(dev):
    hm = np.zeros((1, 5, 5), np.float32)
    hm[0, 1, 1], hm[0, 3, 3] = np.inf, 0.5
    got = peaks_on(dev, hm, threshold=0.1, max_peaks=2)
    assert got.scores[0].tolist() == [np.inf, 0.5] and got.index[0].tolist() == [6, 18]


def test_all_below_threshold_fills_unused_slots(dev):
    hm = np.full((2, 1, 6, 6), 0.2, np.float32)
    got = peaks_on(dev, hm, threshold=0.3, max_peaks=3)
    assert got.count.tolist() == [0, 0]
    assert (got.scores == 0).all() and (got.index == -1).all() and (got.xy == -1).all()


def test_more_peaks_than_max_peaks_keeps_the_best(dev):
    rng = np.random.default_rng(7)
    hm = random_map(rng, (2, 1, 32, 32))
    got = peaks_on(dev, hm, threshold=0.0, max_peaks=5, window=1)  # every pixel is a peak
    assert got.count.tolist() == [5, 5]
    for b in range(2):
        np.testing.assert_array_equal(got.scores[b], np.sort(hm[b].ravel())[::-1][:5])


def test_many_candidates_and_max_peaks_256(dev):
    """Window 1 on a quantised 128 x 128 map: 16k candidates, many ties among the top 256."""
    rng = np.random.default_rng(8)
    hm = random_map(rng, (2, 1, 128, 128), levels=50)
    got = peaks_on(dev, hm, threshold=0.0, max_peaks=256, window=1)
    assert_same_peaks(got, centre_peaks_reference(hm, 0.0, 256, 1))


def test_window_15_on_a_small_map(dev):
    hm = random_map(np.random.default_rng(9), (3, 1, 10, 20), levels=5)
    assert_same_peaks(peaks_on(dev, hm, threshold=0.1, max_peaks=8, window=15),
                      centre_peaks_reference(hm, 0.1, 8, 15))


def test_empty_batch(dev):
    got = peaks_on(dev, np.zeros((0, 1, 8, 8), np.float32), max_peaks=4)
    assert got.count.shape == (0,) and got.scores.shape == (0, 4)
    assert got.xy.shape == (0, 4, 2) and got.index.shape == (0, 4)


def test_non_contiguous_numpy_is_copied():
    hm = random_map(np.random.default_rng(10), (2, 3, 16, 32), levels=8)
    view = hm[:, 1:2, :, ::2]
    assert not view.flags.c_contiguous
    assert_same_peaks(centre_peaks(view, 0.2, 8), centre_peaks(np.ascontiguousarray(view), 0.2, 8))


@pytest.mark.parametrize("heatmap,kwargs,match", [
    (np.zeros((1, 1, 4, 4), np.float64), {}, "heatmap must be float32"),
    (np.zeros((1, 2, 4, 4), np.float32), {}, r"shape \(B, 1, h, w\) or \(B, h, w\)"),
    (np.zeros((4, 4), np.float32), {}, r"shape \(B, 1, h, w\)"),
    (np.zeros((1, 0, 4), np.float32), {}, "h and w must be >= 1"),
    ([[[0.5]]], {}, "must be a NumPy array or a CUDA array"),
    (np.zeros((1, 4, 4), np.float32), {"window": 4}, "window must be an odd integer"),
    (np.zeros((1, 4, 4), np.float32), {"window": 17}, "window must be an odd integer"),
    (np.zeros((1, 4, 4), np.float32), {"window": 3.0}, "window must be an odd integer"),
    (np.zeros((1, 4, 4), np.float32), {"max_peaks": 0},
     r"max_peaks must be an integer in \[1, 256\]"),
    (np.zeros((1, 4, 4), np.float32), {"max_peaks": 257}, "max_peaks must be"),
    (np.zeros((1, 4, 4), np.float32), {"max_peaks": True}, "max_peaks must be"),
    (np.zeros((1, 4, 4), np.float32), {"threshold": np.nan}, "threshold must be finite"),
    (np.zeros((1, 4, 4), np.float32), {"threshold": -np.inf}, "threshold must be finite"),
])
def test_bad_inputs_name_the_op_and_argument(heatmap, kwargs, match):
    with pytest.raises(KernelError, match=f"centre_peaks: .*{match}"):
        centre_peaks(heatmap, **kwargs)


@pytest.mark.gpu
def test_cuda_outputs_stay_on_the_device_and_follow_the_stream():
    import torch

    hm = torch.rand(3, 1, 64, 64, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = centre_peaks(hm, threshold=0.5, max_peaks=32)
    side.synchronize()
    for a in (out.count, out.scores, out.xy, out.index):
        assert a.is_cuda and a.device == hm.device
    assert out.count.dtype == torch.int32 and out.index.dtype == torch.int32
    want = centre_peaks_reference(hm.cpu().numpy(), 0.5, 32, 3)
    assert_same_peaks(CentrePeaks(*(a.cpu().numpy() for a in
                                    (out.count, out.scores, out.xy, out.index))), want)


@pytest.mark.gpu
def test_cuda_non_contiguous_is_an_error():
    import torch

    hm = torch.rand(2, 3, 16, 16, device="cuda")[:, 1:2]
    with pytest.raises(KernelError, match="centre_peaks: heatmap must be C-contiguous"):
        centre_peaks(hm)
