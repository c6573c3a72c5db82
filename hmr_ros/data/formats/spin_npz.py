"""SPIN / PARE / ProHMR annotation files (``.npz``) as a map-style torch dataset.

File keys (N samples): ``imgname`` (N,) paths relative to ``img_dir``; ``center`` (N, 2) box
centre in pixels; ``scale`` (N,) box side / 200 px; optional ``pose`` (N, 72) SMPL axis-angle
(camera-frame global orientation first) and ``shape`` (N, 10) β with ``has_smpl`` (N,) (all
SMPL = valid when ``pose`` exists and ``has_smpl`` does not); ``part`` (N, 24, 3) 2D keypoints
(x, y, confidence) in image pixels; optional ``S`` (N, 24, 4) 3D joints (metres, camera frame,
+ confidence); optional ``gender`` (N,) ('m' / 'f' / 'n'); ``openpose`` (N, 25, 3) is read by
nobody here (OpenPose BODY_25 detections; the SPIN keypoints are the curated labels).

**Keypoint layout.** In the files SPIN/PARE distribute, ``part`` and ``S`` are in SPIN's 24-joint
order (14 LSP joints + 10 extra: R ankle, R knee, R hip, L hip, ..., nose, eyes, ears), *not* the
SMPL kinematic order. ``keypoint_layout="spin24"`` (default) maps the 15 joints with an SMPL
counterpart onto SMPL indices (``SPIN24_TO_SMPL``) and gives the other 9 SMPL joints confidence 0.
The counterparts are approximate (LSP hips sit lower and wider than SMPL's hip joints, LSP neck vs
SMPL neck, H36M head vs SMPL head): good supervision, not exact identity -- for exactness use
files already in SMPL order with ``keypoint_layout="smpl24"``.

Each item is a dict (torch tensors unless noted):

``image`` 3 x L x L float (normalised with ``IMAGE_MEAN/STD``); ``rel_rotmats`` 24 x 3 x 3;
``betas`` 10; ``has_smpl`` () 0/1; ``keypoints2d`` 24 x 2 crop-normalised [-1, 1];
``keypoints2d_conf`` 24; ``joints3d`` 24 x 3 metres (camera frame, *not* root-relative);
``joints3d_conf`` 24 (all 0 when the file has no ``S``); ``gender`` str; ``imgname`` str;
``index`` int. Missing SMPL -> identity rotations, zero β, ``has_smpl`` 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from hmr_ros.body.posing import axis_angle_to_matrix

from ._common import normalise_image, split_key, to_tensors
from .augment import AugmentConfig, crop_sample, sample_params
from .geometry import read_image

__all__ = ["SPIN24_NAMES", "SPIN24_TO_SMPL", "SpinNpzDataset", "spin24_to_smpl"]

SPIN24_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck_lsp", "head_top_lsp", "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m",
    "head_h36m", "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)
#: SMPL joint index -> SPIN-24 index of its (approximate) counterpart
SPIN24_TO_SMPL = {
    0: 14,  # pelvis <- pelvis (MPII)
    1: 3, 2: 2,  # hips
    4: 4, 5: 1,  # knees
    7: 5, 8: 0,  # ankles
    12: 12,  # neck <- neck (LSP)
    15: 18,  # head <- head (H36M)
    16: 9, 17: 8,  # shoulders
    18: 10, 19: 7,  # elbows
    20: 11, 21: 6,  # wrists
}

_REQUIRED = ("imgname", "center", "scale", "part")


def spin24_to_smpl(points: np.ndarray) -> np.ndarray:
    """N x 24 x C in SPIN order -> N x 24 x C in SMPL order; unmapped joints are all zeros
    (so their confidence, the last channel, is 0)."""
    points = np.asarray(points)
    out = np.zeros_like(points)
    for smpl, spin in SPIN24_TO_SMPL.items():
        out[:, smpl] = points[:, spin]
    return out


class SpinNpzDataset:
    """Map-style dataset over a SPIN-format ``.npz`` (see the module docs).

    ``augment``: an ``AugmentConfig`` (None = deterministic centre crops, for evaluation).
    ``bbox_rescale`` multiplies the stored box side (some releases store tight boxes).
    Items are addressed by ``i`` or ``(i, seed)`` (reproducible augmentation, ``_common``).
    """

    def __init__(self, npz_path: Union[str, Path], img_dir: Union[str, Path], crop_size: int = 224,
                 augment: Optional[AugmentConfig] = None, keypoint_layout: str = "spin24",
                 bbox_rescale: float = 1.0, seed: int = 0) -> None:
        self.npz_path, self.img_dir = Path(npz_path), Path(img_dir)
        if keypoint_layout not in ("spin24", "smpl24"):
            raise ValueError(f"keypoint_layout must be 'spin24' or 'smpl24', got "
                             f"{keypoint_layout!r}")
        if not self.npz_path.is_file():
            raise FileNotFoundError(f"SPIN annotation file {self.npz_path} does not exist")
        self.crop_size, self.augment, self.seed = int(crop_size), augment, int(seed)
        self.bbox_rescale = float(bbox_rescale)
        arrays = _load_npz(self.npz_path)
        missing = [k for k in _REQUIRED if k not in arrays]
        if missing:
            raise KeyError(f"{self.npz_path}: missing key(s) {missing} (a SPIN-format file has "
                           f"{list(_REQUIRED)} and optionally pose, shape, S, has_smpl, gender)")
        n = len(arrays["imgname"])
        self.imgname = [str(x) for x in arrays["imgname"]]
        self.center = arrays["center"].astype(np.float64).reshape(n, 2)
        self.scale = arrays["scale"].astype(np.float64).reshape(n)
        to_smpl = spin24_to_smpl if keypoint_layout == "spin24" else (lambda a: np.asarray(a))
        self.part = to_smpl(arrays["part"].astype(np.float64).reshape(n, 24, 3))
        self.S = (to_smpl(arrays["S"].astype(np.float64).reshape(n, 24, 4)) if "S" in arrays
                  else None)
        if "pose" in arrays:
            self.pose = arrays["pose"].astype(np.float64).reshape(n, 72)
            self.betas = (arrays["shape"].astype(np.float64).reshape(n, 10) if "shape" in arrays
                          else np.zeros((n, 10)))
            self.has_smpl = (arrays["has_smpl"].astype(np.float64).reshape(n)
                             if "has_smpl" in arrays else np.ones(n))
        else:
            self.pose, self.betas, self.has_smpl = None, np.zeros((n, 10)), np.zeros(n)
        self.gender = ([str(g) for g in arrays["gender"]] if "gender" in arrays else ["n"] * n)

    def __len__(self) -> int:
        return len(self.imgname)

    def __getitem__(self, key):
        index, rng = split_key(key, self.seed)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        params = sample_params(self.augment, rng)
        image = read_image(self.img_dir / self.imgname[index])
        if self.pose is not None and self.has_smpl[index] > 0:
            rel = axis_angle_to_matrix(self.pose[index].reshape(24, 3))
        else:
            rel = np.broadcast_to(np.eye(3), (24, 3, 3))
        s3 = self.S[index] if self.S is not None else np.zeros((24, 4))
        out = crop_sample(
            image, self.center[index], self.scale[index] * 200.0 * self.bbox_rescale,
            self.crop_size, params, self.augment, rel_rotmats=rel,
            keypoints_px=self.part[index, :, :2], keypoints_conf=self.part[index, :, 2],
            joints3d=s3[:, :3], joints3d_conf=s3[:, 3])
        sample = {
            "image": normalise_image(out["crop"]),
            "rel_rotmats": out["rel_rotmats"],
            "betas": self.betas[index] * float(self.has_smpl[index] > 0),
            "has_smpl": float(self.has_smpl[index] > 0),
            "keypoints2d": out["keypoints2d"],
            "keypoints2d_conf": out["keypoints2d_conf"],
            "joints3d": out["joints3d"],
            "joints3d_conf": out["joints3d_conf"],
            "gender": self.gender[index],
            "imgname": self.imgname[index],
            "index": index,
        }
        return to_tensors(sample)


def _load_npz(path: Path) -> dict:
    """All arrays of the file; object arrays (some releases pickle ``imgname``) are allowed
    only when plain loading fails -- these are the user's own annotation files."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError:
        with np.load(path, allow_pickle=True) as data:
            return {k: data[k] for k in data.files}
