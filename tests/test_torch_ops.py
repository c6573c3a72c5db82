"""torch_ops against the float64 NumPy oracles, smplx, hand-computed cases and properties.

Layers of evidence, each able to fail on its own:
1. the oracles against hand-computed values and against scipy (an outside implementation);
2. torch_ops against the oracles over a grid of batch sizes (0 and 1 included) and dtypes;
3. torch_ops.lbs against smplx.lbs.lbs;
4. hypothesis properties (round trips, endpoints, continuity, exact extremes of eq. 5);
5. autograd: gradcheck in float64 and finite gradients at the singular-looking points.
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.transform import Rotation, Slerp

from hmr_ros.body.constants import PARENTS
from hmr_ros.kernels import torch_ops as T

try:
    from tests import oracles as O
except ImportError:  # tests/ not a package: pytest puts tests/ itself on sys.path
    import oracles as O

BATCHES = (0, 1, 3)
DTYPES = (torch.float64, torch.float32)
TOL = {torch.float64: 1e-9, torch.float32: 2e-5}
PROPS = settings(max_examples=60, deadline=None)


def _ids(value):
    """Readable test ids for dtypes (pytest's default is dtype0, dtype1, ...)."""
    return str(value).replace("torch.", "") if isinstance(value, torch.dtype) else None
SMALL_TREE = [-1, 0, 1, 0]  # 4 joints, two branches: enough tree for gradcheck


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by the test's key (stable across runs, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def random_rotmats(rng, shape) -> np.ndarray:
    """Uniform rotations (normalised Gaussian quaternions)."""
    return O.quaternion_to_matrix(rng.normal(size=tuple(shape) + (4,)))


def as_dtype(x: np.ndarray, dtype) -> tuple:
    """(torch tensor in dtype, the same values back in float64 for the oracle)."""
    t = torch.as_tensor(np.asarray(x)).to(dtype)
    return t, t.double().numpy()


def close(actual, expected, dtype=torch.float64, scale=1.0):
    actual = actual.detach().double().numpy() if torch.is_tensor(actual) else actual
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL[dtype] * scale)


def close_up_to_sign(a: np.ndarray, b: np.ndarray, atol: float) -> None:
    """Quaternions (..., 4): equal or antipodal, element-wise."""
    err = np.minimum(np.abs(a - b).max(-1), np.abs(a + b).max(-1))
    assert (err <= atol).all(), err.max()


def assert_rotations(r: np.ndarray, atol=1e-9) -> None:
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=atol)


def rz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def random_model(rng, num_verts, parents, num_betas=10):
    """Random SMPL-layout model, scaled like the real one so the maths is exercised sensibly."""
    j = len(parents)
    weights = np.exp(rng.normal(size=(num_verts, j)) * 2)
    regressor = rng.random((j, num_verts)) ** 4
    return dict(
        v_template=rng.normal(scale=0.3, size=(num_verts, 3)),
        shapedirs=rng.normal(size=(num_verts, 3, num_betas)) * 0.01,
        posedirs=rng.normal(size=((j - 1) * 9, num_verts * 3)) * 0.01,
        j_regressor=regressor / regressor.sum(1, keepdims=True),
        parents=np.asarray(parents),
        weights=weights / weights.sum(1, keepdims=True),
    )


# ------------------------------------------------------------------------------------------
# 1. the oracles themselves: hand-computed cases and scipy
# ------------------------------------------------------------------------------------------


def test_oracle_90_degrees_about_z():
    aa = np.array([0.0, 0.0, math.pi / 2])
    r = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    h = math.sqrt(0.5)
    np.testing.assert_allclose(O.axis_angle_to_matrix(aa), r, atol=1e-15)
    np.testing.assert_allclose(O.matrix_to_quaternion(r), [h, 0, 0, h], atol=1e-15)
    np.testing.assert_allclose(O.quaternion_to_matrix([h, 0, 0, h]), r, atol=1e-15)
    np.testing.assert_allclose(O.matrix_to_axis_angle(r), aa, atol=1e-15)
    np.testing.assert_allclose(O.axis_angle_to_quaternion(aa), [h, 0, 0, h], atol=1e-15)
    np.testing.assert_allclose(O.quaternion_to_axis_angle([h, 0, 0, h]), aa, atol=1e-15)


def test_oracle_identity_and_zero_rotation():
    np.testing.assert_array_equal(O.matrix_to_quaternion(np.eye(3)), [1, 0, 0, 0])
    np.testing.assert_array_equal(O.axis_angle_to_matrix(np.zeros(3)), np.eye(3))
    np.testing.assert_array_equal(O.matrix_to_axis_angle(np.eye(3)), np.zeros(3))
    np.testing.assert_array_equal(O.quaternion_to_axis_angle([2.0, 0, 0, 0]), np.zeros(3))
    # a negative-w quaternion is canonicalised
    np.testing.assert_allclose(O.axis_angle_to_quaternion([0, 0, 3 * math.pi / 2]),
                               [math.sqrt(0.5), 0, 0, -math.sqrt(0.5)], atol=1e-15)


