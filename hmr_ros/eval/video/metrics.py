"""The footage metrics, on plain arrays (NumPy only): see the package docs for definitions."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from hmr_ros.body.constants import JOINT_NAMES, NUM_JOINTS
from hmr_ros.body.keypoints import COCO17_NAMES

#: the COCO-17 body keypoints scored: shoulders, elbows, wrists, hips, knees, ankles
COCO_BODY = np.arange(5, 17)
#: the SMPL-layout joint compared with each of ``COCO_BODY``, joint for joint by name. COCO's
#: hip points are the outer hips (about the greater trochanters); SMPL's hip joints are the
#: femoral heads, higher and nearer the midline (the procedural body: 7 cm either side of the
#: pelvis, vs shoulders at 17 cm). No correction is made: the offset costs the model and the
#: constant-pose baselines alike (they share the root, shape and hips), and per-joint PCK
#: shows it.
SMPL_FOR_COCO = np.array([JOINT_NAMES.index(COCO17_NAMES[i]) for i in COCO_BODY])
BODY_NAMES = tuple(COCO17_NAMES[i] for i in COCO_BODY)

#: the body model's forward axis (its rest frame: y up, facing +z; ``hmr_ros.body.model``)
BODY_FORWARD = np.array([0.0, 0.0, 1.0])

#: constant poses of the baselines, as the rotation about the body's z axis (forward) of each
#: shoulder joint (rest frame: +x = the person's left, y up); every other relative rotation is
#: the identity (the rest pose). Arms "down" by angle a means the upper arm points a below the
#: horizontal in the frontal plane; the rest pose itself is the T-pose.
ARMS_DOWN_DEG = {"apose": 45.0, "tpose": 0.0}


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def constant_pose(arms_down_deg: float) -> np.ndarray:
    """(23, 3, 3) relative rotations of joints 1..23 (not the root): identity everywhere but
    the shoulders, which turn the arms ``arms_down_deg`` below the horizontal (left arm along
    +x turns by -a about z, the right arm along -x by +a)."""
    rel = np.tile(np.eye(3), (NUM_JOINTS - 1, 1, 1))
    a = np.radians(arms_down_deg)
    rel[JOINT_NAMES.index("left_shoulder") - 1] = rot_z(-a)
    rel[JOINT_NAMES.index("right_shoulder") - 1] = rot_z(a)
    return rel


def baseline_rotmats(rel_rotmats: np.ndarray, arms_down_deg: float) -> np.ndarray:
    """(..., 24, 3, 3) model rotations -> the same with joints 1..23 replaced by the constant
    pose (the global orientation, joint 0, kept)."""
    out = np.array(rel_rotmats, np.float32, copy=True)
    out[..., 1:, :, :] = constant_pose(arms_down_deg)
    return out


# --- PCK ---------------------------------------------------------------------------------------


def torso_size(keypoints: np.ndarray, min_conf: float = 0.5) -> float:
    """Distance between the mid-shoulder and mid-hip of (17, 3) COCO keypoints (pixels); NaN
    unless both shoulders and both hips have confidence >= ``min_conf``."""
    kp = np.asarray(keypoints, np.float64)
    if np.any(kp[[5, 6, 11, 12], 2] < min_conf) or not np.isfinite(kp[[5, 6, 11, 12], :2]).all():
        return float("nan")
    return float(np.linalg.norm(kp[[5, 6], :2].mean(0) - kp[[11, 12], :2].mean(0)))


def pck_hits(joints2d: np.ndarray, keypoints: np.ndarray, alpha: float = 0.2,
             min_conf: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """One person: (hit, counted), each (12,) bool over ``COCO_BODY``. ``joints2d``: (24, 2)
    projected SMPL-layout joints; ``keypoints``: (17, 3) detected COCO keypoints. A keypoint
    counts when its confidence is >= ``min_conf`` and the torso size is defined; it is a hit
    when the mapped joint is within ``alpha`` x torso size of it."""
    kp = np.asarray(keypoints, np.float64)
    size = torso_size(kp, min_conf)
    counted = (kp[COCO_BODY, 2] >= min_conf) & np.isfinite(kp[COCO_BODY, :2]).all(1)
    if not np.isfinite(size) or size <= 0:
        counted[:] = False
        return np.zeros(len(COCO_BODY), bool), counted
    pred = np.asarray(joints2d, np.float64)[SMPL_FOR_COCO]
    dist = np.linalg.norm(pred - kp[COCO_BODY, :2], axis=1)
    hit = counted & np.isfinite(dist) & (dist <= alpha * size)
    return hit, counted


# --- front / back ------------------------------------------------------------------------------


def mesh_faces_camera(global_orient: np.ndarray, root: np.ndarray) -> bool:
    """Whether a body with global orientation ``global_orient`` (3, 3; body rest frame ->
    camera frame) and root (pelvis) at ``root`` (3,) in the camera frame faces the camera: its
    forward axis (``R @ BODY_FORWARD``) has a positive component along the direction from the
    root to the camera centre (``-root``)."""
    forward = np.asarray(global_orient, np.float64) @ BODY_FORWARD
    return bool(np.dot(forward, -np.asarray(root, np.float64)) > 0.0)


def shoulder_facing(keypoints: np.ndarray, min_conf: float = 0.5, min_ratio: float = 0.3
                    ) -> Optional[bool]:
    """A second front/back reference, from the keypoint model's left/right: a person facing the
    camera shows their left shoulder on the image's right of their torso's up direction, i.e.
    cross(up, left - right) > 0 with up = mid-shoulder - mid-hip (image y down). None unless the
    shoulders and hips are confident and the shoulder span is at least ``min_ratio`` x the
    torso size (not in profile)."""
    kp = np.asarray(keypoints, np.float64)
    size = torso_size(kp, min_conf)
    if not np.isfinite(size) or size <= 0:
        return None
    up = kp[[5, 6], :2].mean(0) - kp[[11, 12], :2].mean(0)
    span = kp[5, :2] - kp[6, :2]
    if np.linalg.norm(span) < min_ratio * size:
        return None
    cross = up[0] * span[1] - up[1] * span[0]
    return bool(cross > 0)


# --- silhouettes -------------------------------------------------------------------------------


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else float("nan")


def box_region(box: Sequence[float], shape: Tuple[int, int], margin: float = 0.1) -> np.ndarray:
    """Boolean (H, W) mask of ``box`` (x0, y0, x1, y1 pixels, centres at integers) grown by
    ``margin`` of its size on every side, clipped to the image."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    c0, r0 = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
    c1, r1 = min(w, int(np.ceil(x1 + mx)) + 1), min(h, int(np.ceil(y1 + my)) + 1)
    out = np.zeros((h, w), bool)
    if c1 > c0 and r1 > r0:
        out[r0:r1, c0:c1] = True
    return out


