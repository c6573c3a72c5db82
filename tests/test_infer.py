"""`hmr-ros infer` end to end on image files with a tiny exported model."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from hmr_ros import cli
from hmr_ros.export import export_vishmr
from tiny_vishmr import tiny_vishmr



@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_model")
    export_vishmr(tiny_vishmr(), out)
    return out


def test_infer_writes_overlays_meshes_json_and_scores(tmp_path, model_dir, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(imgs / name), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    (imgs / "broken.png").write_bytes(b"not a png")
    (tmp_path / "cam.yaml").write_text(
        "image_width: 160\nimage_height: 120\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
        "  data: [150.0, 0.0, 80.0, 0.0, 150.0, 60.0, 0.0, 0.0, 1.0]\n")
    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": [[20, 10, 80, 110, 0.9],
                                                               [90, 10, 150, 110, 0.8]],
                                                     "*": [[30, 5, 120, 115]]}))
    gt_joints = np.zeros((2, 24, 3))
    np.savez(tmp_path / "gt.npz", names=np.array(["a.png", "b.png"]), joints3d=gt_joints)
    out = tmp_path / "out"
    code = cli.main(["infer", str(imgs), "--out", str(out), "--model-dir", str(model_dir),
                     "--camera-info", str(tmp_path / "cam.yaml"), "--boxes",
                     str(tmp_path / "boxes.json"), "--gt", str(tmp_path / "gt.npz")])
    assert code == 0
    text = capsys.readouterr().out
    assert "images processed: 2, persons found: 3, skipped: 1" in text
    assert "broken.png: not a readable image" in text
    assert "FPS" in text and "stage_a" in text
    assert "vs ground truth (2 persons): MPJPE" in text
    overlay = cv2.imread(str(out / "a_overlay.png"))
    assert overlay.shape == (120, 160, 3)
    assert not np.array_equal(overlay, cv2.imread(str(imgs / "a.png")))  # something drawn
    assert (out / "a_person0.obj").is_file() and (out / "a_person1.obj").is_file()
    data = json.loads((out / "a.json").read_text())
    assert data["assumed_intrinsics"] is False and len(data["persons"]) == 2
    p = data["persons"][0]
    assert len(p["visibility"]) == 24 and np.asarray(p["rel_rotmats"]).shape == (24, 3, 3)
    assert json.loads((out / "b.json").read_text())["persons"][0]["bbox"] == [30, 5, 120, 115]


def test_infer_reports_missing_inputs(tmp_path, model_dir, capsys):
    assert cli.main(["infer", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o"),
                     "--model-dir", str(model_dir)]) == 1
    assert "no such image or folder" in capsys.readouterr().err
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    assert cli.main(["infer", str(img), "--out", str(tmp_path / "o"), "--model-dir",
                     str(tmp_path / "no_model")]) == 1
    assert "no manifest.json" in capsys.readouterr().err


@pytest.mark.parametrize("K", ["[.nan, 0.0, 80.0, 0.0, .nan, 60.0, 0.0, 0.0, 1.0]",
                               "[0.0, 0.0, 80.0, 0.0, 0.0, 60.0, 0.0, 0.0, 1.0]"])
def test_infer_with_unusable_camera_info_draws_with_the_assumed_intrinsics(tmp_path, model_dir,
                                                                           capsys, K):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(1).integers(0, 255, (120, 160, 3), np.uint8))
    (tmp_path / "cam.yaml").write_text(
        "image_width: 160\nimage_height: 120\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
        f"  data: {K}\n")
    out = tmp_path / "out"
    assert cli.main(["infer", str(img), "--out", str(out), "--model-dir", str(model_dir),
                     "--camera-info", str(tmp_path / "cam.yaml")]) == 0
    assert cv2.imread(str(out / "a_overlay.png")).shape == (120, 160, 3)
    assert json.loads((out / "a.json").read_text())["assumed_intrinsics"] is True