def test_oracle_180_degrees():
    # about x: diag(1, -1, -1); w = 0 and the pivot component (x) is positive
    r = np.diag([1.0, -1.0, -1.0])
    np.testing.assert_allclose(O.matrix_to_quaternion(r), [0, 1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(O.matrix_to_axis_angle(r), [math.pi, 0, 0], atol=1e-15)
    # about (1, 1, 0)/√2: R = 2nnᵀ - I; x/y tie -> first (x) pivot
    n = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
    r = 2 * np.outer(n, n) - np.eye(3)
    np.testing.assert_allclose(O.matrix_to_quaternion(r), [0, *n], atol=1e-15)
    np.testing.assert_allclose(O.matrix_to_axis_angle(r), math.pi * n, atol=1e-15)
    np.testing.assert_allclose(O.axis_angle_to_matrix(math.pi * n), r, atol=1e-15)


def test_oracle_rot6d_layout_and_gram_schmidt():
    r = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(O.matrix_to_rot6d(r), [0, 3, 6, 1, 4, 7])
    np.testing.assert_allclose(O.rot6d_to_matrix([2, 0, 0, 1, 3, 0]), np.eye(3), atol=1e-15)
    # columns, not rows: a 90° z rotation stores (0, 1, 0, -1, 0, 0)
    np.testing.assert_allclose(O.rot6d_to_matrix([0, 1, 0, -1, 0, 0]), rz(90), atol=1e-15)


def test_oracle_slerp_by_hand():
    q0 = O.matrix_to_quaternion(np.eye(3))
    q1 = O.matrix_to_quaternion(rz(90))
    np.testing.assert_allclose(O.quaternion_to_matrix(O.slerp(q0, q1, 0.5)), rz(45), atol=1e-15)
    # short arc: -q1 is the same rotation and must give the same midpoint
    np.testing.assert_allclose(O.slerp(q0, -q1, 0.5), O.slerp(q0, q1, 0.5), atol=1e-15)
    # exact, clamped endpoints for matrices
    r1 = rz(90)
    assert (O.slerp_matrix(np.eye(3), r1, -3.0) == np.eye(3)).all()
    assert (O.slerp_matrix(np.eye(3), r1, 7.0) == r1).all()
    assert np.isnan(O.slerp_matrix(np.eye(3), r1, np.nan)).all()


def test_oracle_rotations_agree_with_scipy():
    rng = rng_for("scipy")
    aa = rng.normal(size=(50, 3))
    aa[:5] *= 1e-9  # tiny angles
    aa[5:10] *= math.pi / np.linalg.norm(aa[5:10], axis=1, keepdims=True)  # exactly π
    aa[10:15] *= (math.pi - 1e-7) / np.linalg.norm(aa[10:15], axis=1, keepdims=True)
    rot = Rotation.from_rotvec(aa)
    r = rot.as_matrix()
    np.testing.assert_allclose(O.axis_angle_to_matrix(aa), r, atol=1e-13)
    xyzw = rot.as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    close_up_to_sign(O.matrix_to_quaternion(r), wxyz, 1e-13)
    close_up_to_sign(O.axis_angle_to_quaternion(aa), wxyz, 1e-13)
    np.testing.assert_allclose(O.quaternion_to_matrix(wxyz), r, atol=1e-13)
    # axis-angle back: compare as matrices (at exactly π, ±axis are the same rotation)
    np.testing.assert_allclose(O.axis_angle_to_matrix(O.matrix_to_axis_angle(r)), r, atol=1e-13)
    np.testing.assert_allclose(O.matrix_to_axis_angle(r[15:]), rot[15:].as_rotvec(), atol=1e-12)
    np.testing.assert_allclose(O.quaternion_to_axis_angle(wxyz[15:]), rot[15:].as_rotvec(),
                               atol=1e-12)
    # slerp matches scipy's on the short arc
    key = Rotation.from_matrix(np.stack([np.eye(3), r[20]]))
    for t in (0.1, 0.5, 0.9):
        np.testing.assert_allclose(
            O.slerp_matrix(np.eye(3), r[20], t), Slerp([0, 1], key)([t]).as_matrix()[0],
            atol=1e-12)


def test_oracle_quaternion_matches_eigen_method():
    """Bar-Itzhack: q is the top eigenvector of a symmetric 4x4 built from R."""
    rng = rng_for("eigen")
    for r in random_rotmats(rng, (20,)):
        k = np.array([
            [r[0, 0] - r[1, 1] - r[2, 2], r[1, 0] + r[0, 1], r[2, 0] + r[0, 2], r[2, 1] - r[1, 2]],
            [r[1, 0] + r[0, 1], r[1, 1] - r[0, 0] - r[2, 2], r[2, 1] + r[1, 2], r[0, 2] - r[2, 0]],
            [r[2, 0] + r[0, 2], r[2, 1] + r[1, 2], r[2, 2] - r[0, 0] - r[1, 1], r[1, 0] - r[0, 1]],
            [r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], r[0, 0] + r[1, 1] + r[2, 2]],
        ]) / 3
        xyzw = np.linalg.eigh(k)[1][:, -1]
        close_up_to_sign(O.matrix_to_quaternion(r), np.r_[xyzw[3], xyzw[:3]], 1e-13)


def test_oracle_kinematic_slerp_by_hand():
    parents = [-1, 0]
    vis = np.stack([rz(90), rz(10)])[None]
    glob = np.stack([np.eye(3), rz(30)])[None]
    rel, ab = O.kinematic_slerp(vis, glob, np.array([[0.5, 0.0]]), parents)
    np.testing.assert_allclose(ab[0, 0], rz(45), atol=1e-14)
    np.testing.assert_allclose(ab[0, 1], rz(75), atol=1e-14)  # follows the blended parent
    np.testing.assert_allclose(rel[0, 1], rz(30), atol=1e-14)
    rel, ab = O.kinematic_slerp(vis, glob, np.array([[1.0, 1.0]]), parents)
    assert (ab == vis).all()
    np.testing.assert_allclose(rel[0, 1], rz(-80), atol=1e-14)


def test_oracle_match_hypotheses_by_hand():
    parents = [-1, 0]
    vis = np.stack([rz(90), rz(90)])[None]  # child's absolute = 90°, so relative = identity
    hyp = np.stack([
        np.stack([np.eye(3), np.eye(3)]),  # cos(45°) twice
        np.stack([rz(90), np.eye(3)]),  # exact
        np.stack([rz(90), rz(180)]),  # root exact, child off by 180° -> cos 0
    ])[None]
    best, score = O.match_hypotheses(vis, hyp, np.array([[1.0, 0.5]]), parents)
    c = math.cos(math.radians(45))
    np.testing.assert_allclose(score, [[1.5 * c, 1.5, 1.0]], atol=1e-15)
    assert best.tolist() == [1]
    with pytest.raises(ValueError):
        O.match_hypotheses(vis, hyp[:, :0], np.ones((1, 2)), parents)


def test_oracle_lbs_by_hand():
    """Two joints, three vertices on the x axis; the elbow turns 90° about z."""
    model = dict(
        v_template=np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]),
        shapedirs=np.zeros((3, 3, 1)), posedirs=np.zeros((9, 9)),
        j_regressor=np.array([[1.0, 0, 0], [0, 1, 0]]), parents=np.array([-1, 0]),
        weights=np.array([[1.0, 0], [0, 1], [0, 1]]),
    )
    rot = np.stack([np.eye(3), rz(90)])[None]
    verts, joints = O.lbs(np.zeros((1, 1)), rot, **model)
    np.testing.assert_allclose(verts[0], [[0, 0, 0], [1, 0, 0], [1, 1, 0]], atol=1e-15)
    np.testing.assert_allclose(joints[0], [[0, 0, 0], [1, 0, 0]], atol=1e-15)
    # a shape coefficient shifts everything by +x; turning the root then turns the whole
    # body, joints included, about the (shifted) root joint
    model["shapedirs"][:, 0, 0] = 1.0
    verts, joints = O.lbs(np.ones((1, 1)), np.stack([rz(90), np.eye(3)])[None], **model)
    np.testing.assert_allclose(verts[0], [[1, 0, 0], [1, 1, 0], [1, 2, 0]], atol=1e-15)
    np.testing.assert_allclose(joints[0], [[1, 0, 0], [1, 1, 0]], atol=1e-15)


