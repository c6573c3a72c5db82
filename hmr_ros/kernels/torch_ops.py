"""Differentiable PyTorch versions of the package's geometric kernels.

These are the kernels the training code back-propagates through, and the readable reference that
sits beside the fast C++/CUDA kernels (``csrc/``): same names, same semantics, same edge cases.
The float64 NumPy oracles in ``tests/oracles.py`` pin the semantics for both.

Conventions (DESIGN.md §4):

* Rotation matrices are the interchange format. Matrices act on column vectors.
* Quaternions are ``(w, x, y, z)``, returned canonicalised to ``w >= 0``. From matrices they are
  computed with Shepperd's method (the largest of ``4w², 4x², 4y², 4z²`` is the pivot, first index
  on ties), so at exactly 180° (``w == 0``) the pivot component -- the largest axis component -- is
  positive.
* 6D = the first two **columns** of the matrix, laid out ``(R00, R10, R20, R01, R11, R21)``
  (Zhou et al. 2019). SPIN stores rows instead; we do not.
* Axis-angle: direction = axis, norm = angle. Returned angles lie in ``[0, π]``; at exactly π both
  ``±axis`` are the same rotation and the sign follows the quaternion rule above.
* "Absolute" = rotation of a body part in the camera frame, "relative" = w.r.t. the parent joint;
  ``parents`` is topologically ordered (``parents[i] < i``, root has -1).

All functions are pure, batch over leading dimensions (empty batches included), keep the device
and dtype of their inputs, and are safe under autograd: small-angle cases use Taylor expansions
selected with ``torch.where`` on *safe* inputs, so gradients are finite at exactly zero rotation.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "slerp",
    "slerp_matrix",
    "relative_to_absolute",
    "absolute_to_relative",
    "kinematic_slerp",
    "match_hypotheses",
    "lbs",
    "iuv_warp",
    "part_visibility",
]

Parents = Union[Tensor, Sequence[int]]

#: below this squared angle (rad²) the trigonometric ratios use their Taylor series; the first
#: omitted term is O(θ⁶) ≈ 1e-18 relative, below float64 precision.
SMALL_ANGLE_SQ = 1e-6
#: slerp falls back to normalised lerp above this quaternion cosine (≈ 3.6° apart), where
#: sin θ in the slerp denominator would lose precision.
SLERP_LERP_DOT = 0.9995
#: floor on the vector norm in the 6D Gram-Schmidt (as ``torch.nn.functional.normalize``), so a
#: degenerate 6D input gives a finite (non-rotation) matrix instead of NaNs during training.
NORM_EPS = 1e-12


def _parent_list(parents: Parents) -> list:
    """Parents as Python ints, checked topologically ordered (the tree walks rely on it)."""
    out = [int(p) for p in (parents.tolist() if hasattr(parents, "tolist") else parents)]
    for i, p in enumerate(out):
        if p >= i or (p < 0 and p != -1):
            raise ValueError(f"parents must satisfy -1 <= parents[i] < i; parents[{i}] = {p}")
    return out


def _skew(v: Tensor) -> Tensor:
    """Cross-product matrix [v]x, so that [v]x @ u = v × u.  ... x 3 -> ... x 3 x 3"""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape[:-1] + (3, 3))


def _canonical(q: Tensor) -> Tensor:
    """Flip quaternions to w >= 0 (q and -q are the same rotation)."""
    return torch.where(q[..., :1] < 0, -q, q)


# --------------------------------------------------------------------------------------------
# Rotation conversions
# --------------------------------------------------------------------------------------------


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rodrigues' formula ``R = I + A(θ) K + B(θ) K²`` with ``K = [aa]x`` (unnormalised).

    ``A = sin θ / θ`` and ``B = (1 - cos θ) / θ² = 2 sin²(θ/2) / θ²`` (cancellation-free form);
    both use their Taylor series near θ = 0 so value and gradient are exact there.

    aa: ... x 3  ->  ... x 3 x 3
    """
    # 1. Squared angle; sqrt only on a safe value so d sqrt / dθ² never sees 0
    theta_sq = (aa * aa).sum(-1)  # ...
    small = theta_sq < SMALL_ANGLE_SQ
    theta = torch.where(small, torch.ones_like(theta_sq), theta_sq).sqrt()
    # 2. Coefficients, Taylor series where small
    a = torch.where(small, 1 - theta_sq / 6 + theta_sq**2 / 120, torch.sin(theta) / theta)
    half_sin = torch.sin(theta / 2)
    b = torch.where(small, 0.5 - theta_sq / 24 + theta_sq**2 / 720, 2 * half_sin**2 / theta**2)
    # 3. R = I + A K + B K²
    k = _skew(aa)  # ... x 3 x 3
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_quaternion(rotmat: Tensor) -> Tensor:
    """Shepperd's method: divide by the largest of 4w², 4x², 4y², 4z², never by a small number.

    Each candidate row ``c_k = 4 q_k · q``; the row with the largest ``4 q_k²`` (first on ties)
    is normalised, ``q = c_k / |c_k|`` -- which also projects slightly non-orthonormal inputs to a
    unit quaternion. Result canonicalised to w >= 0; at w == 0 the pivot component is > 0.

    rotmat: ... x 3 x 3  ->  ... x 4 (w, x, y, z)
    """
    m = rotmat
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 1. 4·(w², x², y², z²) from the diagonal
    q_abs_sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )  # ... x 4
    # 2. Candidate k = 4 q_k (w, x, y, z); rows: pivot w, x, y, z
    candidates = torch.stack(
        [
            torch.stack([q_abs_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, q_abs_sq[..., 1], m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, q_abs_sq[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, q_abs_sq[..., 3]], -1),
        ],
        dim=-2,
    )  # ... x 4 x 4
    # 3. Pick the best-conditioned row and normalise it
    pivot = q_abs_sq.argmax(dim=-1)  # ...
    index = pivot[..., None, None].expand(pivot.shape + (1, 4))
    best = candidates.gather(-2, index).squeeze(-2)  # ... x 4
    q = best / best.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    return _canonical(q)


def quaternion_to_matrix(quat: Tensor) -> Tensor:
    """Rotation matrix of a quaternion; the input is normalised first (any non-zero scale).

    A zero quaternion gives NaN (there is no rotation to return).

    quat: ... x 4 (w, x, y, z)  ->  ... x 3 x 3
    """
    # 1. Normalise: s = 2 / |q|²
    w, x, y, z = quat.unbind(-1)
    s = 2.0 / (quat * quat).sum(-1)  # ...
    # 2. Standard homogeneous form
    r = torch.stack(
        [
            1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
            s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
            s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
        ],
        dim=-1,
    )  # ... x 9
    return r.reshape(quat.shape[:-1] + (3, 3))


def axis_angle_to_quaternion(aa: Tensor) -> Tensor:
    """``q = (cos(θ/2), sin(θ/2)/θ · aa)``, canonicalised to w >= 0 (angles above π flip).

    aa: ... x 3  ->  ... x 4
    """
    # 1. Safe angle (see axis_angle_to_matrix)
    theta_sq = (aa * aa).sum(-1, keepdim=True)  # ... x 1
    small = theta_sq < SMALL_ANGLE_SQ
    theta = torch.where(small, torch.ones_like(theta_sq), theta_sq).sqrt()
    # 2. cos(θ/2) and sin(θ/2)/θ with Taylor series near 0
    w = torch.where(small, 1 - theta_sq / 8 + theta_sq**2 / 384, torch.cos(theta / 2))
    k = torch.where(small, 0.5 - theta_sq / 48 + theta_sq**2 / 3840, torch.sin(theta / 2) / theta)
    return _canonical(torch.cat([w, k * aa], dim=-1))


def quaternion_to_axis_angle(quat: Tensor) -> Tensor:
    """Axis-angle of a quaternion (any non-zero scale); angle ``2·atan2(|v|, w)`` in [0, π].

    ``aa = v · 2 atan2(s, w) / s`` with ``s = |v|``; near s = 0 the ratio is the Taylor series of
    ``2 atan(s/w) / s`` so value and gradient stay finite at the identity.

    quat: ... x 4  ->  ... x 3
    """
    # 1. Unit quaternion with w >= 0, so the angle lands in [0, π]
    q = _canonical(quat / quat.norm(dim=-1, keepdim=True))
    w, v = q[..., :1], q[..., 1:]  # ... x 1, ... x 3
    # 2. 2 atan2(s, w) / s, safely
    s_sq = (v * v).sum(-1, keepdim=True)
    small = s_sq < SMALL_ANGLE_SQ
    s = torch.where(small, torch.ones_like(s_sq), s_sq).sqrt()
    w_safe = torch.where(small, w, torch.ones_like(w))  # w ~ 1 where small
    x_sq = s_sq / w_safe**2
    ratio = torch.where(
        small, 2 / w_safe * (1 - x_sq / 3 + x_sq**2 / 5), 2 * torch.atan2(s, w) / s
    )
    return ratio * v


def matrix_to_axis_angle(rotmat: Tensor) -> Tensor:
    """Via the Shepperd quaternion, which is well conditioned at 0 and at π alike.

    rotmat: ... x 3 x 3  ->  ... x 3 (angle in [0, π])
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(rotmat))


def rot6d_to_matrix(rot6d: Tensor) -> Tensor:
    """Gram-Schmidt on the two stored columns: b1 = â1, b2 = (a2 - (b1·a2) b1)^, b3 = b1 × b2.

    Norms are floored at ``NORM_EPS`` (like ``F.normalize``): a degenerate input yields a finite
    matrix with a zero column, not NaN.

    rot6d: ... x 6 (R00, R10, R20, R01, R11, R21)  ->  ... x 3 x 3, columns [b1 b2 b3]
    """
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = u2 / u2.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(rotmat: Tensor) -> Tensor:
    """First two columns, column-major: ... x 3 x 3 -> ... x 6."""
    return rotmat[..., :, :2].transpose(-1, -2).reshape(rotmat.shape[:-2] + (6,))


# --------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------


def slerp(q0: Tensor, q1: Tensor, t: Union[Tensor, float]) -> Tensor:
    """Spherical linear interpolation on the short arc.

    Inputs are normalised; ``q1`` is negated when ``⟨q0, q1⟩ < 0`` (short arc); above a cosine of
    ``SLERP_LERP_DOT`` the result is normalised lerp (slerp's 1/sin θ is ill-conditioned there).
    ``t`` broadcasts against the leading dims and is not clamped (use slerp_matrix for exact,
    clamped endpoints). Output canonicalised to w >= 0.

    q0, q1: ... x 4; t: ... or scalar  ->  ... x 4
    """
    # 1. Unit inputs, short arc
    q0 = q0 / q0.norm(dim=-1, keepdim=True)
    q1 = q1 / q1.norm(dim=-1, keepdim=True)
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)[..., None]  # ... x 1
    dot = (q0 * q1).sum(-1, keepdim=True)  # ... x 1
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs()
    # 2. Nearly parallel: normalised lerp
    near = dot > SLERP_LERP_DOT
    lerp = q0 + t * (q1 - q0)
    lerp = lerp / lerp.norm(dim=-1, keepdim=True)
    # 3. Slerp proper; acos evaluated on a safe value where the lerp branch is taken
    theta = torch.acos(torch.where(near, torch.zeros_like(dot), dot))
    sph = (torch.sin((1 - t) * theta) * q0 + torch.sin(t * theta) * q1) / torch.sin(theta)
    return _canonical(torch.where(near, lerp, sph))


def slerp_matrix(r0: Tensor, r1: Tensor, t: Union[Tensor, float]) -> Tensor:
    """Slerp between rotation matrices (through quaternions) with exact endpoints.

    ``t`` is clamped to [0, 1]; where ``t <= 0`` the result *is* ``r0`` and where ``t >= 1`` it
    *is* ``r1`` (bit for bit, no quaternion round trip), so the visible / global extremes of
    kinematic_slerp are preserved exactly. NaN ``t`` gives a NaN matrix.

    r0, r1: ... x 3 x 3; t: ... or scalar  ->  ... x 3 x 3
    """
    t = torch.as_tensor(t, dtype=r0.dtype, device=r0.device)
    # 1. Interior: slerp of Shepperd quaternions
    q = slerp(matrix_to_quaternion(r0), matrix_to_quaternion(r1), t.clamp(0, 1))
    out = quaternion_to_matrix(q)  # ... x 3 x 3
    # 2. Exact endpoints
    out = torch.where((t >= 1)[..., None, None], r1, out)
    return torch.where((t <= 0)[..., None, None], r0, out)


# --------------------------------------------------------------------------------------------
# Kinematic tree
# --------------------------------------------------------------------------------------------


def relative_to_absolute(rel: Tensor, parents: Parents) -> Tensor:
    """Chain relative rotations down the tree: abs[0] = rel[0], abs[i] = abs[parent] @ rel[i].

    rel: ... x J x 3 x 3  ->  ... x J x 3 x 3
    """
    par = _parent_list(parents)
    out: list = []
    for i, p in enumerate(par):
        out.append(rel[..., i, :, :] if p < 0 else out[p] @ rel[..., i, :, :])
    return torch.stack(out, dim=-3) if out else rel.clone()


def absolute_to_relative(absolute: Tensor, parents: Parents) -> Tensor:
    """Inverse of relative_to_absolute: rel[i] = abs[parent]ᵀ @ abs[i], root unchanged.

    absolute: ... x J x 3 x 3  ->  ... x J x 3 x 3
    """
    par = _parent_list(parents)
    out = [
        absolute[..., i, :, :] if p < 0
        else absolute[..., p, :, :].transpose(-1, -2) @ absolute[..., i, :, :]
        for i, p in enumerate(par)
    ]
    return torch.stack(out, dim=-3) if out else absolute.clone()


def kinematic_slerp(
    abs_vis: Tensor, rel_glob: Tensor, weight: Tensor, parents: Parents
) -> Tuple[Tensor, Tensor]:
    """Paper eq. 5: blend visible-head absolute rotations into the global-head chain.

    Walking from the root, each joint's prediction from the global head, expressed in the camera
    frame through the *already blended* parent, is slerped towards the visible estimate by its
    visibility: ``abs_out[i] = slerp_matrix(abs_out[parent] @ rel_glob[i], abs_vis[i], w[i])``
    (root: ``slerp_matrix(rel_glob[0], abs_vis[0], w[0])``). Children thus follow a corrected
    parent instead of an unrelated global-head chain.

    Weights are clamped to [0, 1]; ``w = 1`` returns ``abs_vis`` exactly, ``w = 0`` the chain of
    ``rel_glob`` exactly. A NaN weight gives NaN for that joint and every descendant.

    abs_vis, rel_glob: B x J x 3 x 3; weight: B x J
    ->  rel_out (B x J x 3 x 3, w.r.t. parent), abs_out (B x J x 3 x 3, camera frame)
    """
    par = _parent_list(parents)
    w = weight.to(abs_vis.dtype)  # B x J; slerp_matrix clamps to [0, 1]
    # 1. Walk the tree, blending each joint through its blended parent
    abs_list: list = []
    for i, p in enumerate(par):
        pred = rel_glob[:, i] if p < 0 else abs_list[p] @ rel_glob[:, i]  # B x 3 x 3
        abs_list.append(slerp_matrix(pred, abs_vis[:, i], w[:, i]))
    abs_out = torch.stack(abs_list, dim=1)  # B x J x 3 x 3
    # 2. Back to parent-relative rotations
    return absolute_to_relative(abs_out, par), abs_out


def match_hypotheses(
    abs_vis: Tensor, hyp_rel: Tensor, weight: Tensor, parents: Parents
) -> Tuple[Tensor, Tensor]:
    """Paper eq. 4: pick the global-head hypothesis that best agrees with the visible parts.

    ``score_k = Σ_i w_i · |⟨q_vis_i, q_hyp_k,i⟩|`` over absolute rotations (the absolute value
    makes the quaternion cosine sign-invariant); ``best = argmax_k score_k``, first index on ties
    and, as with torch/numpy argmax, a NaN score counts as the maximum. Weights are clamped to
    [0, 1] like kinematic_slerp's.

    abs_vis: B x J x 3 x 3; hyp_rel: B x K x J x 3 x 3; weight: B x J
    ->  best (B,) int64, score (B x K)
    """
    if hyp_rel.shape[1] == 0:
        raise ValueError("match_hypotheses needs at least one hypothesis (K == 0)")
    w = weight.to(abs_vis.dtype).clamp(0, 1)  # B x J
    # 1. Chain each hypothesis to absolute rotations
    hyp_abs = relative_to_absolute(hyp_rel, parents)  # B x K x J x 3 x 3
    # 2. Sign-invariant quaternion cosine per joint
    q_vis = matrix_to_quaternion(abs_vis)  # B x J x 4
    q_hyp = matrix_to_quaternion(hyp_abs)  # B x K x J x 4
    cos = (q_vis[:, None] * q_hyp).sum(-1).abs()  # B x K x J
    # 3. Visibility-weighted score, best hypothesis
    score = (cos * w[:, None]).sum(-1)  # B x K
    return score.argmax(dim=1), score


# --------------------------------------------------------------------------------------------
# Body model
# --------------------------------------------------------------------------------------------


def lbs(
    betas: Tensor,
    rotmats: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor,
    j_regressor: Tensor,
    parents: Parents,
    weights: Tensor,
) -> Tuple[Tensor, Tensor]:
    """SMPL forward pass: shape and pose blend shapes, then linear blend skinning.

    Same result as ``smplx.lbs.lbs(..., pose2rot=False)``. The rigid chain is kept as a rotation
    plus a translation per joint (rather than smplx's 4x4 matrices): same maths, fewer flops.
    Model tensors are moved to the dtype/device of ``rotmats``.

    betas: B x NB; rotmats: B x J x 3 x 3 (relative); v_template: V x 3; shapedirs: V x 3 x NB;
    posedirs: 9(J-1) x 3V; j_regressor: J x V; weights: V x J
    ->  vertices (B x V x 3), joints (B x J x 3, posed: smplx's J_transformed)
    """
    dtype, device = rotmats.dtype, rotmats.device
    v_template, shapedirs, posedirs, j_regressor, weights = (
        x.to(dtype=dtype, device=device)
        for x in (v_template, shapedirs, posedirs, j_regressor, weights)
    )
    betas = betas.to(dtype=dtype, device=device)
    par = _parent_list(parents)
    batch, num_joints = rotmats.shape[0], rotmats.shape[1]
    num_verts = v_template.shape[-2]
    # 1. Shape blend shapes
    v_shaped = v_template + torch.einsum("bl,vkl->bvk", betas, shapedirs)  # B x V x 3
    # 2. Rest-pose joints regressed from the shaped mesh
    joints = torch.einsum("jv,bvk->bjk", j_regressor, v_shaped)  # B x J x 3
    # 3. Pose blend shapes from (R - I) of every non-root joint
    eye = torch.eye(3, dtype=dtype, device=device)
    pose_feature = (rotmats[:, 1:] - eye).reshape(batch, (num_joints - 1) * 9)  # B x 207
    v_posed = v_shaped + (pose_feature @ posedirs).reshape(batch, num_verts, 3)  # B x V x 3
    # 4. Rigid chain: G_i = G_parent ∘ (R_i, J_i - J_parent); posed joints are G_i's translation
    glob_r: list = []
    glob_t: list = []
    for i, p in enumerate(par):
        if p < 0:
            glob_r.append(rotmats[:, i])
            glob_t.append(joints[:, i])
        else:
            offset = (joints[:, i] - joints[:, p])[..., None]  # B x 3 x 1
            glob_r.append(glob_r[p] @ rotmats[:, i])
            glob_t.append(glob_t[p] + (glob_r[p] @ offset)[..., 0])
    rot = torch.stack(glob_r, dim=1)  # B x J x 3 x 3
    posed_joints = torch.stack(glob_t, dim=1)  # B x J x 3
    # 5. Skinning transforms relative to the rest pose: x -> G_R (x - J) + G_t
    trans = posed_joints - (rot @ joints[..., None])[..., 0]  # B x J x 3
    # 6. Blend per vertex and apply
    vert_r = torch.einsum("vj,bjkl->bvkl", weights, rot)  # B x V x 3 x 3
    vert_t = weights @ trans  # B x V x 3
    vertices = (vert_r @ v_posed[..., None])[..., 0] + vert_t  # B x V x 3
    return vertices, posed_joints


# --------------------------------------------------------------------------------------------
# Image -> UV atlas
# --------------------------------------------------------------------------------------------


def iuv_warp(
    features: Tensor, iuv: Tensor, size: int, fg_threshold: float = 0.5
) -> Tensor:
    """Splat image features into the body's UV atlas (nearest texel, mean per texel).

    Foreground pixels (``I > fg_threshold``) go to texel ``col = floor(U·(S-1) + 0.5)``,
    ``row = floor(V·(S-1) + 0.5)`` with U, V clamped to [0, 1] first (round half up, *not*
    torch.round's half-to-even; computed in the IUV dtype). Pixels whose I, U or V is NaN are
    skipped. Per texel the output holds the mean feature vector, the mean normalised pixel
    position ``(2x/(W-1) - 1, 2y/(H-1) - 1)`` (0 along a size-1 axis) and an occupancy flag;
    empty texels are all zero. Differentiable w.r.t. ``features`` (index_add_; its float
    atomics make CUDA sums order-nondeterministic in the last bits).

    features: B x C x H x W; iuv: B x 3 x H x W  ->  B x (C+3) x S x S
    channels [0:C] mean features, [C] mean x, [C+1] mean y, [C+2] occupancy (0/1)
    """
    batch, chans, height, width = features.shape
    s = int(size)
    dtype, device = features.dtype, features.device
    iuv = iuv.to(device)
    # 1. Which pixels splat, and to which texel
    i_ch, u_ch, v_ch = iuv[:, 0], iuv[:, 1], iuv[:, 2]  # B x H x W
    valid = (i_ch > fg_threshold) & ~torch.isnan(u_ch) & ~torch.isnan(v_ch)
    u = torch.where(valid, u_ch, torch.zeros_like(u_ch)).clamp(0, 1)
    v = torch.where(valid, v_ch, torch.zeros_like(v_ch)).clamp(0, 1)
    col = torch.floor(u * (s - 1) + 0.5).long()
    row = torch.floor(v * (s - 1) + 0.5).long()
    b_idx = torch.arange(batch, device=device).view(batch, 1, 1)
    # invalid pixels go to a dump bin at index B·S·S that is dropped afterwards
    flat = torch.where(valid, (b_idx * s + row) * s + col, torch.full_like(col, batch * s * s))
    # 2. Per-pixel payload: features, normalised x, normalised y, 1 (for the count)
    xs = torch.arange(width, dtype=dtype, device=device)
    ys = torch.arange(height, dtype=dtype, device=device)
    xs = 2 * xs / (width - 1) - 1 if width > 1 else torch.zeros_like(xs)
    ys = 2 * ys / (height - 1) - 1 if height > 1 else torch.zeros_like(ys)
    payload = torch.cat(
        [
            features,
            xs.view(1, 1, 1, width).expand(batch, 1, height, width),
            ys.view(1, 1, height, 1).expand(batch, 1, height, width),
            torch.ones(batch, 1, height, width, dtype=dtype, device=device),
        ],
        dim=1,
    )  # B x (C+3) x H x W
    payload = payload.permute(0, 2, 3, 1).reshape(-1, chans + 3)  # BHW x (C+3)
    # 3. Sum per texel, then mean
    sums = torch.zeros(batch * s * s + 1, chans + 3, dtype=dtype, device=device)
    sums = sums.index_add(0, flat.reshape(-1), payload)[:-1]  # BSS x (C+3)
    count = sums[:, -1:]  # BSS x 1
    mean = sums[:, :-1] / count.clamp_min(1)
    occupancy = (count > 0).to(dtype)
    out = torch.cat([mean, occupancy], dim=1).view(batch, s, s, chans + 3)
    return out.permute(0, 3, 1, 2).contiguous()


def part_visibility(
    occupancy: Tensor, atlas_part_map: Tensor, num_parts: int = 24, soft: bool = False
) -> Tensor:
    """Paper eq. 1: ``ω_i = min(1, 2·covered_i / total_i)`` per body part.

    A part counts as fully visible once half its atlas texels are covered (one view sees at most
    about half of a limb's surface). ``total_i`` = texels of part i in the atlas, ``covered_i`` =
    those with occupancy > 0.5 (``soft=True``: the sum of occupancy values instead, which is
    differentiable -- for training). Parts with no texels get 0; texel ids outside
    ``[0, num_parts)`` (-1 = background) are ignored.

    occupancy: B x S x S; atlas_part_map: S x S int  ->  B x num_parts
    """
    batch, texels = occupancy.shape[0], occupancy.shape[-2] * occupancy.shape[-1]
    dtype = occupancy.dtype if occupancy.is_floating_point() else torch.float32
    device = occupancy.device
    # 1. Part id per texel, out-of-range ids to a dump bin at num_parts
    ids = atlas_part_map.to(device=device).long().reshape(-1)  # SS
    ids = torch.where((ids >= 0) & (ids < num_parts), ids, torch.full_like(ids, num_parts))
    # 2. Covered and total texels per part
    occ = occupancy.reshape(batch, texels)
    occ = occ.to(dtype) if soft else (occ > 0.5).to(dtype)  # B x SS
    covered = torch.zeros(batch, num_parts + 1, dtype=dtype, device=device)
    covered = covered.index_add(1, ids, occ)[:, :num_parts]  # B x P
    total = torch.zeros(num_parts + 1, dtype=dtype, device=device)
    total = total.index_add(0, ids, torch.ones_like(ids, dtype=dtype))[:num_parts]  # P
    # 3. ω = min(1, 2 covered / total); empty parts have covered = 0, so the floor gives 0
    return (2 * covered / total.clamp_min(1)).clamp(max=1)