def silhouette_iou(mesh_mask: np.ndarray, person_mask: np.ndarray, box: Sequence[float],
                   margin: float = 0.1) -> float:
    """IoU of a person's mesh silhouette (whole image) with the person mask restricted to the
    person's box grown by ``margin`` (mask pixels outside are other people or noise; mesh
    pixels outside count against the mesh)."""
    region = box_region(box, np.asarray(person_mask).shape, margin)
    return mask_iou(mesh_mask, np.asarray(person_mask, bool) & region)


# --- jitter ------------------------------------------------------------------------------------


def acceleration_jitter(points: np.ndarray, valid: np.ndarray, scale: np.ndarray
                        ) -> Tuple[float, int]:
    """Mean normalised |acceleration| of one track: ``points`` (T, J, 2) pixels in consecutive
    frames, ``valid`` (T, J) bool, ``scale`` (T,) torso sizes. Per frame t in 1..T-2 and joint
    j valid at t-1, t, t+1 (and finite scale at t): |p[t+1] - 2 p[t] + p[t-1]| / scale[t]
    (torso sizes per frame^2). -> (sum, count); the mean is sum / count."""
    p = np.asarray(points, np.float64)
    if p.shape[0] < 3:
        return 0.0, 0
    v = np.asarray(valid, bool)
    s = np.asarray(scale, np.float64)
    acc = np.linalg.norm(p[2:] - 2 * p[1:-1] + p[:-2], axis=-1)  # (T-2, J)
    ok = v[2:] & v[1:-1] & v[:-2] & (np.isfinite(s[1:-1]) & (s[1:-1] > 0))[:, None]
    ok &= np.isfinite(acc)
    val = acc[ok] / np.broadcast_to(s[1:-1, None], acc.shape)[ok]
    return float(val.sum()), int(ok.sum())


class Tally:
    """Sums and counts per (metric, method), plus raw values where medians are wanted."""

    def __init__(self):
        self.sum: Dict[Tuple[str, str], float] = {}
        self.n: Dict[Tuple[str, str], int] = {}
        self.values: Dict[Tuple[str, str], list] = {}

    def add(self, metric: str, method: str, total: float, count: int = 1,
            keep: Optional[float] = None) -> None:
        key = (metric, method)
        self.sum[key] = self.sum.get(key, 0.0) + float(total)
        self.n[key] = self.n.get(key, 0) + int(count)
        if keep is not None:
            self.values.setdefault(key, []).append(float(keep))

    def mean(self, metric: str, method: str) -> float:
        n = self.n.get((metric, method), 0)
        return self.sum[(metric, method)] / n if n else float("nan")

    def count(self, metric: str, method: str) -> int:
        return self.n.get((metric, method), 0)