def test_oracle_iuv_warp_2x2_by_hand():
    features = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # B=1, C=1, H=W=2
    iuv = np.array([[
        [[0.9, 0.9], [0.9, 0.1]],  # I: pixel (y=1, x=1) is background
        [[0.0, 1.0], [0.0, 0.3]],  # U
        [[0.0, 0.0], [0.1, 0.3]],  # V
    ]])
    out = O.iuv_warp(features, iuv, 3)
    expected = np.zeros((1, 4, 3, 3))
    # texel (0, 0): pixels (0, 0) [feature 1] and (1, 0) [feature 3, v=0.1 -> row 0]
    expected[0, :, 0, 0] = [2.0, -1.0, 0.0, 1.0]
    # texel (row 0, col 2): pixel (y=0, x=1), u = 1
    expected[0, :, 0, 2] = [2.0, 1.0, -1.0, 1.0]
    np.testing.assert_array_equal(out, expected)


def test_oracle_iuv_warp_rounds_half_up_and_skips_nan():
    features = np.ones((1, 1, 1, 4))
    iuv = np.zeros((1, 3, 1, 4))
    iuv[0, 0] = [1, 1, np.nan, 1]
    iuv[0, 1] = [0.125, 0.375, 0.5, np.nan]  # S=5: 0.5 + 0.5 -> col 1 (half-to-even: 0)
    out = O.iuv_warp(features, iuv, 5)
    assert out[0, 3, 0].tolist() == [0, 1, 1, 0, 0]  # cols 1 and 2; NaN pixels skipped
    assert out[0, 3].sum() == 2
    assert out[0, 1, 0, 1] == -1.0 and out[0, 1, 0, 2] == 2 * 1 / 3 - 1  # pixel x per texel


