"""A frame's results as ROS messages: /human_mesh, visibility, REP-155, TF, RViz markers.

Pure functions from `hmr_ros.runtime.FrameResult` (plus the body's faces and parts) to message
objects; every message carries the source image's header unchanged. Conventions:

- body ids are short REP-155 ids (5 lower-case letters), one per tracker id, stable while the
  person is tracked (`BodyIds`); a tentative person (not yet confirmed by the tracker) has the
  empty id and state NEW: it appears on /human_mesh, /human_mesh/visibility and the markers, but
  not in REP-155 topics or TF;
- REP-155 TF: ``body_<id>`` has its origin mid-hip, the pelvis' orientation, and the image's
  frame as parent; every SMPL joint is a frame ``<joint>_<id>`` (``pelvis_<id>`` child of
  ``body_<id>``, the others children of their kinematic parents), so the chain ends at the
  camera's optical frame;
- ``joint_states``: per SMPL joint three revolute angles ``<joint>_rx|ry|rz_<id>`` (radians,
  intrinsic x-y-z Euler angles of the joint's rotation relative to its parent);
- ``skeleton2d``: the 18 COCO points of hri_msgs (a neck added), normalised by the image size; points
  without an SMPL joint (eyes, ears) carry confidence 0.
"""

from __future__ import annotations

import random
import string
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hmr_ros.body.keypoints import coco18_from_coco17
from hmr_ros.transport import types

__all__ = ["BodyIds", "header_message", "human_mesh_array", "rep155_messages", "tf_message",
           "marker_array", "SMPL_JOINTS", "SMPL_PARENTS", "COCO18_FROM_SMPL"]

SMPL_JOINTS = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
#: hri_msgs/Skeleton2D order (NOSE, NECK, R_SHOULDER, ...): the SMPL joint used, -1 = none.
#: The nose is approximated by the head joint (SMPL has no face points).
COCO18_FROM_SMPL = (15, 12, 17, 19, 21, 16, 18, 20, 2, 5, 8, 1, 4, 7, -1, -1, -1, -1)

TRACKING_NEW, TRACKING_TRACKED, TRACKING_LOST = 0, 1, 2
_Point2D = types.message_class("hri_msgs/msg/NormalizedPointOfInterest2D")


class BodyIds:
    """Tracker ids -> REP-155 body ids (random 5-letter ids, never reused in a run)."""

    def __init__(self, seed: Optional[int] = None) -> None:
        self._rng = random.Random(seed)
        self._ids: Dict[int, str] = {}
        self._used: set = set()

    def get(self, track_id: int) -> Tuple[str, bool]:
        """(body id, new) for a tracker id; ("", True) for a tentative person (id < 0)."""
        if track_id < 0:
            return "", True
        if track_id in self._ids:
            return self._ids[track_id], False
        while True:
            candidate = "".join(self._rng.choice(string.ascii_lowercase) for _ in range(5))
            if candidate not in self._used:
                break
        self._used.add(candidate)
        self._ids[track_id] = candidate
        return candidate, True

    def forget_except(self, alive: Sequence[int]) -> List[Tuple[int, str]]:
        """Drop the ids of tracks not in ``alive``; returns the (track id, body id) that ended."""
        keep = set(alive)
        ended = [(tid, bid) for tid, bid in self._ids.items() if tid not in keep]
        self._ids = {tid: bid for tid, bid in self._ids.items() if tid in keep}
        return ended


def header_message(stamp_ns: int, frame_id: str) -> Any:
    return types.make("std_msgs/msg/Header", frame_id=frame_id, stamp=types.make(
        "builtin_interfaces/msg/Time", sec=stamp_ns // 1_000_000_000,
        nanosec=stamp_ns % 1_000_000_000))


def _quaternions(rotmats: np.ndarray) -> np.ndarray:
    from hmr_ros.kernels import matrix_to_quaternion

    return np.asarray(matrix_to_quaternion(np.ascontiguousarray(rotmats, np.float32)),
                      np.float32)


