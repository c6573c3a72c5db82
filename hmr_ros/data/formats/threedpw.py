"""3DPW (von Marcard et al., ECCV 2018) sequence files as map-style torch datasets.

A sequence file ``sequenceFiles/<split>/<name>.pkl`` is a latin-1 pickle (written by Python 2)
with: ``sequence`` (name), ``img_frame_ids`` (T,), ``poses`` (P, T, 72) SMPL axis-angle in the
*world* frame, ``betas`` (P, 10) (some releases store more: the first 10 are used), ``trans``
(P, T, 3), ``cam_poses`` (T, 4, 4) world -> camera extrinsics ``[R | t]``, ``cam_intrinsics``
(3, 3), ``poses2d`` (P, T, 3, 18) OpenPose COCO-18 detections, ``campose_valid`` (P, T),
``jointPositions`` (P, T, 72) the 24 SMPL joints in the world frame, ``genders`` (P,).

``ThreeDPWSequence`` yields one sample per (person, frame) -- only frames with
``campose_valid`` unless ``valid_only=False``, the standard evaluation protocol -- in the
camera frame:

* global orientation ``R_cam @ R_world_root`` (the other 23 relative rotations are frame-free);
* joints ``R_cam @ X_world + t_cam`` (metres, *not* root-relative), all 24 with confidence 1;
* 2D keypoints: the camera-frame joints projected with ``cam_intrinsics`` (SMPL layout, so they
  agree with the 3D labels; the COCO-18 ``poses2d`` are detections, not labels);
* the box: the projected joints' bounding square × ``bbox_expand`` (1.3: SMPL joints stop at
  the head centre, wrists and ankles, so the limbs' ends need the margin).

Images are ``<image_dir>/<sequence>/image_<frame:05d>.jpg`` (3DPW's ``imageFiles`` layout), or
``<image_dir>/image_<frame:05d>.jpg`` when ``image_dir`` is the sequence folder itself. Items are
the same dict as ``SpinNpzDataset``'s plus ``person`` and ``frame`` (ints) and ``sequence``
(str).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from hmr_ros.body.posing import axis_angle_to_matrix

from ._common import normalise_image, split_key, to_tensors
from .augment import AugmentConfig, crop_sample, sample_params
from .geometry import read_image

__all__ = ["ThreeDPWDataset", "ThreeDPWSequence", "load_3dpw_pickle"]

_REQUIRED = ("sequence", "img_frame_ids", "poses", "betas", "cam_poses", "cam_intrinsics",
             "campose_valid", "jointPositions")


def load_3dpw_pickle(path: Union[str, Path]) -> dict:
    """The sequence dict of a 3DPW ``.pkl`` (latin-1 pickle; the user's own dataset file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"3DPW sequence file {path} does not exist")
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a 3DPW sequence file (got a {type(data).__name__})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise KeyError(f"{path}: missing key(s) {missing} of a 3DPW sequence file")
    return data


class ThreeDPWSequence:
    """One 3DPW sequence: ``len`` = number of (person, frame) pairs kept."""

    def __init__(self, pkl_path: Union[str, Path], image_dir: Union[str, Path],
                 crop_size: int = 224, augment: Optional[AugmentConfig] = None,
                 valid_only: bool = True, bbox_expand: float = 1.3, frame_step: int = 1,
                 seed: int = 0) -> None:
        self.pkl_path, self.image_dir = Path(pkl_path), Path(image_dir)
        data = load_3dpw_pickle(self.pkl_path)
        self.crop_size, self.augment, self.seed = int(crop_size), augment, int(seed)
        self.bbox_expand = float(bbox_expand)
        self.sequence = str(data["sequence"])
        poses = np.asarray(data["poses"], np.float64)
        people, frames = poses.shape[:2]
        self.poses = poses.reshape(people, frames, 24, 3)
        self.betas = np.asarray(data["betas"], np.float64).reshape(people, -1)[:, :10]
        self.joints_world = np.asarray(data["jointPositions"], np.float64).reshape(
            people, frames, 24, 3)
        self.cam_poses = np.asarray(data["cam_poses"], np.float64).reshape(frames, 4, 4)
        self.intrinsics = np.asarray(data["cam_intrinsics"], np.float64).reshape(3, 3)
        self.frame_ids = np.asarray(data["img_frame_ids"]).astype(np.int64).reshape(frames)
        valid = np.asarray(data["campose_valid"]).astype(bool).reshape(people, frames)
        if not valid_only:
            valid[:] = True
        keep = np.zeros_like(valid)
        keep[:, ::max(int(frame_step), 1)] = True
        self.items = np.argwhere(valid & keep)  # rows (person, frame)
        genders = data.get("genders", ["n"] * people)
        self.genders = [str(g)[:1] if g is not None else "n" for g in genders]

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, frame: int) -> Path:
        name = f"image_{int(self.frame_ids[frame]):05d}.jpg"
        nested = self.image_dir / self.sequence / name
        return nested if nested.is_file() or not (self.image_dir / name).is_file() else (
            self.image_dir / name)

    def camera_frame(self, person: int, frame: int):
        """(relative rotations with camera-frame root 24 x 3 x 3, camera-frame joints 24 x 3)."""
        r_cam, t_cam = self.cam_poses[frame, :3, :3], self.cam_poses[frame, :3, 3]
        rel = axis_angle_to_matrix(self.poses[person, frame])
        rel[0] = r_cam @ rel[0]
        joints = self.joints_world[person, frame] @ r_cam.T + t_cam
        return rel, joints

    def __getitem__(self, key):
        index, rng = split_key(key, self.seed)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        person, frame = (int(v) for v in self.items[index])
        rel, joints = self.camera_frame(person, frame)
        z = joints[:, 2:3]
        in_front = (z[:, 0] > 1e-3).astype(np.float64)
        uvw = joints @ self.intrinsics.T
        px = uvw[:, :2] / np.where(np.abs(z) > 1e-6, z, 1e-6)
        pts = px[in_front > 0] if in_front.any() else px
        lo, hi = pts.min(0), pts.max(0)
        center, box = (lo + hi) / 2, float((hi - lo).max() * self.bbox_expand)
        params = sample_params(self.augment, rng)
        out = crop_sample(read_image(self.image_path(frame)), center, max(box, 1.0),
                          self.crop_size, params, self.augment, rel_rotmats=rel,
                          keypoints_px=px, keypoints_conf=in_front, joints3d=joints)
        sample = {
            "image": normalise_image(out["crop"]),
            "rel_rotmats": out["rel_rotmats"],
            "betas": self.betas[person],
            "has_smpl": 1.0,
            "keypoints2d": out["keypoints2d"],
            "keypoints2d_conf": out["keypoints2d_conf"],
            "joints3d": out["joints3d"],
            "joints3d_conf": out["joints3d_conf"],
            "gender": self.genders[person] if person < len(self.genders) else "n",
            "imgname": str(self.image_path(frame)),
            "index": index,
            "sequence": self.sequence,
            "person": person,
            "frame": int(self.frame_ids[frame]),
        }
        return to_tensors(sample)


class ThreeDPWDataset:
    """Several sequences as one dataset: ``paths`` = .pkl files and/or folders of them."""

    def __init__(self, paths: Union[str, Path, Sequence[Union[str, Path]]],
                 image_dir: Union[str, Path], **kwargs) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files: List[Path] = []
        for p in map(Path, paths):
            files.extend(sorted(p.glob("*.pkl")) if p.is_dir() else [p])
        if not files:
            raise FileNotFoundError(f"no 3DPW .pkl files in {[str(p) for p in paths]}")
        self.sequences = [ThreeDPWSequence(f, image_dir, **kwargs) for f in files]
        self._offsets = np.cumsum([0] + [len(s) for s in self.sequences])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, key):
        index, seed = (int(key[0]), key[1]) if isinstance(key, (tuple, list)) else (int(key), None)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        seq = int(np.searchsorted(self._offsets, index, side="right") - 1)
        local = index - int(self._offsets[seq])
        return self.sequences[seq][local if seed is None else (local, seed)]