def test_oracle_part_visibility_by_hand():
    atlas = np.array([[0, 0, 2, 2], [1, -1, 2, 2]])[None].repeat(1, 0)[0]
    atlas = np.pad(atlas, ((0, 2), (0, 0)), constant_values=-1)  # 4 x 4
    occ = np.zeros((2, 4, 4))
    occ[0, 0, 0] = 1.0  # part 0: 1 of 2 -> min(1, 1) = 1
    occ[0, 0, 2] = 0.6  # part 2: 1 of 4 -> 0.5
    occ[0, 1, 1] = 1.0  # background: ignored
    occ[1, 0, 2] = 0.4  # below threshold
    omega = O.part_visibility(occ, atlas, num_parts=4)
    np.testing.assert_array_equal(omega, [[1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    soft = O.part_visibility(occ, atlas, num_parts=4, soft=True)
    np.testing.assert_allclose(soft, [[1.0, 0.0, 0.3, 0.0], [0.0, 0.0, 0.2, 0.0]], atol=1e-15)


# ------------------------------------------------------------------------------------------
# 2. torch_ops against the oracles, over sizes and dtypes
# ------------------------------------------------------------------------------------------

ROTATION_CASES = {
    # name: (input maker from rng and leading shape)
    "axis_angle_to_matrix": lambda rng, s: rng.normal(scale=1.5, size=s + (3,)),
    "matrix_to_axis_angle": lambda rng, s: random_rotmats(rng, s),
    "matrix_to_quaternion": lambda rng, s: random_rotmats(rng, s),
    "quaternion_to_matrix": lambda rng, s: rng.normal(size=s + (4,)),
    "axis_angle_to_quaternion": lambda rng, s: rng.normal(scale=1.5, size=s + (3,)),
    "quaternion_to_axis_angle": lambda rng, s: rng.normal(size=s + (4,)),
    "rot6d_to_matrix": lambda rng, s: rng.normal(size=s + (6,)),
    "matrix_to_rot6d": lambda rng, s: random_rotmats(rng, s),
}


@pytest.mark.parametrize(
    "name,batch,extra,dtype",
    list(itertools.product(ROTATION_CASES, BATCHES, ((), (5,)), DTYPES)),
    ids=_ids,
)
def test_rotation_conversions_match_oracle(name, batch, extra, dtype):
    x, x64 = as_dtype(ROTATION_CASES[name](rng_for(name, batch, extra), (batch,) + extra), dtype)
    out = getattr(T, name)(x)
    expected = getattr(O, name)(x64)
    assert out.dtype == dtype and out.shape == expected.shape
    close(out, expected, dtype, scale=5)


@pytest.mark.parametrize("batch,dtype", list(itertools.product(BATCHES, DTYPES)), ids=_ids)
def test_slerp_matches_oracle(batch, dtype):
    rng = rng_for("slerp", batch)
    q0 = rng.normal(size=(batch, 4))
    q1 = rng.normal(size=(batch, 4))
    q1[1::3] = q0[1::3] + rng.normal(scale=1e-3, size=q0[1::3].shape)  # lerp branch
    q1[2::3] = -q0[2::3] + rng.normal(scale=0.3, size=q0[2::3].shape)  # flipped short arc
    t = rng.uniform(-0.2, 1.2, size=batch)
    (a, a64), (b, b64), (tt, t64) = as_dtype(q0, dtype), as_dtype(q1, dtype), as_dtype(t, dtype)
    close(T.slerp(a, b, tt), O.slerp(a64, b64, t64), dtype, scale=5)
    close(T.slerp(a, b, 0.25), O.slerp(a64, b64, 0.25), dtype, scale=5)  # scalar t broadcasts
    r0, r1 = O.quaternion_to_matrix(q0), O.quaternion_to_matrix(q1)
    (m0, m0_64), (m1, m1_64) = as_dtype(r0, dtype), as_dtype(r1, dtype)
    if batch > 1:  # exact endpoints
        t[0], t[-1] = 0.0, 1.0
    tt, t64 = as_dtype(t, dtype)
    close(T.slerp_matrix(m0, m1, tt), O.slerp_matrix(m0_64, m1_64, t64), dtype, scale=5)


@pytest.mark.parametrize("batch,dtype", list(itertools.product(BATCHES, DTYPES)), ids=_ids)
def test_kinematic_slerp_matches_oracle(batch, dtype):
    rng = rng_for("kslerp", batch)
    vis, vis64 = as_dtype(random_rotmats(rng, (batch, 24)), dtype)
    glob, glob64 = as_dtype(random_rotmats(rng, (batch, 24)), dtype)
    w = rng.uniform(-0.5, 1.5, size=(batch, 24))  # out of range: clamped
    w[:, ::5] = 0.0
    w[:, 1::5] = 1.0
    w, w64 = as_dtype(w, dtype)
    rel, ab = T.kinematic_slerp(vis, glob, w, PARENTS)
    rel64, ab64 = O.kinematic_slerp(vis64, glob64, w64, PARENTS)
    assert rel.shape == ab.shape == (batch, 24, 3, 3) and ab.dtype == dtype
    close(ab, ab64, dtype, scale=20)
    close(rel, rel64, dtype, scale=20)


@pytest.mark.parametrize("batch,k,dtype", list(itertools.product(BATCHES, (1, 4), DTYPES)), ids=_ids)
def test_match_hypotheses_matches_oracle(batch, k, dtype):
    rng = rng_for("match", batch, k)
    vis, vis64 = as_dtype(random_rotmats(rng, (batch, 24)), dtype)
    hyp, hyp64 = as_dtype(random_rotmats(rng, (batch, k, 24)), dtype)
    w, w64 = as_dtype(rng.uniform(-0.2, 1.2, size=(batch, 24)), dtype)
    best, score = T.match_hypotheses(vis, hyp, w, PARENTS)
    best64, score64 = O.match_hypotheses(vis64, hyp64, w64, PARENTS)
    assert best.dtype == torch.int64 and best.shape == (batch,) and score.shape == (batch, k)
    assert best.tolist() == best64.tolist()
    close(score, score64, dtype, scale=20)


def test_match_hypotheses_rejects_zero_hypotheses():
    with pytest.raises(ValueError, match="K == 0"):
        T.match_hypotheses(torch.eye(3).expand(2, 24, 3, 3), torch.zeros(2, 0, 24, 3, 3),
                           torch.ones(2, 24), PARENTS)


@pytest.mark.parametrize("batch,dtype", list(itertools.product(BATCHES, DTYPES)), ids=_ids)
def test_lbs_matches_oracle(batch, dtype):
    rng = rng_for("lbs", batch)
    model = random_model(rng, 40, PARENTS)
    betas = rng.normal(size=(batch, 10))
    rot = O.axis_angle_to_matrix(rng.normal(scale=0.8, size=(batch, 24, 3)))
    (b, b64), (r, r64) = as_dtype(betas, dtype), as_dtype(rot, dtype)
    tmodel = {k: (v if k == "parents" else as_dtype(v, dtype)[0]) for k, v in model.items()}
    model64 = {k: (v if k == "parents" else as_dtype(v, dtype)[1]) for k, v in model.items()}
    verts, joints = T.lbs(b, r, **tmodel)
    verts64, joints64 = O.lbs(b64, r64, **model64)
    assert verts.shape == (batch, 40, 3) and joints.shape == (batch, 24, 3)
    assert verts.dtype == dtype
    close(verts, verts64, dtype, scale=10)
    close(joints, joints64, dtype, scale=10)


@pytest.mark.parametrize(
    "batch,chans,hw,size,dtype",
    list(itertools.product(BATCHES, (1, 4), ((1, 1), (5, 7), (8, 8)), (1, 4, 16), DTYPES)),
    ids=_ids,
)
def test_iuv_warp_matches_oracle(batch, chans, hw, size, dtype):
    rng = rng_for("iuv", batch, chans, hw, size)
    h, w = hw
    feats = rng.normal(size=(batch, chans, h, w))
    iuv = np.concatenate([rng.random((batch, 1, h, w)),
                          rng.uniform(-0.1, 1.1, size=(batch, 2, h, w))], axis=1)
    iuv[rng.random(iuv.shape) < 0.05] = np.nan  # NaN I, U or V: pixel skipped
    (f, f64), (i, i64) = as_dtype(feats, dtype), as_dtype(iuv, dtype)
    out = T.iuv_warp(f, i, size)
    expected = O.iuv_warp(f64, i64, size)
    assert out.shape == (batch, chans + 3, size, size) and out.dtype == dtype
    close(out, expected, dtype, scale=5)
    close(T.iuv_warp(f, i, size, fg_threshold=0.2), O.iuv_warp(f64, i64, size, 0.2), dtype, 5)


@pytest.mark.parametrize(
    "batch,size,soft,dtype", list(itertools.product(BATCHES, (1, 8), (False, True), DTYPES)),
    ids=_ids,
)
def test_part_visibility_matches_oracle(batch, size, soft, dtype):
    rng = rng_for("vis", batch, size, soft)
    atlas = rng.integers(-1, 26, size=(size, size))  # -1 background, 24/25 out of range
    occ, occ64 = as_dtype(rng.random((batch, size, size)), dtype)
    omega = T.part_visibility(occ, torch.as_tensor(atlas), 24, soft=soft)
    assert omega.shape == (batch, 24) and omega.dtype == dtype
    close(omega, O.part_visibility(occ64, atlas, 24, soft=soft), dtype)


def test_torch_ops_match_oracle_on_hand_cases():
    """The hand-computed oracle cases, through torch_ops (pins the same edge semantics)."""
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    iuv = torch.tensor([[[[0.9, 0.9], [0.9, 0.1]], [[0.0, 1.0], [0.0, 0.3]],
                         [[0.0, 0.0], [0.1, 0.3]]]], dtype=torch.float64)
    assert torch.equal(T.iuv_warp(feats, iuv, 3), torch.as_tensor(O.iuv_warp(feats, iuv, 3)))
    iuv = torch.tensor([[[[1.0] * 3], [[0.125, 0.375, 0.625]], [[0.0] * 3]]])
    assert T.iuv_warp(torch.ones(1, 1, 1, 3), iuv, 5)[0, 3, 0].tolist() == [0, 1, 1, 1, 0]
    # foreground is I > threshold, strictly: I == threshold is background
    assert T.iuv_warp(torch.ones(1, 1, 1, 3), iuv, 5, fg_threshold=1.0).abs().sum() == 0
    assert O.iuv_warp(np.ones((1, 1, 1, 3)), iuv.numpy(), 5, fg_threshold=1.0).sum() == 0
    r = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    assert T.matrix_to_quaternion(r).tolist() == [0, 1, 0, 0]
    n = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(2)
    r = 2 * torch.outer(n, n) - torch.eye(3, dtype=torch.float64)
    close(T.matrix_to_axis_angle(r), math.pi * n.numpy())
    close(T.rot6d_to_matrix(torch.tensor([0.0, 1, 0, -1, 0, 0])), rz(90), torch.float32)


# ------------------------------------------------------------------------------------------
# 3. smplx parity
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch,dtype", list(itertools.product((1, 4), DTYPES)), ids=_ids)
def test_lbs_matches_smplx(batch, dtype):
    smplx_lbs = pytest.importorskip("smplx.lbs")
    rng = rng_for("smplx", batch)
    model = {k: (torch.as_tensor(v) if k == "parents" else torch.as_tensor(v).to(dtype))
             for k, v in random_model(rng, 500, PARENTS).items()}
    betas = torch.as_tensor(rng.normal(size=(batch, 10))).to(dtype)
    rot = T.axis_angle_to_matrix(torch.as_tensor(rng.normal(scale=0.8, size=(batch, 24, 3))))
    rot = rot.to(dtype)
    verts, joints = T.lbs(betas, rot, **model)
    ref_verts, ref_joints = smplx_lbs.lbs(
        betas, rot, model["v_template"], model["shapedirs"], model["posedirs"],
        model["j_regressor"], model["parents"], model["weights"], pose2rot=False)
    torch.testing.assert_close(verts, ref_verts, rtol=0, atol=1e-5)
    torch.testing.assert_close(joints, ref_joints, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------
# 4. properties
# ------------------------------------------------------------------------------------------

unit3 = hnp.arrays(np.float64, 3, elements=st.floats(-1, 1)).map(
    lambda v: v / np.linalg.norm(v) if np.linalg.norm(v) > 1e-3 else np.array([0.0, 0.0, 1.0]))
angles = st.one_of(
    st.floats(0, math.pi), st.floats(0, 1e-6), st.floats(math.pi - 1e-6, math.pi),
    st.sampled_from([0.0, 1e-12, math.pi / 2, math.pi]),
)
quat4 = hnp.arrays(np.float64, 4, elements=st.floats(-1, 1)).map(
    lambda q: q if np.linalg.norm(q) > 1e-3 else np.array([1.0, 0.0, 0.0, 0.0]))
rotation = quat4.map(O.quaternion_to_matrix)


@PROPS
@given(axis=unit3, angle=angles)
@example(axis=np.array([-1.0, 0.0, 0.0]), angle=math.pi)  # Shepperd returns +x here
@example(axis=np.array([0.0, -0.6, 0.8]), angle=math.pi - 1e-9)
def test_prop_axis_angle_round_trip(axis, angle):
    aa = torch.as_tensor(axis * angle)
    r = T.axis_angle_to_matrix(aa)
    back = T.matrix_to_axis_angle(r)
    close(T.axis_angle_to_matrix(back), r.numpy())  # always the same rotation
    assert abs(float(back.norm()) - angle) < 1e-9  # angle recovered, in [0, π]
    via_quat = T.quaternion_to_axis_angle(T.axis_angle_to_quaternion(aa))
    if angle < math.pi - 1e-6:  # below π the representation is unique
        close(back, aa.numpy())
        close(via_quat, aa.numpy(), scale=1e3)
    else:  # at π: the same axis up to sign
        assert min(float((back - aa).norm()), float((back + aa).norm())) < 1e-6
        close(T.axis_angle_to_matrix(via_quat), r.numpy())


@PROPS
@given(q=quat4)
def test_prop_quaternion_round_trips(q):
    q = torch.as_tensor(q)
    r = T.quaternion_to_matrix(q)
    assert_rotations(r.numpy())
    q_back = T.matrix_to_quaternion(r)
    assert float(q_back[0]) >= 0
    close_up_to_sign(q_back.numpy(), (q / q.norm()).numpy(), 1e-12)
    close(T.quaternion_to_matrix(q_back), r.numpy())
    # antipodal quaternions and any scale: the same rotation
    close(T.quaternion_to_matrix(-3.0 * q), r.numpy())


@PROPS
@given(r=rotation, x=hnp.arrays(np.float64, 6, elements=st.floats(-2, 2)))
def test_prop_rot6d_round_trip(r, x):
    r = torch.as_tensor(r)
    close(T.rot6d_to_matrix(T.matrix_to_rot6d(r)), r.numpy())
    a1, a2 = x[:3], x[3:]
    if np.linalg.norm(a1) > 1e-3 and np.linalg.norm(np.cross(a1, a2)) > 1e-3:
        out = T.rot6d_to_matrix(torch.as_tensor(x)).numpy()
        assert_rotations(out)
        np.testing.assert_allclose(out[:, 0], a1 / np.linalg.norm(a1), atol=1e-12)


@PROPS
@given(q0=quat4, q1=quat4, t=st.floats(0, 1))
def test_prop_slerp_endpoints_and_continuity(q0, q1, t):
    a, b = torch.as_tensor(q0), torch.as_tensor(q1)
    close_up_to_sign(T.slerp(a, b, 0.0).numpy(), q0 / np.linalg.norm(q0), 1e-12)
    close_up_to_sign(T.slerp(a, b, 1.0).numpy(), q1 / np.linalg.norm(q1), 1e-12)
    # moving t by dt moves along the arc by at most (π/2)·dt (in quaternion chord length)
    dt = 1e-6
    q_t, q_dt = T.slerp(a, b, t).numpy(), T.slerp(a, b, t + dt).numpy()
    step = min(np.abs(q_dt - q_t).max(), np.abs(q_dt + q_t).max())
    assert step <= math.pi / 2 * dt * 1.01 + 1e-12
    # slerp_matrix: exact endpoints, continuous into them
    r0, r1 = T.quaternion_to_matrix(a), T.quaternion_to_matrix(b)
    assert torch.equal(T.slerp_matrix(r0, r1, 0.0), r0)
    assert torch.equal(T.slerp_matrix(r0, r1, 1.0), r1)
    close(T.slerp_matrix(r0, r1, 1e-12), r0.numpy(), scale=10)
    close(T.slerp_matrix(r0, r1, 1 - 1e-12), r1.numpy(), scale=10)
    assert_rotations(T.slerp_matrix(r0, r1, t).numpy())


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["zeros", "ones", "mixed", "rotated_180"]),
)
def test_prop_kinematic_slerp_extremes(seed, mode):
    rng = np.random.default_rng(seed)
    vis = torch.as_tensor(random_rotmats(rng, (2, 24)))
    glob = torch.as_tensor(random_rotmats(rng, (2, 24)))
    w = torch.as_tensor(rng.choice([0.0, 1.0], size=(2, 24)) if mode == "mixed"
                        else rng.uniform(0, 1, size=(2, 24)))
    if mode == "zeros":
        w = torch.zeros(2, 24, dtype=torch.float64)
    elif mode == "ones":
        w = torch.ones(2, 24, dtype=torch.float64)
    elif mode == "rotated_180":  # visible = global chain turned 180°: root slerps at dot = 0
        vis = T.relative_to_absolute(glob, PARENTS) @ T.axis_angle_to_matrix(
            torch.as_tensor(unit_axes(rng, (2, 24)) * math.pi))
    rel, ab = T.kinematic_slerp(vis, glob, w, PARENTS)
    assert_rotations(ab.numpy())
    assert_rotations(rel.numpy())
    close(T.relative_to_absolute(rel, PARENTS), ab.numpy(), scale=10)
    for b, i in itertools.product(range(2), range(24)):
        if w[b, i] == 1:  # w = 1 gives the visible estimate bit for bit
            assert torch.equal(ab[b, i], vis[b, i])
        if w[b, i] == 0:  # w = 0: the global prediction through the blended parent, exactly
            p = int(PARENTS[i])
            pred = glob[:, i] if p < 0 else ab[:, p] @ glob[:, i]
            assert torch.equal(ab[b, i], pred[b])
    if mode == "zeros":
        assert torch.equal(ab, T.relative_to_absolute(glob, PARENTS))
    if mode == "ones":
        assert torch.equal(ab, vis)


def unit_axes(rng, shape) -> np.ndarray:
    v = rng.normal(size=tuple(shape) + (3,))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@PROPS
@given(axis=unit3, seed=st.integers(0, 2**32 - 1))
def test_prop_180_degree_rotations(axis, seed):
    aa = torch.as_tensor(axis * math.pi)
    r = T.axis_angle_to_matrix(aa)
    q = T.matrix_to_quaternion(r)
    assert abs(float(q[0])) < 1e-12
    close_up_to_sign(q.numpy(), np.r_[0.0, axis], 1e-12)
    back = T.matrix_to_axis_angle(r)
    assert min(float((back - aa).norm()), float((back + aa).norm())) < 1e-9
    oracle = O.matrix_to_axis_angle(r.numpy())
    assert min(np.abs(back.numpy() - oracle).max(), np.abs(back.numpy() + oracle).max()) < 1e-9
    # slerp halfway across a 180° gap lands 90° from both ends
    r0 = torch.as_tensor(random_rotmats(np.random.default_rng(seed), ()))
    mid = T.slerp_matrix(r0, r0 @ r, 0.5)
    assert_rotations(mid.numpy())
    angle = float(T.matrix_to_axis_angle(r0.T @ mid).norm())
    assert abs(angle - math.pi / 2) < 1e-9


@PROPS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 6), data=st.data())
def test_prop_match_hypotheses_finds_the_visible_pose(seed, k, data):
    rng = np.random.default_rng(seed)
    vis = torch.as_tensor(random_rotmats(rng, (1, 24)))
    hyp = torch.as_tensor(random_rotmats(rng, (1, k, 24)))
    hit = data.draw(st.integers(0, k - 1))
    hyp[0, hit] = T.absolute_to_relative(vis[0], PARENTS)
    # sign-invariance: the same pose via a differently signed quaternion path changes nothing
    w = torch.as_tensor(rng.uniform(0.05, 1, size=(1, 24)))
    best, score = T.match_hypotheses(vis, hyp, w, PARENTS)
    assert int(best[0]) == hit
    close(score[0, hit], float(w.sum()), scale=1e3)
    assert (score <= w.sum() + 1e-9).all()


