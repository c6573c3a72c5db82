"""The per-frame pipeline and its parts: boxes, camera conversion, tracking, smoothing, and
bad input handled as logged skips with the frame's stamp."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hmr_ros.body import procedural_body
from hmr_ros.export import export_vishmr
from hmr_ros.runtime import (Box, FramePipeline, Header, Intrinsics, OrtVisHMR, PipelineParams,
                             Tracker, crop_to_full_translation, resolve_intrinsics, select_boxes)
from hmr_ros.runtime.camera import project
from hmr_ros.runtime.smoothing import OneEuroFilter, PoseSmoother
from tiny_vishmr import tiny_vishmr



@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    body = procedural_body()
    out = tmp_path_factory.mktemp("tiny")
    export_vishmr(tiny_vishmr(body=body), out)
    return OrtVisHMR(out, body)


# --- camera -----------------------------------------------------------------------------------

def test_crop_camera_to_full_translation_agrees_with_perspective():
    rng = np.random.default_rng(0)
    intr = Intrinsics(1000.0, 1000.0, 640.0, 360.0)
    T = np.c_[rng.uniform(-1, 1, (20, 2)), rng.uniform(2, 8, 20)]
    centers = rng.uniform([200, 100], [1000, 600], (20, 2))
    sizes = rng.uniform(100, 400, 20)
    # the crop camera whose weak-perspective projection of the root matches the perspective one
    s = 2 * intr.fx / (sizes * T[:, 2])
    cam = np.c_[s, T[:, 0] - 2 * (centers[:, 0] - intr.cx) / (sizes * s),
                T[:, 1] - 2 * (centers[:, 1] - intr.cy) / (sizes * s)]
    np.testing.assert_allclose(crop_to_full_translation(cam, centers, sizes, intr), T, rtol=1e-9)
    uv = project(T, intr)  # where the root lands in the image ...
    weak = centers + 0.5 * sizes[:, None] * (s[:, None] * cam[:, 1:])  # ... and in the crop
    np.testing.assert_allclose(weak, uv, rtol=1e-9)


def test_missing_or_broken_intrinsics_are_assumed_and_flagged():
    assert resolve_intrinsics(None, 640, 480).assumed
    nan_k = np.full((3, 3), np.nan)
    intr = resolve_intrinsics(nan_k, 640, 480)
    assert intr.assumed and intr.fx == pytest.approx(800.0) and intr.cx == 320.0
    good = resolve_intrinsics(np.array([[500, 0, 300], [0, 510, 200], [0, 0, 1.0]]), 640, 480)
    assert not good.assumed and good.fy == 510


# --- boxes and tracking -----------------------------------------------------------------------

def test_select_boxes_clips_filters_and_caps():
    notes = []
    boxes = [Box(-50, -20, 100, 200, 0.9), Box(10, 10, 12, 12, 0.99), Box(0, 0, 50, 50, 0.2),
             Box(np.nan, 0, 10, 10, 0.9), Box(900, 900, 1000, 1000, 0.9)]
    boxes += [Box(100 + 30 * i, 50, 160 + 30 * i, 200, 0.6 + 0.01 * i) for i in range(6)]
    kept = select_boxes(boxes, 640, 480, score_threshold=0.5, min_size=16, max_persons=3,
                        dropped=notes)
    assert len(kept) == 3 and kept[0].score == 0.9 and kept[0].x0 == 0 and kept[0].y0 == 0
    assert [k.score for k in kept] == sorted([k.score for k in kept], reverse=True)
    text = " ".join(notes)
    for needle in ("non-finite", "score 0.20", "below min_size", "over max_persons=3"):
        assert needle in text


def test_tracker_keeps_ids_through_motion_order_and_misses():
    tr = Tracker(min_hits=2, max_age=3)
    a = lambda x: Box(x, 100, x + 80, 300)  # noqa: E731
    b = lambda x: Box(x, 120, x + 90, 330)  # noqa: E731
    assert tr.update([a(0), b(400)]) == [-1, -1]  # tentative
    ids = tr.update([a(10), b(410)])
    assert ids[0] > 0 and ids[1] > 0 and ids[0] != ids[1]
    assert tr.update([b(420), a(20)]) == [ids[1], ids[0]]  # order does not matter
    assert tr.update([b(430)]) == [ids[1]]  # a missed once ...
    assert tr.update([a(40), b(440)]) == ids  # ... and comes back with its id
    for _ in range(5):
        tr.update([b(450)])
    assert tr.update([a(40)])[0] == -1  # gone after max_age misses: a new, tentative track
    assert tr.update([a(45)])[0] not in ids


# --- smoothing --------------------------------------------------------------------------------

def test_one_euro_reduces_jitter_and_keeps_rotations():
    rng = np.random.default_rng(1)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    raw = 1.0 + 0.05 * rng.normal(size=200)
    out = np.array([f(np.array([x]), t / 30.0)[0] for t, x in enumerate(raw)])
    assert out[50:].std() < 0.5 * raw[50:].std()
    sm = PoseSmoother()
    from hmr_ros.kernels import axis_angle_to_matrix

    for t in range(10):
        R = axis_angle_to_matrix(rng.normal(scale=0.2, size=(24, 3)))
        rot, tr = sm(7, R, np.zeros(3), t / 30.0)
        np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)


# --- the pipeline -----------------------------------------------------------------------------

def frame(h=240, w=320, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_pipeline_returns_people_in_the_camera_frame(runner):
    pipe = FramePipeline(runner, PipelineParams(track=False))
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    header = Header(stamp_ns=123456789, frame_id="cam0")
    res = pipe.process(frame(), K, [Box(40, 20, 140, 220, 0.9), Box(180, 30, 290, 230, 0.8)],
                       header)
    assert res.header == header and res.skipped is None and not res.assumed_intrinsics
    assert len(res.persons) == 2
    for p in res.persons:
        assert p.vertices.shape == (procedural_body().num_vertices, 3)
        assert p.transl[2] > 0  # in front of the camera
        np.testing.assert_allclose(p.joints[0], runner.lbs(p.betas[None].astype(np.float32),
                                                           p.rel_rotmats[None].astype(np.float32))[1][0, 0] + p.transl, atol=1e-5)
        np.testing.assert_allclose(p.keypoints2d, project(p.joints, Intrinsics.from_matrix(K)))
    assert {"preprocess", "stage_a", "iuv_warp", "stage_b", "merge_lbs", "postprocess",
            "total"} <= set(res.timing)


def test_pipeline_tracks_and_smooths(runner):
    pipe = FramePipeline(runner, PipelineParams(track=True, smooth=True))
    ids = []
    for t in range(4):
        res = pipe.process(frame(seed=t), None, [Box(40 + 2 * t, 20, 140 + 2 * t, 220)],
                           Header(stamp_ns=t * 33_000_000))
        assert res.assumed_intrinsics
        ids.append(res.persons[0].track_id)
        rot = res.persons[0].rel_rotmats
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    assert ids[0] == -1 and ids[1] > 0 and len(set(ids[1:])) == 1


@pytest.mark.parametrize("image,needle", [
    (np.zeros((0, 0, 3), np.uint8), "too small"),
    (np.zeros((1, 1, 3), np.uint8), "too small"),
    (np.zeros((240, 320, 3), np.float32), "uint8"),
    (np.zeros((240, 320), np.uint8), "H x W x 3"),
    (np.zeros((240, 320, 4), np.uint8), "H x W x 3"),
    ("not an image", "NumPy array"),
])
def test_bad_images_are_logged_skips_and_the_next_frame_runs(runner, caplog, image, needle):
    pipe = FramePipeline(runner)
    with caplog.at_level(logging.WARNING, logger="hmr_ros.runtime"):
        res = pipe.process(image, header=Header(stamp_ns=42, frame_id="cam"))
    assert res.skipped and needle in res.skipped and res.persons == ()
    assert "frame 42 (cam) skipped" in caplog.text
    assert len(pipe.process(frame()).persons) == 1  # still serving


def test_zero_persons_boxes_outside_and_too_many(runner):
    pipe = FramePipeline(runner, PipelineParams(max_persons=2, track=False))
    assert pipe.process(frame(), boxes=[]).persons == ()
    res = pipe.process(frame(), boxes=[Box(1000, 1000, 1200, 1300), Box(-300, -300, -10, -10)])
    assert res.persons == () and res.skipped is None and len(res.notes) == 2
    many = [Box(10 * i, 10, 10 * i + 60, 200, 0.5 + 0.04 * i) for i in range(6)]
    res = pipe.process(frame(), boxes=many)
    assert len(res.persons) == 2 and res.persons[0].score == pytest.approx(0.7)
    assert any("max_persons" in n for n in res.notes)


def test_nan_intrinsics_and_an_8k_frame(runner):
    pipe = FramePipeline(runner, PipelineParams(track=False))
    big = np.zeros((4320, 7680, 3), np.uint8)
    res = pipe.process(big, np.full((3, 3), np.nan), [Box(3000, 1000, 3600, 2400)])
    assert res.skipped is None and res.assumed_intrinsics and len(res.persons) == 1
    assert any("focal length assumed" in n for n in res.notes)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="max_persons must be >= 1"):
        PipelineParams(max_persons=0)
    with pytest.raises(ValueError, match="context must be >= 1.0"):
        PipelineParams(context=0.5)


def test_crop_kernel_matches_opencv_warp_affine():
    import cv2

    from hmr_ros.kernels import KernelError, crop_affine
    from hmr_ros.runtime.crop import crop_batch, square_geometry

    img = frame(120, 160, seed=3)
    geoms = [square_geometry(Box(10, 20, 90, 110), 48), square_geometry(Box(100, -30, 170, 60), 48)]
    got = crop_batch(img, geoms, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    for g, crop in zip(geoms, got):
        ref = cv2.warpAffine(img, g.image_to_crop(), (48, 48), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        ref = (ref / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.3]
        # OpenCV quantises coordinates and weights to 1/32: compare within that
        assert np.abs(crop.transpose(1, 2, 0) - ref).max() < 2.5 / 255 / 0.2
    with pytest.raises(KernelError, match="image must be uint8"):
        crop_affine(img.astype(np.float32), np.zeros((1, 2, 3)), 8, [0] * 3, [1] * 3)
    with pytest.raises(KernelError, match=r"affines must be finite with shape \(N, 2, 3\)"):
        crop_affine(img, np.full((1, 2, 3), np.nan), 8, [0] * 3, [1] * 3)


# --- fixes for the node: layouts, threads, smoother in step with the tracker, chunks ----------

def _frame(seed=0, h=96, w=128):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_a_non_contiguous_view_is_processed_like_its_copy(runner):
    bgr = _frame(3)
    view = bgr[..., ::-1]  # the usual BGR -> RGB step: a view with a negative stride
    assert not view.flags.c_contiguous
    pipe = FramePipeline(runner, PipelineParams(track=False))
    a = pipe.process(view, boxes=[Box(10, 5, 90, 90)])
    b = pipe.process(np.ascontiguousarray(view), boxes=[Box(10, 5, 90, 90)])
    assert a.skipped is None and len(a.persons) == 1
    np.testing.assert_allclose(a.persons[0].vertices, b.persons[0].vertices, atol=1e-5)


def test_concurrent_frames_give_the_sequential_results(runner):
    import threading

    pipe = FramePipeline(runner, PipelineParams(track=False))
    frames = [(_frame(i), [Box(5 + i, 5, 80 + i, 90)]) for i in range(6)]
    want = [pipe.process(f, boxes=b).persons[0].joints for f, b in frames]
    got = [None] * len(frames)

    def work(i):
        got[i] = pipe.process(frames[i][0], boxes=frames[i][1]).persons[0].joints

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_smoother_keeps_a_track_through_a_missed_frame(runner):
    pipe = FramePipeline(runner, PipelineParams(track=True, smooth=True))
    pipe.tracker.min_hits = 1
    box = [Box(10, 5, 90, 90)]
    first = pipe.process(_frame(0), boxes=box, header=Header(stamp_ns=0))
    tid = first.persons[0].track_id
    assert tid >= 0 and tid in pipe.smoother._filters
    pipe.process(_frame(1), boxes=[], header=Header(stamp_ns=33_000_000))  # missed
    assert tid in pipe.smoother._filters  # the tracker keeps it for max_age: so does the filter
    again = pipe.process(_frame(2), boxes=box, header=Header(stamp_ns=66_000_000))
    assert again.persons[0].track_id == tid
    for _ in range(pipe.tracker.max_age + 1):
        pipe.process(_frame(3), boxes=[], header=Header(stamp_ns=99_000_000))
    assert tid not in pipe.smoother._filters and tid not in pipe.tracker.active_ids()


def test_batches_over_the_backend_limit_run_in_chunks(runner):
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(5, 3, runner.crop_size, runner.crop_size)).astype(np.float32)
    z = runner.default_z(5)
    whole = runner(crops, z)
    runner.backend.max_batch = 2  # as a TensorRT engine built for batch <= 2
    try:
        chunked = runner(crops, z)
    finally:
        del runner.backend.max_batch
    for key in ("vertices", "joints", "omega", "betas", "cam"):
        np.testing.assert_allclose(chunked[key], whole[key], atol=1e-5)
    assert set(chunked["timing"]) == set(whole["timing"])
