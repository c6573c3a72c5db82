"""COCO-17 keypoints of the rendered bodies, with per-point visibility.

The keypoint-conditioned regressor takes COCO-17 points (``hmr_ros.body.keypoints``,
``COCO17_NAMES`` order) as a detector would give them, so every synthetic person gets them:

* **body points** from the posed joints (``hmr_ros.body.constants.JOINT_NAMES``): shoulders,
  elbows, wrists, knees and ankles are the SMPL joints as they are. SMPL's hip joints are the
  femoral heads, higher and closer together than where COCO annotators click ("hip" = the
  bony side of the pelvis); each COCO hip is moved outwards by ``HIP_OUTWARD`` x the distance
  between the two hip joints and down the pelvis by ``HIP_DOWN`` metres (a rough, documented
  offset -- to be checked against the real detector);
* **face points** (nose, eyes, ears) are fixed points of the head's *surface*: rays from the
  centroid of the head part of the rest template, at the azimuth/elevation of ``FACE_POINTS_DEG``
  (rest frame: x = the body's left, y up, z forward), hit the head's triangles once
  (``HeadPoints.from_body``); a point is then a face index plus barycentrics, so it moves with
  shape and pose exactly like the mesh. The same angles place the painted face features
  (``appearance.head_albedo``), so the eyes in the image sit on the eye keypoints.

Visibility per point (``keypoint_states``), from the render's own depth buffer and labels:

* ``0`` outside the image (``u`` or ``v`` outside ``[0, size)``, or behind the camera);
* ``1`` in the image but occluded: by an occluder, another person, or the person's own body
  (the torso in front of the far shoulder, a thigh pointing away in front of the knee, the back
  of the head in front of the nose);
* ``2`` visible: in a 3 x 3 pixel neighbourhood of the projected point, some pixel shows this
  person, on one of the parts that meet at the keypoint (``KEYPOINT_PARTS``), no nearer than
  ``KEYPOINT_DEPTH_TOL`` metres in front of the point (joints lie inside their limb; face
  points lie on the surface, so their tolerance is tight: a face turned away hides them); face
  points must also face the camera (``face_facing``): the cosine between the point's direction
  on the head and the direction to the camera above ``FACE_FACING_MIN`` -- eyes up to ~78 deg
  off the line of sight (they sit in their sockets), the nose up to ~105 deg and the ears up to
  ~115 deg (they stick out: seen in profile, from the front and from behind).

``face_front``: cosine between the head's forward direction (mid-ears -> nose) and the direction
from the nose to the camera; > 0 when the face is turned towards the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from hmr_ros.body import BodyModel
from hmr_ros.body.keypoints import COCO17_NAMES, NUM_COCO17

from .camera import project

__all__ = [
    "FACE_FACING_MIN",
    "FACE_POINTS_DEG",
    "HEAD_PART",
    "HIP_DOWN",
    "HIP_OUTWARD",
    "KEYPOINT_DEPTH_TOL",
    "KEYPOINT_PARTS",
    "NOT_IN_IMAGE",
    "OCCLUDED",
    "UNKNOWN_PART",
    "VISIBLE",
    "HeadPoints",
    "coco17_arrays",
    "coco17_points",
    "face_facing",
    "face_front",
    "keypoint_states",
    "head_angles",
]

HEAD_PART = 15
NOT_IN_IMAGE, OCCLUDED, VISIBLE = 0, 1, 2  #: ``people_coco17_vis`` values
UNKNOWN_PART = -9  #: a ``part_all`` value that passes the part test (part not recorded)

#: (azimuth, elevation) in degrees from the rest head's centroid; azimuth 0 = straight ahead,
#: + towards the body's left; elevation + up. Eyes ~6.5 cm apart on the procedural head.
FACE_POINTS_DEG = {
    "nose": (0.0, -12.0),
    "left_eye": (25.0, 5.0),
    "right_eye": (-25.0, 5.0),
    "left_ear": (95.0, -3.0),
    "right_ear": (-95.0, -3.0),
}
_FACE_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")  # COCO-17 0..4
#: lowest cosine (surface normal, direction to the camera) at which a face point can be seen
FACE_FACING_MIN = np.array([-0.26, 0.2, 0.2, -0.42, -0.42])

#: SMPL joint of each body keypoint (COCO-17 index 5..16)
_BODY_JOINTS = {"left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19,
                "left_wrist": 20, "right_wrist": 21, "left_hip": 1, "right_hip": 2,
                "left_knee": 4, "right_knee": 5, "left_ankle": 7, "right_ankle": 8}
BODY_JOINT_INDEX = np.array([_BODY_JOINTS[n] for n in COCO17_NAMES[5:]], np.int64)

HIP_OUTWARD = 0.25  #: COCO hip = SMPL hip + this x |left hip - right hip| away from the midline
HIP_DOWN = 0.03  #: ... + this many metres down the pelvis (the body's -y turned by the root)

#: body parts (SMPL part ids) that may show at each keypoint's pixel for it to count as visible
KEYPOINT_PARTS = (
    (15,), (15,), (15,), (15, 12), (15, 12),  # nose, eyes, ears
    (16, 13, 9), (17, 14, 9),  # shoulders: upper arm, collar, chest
    (18, 16), (19, 17),  # elbows: forearm, upper arm
    (20, 18, 22), (21, 19, 23),  # wrists: palm, forearm, fingers
    (1, 0, 3), (2, 0, 3),  # hips: thigh, pelvis, belly
    (4, 1), (5, 2),  # knees: shin, thigh
    (7, 4, 10), (8, 5, 11),  # ankles: foot, shin, toes
)
#: metres a visible surface may lie in front of the keypoint (joints sit inside their limbs)
KEYPOINT_DEPTH_TOL = np.array([0.04, 0.04, 0.04, 0.06, 0.06, 0.12, 0.12, 0.10, 0.10, 0.10, 0.10,
                               0.15, 0.15, 0.10, 0.10, 0.10, 0.10])
assert len(KEYPOINT_PARTS) == NUM_COCO17 == len(KEYPOINT_DEPTH_TOL)


def _part_table() -> np.ndarray:
    table = np.zeros((NUM_COCO17, 24), bool)
    for k, parts in enumerate(KEYPOINT_PARTS):
        table[k, list(parts)] = True
    return table


_PART_OK = _part_table()  # 17 x 24


def _direction(az_deg: float, el_deg: float) -> np.ndarray:
    az, el = np.deg2rad(az_deg), np.deg2rad(el_deg)
    return np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])


def head_angles(points: np.ndarray, centre: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rest-frame points (N x 3) -> (azimuth, elevation) in degrees seen from ``centre``, the
    convention of ``FACE_POINTS_DEG``."""
    d = np.asarray(points, np.float64) - centre
    az = np.degrees(np.arctan2(d[:, 0], d[:, 2]))
    el = np.degrees(np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2])))
    return az, el