def test_kinematic_slerp_nan_weight_propagates_to_descendants_only():
    rng = rng_for("nan")
    vis = torch.as_tensor(random_rotmats(rng, (1, 24)))
    glob = torch.as_tensor(random_rotmats(rng, (1, 24)))
    w = torch.full((1, 24), 0.5, dtype=torch.float64)
    w[0, 9] = float("nan")  # spine3: neck, collars, head, arms below it
    rel, ab = T.kinematic_slerp(vis, glob, w, PARENTS)
    rel64, ab64 = O.kinematic_slerp(vis.numpy(), glob.numpy(), w.numpy(), PARENTS)
    below = {9}
    for i in range(10, 24):
        if int(PARENTS[i]) in below:
            below.add(i)
    nan_joints = {i for i in range(24) if torch.isnan(ab[0, i]).any()}
    assert nan_joints == below == {i for i in range(24) if np.isnan(ab64[0, i]).any()}
    finite = [i for i in range(24) if i not in below]
    close(ab[0, finite], ab64[0, finite])


def test_parents_must_be_topological():
    with pytest.raises(ValueError):
        T.relative_to_absolute(torch.eye(3).expand(2, 3, 3), [-1, 2, 0])


# ------------------------------------------------------------------------------------------
# 5. autograd
# ------------------------------------------------------------------------------------------


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).clone().requires_grad_(True)