def human_mesh_array(result: Any, header: Any, body_ids: Sequence[Tuple[str, bool]],
                     body_model: str, num_vertices: int, width: int,
                     height: int) -> Tuple[Any, List[Any]]:
    """The HumanMeshArray of a frame and its BodyPartVisibility list."""
    humans, visibility = [], []
    for person, (bid, new) in zip(result.persons, body_ids):
        x0, y0, x1, y1 = (float(v) for v in person.bbox)
        xo, yo = int(np.clip(np.floor(x0), 0, width)), int(np.clip(np.floor(y0), 0, height))
        roi = types.make("sensor_msgs/msg/RegionOfInterest", x_offset=xo, y_offset=yo,
                         width=int(np.clip(np.ceil(x1), xo, width)) - xo,
                         height=int(np.clip(np.ceil(y1), yo, height)) - yo)
        t = person.transl
        scores = person.match_scores
        humans.append(types.make(
            "hmr_ros/msg/HumanMesh", header=header, body_id=bid,
            tracking_state=TRACKING_NEW if new else TRACKING_TRACKED,
            confidence=float(np.clip(person.score, 0.0, 1.0)), body_model=body_model,
            num_vertices=num_vertices, betas=np.asarray(person.betas, np.float32),
            joint_rotations=_quaternions(person.rel_rotmats).reshape(-1),
            translation=types.make("geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]),
                                   z=float(t[2])),
            vertices=np.asarray(person.vertices, np.float32).reshape(-1),
            joints=np.asarray(person.joints, np.float32).reshape(-1),
            keypoints_2d=np.asarray(person.keypoints2d, np.float32).reshape(-1), roi=roi,
            focal_length_assumed=bool(result.assumed_intrinsics),
            hypothesis_index=int(person.hypothesis),
            hypothesis_scores=np.zeros(0, np.float32) if scores is None
            else np.asarray(scores, np.float32)))
        omega = np.asarray(person.visibility, np.float32)
        if not np.isfinite(omega).any():  # a regressor without a visibility head: no message
            continue
        visibility.append(types.make("hmr_ros/msg/BodyPartVisibility", header=header,
                                     body_id=bid, visibility=np.clip(np.nan_to_num(omega), 0, 1)))
    return types.make("hmr_ros/msg/HumanMeshArray", header=header, humans=humans,
                      visibility=visibility), visibility


def _skeleton_points(person: Any, width: int, height: int) -> List[Tuple[float, float, float]]:
    """The 18 points of hri_msgs/Skeleton2D (normalised x, y, confidence): the keypoint model's
    when a detector ran (its confidence), else the mesh's projected joints (part visibility as
    the confidence; the nose at the head joint, the eyes and ears, which the joints lack, at
    confidence 0). Points outside the
    image or not finite get confidence 0."""
    detected = getattr(person, "detected_keypoints", None)
    if detected is not None:
        pts = coco18_from_coco17(np.asarray(detected, np.float64))
        xy, conf = pts[:, :2], pts[:, 2]
    else:
        kp = np.asarray(person.keypoints2d, np.float64)
        vis = np.asarray(person.visibility, np.float64)
        if not np.isfinite(vis).any():  # visibility not predicted: every estimated point counts
            vis = np.ones_like(vis)
        idx = np.array(COCO18_FROM_SMPL)
        xy = np.where((idx >= 0)[:, None], kp[np.maximum(idx, 0)], 0.0)
        conf = np.where(idx >= 0, vis[np.maximum(idx, 0)], 0.0)
    out = []
    for (x, y), c in zip(xy, conf):
        x, y = float(x) / width, float(y) / height
        finite = np.isfinite(x) and np.isfinite(y)
        inside = finite and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
        out.append((min(max(x, 0.0), 1.0) if finite else 0.0,
                    min(max(y, 0.0), 1.0) if finite else 0.0,
                    float(np.clip(np.nan_to_num(c), 0, 1)) if inside else 0.0))
    return out


def _euler_xyz(R: np.ndarray) -> np.ndarray:
    """Intrinsic x-y-z Euler angles of rotation matrices (..., 3, 3): R = Rx(a) Ry(b) Rz(c)."""
    b = np.arcsin(np.clip(R[..., 0, 2], -1.0, 1.0))
    a = np.arctan2(-R[..., 1, 2], R[..., 2, 2])
    c = np.arctan2(-R[..., 0, 1], R[..., 0, 0])
    return np.stack([a, b, c], axis=-1)


def rep155_messages(result: Any, header: Any, body_ids: Sequence[Tuple[str, bool]], width: int,
                    height: int) -> Tuple[Any, Dict[str, Dict[str, Any]]]:
    """(IdsList of tracked bodies, {body id: {"roi": ..., "skeleton2d": ..., "joint_states":
    ...}}) for the confirmed persons of a frame."""
    ids, per_body = [], {}
    for person, (bid, _) in zip(result.persons, body_ids):
        if not bid:
            continue
        ids.append(bid)
        x0, y0, x1, y1 = (float(v) for v in person.bbox)
        roi = types.make("hri_msgs/msg/NormalizedRegionOfInterest2D", header=header,
                         xmin=float(np.clip(x0 / width, 0, 1)), ymin=float(np.clip(y0 / height, 0, 1)),
                         xmax=float(np.clip(x1 / width, 0, 1)), ymax=float(np.clip(y1 / height, 0, 1)),
                         c=float(np.clip(person.score, 0, 1)))
        points = [_Point2D(x=x, y=y, c=c) for x, y, c in _skeleton_points(person, width, height)]
        skeleton = types.make("hri_msgs/msg/Skeleton2D", header=header, skeleton=points)
        angles = _euler_xyz(np.asarray(person.rel_rotmats, np.float64)).reshape(-1)
        names = [f"{j}_{axis}_{bid}" for j in SMPL_JOINTS for axis in ("rx", "ry", "rz")]
        joint_states = types.make("sensor_msgs/msg/JointState", header=header, name=names,
                                  position=angles)
        per_body[bid] = {"roi": roi, "skeleton2d": skeleton, "joint_states": joint_states}
    return types.make("hri_msgs/msg/IdsList", header=header, ids=ids), per_body


