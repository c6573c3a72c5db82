"""Float64 NumPy reference oracles for the geometric kernels.

The test oracle for both ``hmr_ros.kernels.torch_ops`` and the C++/CUDA kernels: written
independently of both, one element at a time, for clarity rather than speed. Inputs of any float
dtype are promoted to float64. No torch here, on purpose.

Where the semantics are a choice rather than maths, this file is where the choice is pinned:

* Quaternions ``(w, x, y, z)``, ``w >= 0``. Matrix -> quaternion by Shepperd's method: pivot =
  argmax of ``(1+m00+m11+m22, 1+m00-m11-m22, 1-m00+m11-m22, 1-m00-m11+m22)`` (first on ties),
  candidate row normalised to unit length; so at w == 0 the pivot component is > 0.
* 6D = first two matrix columns ``(R00, R10, R20, R01, R11, R21)``; Gram-Schmidt norms floored
  at 1e-12.
* slerp: inputs normalised; flip q1 when dot < 0; normalised lerp when dot > 0.9995.
* slerp_matrix: t clamped; ``t <= 0`` -> R0 and ``t >= 1`` -> R1 exactly.
* iuv_warp texel: ``floor(clamp(u, 0, 1)·(S-1) + 0.5)``.
"""

from __future__ import annotations

import math

import numpy as np

SLERP_LERP_DOT = 0.9995
NORM_EPS = 1e-12
_TINY = 1e-8  # below this angle (or |v|) first-order series are exact to float64


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _skew(v) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _map(fn, x: np.ndarray, in_dims: int, out_shape: tuple) -> np.ndarray:
    """Apply ``fn`` to every trailing ``in_dims``-dimensional element of ``x``."""
    lead = x.shape[: x.ndim - in_dims]
    out = np.empty(lead + out_shape)
    for idx in np.ndindex(*lead):
        out[idx] = fn(x[idx])
    return out


def _parents(parents) -> list:
    return [int(p) for p in np.asarray(parents).reshape(-1)]


# ------------------------------------------------------------------------------------------
# Rotations
# ------------------------------------------------------------------------------------------


def _aa_to_R(a: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(a))
    if theta < _TINY:
        k = _skew(a)
        return np.eye(3) + k + 0.5 * k @ k
    n = a / theta
    return (
        math.cos(theta) * np.eye(3)
        + math.sin(theta) * _skew(n)
        + (1.0 - math.cos(theta)) * np.outer(n, n)
    )


def axis_angle_to_matrix(aa) -> np.ndarray:
    """Rodrigues with a unit axis: R = cos θ I + sin θ [n]x + (1 - cos θ) n nᵀ."""
    return _map(_aa_to_R, _f64(aa), 1, (3, 3))


def _R_to_aa(r: np.ndarray) -> np.ndarray:
    # v = 2 sin θ · n from the antisymmetric part, cos θ from the trace
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    sin_t = 0.5 * float(np.linalg.norm(v))
    cos_t = 0.5 * (float(np.trace(r)) - 1.0)
    theta = math.atan2(sin_t, cos_t)
    if theta < _TINY:
        return 0.5 * v
    if cos_t > -0.5:
        return theta * v / (2.0 * sin_t)
    # near π the antisymmetric part vanishes: use (R + Rᵀ)/2 - cos θ I = (1 - cos θ) n nᵀ
    sym = 0.5 * (r + r.T) - cos_t * np.eye(3)
    k = int(np.argmax(np.diag(sym)))
    n = sym[:, k] / np.linalg.norm(sym[:, k])
    if float(n @ v) < 0:
        n = -n
    return theta * n


def matrix_to_axis_angle(rotmat) -> np.ndarray:
    """Angle from atan2(|antisym|, trace); axis from the antisymmetric part, or from the
    symmetric part when θ > 120° (the antisymmetric part vanishes at π). Angle in [0, π]."""
    return _map(_R_to_aa, _f64(rotmat), 2, (3,))


