"""``hmr-ros eval-video`` and ``hmr-ros footage fetch``: the metrics on inputs with known
answers, the footage manifest on a fake unpacked ``opencv-doc``, and a short end-to-end run on a
video this test writes (needs the converted detector; skipped with the hint otherwise)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hmr_ros.detect.convert import default_model_dir
from hmr_ros.eval import footage
from hmr_ros.eval.video import (COCO_BODY, SMPL_FOR_COCO, acceleration_jitter, baseline_rotmats,
                                box_region, mask_iou, mesh_faces_camera, pck_hits,
                                shoulder_facing, silhouette_iou, torso_size)

DETECTOR_DIR = default_model_dir()


def _keypoints():
    """An upright person facing the camera: torso 40 px (shoulders at y 0, hips at y 40)."""
    kp = np.zeros((17, 3))
    kp[:, 2] = 0.9
    kp[5, :2], kp[6, :2] = (20, 0), (-20, 0)  # left shoulder on the image right
    kp[11, :2], kp[12, :2] = (10, 40), (-10, 40)
    kp[7, :2], kp[8, :2] = (25, 20), (-25, 20)
    kp[9, :2], kp[10, :2] = (25, 40), (-25, 40)
    kp[13, :2], kp[14, :2] = (10, 70), (-10, 70)
    kp[15, :2], kp[16, :2] = (10, 100), (-10, 100)
    return kp


def test_smpl_to_coco_mapping_is_by_name():
    from hmr_ros.body.constants import JOINT_NAMES
    from hmr_ros.body.keypoints import COCO17_NAMES

    assert [COCO17_NAMES[i] for i in COCO_BODY] == [JOINT_NAMES[j] for j in SMPL_FOR_COCO]
    assert SMPL_FOR_COCO.tolist() == [16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8]


def test_torso_size_and_pck_known_answers():
    kp = _keypoints()
    assert torso_size(kp) == pytest.approx(40.0)  # threshold 0.2 x 40 = 8 px
    joints = np.full((24, 2), 1e4)
    joints[SMPL_FOR_COCO] = kp[COCO_BODY, :2]
    joints[SMPL_FOR_COCO[0]] += (5.0, 0.0)  # left shoulder 5 px off: hit
    joints[SMPL_FOR_COCO[1]] += (6.0, 6.0)  # right shoulder 8.49 px off: miss
    joints[SMPL_FOR_COCO[4]] += (0.0, 7.9)  # left wrist: hit
    kp[16, 2] = 0.3  # right ankle not confident: not counted
    hit, counted = pck_hits(joints, kp)
    assert counted.sum() == 11 and not counted[-1]
    assert hit.tolist() == [True, False] + [True] * 9 + [False]
    # torso undefined (a hip not confident): nothing counted
    kp[11, 2] = 0.4
    assert np.isnan(torso_size(kp))
    hit, counted = pck_hits(joints, kp)
    assert not counted.any() and not hit.any()


def test_iou_and_box_region():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True  # 16 px
    b[2:6, 2:6] = True  # 16 px, 4 shared
    assert mask_iou(a, b) == pytest.approx(4 / 28)
    assert np.isnan(mask_iou(np.zeros((3, 3)), np.zeros((3, 3))))
    region = box_region((2, 2, 5, 5), (10, 10), margin=0.0)
    assert region.sum() == 16 and region[2:6, 2:6].all()
    # the person mask only counts inside the box: a blob elsewhere does not hurt the mesh
    person = b.copy()
    person[8:, 8:] = True
    assert silhouette_iou(b, person, (2, 2, 5, 5), margin=0.0) == pytest.approx(1.0)
    # mesh pixels outside the box count against it
    assert silhouette_iou(a | b, b, (2, 2, 5, 5), margin=0.0) == pytest.approx(16 / 28)


def test_mesh_facing_and_shoulder_order():
    upright_facing = np.diag([1.0, -1.0, -1.0])  # body y up -> image up, body +z -> camera
    upright_away = np.diag([-1.0, -1.0, 1.0])
    root = np.array([0.3, 0.2, 5.0])
    assert mesh_faces_camera(upright_facing, root) is True
    assert mesh_faces_camera(upright_away, root) is False
    # seen from far to the side: forward along camera -x faces a person at +x
    side = np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
    assert mesh_faces_camera(side, np.array([3.0, 0.0, 1.0])) is True
    assert mesh_faces_camera(side, np.array([-3.0, 0.0, 1.0])) is False
    kp = _keypoints()
    assert shoulder_facing(kp) is True
    flipped = kp.copy()
    flipped[[5, 6]] = kp[[6, 5]]
    assert shoulder_facing(flipped) is False
    profile = kp.copy()
    profile[5, :2], profile[6, :2] = (2, 0), (-2, 0)  # 4 px span < 0.3 x 40
    assert shoulder_facing(profile) is None
    upside_down = kp.copy()
    upside_down[:, 1] *= -1  # hips above shoulders, left still on the right: facing away
    assert shoulder_facing(upside_down) is False


def test_jitter_known_answers():
    t = np.arange(6, dtype=float)
    steady = np.stack([np.stack([3 * t, 2 * t], 1)] * 2, axis=1)  # (6, 2, 2) constant velocity
    valid = np.ones((6, 2), bool)
    total, n = acceleration_jitter(steady, valid, np.full(6, 10.0))
    assert n == 8 and total == pytest.approx(0.0)
    accel = steady.copy()
    accel[:, 0, 0] += 0.5 * 4.0 * t ** 2  # joint 0: 4 px/frame^2 along x
    valid[3, 1] = False  # joint 1 drops out of triples centred on frames 2, 3, 4
    total, n = acceleration_jitter(accel, valid, np.full(6, 10.0))
    assert n == 4 + 1 and total / n == pytest.approx(4 * 0.4 / 5)
    assert acceleration_jitter(accel[:2], valid[:2], np.ones(2)) == (0.0, 0)


def test_baselines_keep_the_root_and_pose_the_arms():
    from hmr_ros.body import axis_angle_to_matrix, load_body_model, pose_body

    body = load_body_model("procedural")
    rng = np.random.default_rng(0)
    rel = axis_angle_to_matrix(rng.normal(0, 0.3, (2, 24, 3)))
    apose = baseline_rotmats(rel, 45.0)
    tpose = baseline_rotmats(rel, 0.0)
    assert np.allclose(apose[:, 0], rel[:, 0], atol=1e-6)
    assert np.allclose(tpose[:, 1:], np.eye(3), atol=1e-6)
    _, j = pose_body(body, np.zeros((1, 10)), baseline_rotmats(np.eye(3)[None, None].repeat(
        24, 1), 45.0))
    for sh, el in ((16, 18), (17, 19)):
        d = j[0, el] - j[0, sh]
        assert np.degrees(np.arctan2(-d[1], abs(d[0]))) == pytest.approx(45.0, abs=3.0)


# --- footage -----------------------------------------------------------------------------------

_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: OpenCV
Files-Excluded:
 samples/data/lena.jpg

Files: *
Copyright: 2000-2022, Intel Corporation
           Respective opencv contributors.
License: Apache-2.0 AND BSD-3-Clause
Comment: a comment
 over two lines

Files: samples/data/vtest.avi other/*
Copyright: 2006, Somebody
License: CC-BY-4.0
 Full text here.

Files: data/*
License: BSD-3-Clause
"""


