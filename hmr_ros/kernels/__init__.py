"""Geometric kernels of hmr_ros: one Python API over the C++ (OpenMP) and CUDA builds.

Inputs are float32 NumPy arrays (CPU) or CUDA arrays exposing ``__cuda_array_interface__``
(torch CUDA tensors, CuPy) when the CUDA build exists; outputs live where the inputs live.
Shapes, dtypes and layouts are checked with errors that name the op and argument
(:class:`KernelError`). ``torch_ops`` holds the differentiable torch twins used for training;
import it explicitly (``from hmr_ros.kernels import torch_ops``) so this module stays light.
"""

from ._ext import cuda_available, cuda_compiled
from .centres import CentrePeaks, centre_peaks
from .crop import crop_affine
from .errors import KernelError
from .merge import kinematic_slerp, match_hypotheses
from .rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rot6d_to_matrix,
)
from .raster import interpolate, rasterize
from .skinning import LbsModel, lbs
from .uv import iuv_warp, part_visibility

__all__ = [
    "CentrePeaks",
    "KernelError",
    "LbsModel",
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "centre_peaks",
    "crop_affine",
    "cuda_available",
    "cuda_compiled",
    "interpolate",
    "iuv_warp",
    "kinematic_slerp",
    "lbs",
    "match_hypotheses",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rot6d",
    "part_visibility",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "rasterize",
    "rot6d_to_matrix",
]
