"""Real-dataset loaders on small fake files: SPIN .npz and 3DPW .pkl."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hmr_ros.body.posing import axis_angle_to_matrix
from hmr_ros.data.formats import (AugmentConfig, AugmentParams, SpinNpzDataset, ThreeDPWDataset,
                                  ThreeDPWSequence, crop_matrix, crop_sample, geometry)
from hmr_ros.models import IMAGE_MEAN, IMAGE_STD

cv2 = pytest.importorskip("cv2")

CROP = 64


def _denorm(image: torch.Tensor) -> np.ndarray:
    """3 x L x L normalised -> L x L x 3 in 0..255."""
    mean = torch.tensor(IMAGE_MEAN)[:, None, None]
    std = torch.tensor(IMAGE_STD)[:, None, None]
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


def _pixel_of(n: np.ndarray, size: int = CROP):
    """crop-normalised -> (row, col) of the crop pixel containing it."""
    q = (np.asarray(n) + 1) * size / 2 - 0.5
    return int(round(q[1])), int(round(q[0]))


def _marker_image(path, points, shape=(200, 300), ext=".png"):
    img = np.zeros(shape + (3,), np.uint8)
    img[..., 2] = 40  # a dim blue background, so "inside the image" is detectable
    for x, y in points:
        img[int(y) - 3:int(y) + 4, int(x) - 3:int(x) + 4] = 255
    cv2.imwrite(str(path), img[..., ::-1])
    return img


def _spin_file(tmp_path, with_smpl=True, layout_smpl=True, n=2):
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    part = np.zeros((n, 24, 3))
    part[..., 0], part[..., 1] = rng.uniform(60, 140, (n, 24)), rng.uniform(60, 140, (n, 24))
    part[..., 2] = 1.0
    left_hip = 1 if layout_smpl else 3
    part[:, left_hip, :2] = [120, 80]
    names = []
    for i in range(n):
        names.append(f"im{i}.png")
        _marker_image(tmp_path / "img" / names[-1], [(120, 80)])
    data = dict(imgname=np.array(names), center=np.tile([100.0, 100.0], (n, 1)),
                scale=np.full(n, 0.5), part=part)
    if with_smpl:
        data.update(pose=rng.normal(0, 0.3, (n, 72)), shape=rng.normal(0, 1, (n, 10)),
                    S=np.concatenate([rng.normal(0, 0.3, (n, 24, 3)), np.ones((n, 24, 1))], -1))
    path = tmp_path / "train.npz"
    np.savez(path, **data)
    return path, data


def test_spin_npz_shapes_and_keypoint_lands_in_crop(tmp_path):
    path, data = _spin_file(tmp_path)
    ds = SpinNpzDataset(path, tmp_path / "img", crop_size=CROP, keypoint_layout="smpl24")
    assert len(ds) == 2
    s = ds[0]
    assert s["image"].shape == (3, CROP, CROP) and s["image"].dtype == torch.float32
    assert s["rel_rotmats"].shape == (24, 3, 3) and s["betas"].shape == (10,)
    assert s["keypoints2d"].shape == (24, 2) and s["keypoints2d_conf"].shape == (24,)
    assert s["joints3d"].shape == (24, 3) and s["has_smpl"] == 1
    # n = (2 / b) (p - c) with b = 0.5 * 200 = 100 px
    assert np.allclose(s["keypoints2d"][1].numpy(), [0.4, -0.4], atol=1e-6)
    row, col = _pixel_of(s["keypoints2d"][1].numpy())
    assert _denorm(s["image"])[row, col].min() > 200  # the white marker is there
    assert np.allclose(s["rel_rotmats"].numpy(),
                       axis_angle_to_matrix(data["pose"][0].reshape(24, 3)), atol=1e-6)
    assert np.allclose(s["joints3d"].numpy(), data["S"][0, :, :3], atol=1e-6)


def test_spin_npz_flip_moves_marker_and_swaps_left_right(tmp_path):
    path, data = _spin_file(tmp_path)
    aug = AugmentConfig(scale=0, shift=0, rotation_prob=0, flip_prob=1.0, color_jitter=0,
                        occluder_prob=0)
    ds = SpinNpzDataset(path, tmp_path / "img", crop_size=CROP, augment=aug,
                        keypoint_layout="smpl24")
    s = ds[(0, 123)]
    # the left hip (1) is now the right hip (2), mirrored in x
    assert np.allclose(s["keypoints2d"][2].numpy(), [-0.4, -0.4], atol=1e-6)
    row, col = _pixel_of(s["keypoints2d"][2].numpy())
    assert _denorm(s["image"])[row, col].min() > 200
    rel = axis_angle_to_matrix(data["pose"][0].reshape(24, 3))
    assert np.allclose(s["rel_rotmats"].numpy(), geometry.flip_rotmats(rel), atol=1e-6)
    assert np.allclose(s["joints3d"].numpy(), geometry.flip_joints3d(data["S"][0, :, :3]),
                       atol=1e-6)
    # same key, same draw
    assert torch.equal(ds[(0, 123)]["image"], s["image"])


def test_spin_npz_spin24_layout_and_missing_annotations(tmp_path):
    path, data = _spin_file(tmp_path, with_smpl=False, layout_smpl=False)
    ds = SpinNpzDataset(path, tmp_path / "img", crop_size=CROP)  # spin24 by default
    s = ds[1]
    assert s["has_smpl"] == 0 and torch.all(s["joints3d_conf"] == 0)
    assert torch.allclose(s["rel_rotmats"], torch.eye(3).expand(24, 3, 3).float())
    # SPIN index 3 (left hip) -> SMPL 1; SMPL spine1 (3) has no counterpart -> conf 0
    assert np.allclose(s["keypoints2d"][1].numpy(), [0.4, -0.4], atol=1e-6)
    conf = s["keypoints2d_conf"].numpy()
    assert conf[1] == 1 and conf[3] == 0 and conf.sum() == 15


def test_spin_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", imgname=np.array(["a.png"]), center=np.zeros((1, 2)))
    with pytest.raises(KeyError, match="scale"):
        SpinNpzDataset(tmp_path / "bad.npz", tmp_path)
    with pytest.raises(FileNotFoundError):
        SpinNpzDataset(tmp_path / "nope.npz", tmp_path)


def test_rotation_moves_marker_and_labels_consistently():
    img = np.zeros((200, 300, 3), np.uint8)
    img[77:84, 117:124] = 255  # marker at (120, 80)
    params = AugmentParams(rotation=90.0)
    kp = np.zeros((24, 2))
    kp[0] = [120, 80]
    rel = np.tile(np.eye(3), (24, 1, 1))
    out = crop_sample(img, (100, 100), 100, CROP, params, None, rel_rotmats=rel,
                      keypoints_px=kp, joints3d=np.tile([0.2, -0.2, 3.0], (24, 1)))
    # Rot(90) (20, -20) = (20, 20)
    assert np.allclose(out["keypoints2d"][0], [0.4, 0.4])
    row, col = _pixel_of(out["keypoints2d"][0])
    assert out["crop"][row, col].min() > 200
    # 3D: the same in-plane rotation about the camera z axis
    assert np.allclose(out["joints3d"][0], [0.2, 0.2, 3.0])
    assert np.allclose(out["rel_rotmats"][0], geometry.rotation_z(90))
    assert np.allclose(out["rel_rotmats"][1:], np.eye(3))


def test_numpy_warp_matches_opencv():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    m = crop_matrix((60.3, 41.7), 70.0, 48, rotation_deg=17.0, flip=True)
    a = geometry.warp_crop(img, m, 48).astype(int)
    b = geometry.warp_crop_numpy(img, m, 48).astype(int)
    interior = (slice(8, 40), slice(8, 40))  # OpenCV rounds its weights to 1/32
    assert np.abs(a[interior] - b[interior]).max() <= 4
    assert np.abs(a - b).mean() < 1.0


# --------------------------------------------------------------------------------------------
# 3DPW
# --------------------------------------------------------------------------------------------


def _threedpw(tmp_path, frames=3):
    rng = np.random.default_rng(1)
    intr = np.array([[500.0, 0, 150], [0, 500.0, 100], [0, 0, 1]])
    cam_r = axis_angle_to_matrix(np.array([0.1, 0.5, -0.05]))
    cam_poses = np.tile(np.eye(4), (frames, 1, 1))
    cam_poses[:, :3, :3] = cam_r
    cam_poses[:, :3, 3] = [0.1, -0.2, 0.3]
    joints_cam = rng.uniform(-0.4, 0.4, (frames, 24, 3)) + [0, 0, 4.0]
    joints_world = (joints_cam - cam_poses[:, None, :3, 3]) @ cam_r  # R^T (X - t)
    poses = rng.normal(0, 0.3, (1, frames, 72))
    seq_dir = tmp_path / "imageFiles" / "courtyard_fake_00"
    seq_dir.mkdir(parents=True)
    frame_ids = np.arange(frames) * 2 + 10
    for t in range(frames):
        uv = joints_cam[t] @ intr.T
        marker = uv[15, :2] / uv[15, 2]
        _marker_image(seq_dir / f"image_{frame_ids[t]:05d}.jpg", [marker])
    data = {
        "sequence": "courtyard_fake_00", "img_frame_ids": frame_ids, "poses": poses,
        "betas": rng.normal(0, 1, (1, 10)), "trans": rng.normal(0, 1, (1, frames, 3)),
        "cam_poses": cam_poses, "cam_intrinsics": intr,
        "poses2d": np.zeros((1, frames, 3, 18)), "campose_valid": np.array([[1, 0, 1][:frames]]),
        "jointPositions": joints_world.reshape(1, frames, 72), "genders": ["f"],
    }
    (tmp_path / "sequenceFiles").mkdir()
    path = tmp_path / "sequenceFiles" / "courtyard_fake_00.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return path, data, joints_cam


def test_3dpw_camera_frame_orientation_joints_and_crop(tmp_path):
    path, data, joints_cam = _threedpw(tmp_path)
    seq = ThreeDPWSequence(path, tmp_path / "imageFiles", crop_size=CROP)
    assert len(seq) == 2  # the frame with campose_valid = 0 is skipped
    s = seq[1]
    assert s["frame"] == 14 and s["person"] == 0 and s["gender"] == "f"
    r_cam = data["cam_poses"][2, :3, :3]
    r_world = axis_angle_to_matrix(data["poses"][0, 2, :3])
    assert np.allclose(s["rel_rotmats"][0].numpy(), r_cam @ r_world, atol=1e-6)
    assert np.allclose(s["rel_rotmats"][1:].numpy(),
                       axis_angle_to_matrix(data["poses"][0, 2, 3:].reshape(23, 3)), atol=1e-6)
    assert np.allclose(s["joints3d"].numpy(), joints_cam[2], atol=1e-5)
    kp = s["keypoints2d"].numpy()
    assert np.all(np.abs(kp) < 1) and torch.all(s["keypoints2d_conf"] == 1)
    row, col = _pixel_of(kp[15])
    assert _denorm(s["image"])[row, col].min() > 180  # the marker drawn at joint 15
    # all frames, and a folder of sequences
    assert len(ThreeDPWSequence(path, tmp_path / "imageFiles", valid_only=False)) == 3
    both = ThreeDPWDataset(tmp_path / "sequenceFiles", tmp_path / "imageFiles", crop_size=CROP)
    assert len(both) == 2 and torch.equal(both[1]["image"], s["image"])


def test_3dpw_errors(tmp_path):
    with open(tmp_path / "x.pkl", "wb") as f:
        pickle.dump({"sequence": "x"}, f)
    with pytest.raises(KeyError, match="poses"):
        ThreeDPWSequence(tmp_path / "x.pkl", tmp_path)
    with pytest.raises(FileNotFoundError):
        ThreeDPWDataset(tmp_path / "empty_dir_that_is_missing", tmp_path)