def _R_to_q(r: np.ndarray) -> np.ndarray:
    m = r
    diag4 = [
        1 + m[0, 0] + m[1, 1] + m[2, 2],
        1 + m[0, 0] - m[1, 1] - m[2, 2],
        1 - m[0, 0] + m[1, 1] - m[2, 2],
        1 - m[0, 0] - m[1, 1] + m[2, 2],
    ]
    k = int(np.argmax(diag4))
    if k == 0:
        c = [diag4[0], m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]
    elif k == 1:
        c = [m[2, 1] - m[1, 2], diag4[1], m[1, 0] + m[0, 1], m[0, 2] + m[2, 0]]
    elif k == 2:
        c = [m[0, 2] - m[2, 0], m[1, 0] + m[0, 1], diag4[2], m[1, 2] + m[2, 1]]
    else:
        c = [m[1, 0] - m[0, 1], m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], diag4[3]]
    q = np.array(c) / max(float(np.linalg.norm(c)), NORM_EPS)
    return -q if q[0] < 0 else q


def matrix_to_quaternion(rotmat) -> np.ndarray:
    """Shepperd's method (see module doc for the pinned pivot rule)."""
    return _map(_R_to_q, _f64(rotmat), 2, (4,))


def _q_to_R(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q)
    w, v = q[0], q[1:]
    return (w * w - v @ v) * np.eye(3) + 2.0 * np.outer(v, v) + 2.0 * w * _skew(v)


def quaternion_to_matrix(quat) -> np.ndarray:
    """R = (w² - |v|²) I + 2 v vᵀ + 2 w [v]x of the normalised quaternion."""
    return _map(_q_to_R, _f64(quat), 1, (3, 3))


def _aa_to_q(a: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(a))
    if theta < _TINY:
        q = np.concatenate([[1.0], 0.5 * a])
    else:
        q = np.concatenate([[math.cos(theta / 2)], math.sin(theta / 2) * a / theta])
    return -q if q[0] < 0 else q


def axis_angle_to_quaternion(aa) -> np.ndarray:
    return _map(_aa_to_q, _f64(aa), 1, (4,))


