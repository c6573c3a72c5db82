"""Mesh-recovery metrics: MPJPE, PA-MPJPE, PVE (millimetres from metres) and visibility accuracy.

Protocol (the usual one of HMR / SPIN / PARE / ProHMR on Human3.6M and 3DPW):

* inputs are in **metres**, outputs in **millimetres** (×1000), one value per sample;
* **MPJPE**: mean Euclidean joint error after **root alignment**: each skeleton is translated so
  that its own pelvis (joint 0 of the SMPL layout) is at the origin -- no rotation, no scale;
* **PA-MPJPE**: mean joint error after **Procrustes alignment**: the prediction is mapped onto the
  ground truth by the least-squares *similarity* transform (rotation, uniform scale, translation;
  Umeyama 1991, reflections excluded), so only the articulated pose is measured;
* **PVE** (a.k.a. MPVPE / V2V): mean per-vertex error after root alignment, each mesh translated
  by its own pelvis joint (``pred_joints[:, 0]`` / ``gt_joints[:, 0]``);
* **visibility accuracy**: a part is "visible" when ω > 0.5; accuracy = fraction of samples
  whose predicted visible/not-visible decision agrees with the GT's (GT ω > 0.5), per part and
  averaged over parts.

The joint set is whatever is passed in (here the 24 SMPL-layout joints; benchmarks that use the
14 LSP joints regressed with the H3.6M regressor need that regressor, which is licensed SMPL data
and not shipped). Optional ``mask`` (B x J, 0/1 or confidences > 0) excludes unlabelled joints
from the mean and from the Procrustes fit.

All functions take NumPy arrays or torch tensors (any device; converted to float64 NumPy) and
return float64 NumPy arrays, so they are exact enough to serve as references. ``MeshMetrics``
accumulates per-sample values over an evaluation run.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

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

M_TO_MM = 1000.0


def _np(x) -> np.ndarray:
    """float64 NumPy copy of an array-like or a torch tensor (any device, grad or not)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_points(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"{what}: pred and gt must both be B x N x 3, got {pred.shape} and "
                         f"{gt.shape}")


def _mask(mask, shape) -> np.ndarray:
    """B x N float weights in {0, 1} (ones when ``mask`` is None)."""
    if mask is None:
        return np.ones(shape[:2])
    m = _np(mask)
    if m.shape != shape[:2]:
        raise ValueError(f"mask must be B x N = {shape[:2]}, got {m.shape}")
    return (m > 0).astype(np.float64)