def _fake_tree(root: Path) -> Path:
    data = root / footage.DATA_DIR
    data.mkdir(parents=True)
    for k, name in enumerate(footage.FILES):
        (data / name).write_bytes(bytes([k]) * (100 + k))
    (data / "lena.jpg").write_bytes(b"not copied")
    (root / footage.COPYRIGHT).write_text(_COPYRIGHT)
    return root


def test_footage_manifest_from_a_fake_tree(tmp_path):
    import hashlib

    tree = _fake_tree(tmp_path / "tree")
    dest = tmp_path / "cache"
    manifest = footage.install_from_tree(tree, dest, "4.6.0+dfsg-12", "test")
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        list(footage.FILES) + ["copyright", "manifest.json"])
    on_disk = json.loads((dest / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["package"] == "opencv-doc" and manifest["version"] == "4.6.0+dfsg-12"
    for k, name in enumerate(footage.FILES):
        rec = manifest["files"][name]
        assert rec["sha256"] == hashlib.sha256(bytes([k]) * (100 + k)).hexdigest()
        assert rec["upstream_path"] == f"samples/data/{name}"
    assert manifest["files"]["vtest.avi"]["license"] == "CC-BY-4.0"  # the last match wins
    assert manifest["files"]["messi5.jpg"]["license"] == "Apache-2.0 AND BSD-3-Clause"
    assert "Intel" in manifest["files"]["messi5.jpg"]["copyright"]
    assert manifest["copyright_file"]["sha256"] == hashlib.sha256(
        _COPYRIGHT.encode()).hexdigest()
    assert set(footage.check_footage(dest)) == set(footage.FILES)
    (dest / "messi5.jpg").write_bytes(b"changed")
    with pytest.raises(OSError, match="SHA-256"):
        footage.check_footage(dest)
    (dest / "messi5.jpg").unlink()
    with pytest.raises(OSError, match="footage fetch"):
        footage.check_footage(dest)
    with pytest.raises(OSError, match="not an unpacked"):
        footage.install_from_tree(tmp_path / "empty", tmp_path / "x", "1", "test")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb builds the fake package")
def test_footage_fetch_from_a_local_deb(tmp_path):
    from hmr_ros import cli

    tree = _fake_tree(tmp_path / "pkg")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        "Package: opencv-doc\nVersion: 9.9.9-1\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: fake\n")
    deb = tmp_path / "opencv-doc_9.9.9-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)],
                   check=True, capture_output=True)
    dest = tmp_path / "cache"
    assert cli.main(["footage", "fetch", "--cache", str(dest), "--deb", str(deb)]) == 0
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["version"] == "9.9.9-1" and manifest["deb"] == deb.name
    assert not (dest / "lena.jpg").exists()
    assert (dest / "vtest.avi").read_bytes() == bytes([0]) * 100


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_video_end_to_end_on_a_written_video(tmp_path):
    if not (DETECTOR_DIR / "manifest.json").is_file():
        pytest.skip(f"no converted detector in {DETECTOR_DIR}: run `hmr-ros detector fetch`")
    import cv2
    from tiny_vishmr import tiny_vishmr

    from hmr_ros import cli
    from hmr_ros.export import export_vishmr

    export_vishmr(tiny_vishmr(), tmp_path / "model")
    rng = np.random.default_rng(0)
    try:  # a person the detector finds, drifting a little; noise without scikit-image
        from skimage import data
        person = cv2.resize(data.astronaut(), (192, 192), interpolation=cv2.INTER_AREA)
        photo = True
    except ImportError:
        person = rng.integers(0, 255, (192, 192, 3), np.uint8)
        photo = False
    shots = tmp_path / "footage"
    shots.mkdir()
    writer = cv2.VideoWriter(str(shots / "vtest.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                             (256, 208))
    assert writer.isOpened()
    for k in range(6):
        frame = np.full((208, 256, 3), 90, np.uint8)
        frame[8:200, 20 + 4 * k:212 + 4 * k] = person
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    for name in footage.STILLS:
        cv2.imwrite(str(shots / name), rng.integers(0, 255, (64, 80, 3), np.uint8))
    out = tmp_path / "out"
    assert cli.main(["eval-video", "--model-dir", str(tmp_path / "model"), "--footage",
                     str(shots), "--frames", "5", "--out", str(out), "--threads", "1",
                     "--overlays", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    video = report["video"]
    assert video["frames"] == 5 and video["frames_in_file"] == 6
    assert report["stills"]["frames"] == 3
    assert set(report["definitions"]) >= {"pck", "facing", "iou_bgsub", "iou_seg", "jitter"}
    lines = (out / "persons.jsonl").read_text().splitlines()
    assert len(lines) == video["person_frames"] + report["stills"]["person_frames"]
    assert video["person_frames"] > 0 or not photo  # BlazePose finds the astronaut
    if video["person_frames"]:  # whatever the tiny model says, the numbers are numbers
        assert video["pck"]["model"]["n"] > 0
        assert 0.0 <= video["pck"]["model"]["value"] <= 1.0
        assert 0.0 <= video["iou_seg"]["model"]["value"] <= 1.0
        assert video["overlays"] and (out / video["overlays"][0]).is_file()
    assert video["timing_ms"]["total"] > 0 and video["fps"] > 0