def _transform(header: Any, child: str, translation: np.ndarray, q: np.ndarray) -> Any:
    """A TransformStamped; ``q`` is (w, x, y, z). Built from the classes directly: a frame
    carries 25 of these per person."""
    return _TransformStamped(
        header=header, child_frame_id=child,
        transform=_Transform(
            translation=_Vector3(x=float(translation[0]), y=float(translation[1]),
                                 z=float(translation[2])),
            rotation=_Quaternion(x=float(q[1]), y=float(q[2]), z=float(q[3]), w=float(q[0]))))


_TransformStamped = types.message_class("geometry_msgs/msg/TransformStamped")
_Transform = types.message_class("geometry_msgs/msg/Transform")
_Vector3 = types.message_class("geometry_msgs/msg/Vector3")
_Quaternion = types.message_class("geometry_msgs/msg/Quaternion")
_Header = types.message_class("std_msgs/msg/Header")
_IDENTITY_Q = np.array([1.0, 0.0, 0.0, 0.0])


def tf_message(result: Any, header: Any, body_ids: Sequence[Tuple[str, bool]]) -> Any:
    """REP-155 frames of the confirmed persons (see the module docs)."""
    transforms = []
    for person, (bid, _) in zip(result.persons, body_ids):
        if not bid:
            continue
        rel = np.asarray(person.rel_rotmats, np.float64)
        joints = np.asarray(person.joints, np.float64)
        absolute = np.empty_like(rel)
        for i, parent in enumerate(SMPL_PARENTS):
            absolute[i] = rel[i] if parent < 0 else absolute[parent] @ rel[i]
        quats = _quaternions(np.concatenate([absolute[:1], rel])).astype(np.float64)
        mid_hip = 0.5 * (joints[1] + joints[2])
        transforms.append(_transform(header, f"body_{bid}", mid_hip, quats[0]))
        transforms.append(_transform(_Header(stamp=header.stamp, frame_id=f"body_{bid}"),
                                     f"pelvis_{bid}", absolute[0].T @ (joints[0] - mid_hip),
                                     _IDENTITY_Q))
        for i in range(1, len(SMPL_JOINTS)):
            parent = SMPL_PARENTS[i]
            offset = absolute[parent].T @ (joints[i] - joints[parent])
            transforms.append(_transform(
                _Header(stamp=header.stamp, frame_id=f"{SMPL_JOINTS[parent]}_{bid}"),
                f"{SMPL_JOINTS[i]}_{bid}", offset, quats[1 + i]))
    return types.make("tf2_msgs/msg/TFMessage", transforms=transforms)


def _marker(header: Any, ns: str, mid: int, kind: int, scale: float, rgb: Tuple[float, ...],
            points: np.ndarray, **extra: Any) -> Any:
    """One ADD marker at the camera frame's origin, half a second of lifetime (a stalled node's
    meshes fade instead of freezing in RViz)."""
    return types.make(
        "visualization_msgs/msg/Marker", header=header, ns=ns, id=mid, type=kind, action=0,
        pose=types.make("geometry_msgs/msg/Pose",
                        orientation=types.make("geometry_msgs/msg/Quaternion", w=1.0)),
        scale=types.make("geometry_msgs/msg/Vector3", x=scale, y=scale, z=scale),
        color=types.make("std_msgs/msg/ColorRGBA", r=rgb[0], g=rgb[1], b=rgb[2], a=1.0),
        lifetime=types.make("builtin_interfaces/msg/Duration", nanosec=500_000_000),
        points=points, **extra)


def marker_array(result: Any, header: Any, body_ids: Sequence[Tuple[str, bool]],
                 faces: np.ndarray, vertex_part: np.ndarray, track_ids: Sequence[int],
                 ended_ids: Sequence[int] = ()) -> Any:
    """Each person's mesh as a TRIANGLE_LIST coloured per part by visibility (green visible,
    red occluded) and its joints as a SPHERE_LIST; markers of ended tracks deleted."""
    from hmr_ros.viz.overlay import visibility_colors

    markers = []
    faces = np.asarray(faces, np.int64)
    corner_parts = np.asarray(vertex_part)[faces.reshape(-1)]
    for person, (bid, _), tid in zip(result.persons, body_ids, track_ids):
        mid = int(tid) if tid >= 0 else 100000 + len(markers)
        colors = np.ones((len(corner_parts), 4), np.float32)
        colors[:, :3] = visibility_colors(person.visibility)[corner_parts]
        markers.append(_marker(header, "hmr_ros/mesh", mid, 11, 1.0, (1.0, 1.0, 1.0),
                               np.asarray(person.vertices, np.float64)[faces.reshape(-1)],
                               colors=colors, text=bid))
        markers.append(_marker(header, "hmr_ros/joints", mid, 7, 0.04, (0.2, 0.4, 1.0),
                               np.asarray(person.joints, np.float64)))
    for tid in ended_ids:
        for ns in ("hmr_ros/mesh", "hmr_ros/joints"):
            markers.append(types.make("visualization_msgs/msg/Marker", header=header, ns=ns,
                                      id=int(tid), action=2))
    return types.make("visualization_msgs/msg/MarkerArray", markers=markers)
