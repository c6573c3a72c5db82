"""VisHMR training losses (paper eqs. 2-3, plus the usual 3D/2D keypoint and shape terms).

Every term is returned on its own (for logging) together with the weighted ``total``. A term
whose target is missing from ``targets`` is left out, so datasets with partial labels (2D-only
images, no IUV renders) train the heads they can.

Terms and their definitions:

* ``iuv_part``: cross-entropy of the IUV head's per-pixel part classification (background + 24
  parts; DensePose's "I"), the GT part read off the GT atlas (U, V); with
  ``iuv_part_balance`` α > 0 each class is weighted by its pixel share in the batch to the
  power -α, so thin parts (wrists, hands, feet: a few pixels each) are not drowned by the
  background and the torso;
* ``iuv_uv``: L2 of the chart-local (u, v) of the GT part, on GT-foreground pixels only (U, V
  are undefined on background);
* ``abs_pose``: L1 between the visible head's absolute rotation matrices and the GT absolute
  rotations (eq. 2, "SMPL-abs"), all parts;
* ``visibility``: L1 between ω and the GT visibility of eq. 1;
* ``exp_pose``: L1 between the *expectation* of the global branch's K hypotheses and the GT
  (eq. 3, "SMPL-exp": ``|E_k θ_k - θ_gt|``, "the L1 loss of the expectation of SMPL
  parameters of multiple hypotheses"), see ``expectation_pose_loss``. The expectation of the
  parent-relative rotations ``hyp_rel`` (B x K x 24 x 3 x 3, all K, the z = 0 mode-like
  hypothesis included) is their chordal mean: the element-wise mean of the matrices projected
  back onto SO(3); the term is the element-wise L1 of that mean rotation to the GT matrices
  (the representation ``abs_pose`` uses). It is zero whenever the hypotheses are spread
  symmetrically about the GT (e.g. GT·R and GT·R^T, R turning less than 90°), so, unlike an L1
  of every hypothesis to the GT (the term before issue 12, which pulled each random sample
  onto the GT and collapsed the spread eq. 4's matching needs), it moves only the centre of
  the set; the spread is left to ``nll``. The mode-like z = 0 hypothesis has no term of its
  own (it never had). With K = 1 the two definitions coincide;
* ``nll``: negative log-likelihood of the GT pose under the flow (eq. 3), per sample;
* ``joints3d``: L1 of root-relative joints of the merged mesh;
* ``keypoints2d``: L1 of the weak-perspective projection of the merged joints vs GT keypoints in
  crop-normalised coordinates ([-1, 1], see ``camera.py``), optionally confidence-weighted;
* ``betas``: L2 to GT β; ``betas_prior``: ``|β|²`` (keeps shapes plausible when GT is absent).

Targets (dict, all optional): ``iuv`` B x 3 x h x w (at the IUV resolution), ``abs_rotmats`` or
``rel_rotmats`` B x 24 x 3 x 3 (the other is derived), ``visibility`` B x 24, ``joints3d``
B x 24 x 3, ``keypoints2d`` B x 24 x 2 (+ ``keypoints2d_conf`` B x 24), ``betas`` B x 10.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmr_ros.body.constants import NUM_JOINTS, PARENTS
from hmr_ros.body.uv_atlas import GRID, MARGIN
from hmr_ros.kernels import torch_ops as ops

from .camera import weak_perspective_project

__all__ = ["LossWeights", "VisHMRLoss", "atlas_to_charts", "expectation_pose_loss",
           "visibility_ground_truth"]

_PARENTS = [int(p) for p in PARENTS]


@dataclass(frozen=True)
class LossWeights:
    """λ of each term (0 disables it). Defaults balance the terms' typical magnitudes."""

    iuv_part: float = 1.0
    iuv_uv: float = 1.0
    abs_pose: float = 1.0
    visibility: float = 1.0
    exp_pose: float = 1.0
    nll: float = 1e-3
    joints3d: float = 5.0
    keypoints2d: float = 5.0
    betas: float = 1e-2
    betas_prior: float = 1e-4
    #: not a λ: exponent α of the per-class weights (batch pixel share)^-α of ``iuv_part``
    iuv_part_balance: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.iuv_part_balance <= 1.0:
            raise ValueError(f"iuv_part_balance must be in [0, 1], got {self.iuv_part_balance}")

    def to_dict(self) -> dict:
        return asdict(self)