def test_gradcheck_lbs():
    rng = rng_for("grad lbs")
    model = random_model(rng, 5, SMALL_TREE, num_betas=2)
    parents = model.pop("parents")
    names = list(model)
    inputs = [_f64(rng.normal(size=(2, 2))),
              _f64(O.axis_angle_to_matrix(rng.normal(size=(2, 4, 3))))]
    inputs += [_f64(model[k]) for k in names]

    def fn(betas, rot, *params):
        return T.lbs(betas, rot, **dict(zip(names, params)), parents=parents)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("scale", [1.0, 1e-4, 0.0])
def test_gradcheck_axis_angle_conversions(scale):
    rng = rng_for("grad aa")
    aa = _f64(rng.normal(size=(3, 3)) * scale)
    assert torch.autograd.gradcheck(T.axis_angle_to_matrix, [aa])
    assert torch.autograd.gradcheck(T.axis_angle_to_quaternion, [aa])
    q = _f64(O.axis_angle_to_quaternion(aa.detach().numpy()))
    assert torch.autograd.gradcheck(T.quaternion_to_axis_angle, [q])
    r = _f64(O.axis_angle_to_matrix(aa.detach().numpy()))
    assert torch.autograd.gradcheck(T.matrix_to_axis_angle, [r])


def test_gradients_finite_at_exactly_zero_rotation():
    for fn, x in [
        (T.axis_angle_to_matrix, torch.zeros(2, 3)),
        (T.axis_angle_to_quaternion, torch.zeros(2, 3)),
        (T.quaternion_to_axis_angle, torch.tensor([[1.0, 0, 0, 0]])),
        (T.matrix_to_axis_angle, torch.eye(3).expand(2, 3, 3)),
        (T.matrix_to_quaternion, torch.eye(3).expand(2, 3, 3)),
    ]:
        x = x.clone().requires_grad_(True)
        fn(x).sum().backward()
        assert torch.isfinite(x.grad).all(), fn.__name__
    # d R / d aa at 0 is the skew generator: dR/da_z [1, 0] = +1
    aa = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    T.axis_angle_to_matrix(aa)[1, 0].backward()
    assert aa.grad.tolist() == [0.0, 0.0, 1.0]


