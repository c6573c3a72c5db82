"""Evaluation: mesh-recovery metrics (``metrics``: MPJPE, PA-MPJPE, PVE, visibility, IUV).

Importing it needs only NumPy; the metrics accept torch tensors too.
"""

from .metrics import (MeshMetrics, iuv_part_accuracy, mpjpe, pa_mpjpe, procrustes_align, pve,
                      root_align, similarity_transform, visibility_accuracy)

__all__ = [
    "MeshMetrics",
    "iuv_part_accuracy",
    "mpjpe",
    "pa_mpjpe",
    "procrustes_align",
    "pve",
    "root_align",
    "similarity_transform",
    "visibility_accuracy",
]
