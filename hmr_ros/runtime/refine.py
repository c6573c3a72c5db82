"""Optional refinement of a regressed body to the detected 2D keypoints (SMPLify-style).

A few Levenberg-Marquardt steps move the joint rotations, the global orientation and the
translation so that the body's projected joints meet the keypoint model's points, while a prior
keeps every rotation near the regressor's answer (the pose prior: the regressor has seen what
bodies look like; the keypoints only say where joints project). Shape stays the regressor's.

Why LM with analytic Jacobians: the residuals depend on 12 projected joints, so forward
kinematics of the 24 joints is all the model needed per step (the mesh is rebuilt once at the
end with the compiled LBS kernel); the Jacobian of a joint position with respect to a local
rotation increment ``delta_j`` at an ancestor ``j`` is ``-[p_k - p_j]_x A_j`` (``A_j`` the
ancestor's absolute rotation), so one step costs a 75 x 75 solve per person.

Residuals are robust (Huber, threshold ``robust_scale`` torso sizes: a swapped or wrong point
pulls with a bounded force, while a body far from its points still feels them, which a
Geman-McClure weight would not), weighted by the keypoint confidences; points below ``min_confidence`` are ignored, and a person with fewer than
``min_points`` usable points is left as regressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from hmr_ros.body.constants import PARENTS
from hmr_ros.body.keypoints import NUM_COCO17

#: SMPL joint of each COCO-17 body point (shoulders .. ankles); the face points have none
COCO17_BODY = np.array([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], np.int64)
SMPL_FOR_COCO17_BODY = np.array([16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8], np.int64)
NUM_PARAMS = 3 + 24 * 3  # translation, 24 local rotation increments


@dataclass(frozen=True)
class RefineParams:
    iterations: int = 5
    prior_weight: float = 0.05  # per radian of deviation from the regressor, against pixels/torso
    robust_scale: float = 0.3  # Huber threshold, in torso sizes
    min_confidence: float = 0.3
    min_points: int = 6
    damping: float = 1e-2


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = np.zeros(v.shape[:-1])
    return np.stack([np.stack([z, -v[..., 2], v[..., 1]], -1),
                     np.stack([v[..., 2], z, -v[..., 0]], -1),
                     np.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors -> (..., 3, 3)."""
    theta = np.linalg.norm(w, axis=-1, keepdims=True)[..., None]
    k = _skew(w / np.maximum(theta[..., 0], 1e-12))
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def forward_kinematics(rel: np.ndarray, rest_joints: np.ndarray, transl: np.ndarray
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Absolute rotations (24, 3, 3) and joint positions (24, 3) in the camera frame: the
    same joints LBS gives (SMPL's joints are forward kinematics of the rest joints)."""
    A = np.empty_like(rel)
    p = np.empty((24, 3))
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            A[j] = rel[j]
            p[j] = rest_joints[j] + transl
        else:
            A[j] = A[parent] @ rel[j]
            p[j] = p[parent] + A[parent] @ (rest_joints[j] - rest_joints[parent])
    return A, p


#: ancestors[k, j] = joint j is k itself or on k's chain to the root
_ANCESTORS = np.zeros((24, 24), bool)
for _k in range(24):
    _j = _k
    while _j >= 0:
        _ANCESTORS[_k, _j] = True
        _j = int(PARENTS[_j])


def refine_person(rel: np.ndarray, rest_joints: np.ndarray, transl: np.ndarray,
                  keypoints: np.ndarray, K: np.ndarray, params: RefineParams = RefineParams()
                  ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(refined relative rotations (24, 3, 3), translation (3,)), or None when the keypoints
    do not constrain the body (too few confident points, or a degenerate projection).

    ``rest_joints``: the person's joints in the rest pose relative to nothing (LBS with
    identity rotations and no translation); ``keypoints``: COCO-17 (x, y, confidence) pixels;
    ``K``: 3 x 3 intrinsics."""
    kp = np.asarray(keypoints, np.float64)
    if kp.shape != (NUM_COCO17, 3) or not np.isfinite(kp[COCO17_BODY]).all():
        return None
    target = kp[COCO17_BODY, :2]
    conf = np.where(kp[COCO17_BODY, 2] >= params.min_confidence, kp[COCO17_BODY, 2], 0.0)
    if np.count_nonzero(conf) < params.min_points:
        return None
    ls, rs, lh, rh = kp[5, :2], kp[6, :2], kp[11, :2], kp[12, :2]
    torso = float(np.linalg.norm((ls + rs) / 2 - (lh + rh) / 2))
    if not np.isfinite(torso) or torso < 4.0:
        return None
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    rel = np.array(rel, np.float64)
    t = np.array(transl, np.float64)
    deviation = np.zeros((24, 3))  # accumulated local increments (small-angle prior)
    lam = params.damping
    anc = _ANCESTORS[SMPL_FOR_COCO17_BODY]  # 12 x 24

    def residuals(rel_, t_, dev_):
        A, p = forward_kinematics(rel_, rest_joints, t_)
        P = p[SMPL_FOR_COCO17_BODY]
        if (P[:, 2] <= 1e-3).any():
            return None
        uv = np.stack([fx * P[:, 0] / P[:, 2] + cx, fy * P[:, 1] / P[:, 2] + cy], 1)
        e = (uv - target) / torso  # torso units
        # Huber as iteratively reweighted least squares: these weights make the Gauss-Newton
        # step the Huber objective's (cost() below evaluates that objective itself)
        r = np.sqrt((e ** 2).sum(1))
        w = conf * np.minimum(1.0, params.robust_scale / np.maximum(r, 1e-12))
        return A, p, P, e, w, r

    state = residuals(rel, t, deviation)
    if state is None:
        return None

    t0 = t.copy()
    depth_scale = max(0.1 * abs(float(t0[2])), 0.05)

    delta = params.robust_scale

    def cost(st, dev_, t_):
        r = st[5]  # Huber (x2): r^2 inside delta, delta (2 r - delta) beyond
        huber = np.where(r <= delta, r ** 2, delta * (2 * r - delta))
        return float((conf * huber).sum() + params.prior_weight * (dev_ ** 2).sum()
                     + params.prior_weight * ((t_[2] - t0[2]) / depth_scale) ** 2)

    current = cost(state, deviation, t)
    for _ in range(params.iterations):
        A, p, P, e, w, _ = state
        # d(uv)/dP per point (12 x 2 x 3), in torso units
        z = P[:, 2]
        dproj = np.zeros((12, 2, 3))
        dproj[:, 0, 0] = fx / z
        dproj[:, 0, 2] = -fx * P[:, 0] / z ** 2
        dproj[:, 1, 1] = fy / z
        dproj[:, 1, 2] = -fy * P[:, 1] / z ** 2
        dproj /= torso
        # d P_k / d params: translation (identity) and each ancestor's local increment
        dP = np.zeros((12, 3, NUM_PARAMS))
        dP[:, :, :3] = np.eye(3)
        diff = P[:, None, :] - p[None, :, :]  # 12 x 24 x 3: p_k - p_j
        blocks = -_skew(diff) @ A[None]  # 12 x 24 x 3 x 3
        blocks[~anc] = 0.0
        dP[:, :, 3:] = blocks.transpose(0, 2, 1, 3).reshape(12, 3, 72)
        J = np.einsum("kab,kbn->kan", dproj, dP).reshape(24, NUM_PARAMS)
        sw = np.sqrt(np.repeat(w, 2))
        Jw, rw = J * sw[:, None], e.reshape(-1) * sw
        H = Jw.T @ Jw
        g = Jw.T @ rw
        H[3:, 3:] += params.prior_weight * np.eye(72)
        g[3:] += params.prior_weight * deviation.reshape(-1)
        # depth is what 2D points say least about: keep it within ~10% of the regressor's
        H[2, 2] += params.prior_weight / depth_scale ** 2
        g[2] += params.prior_weight * (t[2] - t0[2]) / depth_scale ** 2
        improved = False
        for _ in range(4):  # LM: raise the damping until the cost goes down
            try:
                step = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-9), g)
            except np.linalg.LinAlgError:
                return None
            dev_new = deviation + step[3:].reshape(24, 3)
            rel_new = rel @ _rodrigues(step[3:].reshape(24, 3))
            t_new = t + step[:3]
            st_new = residuals(rel_new, t_new, dev_new)
            if st_new is not None and cost(st_new, dev_new, t_new) < current:
                rel, t, deviation, state = rel_new, t_new, dev_new, st_new
                current = cost(st_new, dev_new, t_new)
                lam = max(lam / 3, 1e-6)
                improved = True
                break
            lam *= 4
        if not improved:
            break
    return rel.astype(np.float32), t.astype(np.float32)