@dataclass(frozen=True, eq=False)
class HeadPoints:
    """The five face points as (face, barycentrics) on a body's mesh, and the rest head's
    centroid (the origin of ``FACE_POINTS_DEG``)."""

    faces: np.ndarray  # 5 int64 body face indices
    bary: np.ndarray  # 5 x 3
    centre: np.ndarray  # 3, rest frame

    @classmethod
    def from_body(cls, body: BodyModel) -> "HeadPoints":
        v = np.asarray(body.v_template, np.float64)
        faces = np.asarray(body.faces, np.int64)
        part = np.asarray(body.part)
        head_faces = np.flatnonzero(np.all(part[faces] == HEAD_PART, axis=1))
        if len(head_faces) == 0:
            raise ValueError("the body has no head faces (part 15)")
        centre = v[part == HEAD_PART].mean(0)
        tri = v[faces[head_faces]]  # H x 3 x 3
        out_f, out_b = [], []
        for name in _FACE_NAMES:
            d = _direction(*FACE_POINTS_DEG[name])
            f, b = _ray_hit(centre, d, tri)
            if f < 0:  # no hit (open mesh): the head vertex furthest along the ray
                cand = np.flatnonzero(part == HEAD_PART)
                vid = cand[np.argmax((v[cand] - centre) @ d)]
                f = int(np.flatnonzero(np.any(faces[head_faces] == vid, axis=1))[0])
                b = (faces[head_faces[f]] == vid).astype(np.float64)
            out_f.append(head_faces[f])
            out_b.append(b)
        return cls(np.array(out_f, np.int64), np.array(out_b), centre)

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Posed face points (..., 5, 3) from posed vertices (..., V, 3)."""
        corners = np.asarray(vertices)[..., np.asarray(faces)[self.faces], :]  # ... x 5 x 3 x 3
        return np.einsum("fk,...fkc->...fc", self.bary, corners.astype(np.float64))

    def rest_points(self, body: BodyModel) -> np.ndarray:
        """The face points on the rest template (5 x 3)."""
        return self.points(np.asarray(body.v_template, np.float64), body.faces)


def _ray_hit(origin: np.ndarray, d: np.ndarray, tri: np.ndarray):
    """Nearest hit (t > 0) of a ray with triangles (Möller-Trumbore): (index, barycentrics) or
    (-1, None)."""
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(d, e2)
    det = np.einsum("nc,nc->n", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - tri[:, 0]
    u = np.einsum("nc,nc->n", s, p) * inv
    q = np.cross(s, e1)
    w = (q @ d) * inv
    t = np.einsum("nc,nc->n", e2, q) * inv
    eps = 1e-9
    hit = ok & (u >= -eps) & (w >= -eps) & (u + w <= 1 + eps) & (t > 0)
    if not hit.any():
        return -1, None
    k = int(np.flatnonzero(hit)[np.argmin(t[hit])])
    return k, np.array([1.0 - u[k] - w[k], u[k], w[k]])


def coco17_points(joints: np.ndarray, vertices: np.ndarray, root_rotmats: np.ndarray,
                  head: HeadPoints, faces: np.ndarray) -> np.ndarray:
    """Camera-frame COCO-17 points (P x 17 x 3, float64) of posed people.

    joints P x 24 x 3 and vertices P x V x 3 (camera frame, translation included);
    root_rotmats P x 3 x 3 (each person's global orientation, body frame -> camera frame).
    """
    joints = np.asarray(joints, np.float64)
    out = np.empty(joints.shape[:-2] + (NUM_COCO17, 3))
    out[..., :5, :] = head.points(vertices, faces)
    out[..., 5:, :] = joints[..., BODY_JOINT_INDEX, :]
    lhip, rhip = joints[..., 1, :], joints[..., 2, :]
    across = lhip - rhip  # towards the body's left
    down = np.asarray(root_rotmats, np.float64) @ np.array([0.0, -1.0, 0.0])
    out[..., 11, :] = lhip + HIP_OUTWARD * across + HIP_DOWN * down
    out[..., 12, :] = rhip - HIP_OUTWARD * across + HIP_DOWN * down
    return out


def face_facing(points: np.ndarray) -> np.ndarray:
    """Cosine between each face point's direction on the head (``FACE_POINTS_DEG`` in the posed
    head frame: left = right ear -> left ear, forward = mid-ears -> nose made orthogonal to it)
    and the direction from the mid-ears point to the camera: (..., 17, 3) -> (..., 5)."""
    p = np.asarray(points, np.float64)
    mid = 0.5 * (p[..., 3, :] + p[..., 4, :])
    left = _unit(p[..., 3, :] - p[..., 4, :])
    fwd = p[..., 0, :] - mid
    fwd = _unit(fwd - np.sum(fwd * left, -1, keepdims=True) * left)
    up = np.cross(fwd, left)
    to_cam = _unit(-mid)
    dirs = np.array([_direction(*FACE_POINTS_DEG[n]) for n in _FACE_NAMES])  # 5 x (l, u, f)
    cam = np.stack([np.sum(to_cam * left, -1), np.sum(to_cam * up, -1),
                    np.sum(to_cam * fwd, -1)], -1)  # ... x 3 in (left, up, forward)
    return np.einsum("kc,...c->...k", dirs, cam)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def face_front(points: np.ndarray) -> np.ndarray:
    """Cosine between the head's forward direction (mid-ears -> nose) and the direction from the
    nose to the camera (at the origin): (..., 17, 3) camera-frame points -> (...)."""
    p = np.asarray(points, np.float64)
    fwd = p[..., 0, :] - 0.5 * (p[..., 3, :] + p[..., 4, :])
    to_cam = -p[..., 0, :]
    n = np.linalg.norm(fwd, axis=-1) * np.linalg.norm(to_cam, axis=-1)
    return np.sum(fwd * to_cam, axis=-1) / np.maximum(n, 1e-12)


def keypoint_states(points: np.ndarray, K: np.ndarray, size: int, depth: np.ndarray,
                    person_seg: np.ndarray, part_all: Optional[np.ndarray],
                    face_facing: Optional[np.ndarray] = None, radius: int = 1) -> np.ndarray:
    """Visibility state (module docs) of camera-frame points P x 17 x 3 -> P x 17 int8.

    depth (H x W, 0 on background), person_seg (H x W, person index; < 0 not a person) and
    part_all (H x W, part id of the visible body pixel of *any* person, -1 elsewhere,
    ``UNKNOWN_PART`` where not recorded) from the same render; ``part_all=None`` skips the part
    test (only person and depth are checked). face_facing: P x 5 (``face_facing``) or None
    (no facing test).
    """
    pts = np.asarray(points, np.float64)
    P = pts.shape[0]
    states = np.zeros((P, NUM_COCO17), np.int8)
    if P == 0:
        return states
    uv = project(pts, K)
    z = pts[..., 2]
    inside = (z > 1e-6) & (uv[..., 0] >= 0) & (uv[..., 0] < size) & (uv[..., 1] >= 0) & \
        (uv[..., 1] < size)
    states[inside] = OCCLUDED
    col = np.floor(np.where(inside, uv[..., 0], 0)).astype(np.int64)
    row = np.floor(np.where(inside, uv[..., 1], 0)).astype(np.int64)
    who = np.arange(P)[:, None]
    seen = np.zeros((P, NUM_COCO17), bool)
    kp = np.arange(NUM_COCO17)[None, :]
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            r = np.clip(row + dr, 0, size - 1)
            c = np.clip(col + dc, 0, size - 1)
            ok = (person_seg[r, c] == who) & (depth[r, c] >= z - KEYPOINT_DEPTH_TOL[None])
            if part_all is not None:
                part = part_all[r, c]
                ok &= (part == UNKNOWN_PART) | ((part >= 0) & _PART_OK[kp, np.clip(part, 0, 23)])
            seen |= ok
    if face_facing is not None:
        seen[:, :5] &= np.asarray(face_facing) > FACE_FACING_MIN
    states[inside & seen] = VISIBLE
    return states


def coco17_arrays(joints: np.ndarray, vertices: np.ndarray, root_rotmats: np.ndarray,
                  head: HeadPoints, faces: np.ndarray, K: np.ndarray, size: int,
                  depth: np.ndarray, person_seg: np.ndarray,
                  part_all: Optional[np.ndarray]) -> dict:
    """The ``people_coco17*`` and ``people_face_front`` arrays (n rows, one per person) of one
    rendered image: joints n x 24 x 3, vertices n x V x 3 (camera frame), root_rotmats n x 3 x 3;
    depth, person_seg, part_all as in ``keypoint_states``."""
    from .camera import pixels_to_crop_normalised

    c3d = coco17_points(joints, vertices, root_rotmats, head, faces)
    c2d = project(c3d, K)
    return {
        "people_coco17": c2d.astype(np.float32),
        "people_coco17_norm": pixels_to_crop_normalised(c2d, (0.5 * size, 0.5 * size),
                                                        size).astype(np.float32),
        "people_coco17_3d": c3d.astype(np.float32),
        "people_coco17_vis": keypoint_states(c3d, K, size, depth, person_seg, part_all,
                                             face_facing(c3d)),
        "people_face_front": face_front(c3d).astype(np.float32),
    }
