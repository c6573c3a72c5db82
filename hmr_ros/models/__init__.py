"""Model architectures: VisHMR (paper §3) and its parts, trainable in torch, exportable by stage.

* ``backbones``: ResNet-18/34/50, key-compatible with torchvision checkpoints;
* ``flow``: the conditional normalizing flow of the global branch (with an export-safe inverse);
* ``heads``: IUV head, visible (cross-attention) head, shape/camera head;
* ``vishmr``: ``VisHMRConfig`` and ``VisHMR`` (``stage_a`` / ``stage_b`` / ``merge`` /
  ``forward``);
* ``camera``: the weak-perspective crop camera convention;
* ``losses``: ``VisHMRLoss`` (eqs. 2-3 + keypoints + shape) and GT visibility (eq. 1);
* the other papers' regressors, imported from their modules: ``ochmr`` (CoNorm), ``imphmr``
  (feature fields), ``instancehmr`` (bottom-up; ``hrnet``: HRNet-W32), ``dpmesh`` (diffusers
  U-Net + ControlNet backbone; ``dpmesh_cost``: full-size parameters and FLOPs).

Model code never imports node or runtime code (DESIGN.md §3).
"""

from .backbones import IMAGE_MEAN, IMAGE_STD, RESNET_SPECS, ResNet, resnet
from .camera import weak_perspective_project
from .flow import ConditionalFlow
from .heads import IDENTITY_6D, IUVHead, ShapeCameraHead, VisibleHead
from .losses import LossWeights, VisHMRLoss, visibility_ground_truth
from .vishmr import (MERGE_MODES, POSE_DIM, STAGE_A_OUTPUTS, STAGE_B_OUTPUTS, VisHMR,
                     VisHMRConfig)

__all__ = [
    "ConditionalFlow",
    "IDENTITY_6D",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "IUVHead",
    "LossWeights",
    "MERGE_MODES",
    "POSE_DIM",
    "RESNET_SPECS",
    "ResNet",
    "STAGE_A_OUTPUTS",
    "STAGE_B_OUTPUTS",
    "ShapeCameraHead",
    "VisHMR",
    "VisHMRConfig",
    "VisHMRLoss",
    "VisibleHead",
    "resnet",
    "visibility_ground_truth",
    "weak_perspective_project",
]
