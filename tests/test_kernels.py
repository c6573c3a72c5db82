"""The compiled kernels (CPU, and CUDA under the `gpu` marker) against the float64 oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmr_ros import kernels as K
from hmr_ros.body.constants import PARENTS

import oracles as O


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


def random_rotations(rng, shape, max_angle=np.pi) -> np.ndarray:
    axis = rng.normal(size=shape + (3,))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = rng.uniform(0, max_angle, size=shape + (1,))
    return O.axis_angle_to_matrix(axis * angle)


TOL = {np.float32: 2e-5, np.float64: 1e-10}

# --- rotations ------------------------------------------------------------------------------

CONVERSIONS = [
    ("axis_angle_to_matrix", lambda r, n: r.normal(size=(n, 3)) * 1.5),
    ("matrix_to_axis_angle", lambda r, n: random_rotations(r, (n,))),
    ("matrix_to_quaternion", lambda r, n: random_rotations(r, (n,))),
    ("quaternion_to_matrix", lambda r, n: r.normal(size=(n, 4))),
    ("axis_angle_to_quaternion", lambda r, n: r.normal(size=(n, 3)) * 1.5),
    ("quaternion_to_axis_angle", lambda r, n: r.normal(size=(n, 4))),
    ("rot6d_to_matrix", lambda r, n: r.normal(size=(n, 6))),
    ("matrix_to_rot6d", lambda r, n: random_rotations(r, (n,))),
]


@pytest.mark.parametrize("name,make", CONVERSIONS, ids=[c[0] for c in CONVERSIONS])
@pytest.mark.parametrize("n,dtype", list(itertools.product([0, 1, 7, 5000], [np.float32, np.float64])))
def test_rotation_conversions_match_oracle(dev, name, make, n, dtype):
    x = make(np.random.default_rng(n), n).astype(dtype)
    got = dev.get(getattr(K, name)(dev.put(x)))
    want = getattr(O, name)(x)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOL[dtype] * 10, rtol=0)


def test_rotation_conversions_keep_leading_shape():
    aa = np.random.default_rng(0).normal(size=(2, 5, 24, 3)).astype(np.float32)
    assert K.axis_angle_to_matrix(aa).shape == (2, 5, 24, 3, 3)
    assert K.matrix_to_rot6d(K.axis_angle_to_matrix(aa)).shape == (2, 5, 24, 6)


angles = st.floats(0.0, np.pi, allow_nan=False)
unit = st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3).filter(
    lambda v: np.linalg.norm(v) > 1e-3)


@settings(max_examples=200, deadline=None)
@given(axis=unit, angle=angles)
def test_axis_angle_round_trip_including_0_and_pi(axis, angle):
    a = np.asarray(axis, np.float64)
    aa = (a / np.linalg.norm(a) * angle)[None]
    R = K.axis_angle_to_matrix(aa)
    back = K.matrix_to_axis_angle(R)
    np.testing.assert_allclose(K.axis_angle_to_matrix(back), R, atol=1e-9)
    if angle < np.pi - 1e-6:  # at π, axis and -axis are the same rotation
        np.testing.assert_allclose(back, aa, atol=1e-7)
    q = K.axis_angle_to_quaternion(aa)
    assert q[0, 0] >= 0
    np.testing.assert_allclose(K.quaternion_to_matrix(q), R, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(q=st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 4).filter(
    lambda v: np.linalg.norm(v) > 1e-2))
def test_antipodal_quaternions_are_one_rotation(q):
    q = np.asarray(q, np.float64)[None]
    R = K.quaternion_to_matrix(q)
    np.testing.assert_allclose(K.quaternion_to_matrix(-q), R, atol=1e-12)
    back = K.matrix_to_quaternion(R)
    qn = q / np.linalg.norm(q)
    assert back[0, 0] >= 0
    assert abs(abs(float(back[0] @ qn[0])) - 1.0) < 1e-9
    np.testing.assert_allclose(K.rot6d_to_matrix(K.matrix_to_rot6d(R)), R, atol=1e-12)


@pytest.mark.parametrize("axis", np.eye(3).tolist() + [[1, 1, 0], [1, -1, 1]])
def test_180_degree_rotations(axis):
    a = np.asarray(axis, np.float64)
    a /= np.linalg.norm(a)
    R = 2 * np.outer(a, a) - np.eye(3)  # rotation by π about a
    aa = K.matrix_to_axis_angle(R[None])[0]
    assert abs(np.linalg.norm(aa) - np.pi) < 1e-9
    assert abs(abs(aa @ a) - np.pi) < 1e-9
    np.testing.assert_allclose(K.axis_angle_to_matrix(aa[None])[0], R, atol=1e-12)


def test_tiny_angles_use_series_not_division():
    aa = np.array([[1e-12, 0, 0], [0, 0, 0], [3e-9, -2e-9, 1e-9]])
    R = K.axis_angle_to_matrix(aa)
    assert np.isfinite(R).all()
    np.testing.assert_allclose(K.matrix_to_axis_angle(R), aa, atol=1e-15)


# --- merge: kinematic slerp (eq. 5) and matching (eq. 4) ----------------------------------

def merge_inputs(rng, B, dtype, K_hyp=4):
    abs_vis = random_rotations(rng, (B, 24)).astype(dtype)
    rel = random_rotations(rng, (B, 24), max_angle=1.0).astype(dtype)
    hyp = random_rotations(rng, (B, K_hyp, 24), max_angle=1.0).astype(dtype)
    w = rng.uniform(0, 1, size=(B, 24)).astype(dtype)
    return abs_vis, rel, hyp, w


@pytest.mark.parametrize("B,dtype", list(itertools.product([0, 1, 3, 64], [np.float32, np.float64])))
def test_kinematic_slerp_matches_oracle(dev, B, dtype):
    abs_vis, rel, _, w = merge_inputs(np.random.default_rng(B), B, dtype)
    w[:, ::5] = 0.0
    w[:, 1::7] = 1.0
    rel_out, abs_out = (dev.get(x) for x in K.kinematic_slerp(dev.put(abs_vis), dev.put(rel),
                                                              dev.put(w), PARENTS))
    want_rel, want_abs = O.kinematic_slerp(abs_vis, rel, w, PARENTS)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(abs_out, want_abs, atol=tol)
    np.testing.assert_allclose(rel_out, want_rel, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kinematic_slerp_endpoints_are_exact(dev, dtype):
    abs_vis, rel, _, _ = merge_inputs(np.random.default_rng(1), 5, dtype)
    ones = np.ones((5, 24), dtype)
    _, abs_out = K.kinematic_slerp(dev.put(abs_vis), dev.put(rel), dev.put(ones), PARENTS)
    assert np.array_equal(dev.get(abs_out), abs_vis)  # w = 1: the visible branch, bit for bit
    rel_out, abs_out = K.kinematic_slerp(dev.put(abs_vis), dev.put(rel), dev.put(0 * ones),
                                         PARENTS)
    chain = O.relative_to_absolute(rel[0], PARENTS)
    np.testing.assert_allclose(dev.get(abs_out)[0], chain, atol=TOL[dtype] * 10)
    np.testing.assert_allclose(dev.get(rel_out), rel, atol=TOL[dtype] * 10)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), w=st.floats(0, 1))
def test_kinematic_slerp_outputs_are_rotations(seed, w):
    abs_vis, rel, _, _ = merge_inputs(np.random.default_rng(seed), 2, np.float64)
    rel_out, abs_out = K.kinematic_slerp(abs_vis, rel, np.full((2, 24), w), PARENTS)
    for M in (rel_out, abs_out):
        np.testing.assert_allclose(M @ np.swapaxes(M, -1, -2), np.broadcast_to(np.eye(3), M.shape),
                                   atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(M), 1.0, atol=1e-9)


def test_slerp_is_continuous_in_the_weight():
    """A single joint (parents = [-1]) is plain matrix slerp; small dt -> small change."""
    rng = np.random.default_rng(3)
    R0 = random_rotations(rng, (1, 1))
    R1 = random_rotations(rng, (1, 1))
    ts = np.linspace(0, 1, 2001)
    outs = np.stack([K.kinematic_slerp(R1, R0, np.array([[t]]), [-1])[1][0, 0] for t in ts])
    steps = np.linalg.norm((outs[1:] - outs[:-1]).reshape(len(ts) - 1, 9), axis=1)
    angle = np.arccos(np.clip((np.trace(R0[0, 0].T @ R1[0, 0]) - 1) / 2, -1, 1))
    assert steps.max() < 4 * angle / (len(ts) - 1) + 1e-9
    np.testing.assert_allclose(outs[0], R0[0, 0], atol=0)
    np.testing.assert_allclose(outs[-1], R1[0, 0], atol=0)


def test_slerp_between_opposite_quaternion_signs_takes_short_arc():
    # R for q and the same R built from -q: slerp must not go the long way round
    R = K.axis_angle_to_matrix(np.array([[0, 0, 0.3]]))[None]
    mid = K.kinematic_slerp(R, R, np.array([[0.5]]), [-1])[1]
    np.testing.assert_allclose(mid, R, atol=1e-12)


@pytest.mark.parametrize("B,dtype", list(itertools.product([0, 1, 5], [np.float32, np.float64])))
def test_match_hypotheses_matches_oracle(dev, B, dtype):
    abs_vis, _, hyp, w = merge_inputs(np.random.default_rng(10 + B), B, dtype, K_hyp=6)
    best, score = (dev.get(x) for x in K.match_hypotheses(dev.put(abs_vis), dev.put(hyp),
                                                          dev.put(w), PARENTS))
    want_best, want_score = O.match_hypotheses(abs_vis, hyp, w, PARENTS)
    np.testing.assert_allclose(score, want_score, atol=1e-4 if dtype == np.float32 else 1e-10)
    np.testing.assert_array_equal(best, want_best)
    assert best.dtype == np.int64


def test_match_hypotheses_finds_the_visible_pose(dev):
    rng = np.random.default_rng(7)
    _, _, hyp, w = merge_inputs(rng, 3, np.float32, K_hyp=5)
    truth = [3, 0, 4]
    abs_vis = np.stack([O.relative_to_absolute(hyp[b, k], PARENTS) for b, k in enumerate(truth)])
    best, score = K.match_hypotheses(dev.put(abs_vis.astype(np.float32)), dev.put(hyp),
                                     dev.put(w), PARENTS)
    np.testing.assert_array_equal(dev.get(best), truth)
    np.testing.assert_allclose(dev.get(score)[np.arange(3), truth], w.sum(1), rtol=1e-5)


# --- LBS ------------------------------------------------------------------------------------

def random_body(rng, V, NB=10, sparse=True):
    vt = rng.normal(size=(V, 3)) * 0.3
    sd = rng.normal(size=(V, 3, NB)) * 0.01
    pd = rng.normal(size=(207, V * 3)) * 0.01
    jr = rng.random((24, V))
    jr /= jr.sum(1, keepdims=True)
    w = rng.random((V, 24)) ** 4
    if sparse:
        w[w < np.sort(w, axis=1)[:, -4:-3]] = 0.0  # 4 joints per vertex, like SMPL
    w /= w.sum(1, keepdims=True)
    return [x.astype(np.float32) for x in (vt, sd, pd, jr, w)]


@pytest.mark.parametrize("B,V,sparse", [(0, 50, True), (1, 7, True), (3, 500, False),
                                        (9, 1001, True)])
def test_lbs_matches_oracle(dev, B, V, sparse):
    rng = np.random.default_rng(V)
    vt, sd, pd, jr, w = random_body(rng, V, sparse=sparse)
    betas = rng.normal(size=(B, 10)).astype(np.float32)
    R = random_rotations(rng, (B, 24), max_angle=1.5).astype(np.float32)
    verts, joints = K.lbs(*(dev.put(x) for x in (betas, R, vt, sd, pd, jr)), PARENTS, dev.put(w))
    want_v, want_j = O.lbs(betas, R, vt, sd, pd, jr, PARENTS, w)
    np.testing.assert_allclose(dev.get(verts), want_v, atol=2e-5)
    np.testing.assert_allclose(dev.get(joints), want_j, atol=2e-5)


def test_lbs_matches_smplx_on_a_random_smpl_model(dev):
    smplx = pytest.importorskip("smplx")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    V = 6890
    vt, sd, pd, jr, w = random_body(rng, V, sparse=True)
    # A random SMPL-layout model built by smplx itself (no SMPL files needed).
    data = {"v_template": vt, "shapedirs": sd, "posedirs": pd.T.reshape(V, 3, 207),
            "J_regressor": jr, "weights": w, "f": rng.integers(0, V, size=(100, 3)),
            "kintree_table": np.stack([np.r_[2**32 - 1, PARENTS[1:]], np.arange(24)])}
    body = smplx.SMPL(model_path=None, data_struct=type("S", (), data)(), num_betas=10)
    B = 4
    betas = rng.normal(size=(B, 10)).astype(np.float32)
    R = random_rotations(rng, (B, 24), max_angle=1.0).astype(np.float32)
    with torch.no_grad():
        want_v, want_j = smplx.lbs.lbs(torch.from_numpy(betas), torch.from_numpy(R),
                                       body.v_template, body.shapedirs, body.posedirs,
                                       body.J_regressor, body.parents, body.lbs_weights,
                                       pose2rot=False)
    args = [x.numpy() for x in (body.v_template, body.shapedirs, body.posedirs,
                                body.J_regressor)]
    verts, joints = K.lbs(dev.put(betas), dev.put(R), *(dev.put(a) for a in args),
                          body.parents.numpy(), dev.put(body.lbs_weights.numpy()))
    np.testing.assert_allclose(dev.get(verts), want_v.numpy(), atol=1e-5)
    np.testing.assert_allclose(dev.get(joints), want_j.numpy(), atol=1e-5)


def test_lbs_fp16_posedirs_accumulate_in_fp32(dev):
    rng = np.random.default_rng(5)
    vt, sd, pd, jr, w = random_body(rng, 300)
    betas = rng.normal(size=(2, 10)).astype(np.float32)
    R = random_rotations(rng, (2, 24), max_angle=1.5).astype(np.float32)
    v16, _ = K.lbs(*(dev.put(x) for x in (betas, R, vt, sd, pd.astype(np.float16), jr)), PARENTS,
                   dev.put(w))
    # Exact against the oracle given the rounded posedirs, close to the fp32 result.
    want16, _ = O.lbs(betas, R, vt, sd, pd.astype(np.float16).astype(np.float64), jr, PARENTS, w)
    np.testing.assert_allclose(dev.get(v16), want16, atol=2e-5)
    want32, _ = O.lbs(betas, R, vt, sd, pd, jr, PARENTS, w)
    assert np.abs(dev.get(v16) - want32).max() < 1e-3


def test_lbs_on_the_procedural_body(dev):
    from hmr_ros.body import procedural_body

    body = procedural_body()
    rng = np.random.default_rng(2)
    betas = rng.normal(size=(3, 10)).astype(np.float32)
    R = random_rotations(rng, (3, 24), max_angle=0.8).astype(np.float32)
    verts, joints = K.lbs(dev.put(betas), dev.put(R), dev.put(body.v_template),
                          dev.put(body.shapedirs), dev.put(body.posedirs),
                          dev.put(body.j_regressor), body.parents, dev.put(body.weights))
    want_v, want_j = O.lbs(betas, R, body.v_template, body.shapedirs, body.posedirs,
                           body.j_regressor, body.parents, body.weights)
    np.testing.assert_allclose(dev.get(verts), want_v, atol=2e-5)
    np.testing.assert_allclose(dev.get(joints), want_j, atol=2e-5)


@pytest.mark.parametrize("posedirs_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("B", [0, 1, 4, 5, 37])
def test_prepared_lbs_model_matches_oracle(dev, B, posedirs_dtype):
    rng = np.random.default_rng(B)
    vt, sd, pd, jr, w = random_body(rng, 333)
    pd[:, :96 * 2] = 0.0  # two all-zero tiles: dropped rows must not change the result
    pd[:45] = 0.0  # and five joints' rows everywhere
    pd = pd.astype(posedirs_dtype)
    model = K.LbsModel(vt, sd, pd, jr, PARENTS, w)
    assert 0.0 < model.packed_fraction < 1.0
    betas = rng.normal(size=(B, 10)).astype(np.float32)
    R = random_rotations(rng, (B, 24), max_angle=1.5).astype(np.float32)
    verts, joints = model(dev.put(betas), dev.put(R))
    want_v, want_j = O.lbs(betas, R, vt, sd, pd.astype(np.float64), jr, PARENTS, w)
    np.testing.assert_allclose(dev.get(verts), want_v, atol=2e-5)
    np.testing.assert_allclose(dev.get(joints), want_j, atol=2e-5)


def test_prepared_lbs_model_on_the_procedural_body_drops_zero_rows():
    from hmr_ros.body import procedural_body

    body = procedural_body()
    model = K.LbsModel.from_body(body, posedirs_dtype=np.float16)
    assert model.packed_fraction < 0.2  # joint-local correctives: most tile rows are zero
    rng = np.random.default_rng(4)
    betas = rng.normal(size=(6, 10)).astype(np.float32)
    R = random_rotations(rng, (6, 24), max_angle=0.8).astype(np.float32)
    got_v, got_j = model(betas, R)
    want_v, want_j = K.lbs(betas, R, body.v_template, body.shapedirs, body.posedirs,
                           body.j_regressor, body.parents, body.weights)
    np.testing.assert_allclose(got_v, want_v, atol=1e-4)  # fp16 posedirs vs fp32
    np.testing.assert_allclose(got_j, want_j, atol=1e-6)


def test_prepared_lbs_model_checks_its_inputs():
    rng = np.random.default_rng(0)
    vt, sd, pd, jr, w = random_body(rng, 40)
    with pytest.raises(K.KernelError, match=r"LbsModel: posedirs must have shape"):
        K.LbsModel(vt, sd, np.ascontiguousarray(pd[:200]), jr, PARENTS, w)
    model = K.LbsModel(vt, sd, pd, jr, PARENTS, w)
    with pytest.raises(K.KernelError, match=r"LbsModel: betas must have shape \(B=2, NB=10\), got \(2, 9\)"):
        model(np.zeros((2, 9), np.float32), np.zeros((2, 24, 3, 3), np.float32))
    with pytest.raises(K.KernelError, match=r"LbsModel: rotmats must have shape \(B=2, J=24"):
        model(np.zeros((2, 10), np.float32), np.zeros((2, 23, 3, 3), np.float32))


def test_lbs_nan_rotation_propagates_only_where_it_acts():
    rng = np.random.default_rng(0)
    vt, sd, pd, jr, w = random_body(rng, 200)
    R = random_rotations(rng, (2, 24), max_angle=0.5).astype(np.float32)
    R[1, 5] = np.nan
    verts, joints = K.lbs(np.zeros((2, 10), np.float32), R, vt, sd, pd, jr, PARENTS, w)
    assert np.isfinite(verts[0]).all() and np.isfinite(joints[0]).all()
    assert np.isnan(verts[1]).any()


# --- IUV warp and visibility ----------------------------------------------------------------

def random_iuv(rng, B, H, W, fg=0.6):
    iuv = rng.uniform(0, 1, size=(B, 3, H, W))
    iuv[:, 0] = (rng.uniform(size=(B, H, W)) < fg).astype(float)
    iuv[:, 1:] = rng.uniform(-0.1, 1.1, size=(B, 2, H, W))  # some outside: clamped
    return iuv.astype(np.float32)


@pytest.mark.parametrize("B,C,H,W,S", [(0, 4, 5, 5, 8), (1, 1, 1, 1, 1), (2, 5, 7, 11, 6),
                                       (3, 16, 56, 56, 64), (1, 0, 4, 4, 4)])
def test_iuv_warp_matches_oracle(dev, B, C, H, W, S):
    rng = np.random.default_rng(C * 100 + S)
    feats = rng.normal(size=(B, C, H, W)).astype(np.float32)
    iuv = random_iuv(rng, B, H, W)
    got = dev.get(K.iuv_warp(dev.put(feats), dev.put(iuv), S))
    want = O.iuv_warp(feats, iuv, S)
    assert got.shape == (B, C + 3, S, S)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_iuv_warp_nan_pixels_are_background(dev):
    feats = np.ones((1, 2, 2, 2), np.float32)
    iuv = np.ones((1, 3, 2, 2), np.float32)
    iuv[0, 1, 0, 0] = np.nan
    iuv[0, 0, 1, 1] = np.nan
    out = dev.get(K.iuv_warp(dev.put(feats), dev.put(iuv), 4))
    assert np.isfinite(out).all()
    assert out[0, -1].sum() == 1.0  # the two good pixels share texel (3, 3)
    assert out[0, -1, 3, 3] == 1.0


@pytest.mark.parametrize("B,S", [(0, 4), (1, 8), (4, 64)])
def test_part_visibility_matches_oracle(dev, B, S):
    rng = np.random.default_rng(S)
    occ = (rng.uniform(size=(B, S, S)) < 0.3).astype(np.float32)
    part_map = rng.integers(-1, 24, size=(S, S))
    got = dev.get(K.part_visibility(dev.put(occ), part_map))
    want = O.part_visibility(occ, part_map)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.shape == (B, 24)
    # the map may already live where the occupancy is (int32: used in place, no copy)
    on_dev = dev.get(K.part_visibility(dev.put(occ), dev.put(part_map.astype(np.int32))))
    np.testing.assert_allclose(on_dev, want, atol=1e-6)


def test_visibility_of_a_fully_warped_atlas_is_one():
    part_map = np.repeat(np.arange(24), 6).reshape(12, 12)
    occ = np.zeros((1, 12, 12), np.float32)
    occ[0, :, 0:3] = 1.0  # half of each part's texels (each part is half a row)
    occ[0, :, 6:9] = 1.0
    vis = K.part_visibility(occ, part_map)
    np.testing.assert_allclose(vis[0], 1.0)  # 2 * 3/6 = 1: eq. 1's factor of 2
    occ[0, :, :] = 0.0
    occ[0, :, 0] = 1.0
    vis = K.part_visibility(occ, part_map)[0]
    np.testing.assert_allclose(vis[::2], 2 / 6)
    np.testing.assert_allclose(vis[1::2], 0.0)


# --- bad input -------------------------------------------------------------------------------

def test_wrong_dtype_is_a_clear_error():
    with pytest.raises(K.KernelError, match=r"axis_angle_to_matrix: input must be float32 or "
                                            r"float64, got int64"):
        K.axis_angle_to_matrix(np.zeros((2, 3), np.int64))
    rng = np.random.default_rng(0)
    vt, sd, pd, jr, w = random_body(rng, 20)
    with pytest.raises(K.KernelError, match="lbs: betas must be float32, got float64"):
        K.lbs(np.zeros((1, 10)), np.zeros((1, 24, 3, 3), np.float32), vt, sd, pd, jr, PARENTS, w)


def test_wrong_shapes_name_the_argument():
    rng = np.random.default_rng(0)
    vt, sd, pd, jr, w = random_body(rng, 20)
    betas = np.zeros((2, 10), np.float32)
    R = np.broadcast_to(np.eye(3, dtype=np.float32), (2, 24, 3, 3)).copy()
    with pytest.raises(K.KernelError, match=r"lbs: rotmats must have shape \(B=2, J=24, 3, 3\), "
                                            r"got \(3, 24, 3, 3\)"):
        K.lbs(betas, np.concatenate([R, R[:1]]), vt, sd, pd, jr, PARENTS, w)
    with pytest.raises(K.KernelError, match=r"lbs: posedirs must have shape \(P=207, V\*3=60\)"):
        K.lbs(betas, R, vt, sd, np.ascontiguousarray(pd[:, :30]), jr, PARENTS, w)
    with pytest.raises(K.KernelError, match=r"lbs: weights must have shape"):
        K.lbs(betas, R, vt, sd, pd, jr, PARENTS, np.ascontiguousarray(w[:, :23]))
    with pytest.raises(K.KernelError, match=r"iuv_warp: iuv must have shape \(B=1, 3, H=4, W=4\)"):
        K.iuv_warp(np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 2, 4, 4), np.float32), 8)
    with pytest.raises(K.KernelError, match=r"matrix_to_quaternion: input must have shape"):
        K.matrix_to_quaternion(np.zeros((4, 3), np.float32))
    with pytest.raises(K.KernelError, match=r"K >= 1"):
        K.match_hypotheses(R, np.zeros((2, 0, 24, 3, 3), np.float32),
                           np.ones((2, 24), np.float32), PARENTS)
    with pytest.raises(K.KernelError, match="atlas_part_map must be integer"):
        K.part_visibility(np.zeros((1, 4, 4), np.float32), np.zeros((4, 4), np.float32))


def test_non_contiguous_and_foreign_arrays_are_refused():
    R = np.zeros((24, 3, 3, 2), np.float32)[..., 0]
    with pytest.raises(K.KernelError, match="must be C-contiguous"):
        K.matrix_to_quaternion(R)
    with pytest.raises(K.KernelError, match="must be a NumPy array or a CUDA array"):
        K.axis_angle_to_matrix([[0.0, 0.0, 0.0]])


def test_mixed_dtypes_are_refused():
    R = np.broadcast_to(np.eye(3), (1, 24, 3, 3)).copy()
    with pytest.raises(K.KernelError, match="share one dtype"):
        K.kinematic_slerp(R, R.astype(np.float32), np.ones((1, 24)), PARENTS)


@pytest.mark.parametrize("parents,msg", [
    (np.r_[PARENTS[1:], -1], r"parents\[0\] must be -1"),
    (np.r_[-1, 2, PARENTS[2:]], r"topologically ordered .* parents\[1\] = 2"),
    (PARENTS[:23], r"parents must be an integer array of shape \(24,\)"),
    (PARENTS.astype(np.float32), "integer array"),
])
def test_bad_kinematic_trees_are_refused(parents, msg):
    R = np.broadcast_to(np.eye(3), (1, 24, 3, 3)).copy()
    with pytest.raises(K.KernelError, match=msg):
        K.kinematic_slerp(R, R, np.ones((1, 24)), parents)


def test_cuda_inputs_without_cuda_build_or_device_say_so():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert K.cuda_available() is False  # no device here, whatever was compiled


@pytest.mark.gpu
def test_cuda_launch_runs_on_the_inputs_device():
    """An input on cuda:1 while cuda:0 is current: the kernel runs on cuda:1 (no "invalid
    argument" / wrong-device access) and the caller's current device is restored."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(16, 3)).astype(np.float32)
    torch.cuda.set_device(0)
    got = K.axis_angle_to_matrix(torch.from_numpy(aa).to("cuda:1"))
    torch.cuda.synchronize("cuda:1")
    assert got.device == torch.device("cuda:1") and torch.cuda.current_device() == 0
    np.testing.assert_allclose(got.cpu().numpy(), O.axis_angle_to_matrix(aa), atol=1e-5)
