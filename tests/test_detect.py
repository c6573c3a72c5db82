"""The person detector and keypoint model (BlazePose converted to ONNX): conversion parity
against the TFLite interpreter, MediaPipe's decoding, multi-person and tracking behaviour on a
real photograph, and the pipeline/node wiring.

The converted model and its sources come from ``hmr-ros detector fetch`` (``make install`` runs
it); tests that need them skip with that hint when absent. The photograph is scikit-image's
``astronaut`` (NASA, public domain), bundled in the scikit-image wheel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hmr_ros.body.keypoints import (COCO17_NAMES, COCO18_NAMES, coco17_from_blazepose33,
                                    coco18_from_coco17)
from hmr_ros.detect import decode
from hmr_ros.detect.convert import (SOURCE_FILES, STAGE_IO, default_model_dir, parity_error,
                                    parity_inputs, parity_tolerance, source_graph)

MODEL_DIR = default_model_dir()
needs_model = pytest.mark.skipif(not (MODEL_DIR / "manifest.json").is_file(),
                                 reason=f"no converted detector in {MODEL_DIR}: run "
                                        "`hmr-ros detector fetch`")


@pytest.fixture(scope="module")
def astronaut():
    data = pytest.importorskip("skimage.data", reason="scikit-image holds the test photograph")
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def detector():
    if not (MODEL_DIR / "manifest.json").is_file():
        pytest.skip(f"no converted detector in {MODEL_DIR}: run `hmr-ros detector fetch`")
    from hmr_ros.detect import DetectorParams, PoseKeypointDetector

    return PoseKeypointDetector(MODEL_DIR, backend="onnxruntime",
                                params=DetectorParams(track=False))


@pytest.fixture(scope="module")
def tiny_runner(tmp_path_factory):
    from tiny_vishmr import tiny_vishmr

    from hmr_ros.body import load_body_model
    from hmr_ros.export import export_vishmr
    from hmr_ros.runtime import VisHMRRunner

    out = tmp_path_factory.mktemp("tiny_detect_model")
    export_vishmr(tiny_vishmr(), out)
    return VisHMRRunner(out, load_body_model("procedural"), backend="onnxruntime")


# --- layouts ---------------------------------------------------------------------------------


def test_keypoint_layouts_map_names_to_names():
    from hmr_ros.body.keypoints import BLAZEPOSE33_NAMES, COCO17_FLIP

    bp = np.arange(33, dtype=float)[:, None].repeat(3, 1)
    coco = coco17_from_blazepose33(bp)
    assert [BLAZEPOSE33_NAMES[int(i)] for i in coco[:, 0]] == list(COCO17_NAMES)
    c18 = coco18_from_coco17(np.stack([np.arange(17.0), np.zeros(17), np.linspace(0.1, 0.9, 17)],
                                      1))
    for i, name in enumerate(COCO18_NAMES):
        if name == "neck":
            assert c18[i, 0] == pytest.approx((5 + 6) / 2)
            assert c18[i, 2] == pytest.approx(min(0.1 + 0.05 * 5, 0.1 + 0.05 * 6))
        else:
            assert COCO17_NAMES[int(c18[i, 0])] == name
    flipped = [COCO17_NAMES[i] for i in COCO17_FLIP]
    assert flipped[5] == "right_shoulder" and flipped[0] == "nose"


# --- decoding (MediaPipe's numbers) ----------------------------------------------------------


def test_anchors_follow_the_ssd_layout():
    a = decode.ANCHORS
    assert a.shape == (2254, 2)
    # stride 8: 28 x 28 cells, 2 anchors each, row-major (y, then x)
    assert np.allclose(a[0], a[1]) and np.allclose(a[0], [0.5 / 28, 0.5 / 28])
    assert np.allclose(a[2], [1.5 / 28, 0.5 / 28])
    assert np.allclose(a[1568], [0.5 / 14, 0.5 / 14])  # stride 16 starts
    assert np.allclose(a[1960:1966], [0.5 / 7, 0.5 / 7])  # stride 32: 6 anchors per cell


def _raw_person(anchor: int, box_wh=(40.0, 40.0), kp=((0.0, 60.0), (0.0, -40.0))):
    raw = np.zeros((2254, 12), np.float32)
    raw[anchor, 2:4] = box_wh
    raw[anchor, 4:6] = kp[0]
    raw[anchor, 6:8] = kp[1]
    return raw


def test_decode_maps_a_known_anchor_back_to_image_pixels():
    # a 448 x 224 frame letterboxes into 224 x 224 at scale 0.5 with 56 px bands above/below
    lb = decode.letterbox(448, 224)
    assert lb.scale == pytest.approx(0.5) and lb.offset_y == pytest.approx(56.0)
    anchor = 28 * 14 * 2 + 14 * 2  # stride 8, cell (x=14, y=14): the tensor's centre
    raw = _raw_person(anchor)
    scores = np.full(2254, -10.0, np.float32)
    scores[anchor] = 5.0
    [det] = decode.decode_detections(raw, scores, lb)
    cx_t, cy_t = decode.ANCHORS[anchor] * 224  # tensor pixels
    assert det.score == pytest.approx(1 / (1 + math.exp(-5.0)))
    assert np.allclose(det.box, [(cx_t - 20) / 0.5, (cy_t - 20 - 56) / 0.5,
                                 (cx_t + 20) / 0.5, (cy_t + 20 - 56) / 0.5], atol=1e-3)
    assert np.allclose(det.keypoints[0], [cx_t / 0.5, (cy_t + 60 - 56) / 0.5], atol=1e-3)


def test_weighted_nms_merges_one_person_and_keeps_two():
    lb = decode.letterbox(224, 224)
    a, b, far = 2 * (28 * 10 + 10), 2 * (28 * 10 + 11), 2 * (28 * 20 + 20)
    raw = _raw_person(a) + _raw_person(b) + _raw_person(far)
    scores = np.full(2254, -10.0, np.float32)
    scores[[a, b, far]] = [3.0, 1.0, 2.0]
    dets = decode.decode_detections(raw, scores, lb)
    assert len(dets) == 2
    assert dets[0].score == pytest.approx(1 / (1 + math.exp(-3.0)))  # the best one's score
    wa, wb = 1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(-1.0))
    merged_cx = (wa * decode.ANCHORS[a, 0] + wb * decode.ANCHORS[b, 0]) / (wa + wb) * 224
    assert (dets[0].box[0] + dets[0].box[2]) / 2 == pytest.approx(merged_cx, abs=1e-3)
    # bad raw values are dropped, never crash
    raw[far, 2] = np.nan
    assert len(decode.decode_detections(raw, scores, lb)) == 1


def test_roi_is_upright_for_a_standing_person_and_maps_its_centre():
    roi = decode.roi_from_points(np.array([100.0, 200.0]), np.array([100.0, 120.0]))
    assert roi.rotation == pytest.approx(0.0, abs=1e-9)
    assert roi.side == pytest.approx(2 * 80 * 1.25)
    m = roi.crop_matrix()
    centre = m @ np.array([128.0, 128.0, 1.0])
    assert np.allclose(centre, [100.0, 200.0])
    lying = decode.roi_from_points(np.array([100.0, 200.0]), np.array([180.0, 200.0]))
    assert abs(lying.rotation) == pytest.approx(math.pi / 2)


def test_detector_views_cover_the_frame_with_overlap():
    views = decode.detector_views(1920, 1080, tile=480)
    assert views[0] == (0, 0, 0)
    covered = np.zeros((1080, 1920), bool)
    for x, y, side in views[1:]:
        covered[y:y + side, x:x + side] = True
    assert covered.all()
    assert decode.detector_views(640, 480, tile=0) == [(0, 0, 0)]


# --- conversion parity -----------------------------------------------------------------------


@needs_model
@pytest.mark.parametrize("stage", sorted(SOURCE_FILES))
def test_onnx_matches_the_original_tflite_model(stage, astronaut):
    """The shipped ONNX graph against MediaPipe's .tflite in the reference interpreter, on the
    conversion's check images and on a real photograph."""
    pytest.importorskip("ai_edge_litert", reason="the TFLite reference interpreter")
    import cv2

    from hmr_ros.detect.tflite_graph import run_tflite_reference
    from hmr_ros.runtime.backends import select_backend

    tflite = source_graph(stage)
    if tflite is None:
        pytest.skip("the original .tflite was not kept: run `hmr-ros detector fetch --force`")
    (in_name, size), out_names, _ = STAGE_IO[stage]
    low = -1.0 if stage == "detector" else 0.0
    photo = cv2.resize(astronaut, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    photo = photo / 255.0 * (1.0 - low) + low
    images = np.concatenate([parity_inputs(size, low), photo[None]])
    backend = select_backend("onnxruntime", MODEL_DIR)
    # the landmark graph runs whole as stage "segmentation"; the run-time "landmarks" stage is
    # it cut before the segmentation branch, and must give the same numbers
    whole_stage = "segmentation" if stage == "landmarks" else stage
    got = backend.run(whole_stage, {in_name: images.transpose(0, 3, 1, 2)})
    if stage == "landmarks":
        cut = backend.run("landmarks", {in_name: images.transpose(0, 3, 1, 2)})
        assert "segmentation" not in cut
        for name, value in cut.items():
            assert parity_error(name, value, got[name]) <= parity_tolerance(name), name
    from hmr_ros.detect.tflite_graph import load_tflite

    tfl_names = load_tflite(tflite).output_names
    for b in range(len(images)):
        ref = run_tflite_reference(tflite, images[b: b + 1])
        for name, tfl_name in zip(out_names, tfl_names):
            r = ref[tfl_name][0]
            if r.ndim == 3:
                r = r.transpose(2, 0, 1)
            v = got[name][b]
            assert parity_error(name, v, r.reshape(v.shape)) <= parity_tolerance(name), name


@needs_model
def test_provenance_record_names_source_licence_and_hashes():
    import json

    from hmr_ros.export.manifest import sha256_of

    record = json.loads((MODEL_DIR / "PROVENANCE.json").read_text())
    assert record["source_package"] == "mediapipe" and record["source_version"] == "0.10.14"
    assert record["license"] == "Apache-2.0" and (MODEL_DIR / "LICENSE").is_file()
    for stage, info in record["files"].items():
        assert info["source_sha256"] == SOURCE_FILES[stage][1]
        assert sha256_of(MODEL_DIR / info["onnx"]) == info["onnx_sha256"]


# --- on a real photograph --------------------------------------------------------------------


def test_finds_the_astronaut_and_her_face(detector, astronaut):
    [person] = detector(astronaut)
    kp = person.coco17
    assert person.score > 0.9
    x0, y0, x1, y1 = person.box
    assert x0 < 120 and x1 > 300 and y0 < 60  # head to the bottom edge, both shoulders
    nose, ls, rs = kp[COCO17_NAMES.index("nose")], kp[5], kp[6]
    assert 180 < nose[0] < 260 and 90 < nose[1] < 170 and nose[2] > 0.9
    assert ls[0] > rs[0]  # she faces the camera: her left shoulder is on the image's right
    assert person.facing_camera() is True
    assert kp[5:7, 1].mean() > nose[1] + 50  # shoulders well below the nose


def test_mirrored_photo_swaps_left_and_right(detector, astronaut):
    [a] = detector(astronaut)
    [b] = detector(np.ascontiguousarray(astronaut[:, ::-1]))
    w = astronaut.shape[1]
    # the mirror image's left shoulder is where the original's right one was, mirrored
    assert abs((w - 1 - b.coco17[5, 0]) - a.coco17[6, 0]) < 16  # 5% of the shoulder width
    assert abs((w - 1 - b.coco17[6, 0]) - a.coco17[5, 0]) < 16


def test_several_people_and_far_people_with_tiles(astronaut):
    if not (MODEL_DIR / "manifest.json").is_file():
        pytest.skip("run `hmr-ros detector fetch`")
    import cv2

    from hmr_ros.detect import DetectorParams, PoseKeypointDetector

    det = PoseKeypointDetector(MODEL_DIR, backend="onnxruntime",
                               params=DetectorParams(track=False))
    three = np.ascontiguousarray(np.concatenate([astronaut, astronaut[:, ::-1], astronaut], 1))
    people = det(three)
    assert len(people) >= 2  # the stock graph would keep one
    centres = sorted((p.box[0] + p.box[2]) / 2 for p in people)
    assert all(b - a > 300 for a, b in zip(centres, centres[1:]))  # different people
    canvas = np.full((1080, 1920, 3), 120, np.uint8)
    canvas[700:860, 1500:1660] = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    assert det(canvas) == []  # too small for the whole-frame view
    tiled = PoseKeypointDetector(MODEL_DIR, backend="onnxruntime",
                                 params=DetectorParams(track=False, detector_tile=480))
    [found] = tiled(canvas)
    assert 1480 < found.box[0] < 1560 and 1580 < found.box[2] < 1680


def test_tracking_reuses_regions_and_skips_the_detector(astronaut):
    if not (MODEL_DIR / "manifest.json").is_file():
        pytest.skip("run `hmr-ros detector fetch`")
    from hmr_ros.detect import DetectorParams, PoseKeypointDetector

    det = PoseKeypointDetector(MODEL_DIR, backend="onnxruntime",
                               params=DetectorParams(track=True, detect_every=5))
    boxes = [det(astronaut)[0].box for _ in range(5)]
    assert det.stats.detector_runs == 1  # frames 2-5 followed the landmarks' own region
    assert np.abs(np.array(boxes) - boxes[0]).max() < 0.08 * (boxes[0][3] - boxes[0][1])
    blank = np.zeros_like(astronaut)
    assert det(blank) == []  # the person left: the region is dropped...
    det(blank)
    assert det.stats.detector_runs >= 2  # ...and the detector looks again


def test_boxes_from_a_topic_get_keypoints_for_exactly_those(detector, astronaut):
    [person] = detector.keypoints_for_boxes(astronaut, [np.array([30.0, 20.0, 360.0, 511.0])])
    assert person.coco17[0, 2] > 0.9
    assert detector.keypoints_for_boxes(np.zeros((64, 64, 3), np.uint8), []) == []


def test_bad_images_do_not_crash(detector):
    assert detector(np.zeros((1, 1, 3), np.uint8)) == []
    noisy = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    assert isinstance(detector(noisy[::2, ::-1]), list)  # a non-contiguous view


def test_missing_model_directory_says_how_to_fetch(tmp_path):
    from hmr_ros.detect import PoseKeypointDetector
    from hmr_ros.runtime.errors import EngineError

    with pytest.raises(EngineError, match="hmr-ros detector fetch"):
        PoseKeypointDetector(tmp_path / "nothing")


# --- wiring ----------------------------------------------------------------------------------


def test_pipeline_takes_people_and_keypoints_from_the_detector(detector, astronaut, tiny_runner):
    from hmr_ros.runtime import FramePipeline, PipelineParams
    from hmr_ros.runtime.boxes import Box

    pipe = FramePipeline(tiny_runner, PipelineParams(track=False), keypoint_detector=detector)
    result = pipe.process(astronaut)
    assert result.skipped is None and len(result.persons) == 1
    person = result.persons[0]
    assert person.detected_keypoints.shape == (17, 3)
    assert person.bbox[0] < 120 and person.bbox[2] > 300
    assert "detector" in result.timing
    # boxes given: those boxes, with matched keypoints; a box on nobody gets none
    result = pipe.process(astronaut, boxes=[Box(30, 20, 360, 511, 0.9), Box(400, 0, 500, 90, 0.8)])
    by_x = sorted(result.persons, key=lambda p: p.bbox[0])
    assert by_x[0].detected_keypoints is not None and by_x[1].detected_keypoints is None


def test_skeleton2d_uses_the_detected_keypoints():
    from types import SimpleNamespace

    from hmr_ros.node.outputs import _skeleton_points

    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = np.arange(17) * 10 + 5
    kp[:, 1] = 50
    kp[:, 2] = 0.8
    kp[16, 2] = 0.1
    person = SimpleNamespace(detected_keypoints=kp, keypoints2d=np.zeros((24, 2)),
                             visibility=np.ones(24))
    points = _skeleton_points(person, 200, 100)
    assert len(points) == 18
    nose = points[COCO18_NAMES.index("nose")]
    assert nose == pytest.approx((5 / 200, 0.5, 0.8))
    neck = points[COCO18_NAMES.index("neck")]
    assert neck[0] == pytest.approx(((55 + 65) / 2) / 200)
    assert points[COCO18_NAMES.index("right_ankle")][2] == pytest.approx(0.1)
    kp[3, 0] = 1e6  # outside the image: confidence 0
    assert _skeleton_points(person, 200, 100)[COCO18_NAMES.index("left_ear")][2] == 0.0


def test_refinement_brings_the_mesh_to_the_detected_keypoints(detector, tiny_runner):
    """On a whole-body render (the astronaut's legs are outside her photo): the tiny model's
    mesh is nowhere near the person, refinement moves its joints onto the detected points."""
    from hmr_ros.data.synthetic import SynthConfig, SyntheticGenerator
    from hmr_ros.runtime import FramePipeline, PipelineParams
    from hmr_ros.runtime.refine import COCO17_BODY, SMPL_FOR_COCO17_BODY

    gen = SyntheticGenerator(SynthConfig(size=256, p_multi=0.0, p_occ=0.0, p_truncate=0.0,
                                         photos="none", p_lowres=0.0, p_motion_blur=0.0),
                             seed=4)
    for index in range(12):
        sample = gen.render(gen.scene(index))
        image, K = np.ascontiguousarray(sample["image"]), sample["K"]
        people = detector(image)
        if people and (people[0].coco17[COCO17_BODY, 2] >= 0.5).sum() >= 10:
            break
    else:
        pytest.fail("the detector found no whole body in 12 renders")

    def error(result):
        p = result.persons[0]
        kp = p.detected_keypoints
        ok = kp[COCO17_BODY, 2] >= 0.5
        return np.linalg.norm(p.keypoints2d[SMPL_FOR_COCO17_BODY][ok] - kp[COCO17_BODY][ok, :2],
                              axis=1).mean()

    plain = FramePipeline(tiny_runner, PipelineParams(track=False), keypoint_detector=detector)
    fitted = FramePipeline(tiny_runner, PipelineParams(track=False, refine_iterations=10,
                                                       refine_prior=0.01),
                           keypoint_detector=detector)
    a, b = plain.process(image, K), fitted.process(image, K)
    assert "refine" in b.timing and np.isfinite(b.persons[0].vertices).all()
    assert error(b) < 0.5 * error(a)


def test_keypoints_for_boxes_answer_box_by_box(detector, astronaut):
    people = detector.keypoints_for_boxes(
        astronaut, [np.array([400.0, 0.0, 500.0, 90.0]), np.array([30.0, 20.0, 360.0, 511.0])])
    assert len(people) == 2 and people[0] is None and people[1].coco17[0, 2] > 0.9


def test_batches_over_the_backend_limit_are_chunked(astronaut):
    if not (MODEL_DIR / "manifest.json").is_file():
        pytest.skip("run `hmr-ros detector fetch`")
    from hmr_ros.detect import DetectorParams, PoseKeypointDetector

    params = DetectorParams(track=False, detector_tile=200)  # 512 px: 10 views
    whole = PoseKeypointDetector(MODEL_DIR, backend="onnxruntime", params=params)
    chunked = PoseKeypointDetector(MODEL_DIR, backend="onnxruntime", params=params)
    chunked.backend.max_batch = 3  # as a TensorRT engine would have
    a, b = whole.detect(astronaut), chunked.detect(astronaut)
    assert len(a) == len(b) >= 1
    assert np.allclose(a[0].box, b[0].box, atol=1e-3)


def test_person_box_takes_in_the_head_whichever_way_the_person_lies():
    pts = np.zeros((39, 3), np.float32)
    # upright: hips at y=200, shoulders at y=100, eyes at y=60, nose 70, mouth 80
    for i, (x, y) in {23: (95, 200), 24: (105, 200), 11: (90, 100), 12: (110, 100),
                      2: (97, 60), 5: (103, 60), 0: (100, 70), 9: (98, 80), 10: (102, 80)}.items():
        pts[i, :2] = (x, y)
    others = [i for i in range(33) if i not in (23, 24, 11, 12, 2, 5, 0, 9, 10)]
    pts[others, :2] = (100, 150)
    box = decode.person_box(pts, 1000, 1000)
    assert box[1] < 60 - 15  # the crown above the eyes
    lying = pts.copy()
    lying[:, 0], lying[:, 1] = pts[:, 1] + 300, pts[:, 0] + 300  # head towards +x... mirrored
    lying[:, 0] = 1000 - lying[:, 0]  # hips at x=800, head towards -x
    box = decode.person_box(lying, 1000, 1000)
    assert box[0] < (1000 - 360) - 15  # the crown beyond the eyes, to the left