class VisHMRLoss(nn.Module):
    """``loss(outputs, targets) -> {term: value, ..., "total": Σ λ·term}`` (scalars).

    ``outputs`` is ``VisHMR.forward``'s dict; for ``nll`` call the model with
    ``gt_rel_rotmats=`` so that ``gt_pose_loglik`` is in it. IUV targets use the model's
    ``fg_threshold`` (0.5) to define the foreground.
    """

    def __init__(self, weights: Optional[LossWeights] = None, fg_threshold: float = 0.5) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        self.fg_threshold = fg_threshold

    def forward(self, outputs: Dict[str, Tensor], targets: Dict[str, Tensor]) -> Dict[str, Tensor]:
        terms: Dict[str, Tensor] = {}
        rel_gt, abs_gt = _gt_rotations(targets)
        # 1. Eq. 2: IUV, absolute pose, visibility
        if "iuv" in targets:
            logits, part_uv = outputs["part_logits"], outputs["part_uv"]
            label, local = atlas_to_charts(targets["iuv"], logits.shape[1] - 1,
                                           self.fg_threshold)
            terms["iuv_part"] = F.cross_entropy(
                logits, label, weight=part_class_weights(label, logits.shape[1],
                                                         self.weights.iuv_part_balance))
            fg = label > 0  # B x h x w
            p = logits.shape[1] - 1
            index = (label - 1).clamp_min(0)[:, None]  # B x 1 x h x w
            pred = torch.cat([part_uv[:, :p].gather(1, index), part_uv[:, p:].gather(1, index)], 1)
            sq = ((pred - local) ** 2 * fg[:, None]).sum()
            terms["iuv_uv"] = sq / (2 * fg.sum()).clamp_min(1)
        if abs_gt is not None:
            terms["abs_pose"] = (outputs["abs_vis"] - abs_gt).abs().mean()
        if "visibility" in targets:
            terms["visibility"] = (outputs["omega"] - targets["visibility"]).abs().mean()
        # 2. Eq. 3: expected pose over the hypotheses, NLL of the GT
        if rel_gt is not None:
            terms["exp_pose"] = expectation_pose_loss(outputs["hyp_rel"], rel_gt)
            if self.weights.nll > 0:
                if "gt_pose_loglik" not in outputs:
                    raise ValueError("nll loss needs outputs['gt_pose_loglik']: call the model "
                                     "with gt_rel_rotmats=targets['rel_rotmats']")
                terms["nll"] = -outputs["gt_pose_loglik"].mean()
        # 3. Keypoints and shape, on the merged result
        if "joints3d" in targets:
            pred, gt = outputs["joints"], targets["joints3d"]
            terms["joints3d"] = ((pred - pred[:, :1]) - (gt - gt[:, :1])).abs().mean()
        if "keypoints2d" in targets:
            proj = weak_perspective_project(outputs["joints"], outputs["cam"])
            err = (proj - targets["keypoints2d"]).abs()  # B x J x 2
            conf = targets.get("keypoints2d_conf")
            terms["keypoints2d"] = err.mean() if conf is None else (
                (err * conf[..., None]).sum() / (2 * conf.sum()).clamp_min(1e-6))
        if "betas" in targets:
            terms["betas"] = ((outputs["betas"] - targets["betas"]) ** 2).mean()
        terms["betas_prior"] = (outputs["betas"] ** 2).mean()
        # 4. Weighted sum
        weights = self.weights.to_dict()
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms


#: ``expectation_pose_loss`` projects a mean only while det(mean) > this (the mean of rotations
#: has singular values <= 1, so this also bounds the smallest one from below: the projection's
#: Jacobian stays below ~1 / EXP_MIN_DET); means of sets spread wider keep the raw mean
EXP_MIN_DET = 0.05
_POLAR_ITERATIONS = 10


def expectation_pose_loss(hyp_rel: Tensor, rel_gt: Tensor) -> Tensor:
    """Eq. 3's ``L_SMPL-exp = |E_k θ_k - θ_gt|_1`` on rotation matrices.

    hyp_rel B x K x J x 3 x 3 (the K hypotheses), rel_gt B x J x 3 x 3 -> scalar (mean over batch,
    joints and the 9 entries).

    Representation: the expectation of the hypotheses is their *chordal mean*, the orthogonal
    polar factor (nearest rotation in Frobenius norm) of the element-wise mean matrix
    ``M = mean_k R_k``. The raw mean is not a rotation: it shrinks towards 0 as the hypotheses
    spread (``mean(R(a), R(-a)) = diag(1, cos a, cos a)`` about x), so ``|M - R_gt|`` is
    only minimised by collapsing the set onto one rotation -- optimised alone it collapses the
    hypotheses as the per-hypothesis L1 does, just more slowly (tests/test_losses_expectation).
    The polar factor of ``M = R S`` (S symmetric positive) is ``R`` whatever the spread, so the
    term only sees the centre of the set. It is computed with the scaled Newton iteration
    ``X <- (γX + X^-T / γ) / 2`` (smooth, differentiable, exact at a rotation: no SVD, whose
    gradient is undefined for the repeated singular values of identical hypotheses). For a
    joint whose mean has ``det(M) <= EXP_MIN_DET`` (hypotheses spread over most of SO(3), where
    the projection is ill conditioned or a reflection) the raw mean ``M`` is compared instead.
    Computed in float32.

    ProHMR, whose flow branch VisHMR follows, instead averages the *losses* of its samples
    (``E_k |θ_k - θ_gt|``, the definition used here before issue 12); VisHMR's text ("the L1
    loss of the expectation of SMPL parameters of multiple hypotheses") is the loss of the
    expectation, implemented here.
    """
    mean = hyp_rel.float().mean(dim=1)
    gt = rel_gt.float()
    ok = torch.linalg.det(mean) > EXP_MIN_DET
    eye = torch.eye(3, dtype=mean.dtype, device=mean.device).expand_as(mean)
    x = torch.where(ok[..., None, None], mean, eye)  # nothing ill-conditioned is inverted
    for _ in range(_POLAR_ITERATIONS):
        inv_t = torch.linalg.inv_ex(x).inverse.transpose(-1, -2)  # no host sync on CUDA
        gamma = (inv_t.flatten(-2).norm(dim=-1) / x.flatten(-2).norm(dim=-1)).sqrt()
        gamma = gamma[..., None, None]
        x = 0.5 * (gamma * x + inv_t / gamma)
    expected = torch.where(ok[..., None, None], x, mean)
    return (expected - gt).abs().mean().to(hyp_rel.dtype)


def atlas_to_charts(iuv: Tensor, num_parts: int, fg_threshold: float = 0.5):
    """GT atlas IUV (B x 3 x h x w) -> (part label B x h x w: 0 = background, 1 + part id;
    chart-local (u, v) B x 2 x h x w), inverting ``uv_atlas.chart_placement``: the part is the
    atlas cell the (U, V) falls in (cells past ``num_parts`` count as background)."""
    g = float(GRID)
    col = (iuv[:, 1] * g).floor().clamp(0, g - 1)
    row = (iuv[:, 2] * g).floor().clamp(0, g - 1)
    part = (row * g + col).long()
    fg = (iuv[:, 0] > fg_threshold) & (part < num_parts)
    label = torch.where(fg, part + 1, torch.zeros_like(part))
    scale = 1 - 2 * MARGIN
    local = torch.stack([(iuv[:, 1] * g - col - MARGIN) / scale,
                         (iuv[:, 2] * g - row - MARGIN) / scale], 1).clamp(0, 1)
    return label, local