def _q_to_aa(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    w, v = q[0], q[1:]
    s = float(np.linalg.norm(v))
    if s < _TINY:
        return 2.0 * v / w
    return 2.0 * math.atan2(s, w) * v / s


def quaternion_to_axis_angle(quat) -> np.ndarray:
    """Angle 2·atan2(|v|, w) in [0, π] after flipping to w >= 0."""
    return _map(_q_to_aa, _f64(quat), 1, (3,))


def _r6_to_R(x: np.ndarray) -> np.ndarray:
    a1, a2 = x[:3], x[3:]
    b1 = a1 / max(float(np.linalg.norm(a1)), NORM_EPS)
    u2 = a2 - (b1 @ a2) * b1
    b2 = u2 / max(float(np.linalg.norm(u2)), NORM_EPS)
    b3 = np.cross(b1, b2)
    return np.column_stack([b1, b2, b3])


def rot6d_to_matrix(rot6d) -> np.ndarray:
    return _map(_r6_to_R, _f64(rot6d), 1, (3, 3))


def matrix_to_rot6d(rotmat) -> np.ndarray:
    return _map(lambda r: np.concatenate([r[:, 0], r[:, 1]]), _f64(rotmat), 2, (6,))


# ------------------------------------------------------------------------------------------
# Interpolation
# ------------------------------------------------------------------------------------------


def _slerp1(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    q0 = q0 / np.linalg.norm(q0)
    q1 = q1 / np.linalg.norm(q1)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > SLERP_LERP_DOT:
        q = q0 + t * (q1 - q0)
        q = q / np.linalg.norm(q)
    else:
        theta = math.acos(dot)
        q = (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / math.sin(theta)
    return -q if q[0] < 0 else q


def slerp(q0, q1, t) -> np.ndarray:
    q0, q1, t = _f64(q0), _f64(q1), _f64(t)
    lead = np.broadcast_shapes(q0.shape[:-1], q1.shape[:-1], t.shape)
    q0 = np.broadcast_to(q0, lead + (4,))
    q1 = np.broadcast_to(q1, lead + (4,))
    t = np.broadcast_to(t, lead)
    out = np.empty(lead + (4,))
    for idx in np.ndindex(*lead):
        out[idx] = _slerp1(q0[idx], q1[idx], float(t[idx]))
    return out


def _slerp_matrix1(r0: np.ndarray, r1: np.ndarray, t: float) -> np.ndarray:
    if t <= 0:
        return r0.copy()
    if t >= 1:
        return r1.copy()
    return _q_to_R(_slerp1(_R_to_q(r0), _R_to_q(r1), t))  # NaN t falls through to NaN


def slerp_matrix(r0, r1, t) -> np.ndarray:
    r0, r1, t = _f64(r0), _f64(r1), _f64(t)
    lead = np.broadcast_shapes(r0.shape[:-2], r1.shape[:-2], t.shape)
    r0 = np.broadcast_to(r0, lead + (3, 3))
    r1 = np.broadcast_to(r1, lead + (3, 3))
    t = np.broadcast_to(t, lead)
    out = np.empty(lead + (3, 3))
    for idx in np.ndindex(*lead):
        out[idx] = _slerp_matrix1(r0[idx], r1[idx], float(t[idx]))
    return out


# ------------------------------------------------------------------------------------------
# Kinematic tree
# ------------------------------------------------------------------------------------------


def relative_to_absolute(rel, parents) -> np.ndarray:
    rel = _f64(rel)
    par = _parents(parents)
    out = np.empty_like(rel)
    for i, p in enumerate(par):
        out[..., i, :, :] = rel[..., i, :, :] if p < 0 else out[..., p, :, :] @ rel[..., i, :, :]
    return out


def absolute_to_relative(absolute, parents) -> np.ndarray:
    absolute = _f64(absolute)
    par = _parents(parents)
    out = np.empty_like(absolute)
    for i, p in enumerate(par):
        a_i = absolute[..., i, :, :]
        out[..., i, :, :] = a_i if p < 0 else np.swapaxes(absolute[..., p, :, :], -1, -2) @ a_i
    return out


def kinematic_slerp(abs_vis, rel_glob, weight, parents):
    """Paper eq. 5, one batch element and one joint at a time. Returns (rel_out, abs_out)."""
    abs_vis, rel_glob, weight = _f64(abs_vis), _f64(rel_glob), _f64(weight)
    par = _parents(parents)
    batch, num_joints = abs_vis.shape[:2]
    abs_out = np.empty((batch, num_joints, 3, 3))
    rel_out = np.empty((batch, num_joints, 3, 3))
    for b in range(batch):
        for i, p in enumerate(par):
            w = float(np.clip(weight[b, i], 0.0, 1.0))  # NaN stays NaN
            pred = rel_glob[b, i] if p < 0 else abs_out[b, p] @ rel_glob[b, i]
            abs_out[b, i] = _slerp_matrix1(pred, abs_vis[b, i], w)
            rel_out[b, i] = abs_out[b, i] if p < 0 else abs_out[b, p].T @ abs_out[b, i]
    return rel_out, abs_out


def match_hypotheses(abs_vis, hyp_rel, weight, parents):
    """Paper eq. 4. Returns (best (B,) int64, score (B, K)); argmax is numpy's (first on ties,
    NaN counts as the maximum). Weights clamped to [0, 1]."""
    abs_vis, hyp_rel, weight = _f64(abs_vis), _f64(hyp_rel), _f64(weight)
    batch, num_hyp = hyp_rel.shape[:2]
    if num_hyp == 0:
        raise ValueError("match_hypotheses needs at least one hypothesis (K == 0)")
    par = _parents(parents)
    score = np.zeros((batch, num_hyp))
    best = np.zeros(batch, dtype=np.int64)
    for b in range(batch):
        for k in range(num_hyp):
            hyp_abs = relative_to_absolute(hyp_rel[b, k], par)
            for i in range(len(par)):
                w = float(np.clip(weight[b, i], 0.0, 1.0))
                cos = abs(float(_R_to_q(abs_vis[b, i]) @ _R_to_q(hyp_abs[i])))
                score[b, k] += w * cos
        best[b] = int(np.argmax(score[b]))
    return best, score


# ------------------------------------------------------------------------------------------
# Body model
# ------------------------------------------------------------------------------------------


def _homogeneous(r: np.ndarray, t: np.ndarray) -> np.ndarray:
    g = np.eye(4)
    g[:3, :3] = r
    g[:3, 3] = t
    return g


def lbs(betas, rotmats, v_template, shapedirs, posedirs, j_regressor, parents, weights):
    """SMPL forward with 4x4 homogeneous transforms, one batch element at a time.
    Returns (vertices (B, V, 3), posed joints (B, J, 3))."""
    betas, rotmats = _f64(betas), _f64(rotmats)
    v_template, shapedirs, posedirs = _f64(v_template), _f64(shapedirs), _f64(posedirs)
    j_regressor, weights = _f64(j_regressor), _f64(weights)
    par = _parents(parents)
    batch, num_joints = rotmats.shape[:2]
    num_verts = v_template.shape[0]
    verts = np.empty((batch, num_verts, 3))
    joints_out = np.empty((batch, num_joints, 3))
    for b in range(batch):
        v_shaped = v_template + shapedirs @ betas[b]  # V x 3
        joints = j_regressor @ v_shaped  # J x 3
        pose_feature = (rotmats[b, 1:] - np.eye(3)).reshape(-1)
        v_posed = v_shaped + (pose_feature @ posedirs).reshape(num_verts, 3)
        world = []
        for i, p in enumerate(par):
            if p < 0:
                world.append(_homogeneous(rotmats[b, i], joints[i]))
            else:
                world.append(world[p] @ _homogeneous(rotmats[b, i], joints[i] - joints[p]))
        # skinning transform = world transform ∘ translation by -rest joint
        skin = [world[i] @ _homogeneous(np.eye(3), -joints[i]) for i in range(num_joints)]
        for j in range(num_joints):
            joints_out[b, j] = world[j][:3, 3]
        for v in range(num_verts):
            t = sum(weights[v, j] * skin[j] for j in range(num_joints))
            verts[b, v] = (t @ np.append(v_posed[v], 1.0))[:3]
    return verts, joints_out


# ------------------------------------------------------------------------------------------
# Image -> UV atlas
# ------------------------------------------------------------------------------------------


def iuv_warp(features, iuv, size, fg_threshold=0.5) -> np.ndarray:
    """Mean feature / mean normalised pixel position / occupancy per nearest texel."""
    features, iuv = _f64(features), _f64(iuv)
    batch, chans, height, width = features.shape
    s = int(size)
    sums = np.zeros((batch, chans + 2, s, s))
    count = np.zeros((batch, s, s))
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                i, u, v = iuv[b, :, y, x]
                if math.isnan(i) or math.isnan(u) or math.isnan(v) or not i > fg_threshold:
                    continue
                u = min(max(u, 0.0), 1.0)
                v = min(max(v, 0.0), 1.0)
                col = int(math.floor(u * (s - 1) + 0.5))
                row = int(math.floor(v * (s - 1) + 0.5))
                xn = 2.0 * x / (width - 1) - 1.0 if width > 1 else 0.0
                yn = 2.0 * y / (height - 1) - 1.0 if height > 1 else 0.0
                sums[b, :chans, row, col] += features[b, :, y, x]
                sums[b, chans, row, col] += xn
                sums[b, chans + 1, row, col] += yn
                count[b, row, col] += 1
    out = np.zeros((batch, chans + 3, s, s))
    for b in range(batch):
        for row in range(s):
            for col in range(s):
                n = count[b, row, col]
                if n > 0:
                    out[b, : chans + 2, row, col] = sums[b, :, row, col] / n
                    out[b, chans + 2, row, col] = 1.0
    return out


def part_visibility(occupancy, atlas_part_map, num_parts=24, soft=False) -> np.ndarray:
    """ω_i = min(1, 2·covered_i/total_i); 0 for parts without texels; ids outside
    [0, num_parts) ignored. ``soft`` sums occupancy values instead of counting > 0.5."""
    occupancy = _f64(occupancy)
    atlas = np.asarray(atlas_part_map).astype(np.int64)
    batch = occupancy.shape[0]
    total = np.zeros(num_parts)
    covered = np.zeros((batch, num_parts))
    for r in range(atlas.shape[0]):
        for c in range(atlas.shape[1]):
            part = int(atlas[r, c])
            if not 0 <= part < num_parts:
                continue
            total[part] += 1
            for b in range(batch):
                o = occupancy[b, r, c]
                covered[b, part] += o if soft else float(o > 0.5)
    omega = np.zeros((batch, num_parts))
    for b in range(batch):
        for part in range(num_parts):
            if total[part] > 0:
                # np.minimum, not min(): a NaN (soft occupancy) must stay NaN
                omega[b, part] = np.minimum(1.0, 2.0 * covered[b, part] / total[part])
    return omega
