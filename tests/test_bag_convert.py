"""``hmr-ros convert``: tiny 3DPW / SPIN / synthetic sources -> rosbag2, read back and checked."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("rosbags")

from hmr_ros import cli
from hmr_ros.bag import BagReader
from hmr_ros.bag.convert import (
    SMPL_REST_PELVIS,
    convert_spin,
    convert_synthetic,
    spin_intrinsics,
)
from hmr_ros.bag.sample import _EPOCH_NS, SAMPLE_TOPICS, ros_intrinsics
from hmr_ros.body.posing import axis_angle_to_matrix

IMAGE, INFO, DET, GT, FACES = (SAMPLE_TOPICS[k][0] for k in
                               ("image", "camera_info", "detections", "ground_truth", "faces"))


def _read(bag):
    out = {}
    with BagReader(bag) as reader:
        for m in reader.messages():
            out.setdefault(m.topic, []).append((m.timestamp_ns, m.decode()))
    return out


def _quat_to_matrix(q):
    q = np.asarray(q, np.float64).reshape(-1, 4)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _image(path, w, h, seed):
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _rot(axis_angle):
    return axis_angle_to_matrix(np.asarray(axis_angle, np.float64).reshape(1, 3))[0]


def test_convert_3dpw(tmp_path):
    rng = np.random.default_rng(0)
    T, W, H = 2, 64, 48
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    poses = rng.normal(0, 0.3, (1, T, 72))
    joints_world = rng.normal(0, 0.3, (1, T, 24, 3)) + [0, 0, 0]
    cam = np.stack([np.eye(4)] * T)
    for t in range(T):
        cam[t, :3, :3] = _rot([0.0, 0.1 * (t + 1), 0.05])
        cam[t, :3, 3] = [0.1, -0.2, 4.0]
    data = {"sequence": "seq_test", "img_frame_ids": np.arange(T), "poses": poses,
            "betas": rng.normal(0, 1, (1, 10)), "trans": np.zeros((1, T, 3)),
            "cam_poses": cam, "cam_intrinsics": K, "campose_valid": np.ones((1, T)),
            "jointPositions": joints_world.reshape(1, T, 72), "genders": ["f"],
            "poses2d": np.zeros((1, T, 3, 18))}
    pkl = tmp_path / "seq_test.pkl"
    pkl.write_bytes(pickle.dumps(data, protocol=2))
    for t in range(T):
        _image(tmp_path / "imageFiles" / "seq_test" / f"image_{t:05d}.jpg", W, H, t)
    bag = tmp_path / "bag"
    assert cli.main(["convert", "3dpw", str(pkl), "--images", str(tmp_path / "imageFiles"),
                     "--out", str(bag)]) == 0
    assert list(bag.glob("*.db3")), "sqlite3 is the default storage"
    msgs = _read(bag)
    assert FACES not in msgs
    for topic in (IMAGE, INFO, DET, GT):
        assert len(msgs[topic]) == T, topic
        assert [s for s, _ in msgs[topic]] == [_EPOCH_NS + round(t / 30 * 1e9) for t in range(T)]
    for t in range(T):
        img = msgs[IMAGE][t][1]
        assert (img.width, img.height, img.encoding) == (W, H, "rgb8")
        info = msgs[INFO][t][1]
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), K)
        assert (info.width, info.height) == (W, H)
        arr = msgs[GT][t][1]
        assert len(arr.humans) == 1 and len(msgs[DET][t][1].detections) == 1
        h = arr.humans[0]
        assert h.body_id == "gt0" and h.tracking_state == (0 if t == 0 else 1)
        assert h.body_model == "SMPL_FEMALE" and len(h.vertices) == 0
        r, tc = cam[t, :3, :3], cam[t, :3, 3]
        joints = joints_world[0, t] @ r.T + tc
        np.testing.assert_allclose(np.asarray(h.joints).reshape(24, 3), joints, atol=1e-5)
        np.testing.assert_allclose(np.asarray(h.betas), data["betas"][0], atol=1e-6)
        rel = axis_angle_to_matrix(poses[0, t].reshape(24, 3))
        rel[0] = r @ rel[0]
        np.testing.assert_allclose(_quat_to_matrix(h.joint_rotations), rel, atol=1e-5)
        uvw = joints @ K.T
        np.testing.assert_allclose(np.asarray(h.keypoints_2d).reshape(24, 2),
                                   uvw[:, :2] / uvw[:, 2:], atol=1e-3)
        tr = h.translation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], joints[0] - SMPL_REST_PELVIS, atol=1e-6)
        box = msgs[DET][t][1].detections[0].bbox
        assert 0 <= box.center.position.x - box.size_x / 2 + 0.5
        assert box.center.position.x + box.size_x / 2 - 0.5 <= W


def _spin_file(tmp_path, rng):
    n = 2
    S = np.concatenate([rng.normal(0, 0.3, (n, 24, 3)) + [0, 0, 3], np.ones((n, 24, 1))], -1)
    part = np.concatenate([rng.uniform(5, 40, (n, 24, 2)), np.ones((n, 24, 1))], -1)
    arrays = {"imgname": np.array(["a.jpg", "sub/b.jpg"]), "center": np.array([[30., 20.],
                                                                              [32., 24.]]),
              "scale": np.array([0.1, 0.15]), "part": part, "S": S,
              "pose": rng.normal(0, 0.3, (n, 72)), "shape": rng.normal(0, 1, (n, 10)),
              "gender": np.array(["m", "f"])}
    npz = tmp_path / "spin.npz"
    np.savez(npz, **arrays)
    _image(tmp_path / "img" / "a.jpg", 64, 48, 0)
    _image(tmp_path / "img" / "sub" / "b.jpg", 64, 48, 1)
    return npz, arrays


def test_convert_spin_smpl24(tmp_path):
    rng = np.random.default_rng(1)
    npz, a = _spin_file(tmp_path, rng)
    bag = tmp_path / "bag"
    assert cli.main(["convert", "spin", str(npz), "--images", str(tmp_path / "img"), "--out",
                     str(bag), "--keypoint-layout", "smpl24", "--fps", "10"]) == 0
    msgs = _read(bag)
    for topic in (IMAGE, INFO, DET, GT):
        assert [s for s, _ in msgs[topic]] == [_EPOCH_NS, _EPOCH_NS + 100_000_000], topic
    for i in range(2):
        np.testing.assert_allclose(np.asarray(msgs[INFO][i][1].k).reshape(3, 3),
                                   spin_intrinsics(64, 48))
        h = msgs[GT][i][1].humans[0]
        assert h.body_model == ("SMPL_MALE", "SMPL_FEMALE")[i]
        np.testing.assert_allclose(np.asarray(h.joints).reshape(24, 3), a["S"][i, :, :3],
                                   atol=1e-5)
        np.testing.assert_allclose(np.asarray(h.keypoints_2d).reshape(24, 2),
                                   a["part"][i, :, :2], atol=1e-4)
        np.testing.assert_allclose(np.asarray(h.betas), a["shape"][i], atol=1e-6)
        np.testing.assert_allclose(_quat_to_matrix(h.joint_rotations),
                                   axis_angle_to_matrix(a["pose"][i].reshape(24, 3)), atol=1e-5)
        det = msgs[DET][i][1].detections[0].bbox
        np.testing.assert_allclose([det.center.position.x, det.center.position.y],
                                   a["center"][i], atol=1e-6)
        np.testing.assert_allclose([det.size_x, det.size_y], [a["scale"][i] * 200] * 2)


def test_convert_spin_people_share_an_image_and_spin24_has_no_joints(tmp_path):
    rng = np.random.default_rng(2)
    npz, a = _spin_file(tmp_path, rng)
    a["imgname"] = np.array(["a.jpg", "a.jpg"])
    np.savez(npz, **a)
    bag = tmp_path / "bag"
    assert convert_spin(npz, tmp_path / "img", bag, storage="mcap", compressed="png") == 1
    msgs = _read(bag)
    assert len(msgs["/camera/image_raw/compressed"]) == 1 and IMAGE not in msgs
    humans = msgs[GT][0][1].humans
    assert [h.body_id for h in humans] == ["gt0", "gt1"]
    assert all(len(h.joints) == 0 for h in humans)  # SPIN-24 maps only 15 of the 24 joints
    assert len(msgs[DET][0][1].detections) == 2


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_convert_synthetic(tmp_path, storage):
    from hmr_ros.data.synthetic import SynthConfig, SyntheticGenerator

    bag = tmp_path / "bag"
    assert convert_synthetic(bag, 3, storage=storage, size=64, seed=5) == 3
    msgs = _read(bag)
    assert len(msgs[FACES]) == 1
    gen = SyntheticGenerator(SynthConfig(size=64), seed=5, with_vertices=True)
    for i in range(3):
        for topic in (IMAGE, INFO, DET, GT):
            assert msgs[topic][i][0] == _EPOCH_NS + round(i / 30 * 1e9)
        s = gen.sample(i)
        np.testing.assert_allclose(np.asarray(msgs[INFO][i][1].k).reshape(3, 3),
                                   ros_intrinsics(s["K"]))
        img = msgs[IMAGE][i][1]
        np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(64, 64, 3),
                                      s["image"])
        humans = msgs[GT][i][1].humans
        valid = np.flatnonzero(s["people_valid"])
        assert len(humans) == len(valid) == len(msgs[DET][i][1].detections)
        for h, k in zip(humans, valid):
            assert h.tracking_state == 0
            np.testing.assert_allclose(np.asarray(h.joints).reshape(24, 3),
                                       s["people_joints"][k], atol=1e-6)
            assert len(h.vertices) == 3 * h.num_vertices == 3 * gen.body.num_vertices
            np.testing.assert_allclose(_quat_to_matrix(h.joint_rotations),
                                       s["people_rel_rotmats"][k], atol=1e-5)
            np.testing.assert_allclose(np.asarray(h.keypoints_2d).reshape(24, 2),
                                       s["people_keypoints2d"][k] - 0.5, atol=1e-4)
