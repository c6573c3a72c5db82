"""Real-dataset loaders: SPIN/PARE/ProHMR ``.npz`` annotations and 3DPW sequences.

Both are map-style datasets (``len`` + ``[i]``; also ``[(i, seed)]`` for reproducible
augmentation) returning dicts of torch tensors: the crop (``image``, normalised with
``hmr_ros.models.IMAGE_MEAN/STD``) and its labels in the package's conventions (SMPL joint
layout, camera-frame global orientation, crop-normalised 2D keypoints). ``geometry`` pins the
crop warp and how rotation / horizontal flip act on every label; ``augment`` draws and applies
the augmentation inside the warp.
"""

from .augment import AugmentConfig, AugmentParams, crop_sample, photometric, sample_params
from .geometry import (crop_matrix, flip_axis_angle, flip_joints3d, flip_keypoints2d,
                       flip_per_part, flip_rotmats, read_image, rotate_points3d, rotate_root,
                       rotation_z, to_crop_normalised, warp_crop)
from .spin_npz import SPIN24_NAMES, SPIN24_TO_SMPL, SpinNpzDataset, spin24_to_smpl
from .threedpw import ThreeDPWDataset, ThreeDPWSequence, load_3dpw_pickle

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "SPIN24_NAMES",
    "SPIN24_TO_SMPL",
    "SpinNpzDataset",
    "ThreeDPWDataset",
    "ThreeDPWSequence",
    "crop_matrix",
    "crop_sample",
    "flip_axis_angle",
    "flip_joints3d",
    "flip_keypoints2d",
    "flip_per_part",
    "flip_rotmats",
    "load_3dpw_pickle",
    "photometric",
    "read_image",
    "rotate_points3d",
    "rotate_root",
    "rotation_z",
    "sample_params",
    "spin24_to_smpl",
    "to_crop_normalised",
    "warp_crop",
]
