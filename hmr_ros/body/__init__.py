"""Body models in SMPL layout: the user's SMPL files or the package's procedural body.

Everything downstream -- kernels, regressors, messages, the IUV atlas -- indexes joints, parts
and vertices through a ``BodyModel`` (DESIGN.md §4). This package loads one (``load_body_model``),
generates the licence-free procedural one (``procedural_body``), derives its UV atlas, poses it
with a readable NumPy LBS (``pose_body``; the fast one is in ``hmr_ros.kernels``) and writes
meshes. Importing it needs only NumPy; torch and smplx are imported when used.
"""

from .constants import FLIP_PERMUTATION, JOINT_NAMES, NUM_BETAS, NUM_JOINTS, PARENTS
from .errors import BodyModelError
from .loaders import load_body_model, load_npz, load_pkl
from .mesh_export import part_colors, save_mesh
from .model import BodyModel
from .posing import axis_angle_to_matrix, pose_body
from .procedural import procedural_body
from .uv_atlas import UVAtlas, atlas_part_map, build_uv_atlas, texel_index

__all__ = [
    "BodyModel",
    "BodyModelError",
    "UVAtlas",
    "FLIP_PERMUTATION",
    "JOINT_NAMES",
    "NUM_BETAS",
    "NUM_JOINTS",
    "PARENTS",
    "atlas_part_map",
    "axis_angle_to_matrix",
    "build_uv_atlas",
    "load_body_model",
    "load_npz",
    "load_pkl",
    "part_colors",
    "pose_body",
    "procedural_body",
    "save_mesh",
    "texel_index",
]
