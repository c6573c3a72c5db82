"""Keypoint noise model: statistics of the simulated detections, determinism, shapes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hmr_ros.data.synthetic.keypoint_noise import (
    ARM_PAIRS, LEG_PAIRS, KeypointNoiseParams, noisy_coco17, simulate_detections,
)

N = 20000
BOX = 200.0
#: everything but the Gaussian jitter switched off
QUIET = KeypointNoiseParams(p_outlier=0.0, p_drop=0.0, p_drop_occluded=0.0,
                            p_drop_outside=0.0, p_swap_arms=0.0, p_swap_legs=0.0, p_mirror=0.0)


def _clean(n=N, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(50, 250, (17, 2))
    kp = np.broadcast_to(base, (n, 17, 2)).copy()
    return kp


def test_jitter_scales_with_box_and_keypoint():
    kp = _clean()
    states = np.full((N, 17), 2)
    det, conf = simulate_detections(kp, states, BOX, np.random.default_rng(1), QUIET)
    sd = (det - kp).std(axis=0).mean(axis=1) / BOX  # per keypoint
    expected = QUIET.sigma * np.asarray(QUIET.sigma_scale)
    np.testing.assert_allclose(sd, expected, rtol=0.05)
    assert sd[[9, 10, 15, 16]].min() > sd[[5, 6, 11, 12]].max()  # wrists/ankles noisier
    assert abs((det - kp).mean()) < 0.05 * QUIET.sigma * BOX
    det2, _ = simulate_detections(kp, states, 2 * BOX, np.random.default_rng(1), QUIET)
    np.testing.assert_allclose(det2 - kp, 2 * (det - kp), rtol=1e-4, atol=1e-3)
    a, b = QUIET.conf_visible
    assert conf.mean() == pytest.approx(a / (a + b), abs=0.01)


def test_occluded_and_outside_points_are_worse():
    kp = _clean()
    states = np.tile(np.array([2, 1, 0] * 5 + [2, 1]), (N, 1))
    det, conf = simulate_detections(kp, states, BOX, np.random.default_rng(2),
                                    dataclasses.replace(QUIET, sigma_scale=(1.0,) * 17))
    err = np.linalg.norm(det - kp, axis=-1)
    vis, occ, out = states[0] == 2, states[0] == 1, states[0] == 0
    assert err[:, occ].mean() == pytest.approx(QUIET.occluded_sigma * err[:, vis].mean(),
                                               rel=0.05)
    assert err[:, out].mean() > err[:, occ].mean()
    assert conf[:, vis].mean() > conf[:, occ].mean() + 0.2 > conf[:, out].mean() + 0.2


def test_dropout_rate_position_and_confidence():
    p = dataclasses.replace(QUIET, p_drop=0.1, p_drop_occluded=0.4)
    kp = _clean()
    states = np.tile(np.array([2] * 12 + [1] * 5), (N, 1))
    box = np.array([40.0, 40.0, 260.0, 260.0])
    det, conf, info = simulate_detections(kp, states, BOX, np.random.default_rng(3), p,
                                          box=np.broadcast_to(box, (N, 4)), return_info=True)
    drop = info["dropped"]
    assert drop[:, :12].mean() == pytest.approx(0.1, abs=0.01)
    assert drop[:, 12:].mean() == pytest.approx(0.4, abs=0.015)
    lo, hi = box[:2] - 22.0, box[2:] + 22.0  # box grown by drop_box_margin
    assert np.all((det[drop] >= lo) & (det[drop] <= hi))
    assert det[drop].std(0).min() > 50  # spread over the box, not at the clean point
    a, b = p.conf_dropped
    assert conf[drop].mean() == pytest.approx(a / (a + b), abs=0.01)
    assert conf[drop].mean() < conf[~drop & (states == 2)].mean() - 0.5


def test_swap_and_mirror_rates():
    p = dataclasses.replace(QUIET, p_swap_arms=0.1, p_swap_legs=0.05, p_mirror=0.02, sigma=0.0)
    kp = _clean()
    states = np.full((N, 17), 2)
    det, _, info = simulate_detections(kp, states, BOX, np.random.default_rng(4), p,
                                       return_info=True)
    assert info["mirrored"].mean() == pytest.approx(0.02, abs=0.004)
    arms, legs, mir = info["arms_swapped"], info["legs_swapped"], info["mirrored"]
    assert arms[~mir].mean() == pytest.approx(0.1, abs=0.01)
    assert legs[~mir].mean() == pytest.approx(0.05, abs=0.007)
    for pairs, mask in ((ARM_PAIRS, arms), (LEG_PAIRS, legs)):
        for a, b in pairs:  # the whole chain changes sides, positions exactly
            np.testing.assert_allclose(det[mask, a], kp[mask, b], atol=1e-3)
            np.testing.assert_allclose(det[~mask & ~mir, a], kp[~mask & ~mir, a], atol=1e-3)
    np.testing.assert_allclose(det[mir, 1], kp[mir, 2], atol=1e-3)  # eyes swap too
    np.testing.assert_allclose(det[mir, 0], kp[mir, 0], atol=1e-3)  # the nose stays


def test_hidden_face_lowers_face_confidence():
    kp = _clean(4000)
    states = np.full((4000, 17), 2)
    front = np.where(np.arange(4000) < 2000, 0.8, -0.8)
    _, conf = simulate_detections(kp, states, BOX, np.random.default_rng(5), QUIET,
                                  face_front=front)
    shown, hidden = conf[:2000, :3].mean(), conf[2000:, :3].mean()
    assert hidden < 0.3 < 0.7 < shown
    np.testing.assert_allclose(conf[:2000, 3:].mean(), conf[2000:, 3:].mean(), atol=0.02)
    # without face_front: hidden when none of nose and eyes is visible
    states[:, :3] = 1
    _, conf2 = simulate_detections(kp, states, BOX, np.random.default_rng(5), QUIET)
    assert conf2[:, :3].mean() < 0.3


def test_deterministic_shapes_and_validation():
    kp = _clean(3)
    states = np.full((3, 17), True)
    a = simulate_detections(kp, states, BOX, np.random.default_rng(7))
    b = simulate_detections(kp, states, BOX, np.random.default_rng(7))
    c = simulate_detections(kp, states, BOX, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    one, conf = simulate_detections(kp[0], states[0], BOX, np.random.default_rng(0),
                                    image_size=128)
    assert one.shape == (17, 2) and conf.shape == (17,) and one.dtype == np.float32
    assert one.min() >= 0 and one.max() <= 128
    with pytest.raises(ValueError):
        simulate_detections(kp[:, :5], states[:, :5], BOX, np.random.default_rng(0))
    with pytest.raises(ValueError):
        KeypointNoiseParams(p_drop=2.0)
    p = KeypointNoiseParams(sigma=0.02)
    assert KeypointNoiseParams.from_dict(p.to_dict()) == p


def test_noisy_coco17_on_a_generator_sample():
    from hmr_ros.data.synthetic import SynthConfig, SyntheticGenerator

    s = SyntheticGenerator(SynthConfig(size=64, photos="none"), seed=0).sample(0)
    out = noisy_coco17(s, np.random.default_rng(0))
    assert out["coco17_det"].shape == (17, 2) and out["coco17_conf"].shape == (17,)
    np.testing.assert_allclose(out["coco17_det_norm"], (out["coco17_det"] - 32) / 32, atol=1e-6)
