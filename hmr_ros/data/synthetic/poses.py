"""Plausible random body poses: per-joint limits, whole-body presets, global orientation.

Why a table and not N(0, σ) per joint: isotropic noise bends knees forwards and elbows
backwards, which a regressor then learns as a prior. Each joint gets a box of Euler angles
(degrees, about the parent's rest axes -- SMPL's rest frame is y up, x to the body's left,
z forward) written for the *left* side and the midline; right joints are the mirror image
(x -> -x reflection: the x angle stays, y and z change sign). Signs, checked against the
procedural body:

* knee  +x = flexion (shin goes back);       hip   -x = flexion (thigh forward), +z = left
  abduction;
* spine/neck/head +x = bend forward;         ankle +x = plantar flexion (toes down);
* left shoulder  -z = arm down, +z = up, -y = arm forward (x = twist along the arm);
* left elbow     -y = flexion (forearm forward).

Joint rotations are composed ``R = Rz(z) @ Ry(y) @ Rx(x)``: the x angle (twist along the arm
bones) acts first. A pose is a preset (standing, walking, ...) plus N(0, 12% of the range)
noise, or a random draw inside the limits; either is clipped to the limits and mirrored
left/right with probability 1/2.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from hmr_ros.body import FLIP_PERMUTATION, JOINT_NAMES, NUM_JOINTS

__all__ = [
    "JOINT_LIMITS_DEG",
    "PRESETS",
    "euler_to_matrix",
    "global_orientation",
    "mirror_angles",
    "sample_body_pose",
    "CAMERA_FROM_BODY",
]

Range = Tuple[float, float]

#: (x, y, z) ranges in degrees for left and midline joints (right = mirror); pelvis = 0 since
#: its rotation is the global orientation, sampled separately.
_LEFT_LIMITS: Dict[str, Tuple[Range, Range, Range]] = {
    "pelvis": ((0, 0), (0, 0), (0, 0)),
    "left_hip": ((-110, 30), (-30, 35), (-15, 45)),
    "spine1": ((-15, 35), (-20, 20), (-15, 15)),
    "left_knee": ((0, 140), (-5, 5), (-5, 5)),
    "spine2": ((-10, 20), (-15, 15), (-10, 10)),
    "left_ankle": ((-25, 35), (-15, 15), (-15, 10)),
    "spine3": ((-10, 20), (-15, 15), (-10, 10)),
    "left_foot": ((-10, 20), (-5, 5), (-5, 5)),
    "neck": ((-30, 35), (-35, 35), (-20, 20)),
    "left_collar": ((-10, 10), (-15, 10), (-10, 20)),
    "head": ((-25, 30), (-30, 30), (-15, 15)),
    "left_shoulder": ((-60, 60), (-90, 40), (-85, 70)),
    "left_elbow": ((-40, 40), (-145, 0), (-10, 10)),
    "left_wrist": ((-60, 60), (-30, 30), (-60, 60)),
    "left_hand": ((-15, 15), (-15, 15), (-20, 20)),
}


def _side_free(name: str) -> str:
    return name.replace("right_", "left_")


def mirror_angles(angles: np.ndarray) -> np.ndarray:
    """Euler angles (..., 3) of the mirror-image rotation under x -> -x: (x, -y, -z)."""
    return np.asarray(angles) * np.array([1.0, -1.0, -1.0])


def _limits_table() -> np.ndarray:
    table = np.zeros((NUM_JOINTS, 3, 2))
    for j, name in enumerate(JOINT_NAMES):
        box = np.array(_LEFT_LIMITS[_side_free(name)], dtype=np.float64)  # 3 x 2
        if name.startswith("right_"):
            box = np.sort(mirror_angles(box.T).T, axis=1)
        table[j] = box
    return table


#: 24 x 3 x 2 (joint, axis x/y/z, low/high) in degrees
JOINT_LIMITS_DEG = _limits_table()
JOINT_LIMITS_DEG.setflags(write=False)


def _preset(**left_semantic) -> np.ndarray:
    """24 x 3 degrees from joint -> (x, y, z); ``right_*`` entries are written as if they were
    left joints (e.g. both shoulders (0, 0, -75) = both arms down) and mirrored here.
    A ``both_<joint>`` key sets the left and the (mirrored) right joint."""
    pose = np.zeros((NUM_JOINTS, 3))
    index = {n: i for i, n in enumerate(JOINT_NAMES)}
    for key, xyz in left_semantic.items():
        names = [f"left_{key[5:]}", f"right_{key[5:]}"] if key.startswith("both_") else [key]
        for name in names:
            value = np.asarray(xyz, np.float64)
            pose[index[name]] = mirror_angles(value) if name.startswith("right_") else value
    return pose


#: whole-body presets (degrees, 24 x 3); noise and mirroring are added when sampling
PRESETS: Dict[str, np.ndarray] = {
    "t_pose": _preset(),
    "a_pose": _preset(both_shoulder=(0, 0, -45)),
    "stand": _preset(both_shoulder=(0, 0, -75), both_elbow=(0, -10, 0)),
    "walk": _preset(left_hip=(-25, 0, 0), right_hip=(15, 0, 0), left_knee=(10, 0, 0),
                    right_knee=(40, 0, 0), left_shoulder=(0, 20, -75),
                    right_shoulder=(0, -20, -75), both_elbow=(0, -15, 0)),
    "run": _preset(left_hip=(-55, 0, 0), right_hip=(20, 0, 0), left_knee=(60, 0, 0),
                   right_knee=(90, 0, 0), left_shoulder=(0, 35, -70),
                   right_shoulder=(0, -40, -70), both_elbow=(0, -90, 0), spine1=(10, 0, 0)),
    "arms_up": _preset(both_shoulder=(0, 0, 60), both_elbow=(0, -20, 0)),
    "reach": _preset(left_shoulder=(0, -75, -10), left_elbow=(0, -10, 0),
                     right_shoulder=(0, 0, -75)),
    "squat": _preset(both_hip=(-95, 0, 15), both_knee=(120, 0, 0), both_ankle=(-20, 0, 0),
                     spine1=(20, 0, 0), both_shoulder=(0, -60, -40)),
    "sit": _preset(both_hip=(-90, 0, 5), both_knee=(90, 0, 0), both_shoulder=(0, -20, -75),
                   both_elbow=(0, -60, 0)),
    "kneel": _preset(left_hip=(-90, 0, 0), left_knee=(90, 0, 0), right_knee=(90, 0, 0),
                     both_shoulder=(0, 0, -70)),
    "lean_forward": _preset(spine1=(20, 0, 0), spine2=(10, 0, 0), spine3=(10, 0, 0),
                            both_shoulder=(0, -40, -60)),
    "arms_crossed": _preset(both_shoulder=(0, -40, -65), both_elbow=(0, -115, 0)),
    "phone": _preset(both_shoulder=(0, -10, -75), left_elbow=(0, -130, 0),
                     right_elbow=(0, -20, 0), head=(15, 0, 0)),
}


def euler_to_matrix(angles_rad: np.ndarray) -> np.ndarray:
    """(..., 3) Euler angles (x, y, z) in radians -> (..., 3, 3) ``Rz(z) @ Ry(y) @ Rx(x)``."""
    a = np.asarray(angles_rad, np.float64)
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    r = np.empty(a.shape[:-1] + (3, 3))
    r[..., 0, 0] = cz * cy
    r[..., 0, 1] = cz * sy * sx - sz * cx
    r[..., 0, 2] = cz * sy * cx + sz * sx
    r[..., 1, 0] = sz * cy
    r[..., 1, 1] = sz * sy * sx + cz * cx
    r[..., 1, 2] = sz * sy * cx - cz * sx
    r[..., 2, 0] = -sy
    r[..., 2, 1] = cy * sx
    r[..., 2, 2] = cy * cx
    return r


def sample_body_pose(rng: np.random.Generator, p_preset: float = 0.7) -> Tuple[np.ndarray, str]:
    """Relative joint rotations 24 x 3 x 3 (pelvis = identity) and the preset name used.

    Preset + noise with probability ``p_preset``, else a draw inside the limits centred on the
    middle of each range (σ = range / 4) so extreme corners are rare. Always clipped to the limits.
    """
    low, high = JOINT_LIMITS_DEG[..., 0], JOINT_LIMITS_DEG[..., 1]
    width = high - low
    if rng.random() < p_preset:
        names = sorted(PRESETS)
        name = names[int(rng.integers(len(names)))]
        angles = PRESETS[name] + rng.normal(0.0, 1.0, (NUM_JOINTS, 3)) * 0.12 * width
    else:
        name = "random"
        angles = 0.5 * (low + high) + rng.normal(0.0, 1.0, (NUM_JOINTS, 3)) * 0.25 * width
    if rng.random() < 0.5:  # left/right mirror: swap joints and reflect the angles
        angles = mirror_angles(angles[FLIP_PERMUTATION])
    angles = np.clip(angles, low, high)
    return euler_to_matrix(np.deg2rad(angles)), name


#: maps SMPL's body frame (y up, facing +z) to the OpenCV camera frame (y down, z forward):
#: a 180 deg turn about x, so an unrotated body stands upright and faces the camera.
CAMERA_FROM_BODY = np.diag([1.0, -1.0, -1.0])


def global_orientation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Root rotation in the camera frame: ``CAMERA_FROM_BODY @ Ry(yaw) @ Rx(pitch) @ Rz(roll)``.

    yaw turns about the body's up axis: 0 = facing the camera, +90 = facing the image's right;
    pitch > 0 leans the body forward (towards the camera at yaw 0); roll tilts it sideways.
    """
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    ry = euler_to_matrix(np.array([0.0, y, 0.0]))
    rx = euler_to_matrix(np.array([p, 0.0, 0.0]))
    rz = euler_to_matrix(np.array([0.0, 0.0, r]))
    return CAMERA_FROM_BODY @ ry @ rx @ rz
