"""Synthetic occlusion data: determinism, array contract, GT consistency, visibility (eq. 1)."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.body import pose_body, texel_index
from hmr_ros.data.synthetic import (
    MAX_PEOPLE, Occluder, Person, Scene, SynthConfig, SyntheticGenerator,
    intrinsics, sample_arrays_spec, transl_to_crop_cam,
)
from hmr_ros.data.synthetic import appearance as A
from hmr_ros.data.synthetic.poses import (
    JOINT_LIMITS_DEG, PRESETS, euler_to_matrix, global_orientation, sample_body_pose,
)
from hmr_ros.data.synthetic.primitives import box_mesh
from hmr_ros.data.synthetic.scene import frame_person
from hmr_ros.runtime.camera import Intrinsics, crop_to_full_translation

SIZE = 64
#: busy scenes so that every code path (people, occluders, truncation) shows up in few samples
BUSY = SynthConfig(size=SIZE, p_multi=0.6, p_occ=0.8, p_truncate=0.3)


@pytest.fixture(scope="module")
def gen():
    return SyntheticGenerator(BUSY, seed=7, with_vertices=True)


@pytest.fixture(scope="module")
def samples(gen):
    return [gen.sample(i) for i in range(8)]


def _crop_cam_to_transl(cam, K, centre, side):
    """The runtime's inverse (inference), which must undo the data's ``transl_to_crop_cam``."""
    cam = np.asarray(cam, np.float64).reshape(-1, 3)
    n = len(cam)
    return crop_to_full_translation(cam, np.tile(np.asarray(centre, np.float64), (n, 1)),
                                    np.full(n, float(side)), Intrinsics.from_matrix(K))


def test_same_seed_same_sample_any_order(gen, samples):
    other = SyntheticGenerator(BUSY, seed=7, with_vertices=True)
    for i in (5, 2, 0):  # out of order: a sample depends only on (seed, index)
        again = other.sample(i)
        assert again.keys() == samples[i].keys()
        for key in again:
            np.testing.assert_array_equal(again[key], samples[i][key], err_msg=key)
    different = SyntheticGenerator(BUSY, seed=8).sample(0)
    assert not np.array_equal(different["image"], samples[0]["image"])


def test_shapes_and_dtypes(gen, samples):
    spec = sample_arrays_spec(SIZE, gen.body.num_vertices)
    for s in samples:
        assert set(s) == set(spec)
        for key, (shape, dtype) in spec.items():
            assert s[key].shape == shape, key
            assert s[key].dtype == np.dtype(dtype), key
        n = int(s["num_people"])
        assert 1 <= n <= MAX_PEOPLE
        np.testing.assert_array_equal(s["people_valid"], np.arange(MAX_PEOPLE) < n)
        np.testing.assert_array_equal(s["people_rel_rotmats"][n:], np.broadcast_to(
            np.eye(3, dtype=np.float32), s["people_rel_rotmats"][n:].shape))
    # the sampler actually produces the variety it promises
    assert any(s["num_people"] > 1 for s in samples)
    assert any(s["num_occluders"] > 0 for s in samples)


def test_lbs_plus_transl_is_vertices_and_joints(gen, samples):
    for s in samples:
        n = int(s["num_people"])
        verts, joints = pose_body(gen.body, s["people_betas"][:n], s["people_rel_rotmats"][:n])
        t = s["people_transl"][:n, None].astype(np.float64)
        np.testing.assert_allclose(verts + t, s["people_vertices"][:n], atol=2e-4)
        np.testing.assert_allclose(joints + t, s["people_joints"][:n], atol=2e-4)
        assert np.all(s["people_vertices"][:n, :, 2] > 0.1)  # everyone in front of the camera


def test_rotations_are_proper_and_people_upright(samples):
    for s in samples:
        n = int(s["num_people"])
        r = s["people_rel_rotmats"][:n].astype(np.float64)
        np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                                   atol=1e-5)
        np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
        # camera frame is y-down: the head is above (smaller y than) the pelvis
        joints = s["people_joints"][:n]
        assert np.all(joints[:, 15, 1] < joints[:, 0, 1])


def test_keypoints_are_projected_joints_and_crop_camera(samples):
    for s in samples:
        n = int(s["num_people"])
        K = s["K"].astype(np.float64)
        j = s["people_joints"][:n].astype(np.float64)
        proj = j @ K.T
        np.testing.assert_allclose(proj[..., :2] / proj[..., 2:], s["people_keypoints2d"][:n],
                                   atol=2e-3)
        centre, side = (SIZE / 2, SIZE / 2), SIZE
        np.testing.assert_allclose(s["people_keypoints2d_norm"][:n],
                                   (s["people_keypoints2d"][:n] - SIZE / 2) / (SIZE / 2),
                                   atol=1e-5)
        cam = s["people_cam_crop"][:n].astype(np.float64)
        np.testing.assert_allclose(transl_to_crop_cam(s["people_transl"][:n], K, centre, side),
                                   cam, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_crop_cam_to_transl(cam, K, centre, side),
                                   s["people_transl"][:n], rtol=1e-5, atol=1e-5)
        # weak perspective of the LBS joints (no transl) approximates the true projection
        x = j[0] - s["people_transl"][0]
        weak = cam[0, 0] * (x[:, :2] + cam[0, 1:])
        err = np.abs(weak - s["people_keypoints2d_norm"][0]).mean()
        assert err < 0.08, err
        # the bbox holds every keypoint
        box = s["people_bbox"][0]
        kp = s["people_keypoints2d"][0]
        assert np.all(kp >= box[:2] - 1e-3) and np.all(kp <= box[2:] + 1e-3)


def test_crop_camera_round_trip_off_centre():
    K = intrinsics(200, 50.0, (7.0, -4.0))
    t = np.array([[0.3, -0.2, 4.0], [-1.0, 0.5, 9.0]])
    for centre, side in (((100.0, 100.0), 200.0), ((60.0, 140.0), 90.0)):
        cam = transl_to_crop_cam(t, K, centre, side)
        np.testing.assert_allclose(_crop_cam_to_transl(cam, K, centre, side), t, rtol=1e-12)
        # a point at the translation itself projects where the crop camera says
        u = K[:2, :2] @ (t[:, :2] / t[:, 2:]).T + K[:2, 2:]
        np.testing.assert_allclose(cam[:, :1] * cam[:, 1:],
                                   (u.T - np.array(centre)) / (side / 2), atol=1e-12)


def test_iuv_lies_on_main_person_pixels_and_its_parts(gen, samples):
    part_map = gen.body.atlas_part_map(64)
    agree = total = 0
    for s in samples:
        iuv, seg, who = s["iuv"], s["part_seg"], s["person_seg"]
        fg = iuv[0] > 0.5
        assert set(np.unique(iuv[0])) <= {0.0, 1.0}
        np.testing.assert_array_equal(fg, seg >= 0)
        np.testing.assert_array_equal(fg, who == 0)
        assert np.all(iuv[1:, ~fg] == 0)
        uv = iuv[1:, fg].T
        assert uv.min() >= 0 and uv.max() <= 1
        # each pixel's (U, V) lands in its own part's chart
        rows, cols = texel_index(uv, 64).T
        agree += int(np.sum(part_map[rows, cols] == seg[fg]))
        total += int(fg.sum())
        # labels agree with each other and with depth
        assert np.all((seg == -2) == (who >= 1))
        assert np.all((seg == -3) == (who == -2))
        np.testing.assert_array_equal(s["depth"] > 0, seg != -1)
    assert total > 0 and agree / total > 0.995, agree / total


def _visibility_oracle(iuv: np.ndarray, part_map: np.ndarray) -> np.ndarray:
    """Eq. 1 in NumPy: texels hit by foreground pixels, counted per atlas part."""
    size = part_map.shape[0]
    fg = iuv[0] > 0.5
    rows, cols = texel_index(iuv[1:, fg].T, size).T
    covered = np.zeros((size, size), bool)
    covered[rows, cols] = True
    out = np.zeros(24)
    for i in range(24):
        total = np.sum(part_map == i)
        out[i] = min(1.0, 2.0 * np.sum(covered & (part_map == i)) / total) if total else 0.0
    return out


def test_visibility_is_eq1_of_the_visible_iuv():
    cfg = SynthConfig(size=96, visibility_size=0, p_occ=0.8, p_multi=0.5)  # eq. 1 on the image
    g = SyntheticGenerator(cfg, seed=3)
    part_map = g.body.atlas_part_map(64)
    for i in range(4):
        s = g.sample(i)
        np.testing.assert_allclose(s["people_visibility"][0], _visibility_oracle(s["iuv"],
                                   part_map), atol=1e-6)


def _frontal_scene(gen: SyntheticGenerator, preset: str = "a_pose") -> Scene:
    size = gen.config.size
    rot = euler_to_matrix(np.deg2rad(PRESETS[preset]))
    rot[0] = global_orientation(0.0, 0.0, 0.0)
    K = intrinsics(size, 55.0)
    verts, _ = gen.ctx.lbs(np.zeros((1, 10), np.float32), rot[None].astype(np.float32))
    t = frame_person(np.asarray(verts[0], np.float64), K, (size / 2, size / 2), 0.8 * size)
    look = A.sample_person_look(np.random.default_rng(0))
    return Scene(size, K, (Person(np.zeros(10), rot, t, look),))


def test_visibility_frontal_unoccluded_then_occluded():
    gen = SyntheticGenerator(SynthConfig(size=96), seed=0)  # eq. 1 at visibility_size 224
    scene = _frontal_scene(gen)
    free = gen.render(scene)["people_visibility"][0]
    assert free.min() >= 0 and free.max() <= 1
    limbs = [1, 2, 4, 5, 16, 17, 18, 19]  # thighs, shins, upper arms, forearms
    assert np.all(free[limbs] > 0.5), free
    assert np.median(free) > 0.5 and np.sum(free > 0.5) >= 12, free
    look = A.sample_occluder_look(np.random.default_rng(1))
    # a wall just in front of the camera hides everything
    wall = box_mesh([5.0, 5.0, 0.01]).transformed(np.eye(3), [0.0, 0.0, 0.5])
    hidden = gen.render(scene.with_occluders([Occluder(wall, look, "box")]))
    assert hidden["people_visibility"][0].max() == 0.0
    assert not hidden["iuv"][0].any()
    # a box over the lower body: legs lose visibility, the head keeps it
    pelvis_depth = scene.people[0].transl[2]
    low = box_mesh([1.0, 0.6, 0.01]).transformed(np.eye(3), [0.0, 0.75, 0.6 * pelvis_depth])
    half = gen.render(scene.with_occluders([Occluder(low, look, "box")]))["people_visibility"][0]
    legs = [4, 5, 7, 8, 10, 11]  # shins, feet
    assert np.all(half[legs] < 0.1), half[legs]
    assert half[15] == pytest.approx(free[15])


def test_visibility_lower_with_occluders_on_average():
    base = dict(size=48, p_multi=0.0, p_truncate=0.0)
    free = SyntheticGenerator(SynthConfig(p_occ=0.0, **base), seed=11)
    occl = SyntheticGenerator(SynthConfig(p_occ=1.0, **base), seed=11)
    v_free = np.mean([free.sample(i)["people_visibility"][0].mean() for i in range(6)])
    v_occ = np.mean([occl.sample(i)["people_visibility"][0].mean() for i in range(6)])
    assert v_occ < v_free


def test_pose_sampler_respects_limits_and_mirrors():
    rng = np.random.default_rng(0)
    for _ in range(50):
        rot, name = sample_body_pose(rng)
        assert rot.shape == (24, 3, 3) and name
        np.testing.assert_allclose(rot[0], np.eye(3), atol=1e-12)
    # right joints are the mirror image of the left ones: y and z ranges flip sign
    left, right = JOINT_LIMITS_DEG[16], JOINT_LIMITS_DEG[17]
    np.testing.assert_array_equal(right[0], left[0])
    np.testing.assert_array_equal(right[1], -left[1][::-1])
    np.testing.assert_array_equal(right[2], -left[2][::-1])
    # knee flexion moves the ankle backwards (-z in the body frame)
    from hmr_ros.body import procedural_body

    body = procedural_body()
    rot = np.broadcast_to(np.eye(3), (1, 24, 3, 3)).copy()
    rot[0, 4] = euler_to_matrix(np.deg2rad([90.0, 0.0, 0.0]))
    _, joints = pose_body(body, np.zeros((1, 10)), rot)
    assert joints[0, 7, 2] < joints[0, 4, 2] - 0.2


def test_config_validation_and_round_trip():
    cfg = SynthConfig(size=128, fill=(0.6, 0.8))
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        SynthConfig(p_occ=1.5)
    with pytest.raises(ValueError):
        SynthConfig(fill=(0.9, 0.5))
    with pytest.raises(ValueError):
        SynthConfig.from_dict({"size": 64, "bogus": 1})