def _masked_mean(err: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-sample mean of B x N errors over the masked points (NaN for a sample with none)."""
    count = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (err * m).sum(1) / count, np.nan)


def root_align(points, root: int = 0) -> np.ndarray:
    """Translate each sample so that point ``root`` is at the origin: B x N x 3 -> B x N x 3."""
    p = _np(points)
    return p - p[:, root:root + 1]


def mpjpe(pred_joints, gt_joints, mask=None, root: int = 0) -> np.ndarray:
    """Root-aligned mean per-joint position error, mm per sample (B,).

    Both skeletons are translated by their own joint ``root`` (pelvis) first. ``mask`` (B x J)
    excludes joints; the root must be labelled for the alignment to mean anything.
    """
    pred, gt = _np(pred_joints), _np(gt_joints)
    _check_points(pred, gt, "mpjpe")
    err = np.linalg.norm(root_align(pred, root) - root_align(gt, root), axis=-1)
    return M_TO_MM * _masked_mean(err, _mask(mask, pred.shape))


def similarity_transform(source, target, mask=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity ``target ≈ s · R @ source + t`` per sample (Umeyama 1991).

    source, target: B x N x 3 -> (s (B,), R (B x 3 x 3, det +1), t (B x 3)). ``mask`` (B x N)
    restricts the fit to the labelled points. Reflections are excluded (the sign of the last
    singular direction is flipped when det(U V^T) < 0), so a mirrored skeleton is *not* aligned.
    """
    src, tgt = _np(source), _np(target)
    _check_points(src, tgt, "similarity_transform")
    m = _mask(mask, src.shape)[..., None]  # B x N x 1
    n = m.sum(1, keepdims=True).clip(min=1.0)  # B x 1 x 1
    mu_s, mu_t = (src * m).sum(1, keepdims=True) / n, (tgt * m).sum(1, keepdims=True) / n
    xs, xt = (src - mu_s) * m, (tgt - mu_t) * m
    var_s = (xs ** 2).sum((1, 2)) / n[:, 0, 0]  # B
    cov = np.einsum("bni,bnj->bij", xt, xs) / n  # B x 3 x 3: Σ_ts
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones_like(d)
    sign[:, -1] = np.sign(np.linalg.det(u @ vt))
    sign[sign == 0] = 1.0
    rot = u @ (sign[:, :, None] * vt)  # U diag(1, 1, ±1) V^T
    scale = (d * sign).sum(1) / np.maximum(var_s, 1e-300)
    trans = mu_t[:, 0] - scale[:, None] * np.einsum("bij,bj->bi", rot, mu_s[:, 0])
    return scale, rot, trans


def procrustes_align(pred, gt, mask=None) -> np.ndarray:
    """``pred`` mapped onto ``gt`` by the best similarity transform: B x N x 3 (metres)."""
    s, rot, t = similarity_transform(pred, gt, mask)
    return s[:, None, None] * np.einsum("bij,bnj->bni", rot, _np(pred)) + t[:, None]


def pa_mpjpe(pred_joints, gt_joints, mask=None) -> np.ndarray:
    """Procrustes-aligned MPJPE, mm per sample (B,): invariant to a similarity transform of
    ``pred`` (rotation + uniform scale + translation)."""
    pred, gt = _np(pred_joints), _np(gt_joints)
    _check_points(pred, gt, "pa_mpjpe")
    aligned = procrustes_align(pred, gt, mask)
    err = np.linalg.norm(aligned - gt, axis=-1)
    return M_TO_MM * _masked_mean(err, _mask(mask, pred.shape))


def pve(pred_vertices, gt_vertices, pred_joints=None, gt_joints=None, root: int = 0) -> np.ndarray:
    """Per-vertex error, mm per sample (B,).

    With ``pred_joints`` / ``gt_joints`` (B x J x 3), each mesh is first translated by its own
    joint ``root`` (pelvis) -- the usual protocol. Without them the meshes are compared as given
    (call it on already root-relative vertices). Both meshes must share the topology.
    """
    pv, gv = _np(pred_vertices), _np(gt_vertices)
    _check_points(pv, gv, "pve")
    if (pred_joints is None) != (gt_joints is None):
        raise ValueError("pve: give both pred_joints and gt_joints for root alignment, or neither")
    if pred_joints is not None:
        pv = pv - _np(pred_joints)[:, root:root + 1]
        gv = gv - _np(gt_joints)[:, root:root + 1]
    return M_TO_MM * np.linalg.norm(pv - gv, axis=-1).mean(1)


def visibility_accuracy(pred_omega, gt_omega, threshold: float = 0.5,
                        mask=None) -> Tuple[np.ndarray, float]:
    """Agreement of ``pred > threshold`` with ``gt > threshold``: (per part (P,), mean of parts).

    pred_omega, gt_omega: B x P. ``mask`` (B,) selects the samples that have GT visibility. A
    part never evaluated gets NaN and is left out of the mean.
    """
    pred, gt = _np(pred_omega), _np(gt_omega)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"visibility_accuracy: pred and gt must both be B x P, got {pred.shape} "
                         f"and {gt.shape}")
    keep = np.ones(pred.shape[0], bool) if mask is None else _np(mask).reshape(-1) > 0
    if not keep.any():
        per_part = np.full(pred.shape[1], np.nan)
        return per_part, float("nan")
    agree = ((pred[keep] > threshold) == (gt[keep] > threshold)).astype(np.float64)
    per_part = agree.mean(0)
    return per_part, float(np.nanmean(per_part))