def part_class_weights(label: Tensor, num_classes: int, alpha: float) -> Optional[Tensor]:
    """Cross-entropy class weights (pixel share of each class in ``label``)^-α, None for α = 0.
    Classes absent from the batch get weight 0 (they have no pixels to weigh); the weighted
    cross-entropy divides by the summed weights, so the loss keeps its scale."""
    if alpha <= 0:
        return None
    counts = torch.bincount(label.reshape(-1), minlength=num_classes).to(torch.float32)
    share = counts / counts.sum().clamp_min(1)
    return torch.where(counts > 0, share.clamp_min(1e-12) ** -alpha, torch.zeros_like(share))


def _gt_rotations(targets: Dict[str, Tensor]):
    """(relative, absolute) GT rotations from whichever of the two the targets carry."""
    rel, absolute = targets.get("rel_rotmats"), targets.get("abs_rotmats")
    if rel is not None and absolute is None:
        absolute = ops.relative_to_absolute(rel, _PARENTS)
    elif absolute is not None and rel is None:
        rel = ops.absolute_to_relative(absolute, _PARENTS)
    return rel, absolute


def visibility_ground_truth(
    gt_iuv: Tensor,
    atlas_part_map: Tensor,
    part_labels: Optional[Tensor] = None,
    fg_threshold: float = 0.5,
    num_parts: int = NUM_JOINTS,
) -> Tensor:
    """Per-part GT visibility ω (paper eq. 1) from rendered labels warped through the GT IUV.

    1. The rendered part segmentation ``part_labels`` (B x h x w, part id per pixel, -1 for
       background/occluder) becomes a one-hot image (B x P x h x w) and is splatted into the
       S x S atlas with ``iuv_warp(one_hot, gt_iuv, S)`` -- only visible body pixels (GT I above
       ``fg_threshold``) land anywhere: that is ``UV_seg``.
    2. A texel counts as covered when some pixel of *its own* atlas part landed on it (warped
       one-hot of part ``atlas_part_map[texel]`` > 0), so a label/IUV disagreement never credits
       the wrong part.
    3. ``part_visibility`` then gives ``ω_i = min(1, 2·covered_i / texels_i)`` (``UV_gt`` = the
       atlas part map, i.e. the full unwarped mesh).

    Without ``part_labels`` the covered texels are simply the warp's occupancy (every visible
    pixel trusts the part implied by its (U, V)).

    gt_iuv: B x 3 x h x w; atlas_part_map: S x S int (-1 empty)  ->  B x num_parts in [0, 1]
    """
    size = int(atlas_part_map.shape[-1])
    part_map = atlas_part_map.to(gt_iuv.device).long()
    if part_labels is None:
        occ = ops.iuv_warp(gt_iuv[:, :1], gt_iuv, size, fg_threshold)[:, -1]  # B x S x S
    else:
        labels = part_labels.to(gt_iuv.device).long()
        one_hot = (labels[:, None] == torch.arange(num_parts, device=labels.device)[:, None, None])
        warped = ops.iuv_warp(one_hot.to(gt_iuv.dtype), gt_iuv, size, fg_threshold)  # B x P+3 x S x S
        own = part_map.clamp_min(0).expand(warped.shape[0], 1, size, size)
        occ = warped[:, :num_parts].gather(1, own)[:, 0]  # own-part fraction per texel
        occ = torch.where(part_map >= 0, (occ > 0).to(occ.dtype), torch.zeros_like(occ))
    return ops.part_visibility(occ, part_map, num_parts)