def test_gradcheck_rot6d_to_matrix():
    x = _f64(rng_for("grad 6d").normal(size=(4, 6)))
    assert torch.autograd.gradcheck(T.rot6d_to_matrix, [x])


def test_gradcheck_slerp_matrix_interior():
    rng = rng_for("grad slerp")
    r0, r1 = _f64(random_rotmats(rng, (3,))), _f64(random_rotmats(rng, (3,)))
    t = _f64([0.2, 0.5, 0.9])
    assert torch.autograd.gradcheck(T.slerp_matrix, [r0, r1, t])
    near = _f64(O.axis_angle_to_matrix(O.matrix_to_axis_angle(r0.detach().numpy()) * 1.001))
    assert torch.autograd.gradcheck(T.slerp_matrix, [r0, near, t])  # nlerp branch


def test_gradcheck_kinematic_slerp():
    rng = rng_for("grad kslerp")
    vis, glob = _f64(random_rotmats(rng, (2, 4))), _f64(random_rotmats(rng, (2, 4)))
    w = _f64(rng.uniform(0.1, 0.9, size=(2, 4)))
    assert torch.autograd.gradcheck(lambda a, b, c: T.kinematic_slerp(a, b, c, SMALL_TREE),
                                    [vis, glob, w])


def test_gradcheck_iuv_warp_features_and_soft_visibility():
    rng = rng_for("grad iuv")
    feats = _f64(rng.normal(size=(2, 3, 4, 5)))
    iuv = torch.as_tensor(rng.random((2, 3, 4, 5)))
    assert torch.autograd.gradcheck(lambda f: T.iuv_warp(f, iuv, 4), [feats])
    occ = _f64(rng.uniform(0, 0.4, size=(2, 4, 4)))  # below the min(1, ·) kink
    atlas = torch.as_tensor(rng.integers(-1, 3, size=(4, 4)))
    assert torch.autograd.gradcheck(lambda o: T.part_visibility(o, atlas, 3, soft=True), [occ])


# ------------------------------------------------------------------------------------------
# device
# ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_ops_on_cuda_match_cpu():
    rng = rng_for("cuda")
    vis = torch.as_tensor(random_rotmats(rng, (3, 24)))
    hyp = torch.as_tensor(random_rotmats(rng, (3, 2, 24)))
    w = torch.as_tensor(rng.random((3, 24)))
    feats = torch.as_tensor(rng.normal(size=(3, 4, 6, 6)))
    iuv = torch.as_tensor(rng.random((3, 3, 6, 6)))
    cpu = [T.kinematic_slerp(vis, hyp[:, 0], w, PARENTS), T.match_hypotheses(vis, hyp, w, PARENTS),
           T.iuv_warp(feats, iuv, 8)]
    dev = [T.kinematic_slerp(vis.cuda(), hyp[:, 0].cuda(), w.cuda(), PARENTS),
           T.match_hypotheses(vis.cuda(), hyp.cuda(), w.cuda(), PARENTS),
           T.iuv_warp(feats.cuda(), iuv.cuda(), 8)]
    for a, b in zip(torch.utils._pytree.tree_leaves(cpu), torch.utils._pytree.tree_leaves(dev)):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-9)