def iuv_part_accuracy(pred_labels, gt_labels, num_parts: int = 24) -> Dict[str, object]:
    """Dense-correspondence quality from part labels (0 = background, 1 + part id; B x h x w,
    e.g. ``body.uv_atlas.atlas_part_labels`` of both IUVs at the same size).

    ``foreground``: pixels whose fg/bg call is right; ``part``: GT-foreground pixels given their
    GT part (a background call counts as wrong); ``per_part_recall`` (P,): the same per GT part
    (NaN where a part never appears). Why: the visible branch warps features by this map, so a
    wrong part puts an arm's features in a leg's chart.
    """
    pred, gt = _np(pred_labels).astype(np.int64), _np(gt_labels).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"iuv_part_accuracy: label maps differ in shape, {pred.shape} vs "
                         f"{gt.shape}")
    fg = gt > 0
    hits = np.bincount(gt[fg & (pred == gt)], minlength=num_parts + 1)[1:num_parts + 1]
    totals = np.bincount(gt[fg], minlength=num_parts + 1)[1:num_parts + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)
    return {"foreground": float(((pred > 0) == fg).mean()) if gt.size else float("nan"),
            "part": float(hits.sum() / totals.sum()) if totals.sum() else float("nan"),
            "per_part_recall": recall}


class MeshMetrics:
    """Accumulates per-sample metrics over batches; ``compute()`` averages them.

    ``update`` takes whichever ground truth a batch has; a metric without any GT is absent from
    ``compute()``'s result (not 0). Keys: ``mpjpe``, ``pa_mpjpe``, ``pve`` (mm) and
    ``vis_acc`` (fraction) plus ``vis_acc/<part index>``.
    """

    def __init__(self) -> None:
        self._values: Dict[str, list] = {"mpjpe": [], "pa_mpjpe": [], "pve": []}
        self._vis_agree: list = []  # N x P arrays of 0/1

    def update(self, pred_joints=None, gt_joints=None, joint_mask=None, pred_vertices=None,
               gt_vertices=None, gt_vertex_joints=None, vertex_mask=None, pred_omega=None,
               gt_omega=None, omega_mask=None, threshold: float = 0.5) -> None:
        """``joint_mask`` B x J; ``vertex_mask`` / ``omega_mask`` (B,) select samples that have
        GT vertices / visibility. ``gt_vertex_joints`` are the joints the GT mesh is rooted at
        (defaults to ``gt_joints``)."""
        if pred_joints is not None and gt_joints is not None:
            jm = _mask(joint_mask, _np(pred_joints).shape)
            rows = jm.sum(1) > 0
            if rows.any():
                pj, gj = _np(pred_joints)[rows], _np(gt_joints)[rows]
                self._values["mpjpe"].append(mpjpe(pj, gj, jm[rows]))
                self._values["pa_mpjpe"].append(pa_mpjpe(pj, gj, jm[rows]))
        if pred_vertices is not None and gt_vertices is not None:
            keep = (np.ones(_np(pred_vertices).shape[0], bool) if vertex_mask is None
                    else _np(vertex_mask).reshape(-1) > 0)
            if keep.any():
                rootj = gt_joints if gt_vertex_joints is None else gt_vertex_joints
                self._values["pve"].append(pve(
                    _np(pred_vertices)[keep], _np(gt_vertices)[keep],
                    None if pred_joints is None else _np(pred_joints)[keep],
                    None if rootj is None else _np(rootj)[keep]))
        if pred_omega is not None and gt_omega is not None:
            keep = (np.ones(_np(pred_omega).shape[0], bool) if omega_mask is None
                    else _np(omega_mask).reshape(-1) > 0)
            if keep.any():
                self._vis_agree.append(((_np(pred_omega)[keep] > threshold)
                                        == (_np(gt_omega)[keep] > threshold)).astype(np.float64))

    def compute(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for name, chunks in self._values.items():
            if chunks:
                values = np.concatenate(chunks)
                values = values[np.isfinite(values)]
                if values.size:
                    out[name] = float(values.mean())
        if self._vis_agree:
            per_part = np.concatenate(self._vis_agree).mean(0)
            out["vis_acc"] = float(per_part.mean())
            out.update({f"vis_acc/{i}": float(v) for i, v in enumerate(per_part)})
        return out

    @property
    def count(self) -> Dict[str, int]:
        """Number of samples behind each metric."""
        out = {k: int(sum(len(c) for c in v)) for k, v in self._values.items()}
        out["vis_acc"] = int(sum(len(c) for c in self._vis_agree))
        return out
