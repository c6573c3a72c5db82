"""ImpHMR (Cho et al., CVPR 2023, paper 003): HMR through a feature field rendered at a viewing
direction φ.

The network "imagines" the person in 3D: backbone features are lifted to a feature field in the
person's canonical frame, the field is volume-rendered at low resolution for a camera turned by φ
about the vertical axis, and SMPL parameters are regressed from the rendered features (SPIN's
iterative regressor, as in OCHMR); the geometry-guidance branch is the silhouette the rendered
density composites to. Training asks the predictions from φ to be the ground truth turned by φ
(imagination) and the predictions of two directions to agree once turned back (consistency);
inference uses the canonical direction φ = 0 only (:class:`ImpHMRExport`).

Choices the paper (here: its slides) leaves open, documented where they are made:

* The field is a voxel grid (``field_depth x field_size x field_size`` cells of ``field_channels``
  features + 1 density), lifted from the stride-32 feature map by a 1x1 conv that predicts every
  depth cell's values (the image's x/y stay the grid's x/y), not GIRAFFE's MLP of positions: a
  grid is sampled with one trilinear lookup per point, and the canonical view is the grid itself.
* Rays are orthographic (the weak-perspective crop camera of ``camera.py``): one ray per pixel of a
  ``render_size``² image, parallel to +z, ``ray_samples`` points from z = -1 to 1. The field is
  view-independent (no direction input).
* Turning the camera by φ shows the person turned by ``R_y(φ)`` about the crop's vertical axis
  (camera y, image down; :func:`rotation_about_vertical`): the field is sampled at ``R_y(φ)ᵀ p``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hmr_ros.body import load_body_model
from hmr_ros.body.constants import PARENTS
from hmr_ros.kernels import torch_ops as ops

from .backbones import IMAGE_MEAN, IMAGE_STD, build_backbone, check_backbone_config
from .camera import weak_perspective_project
from .ochmr import IterativeRegressor, _Stages

__all__ = ["IMPHMR_OUTPUTS", "ImpHMR", "ImpHMRConfig", "ImpHMRExport", "ImpHMRLoss",
           "ImpHMRLossWeights", "IterativeRegressor", "imagined_targets",
           "rotate_global_orient", "rotation_about_vertical", "sample_view_directions",
           "silhouette_from_vertices"]

#: graph output names, in order, of the exported canonical-view graph
IMPHMR_OUTPUTS = ("rotmats", "betas", "cam")
PhiLike = Union[None, float, Tensor]


@dataclass(frozen=True)
class ImpHMRConfig:
    """Every size of the network. Backbone, crop and iterations are SPIN's / the paper's
    (ResNet-50, 224 px, 3); the field is rendered at GIRAFFE's low resolution (16²)."""

    backbone: str = "resnet50"  # resnet18|34|50, efficientnet_lite0|1|2
    pretrained_backbone: Optional[str] = None  # as OCHMRConfig
    crop_size: int = 224  # square input crop, pixels (multiple of 32)
    field_channels: int = 32  # C: feature channels per field cell (plus one density)
    field_depth: int = 16  # D: cells along the camera's z
    field_size: int = 16  # H = W: cells along the image axes
    render_size: int = 16  # rendered image side (rays per side)
    ray_samples: int = 16  # points per ray
    renderer_channels: int = 256  # conv block between the rendered features and the regressor
    iterations: int = 3  # SPIN's iterative error feedback
    regressor_hidden: int = 1024
    regressor_dropout: float = 0.5  # SPIN's; 0 for deterministic small-batch fitting

    def __post_init__(self) -> None:
        check_backbone_config(self.backbone, self.crop_size)
        for name in ("field_channels", "field_depth", "field_size", "render_size",
                     "ray_samples", "renderer_channels", "regressor_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not 0.0 <= self.regressor_dropout < 1.0:
            raise ValueError(f"regressor_dropout must be in [0, 1), got {self.regressor_dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


def rotation_about_vertical(phi: Tensor) -> Tensor:
    """``R_y(φ)``, B -> B x 3 x 3: rotation about the camera's vertical (y) axis."""
    c, s = torch.cos(phi), torch.sin(phi)
    zero, one = torch.zeros_like(phi), torch.ones_like(phi)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).reshape(
        *phi.shape, 3, 3)


def rotate_global_orient(rotmats: Tensor, phi: Tensor) -> Tensor:
    """Parent-relative rotations B x 24 x 3 x 3 of a person turned by φ: the global orientation
    (index 0) becomes ``R_y(φ) @ G``, every other joint is unchanged."""
    turned = rotation_about_vertical(phi.to(rotmats)) @ rotmats[:, 0]
    return torch.cat([turned[:, None], rotmats[:, 1:]], dim=1)


def sample_view_directions(batch: int, generator: Optional[torch.Generator] = None,
                           device=None) -> Tensor:
    """φ ~ p_cam, one per sample: uniform on [-π, π) (the slides name p_cam without giving it;
    a full turn lets every side of the person be imagined)."""
    u = torch.rand(batch, generator=generator, device=device)
    return (2.0 * u - 1.0) * math.pi


class ImpHMR(nn.Module):
    """Crop -> feature field -> render at φ -> SMPL rotations (24 x 3 x 3), β (10), camera
    (s, tx, ty) seen from φ, and the rendered silhouette.

    Images are ImageNet-normalised, as for VisHMR and OCHMR; ``rotmats`` are parent-relative.
    """

    def __init__(self, config: ImpHMRConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, config.pretrained_backbone,
                                       input_norm=(IMAGE_MEAN, IMAGE_STD))
        self._stages = _Stages(self.backbone)
        c = config
        # lifting: every depth cell's (features, density) predicted from the image position
        # (stride 32 for what is where, stride 8 for the outline at the field's resolution: a
        # 1x1 conv of the stride-32 map alone, resized, is too smooth to hold a silhouette)
        lifted = (c.field_channels + 1) * c.field_depth
        self.lift = nn.Conv2d(self.backbone.out_channels, lifted, 1)
        self.lift_fine = nn.Conv2d(self._stages.channels[1], lifted, 1)
        # GIRAFFE-style neural renderer (kept at the render resolution) before pooling
        self.renderer = nn.Sequential(
            nn.Conv2d(c.field_channels, c.renderer_channels, 3, padding=1),
            nn.BatchNorm2d(c.renderer_channels), nn.ReLU(),
            nn.Conv2d(c.renderer_channels, c.renderer_channels, 3, padding=1),
            nn.BatchNorm2d(c.renderer_channels), nn.ReLU())
        self.regressor = IterativeRegressor(c.renderer_channels, c.regressor_hidden,
                                            c.iterations, c.regressor_dropout)
        # ray sample positions of the canonical camera, x/y/z in [-1, 1] (cell centres)
        zs = _cell_centres(c.ray_samples)
        ys = _cell_centres(c.render_size)
        grid = torch.stack(torch.meshgrid(zs, ys, ys, indexing="ij")[::-1], dim=-1)  # S,R,R,3
        self.register_buffer("ray_points", grid, persistent=False)  # (x, y, z) per sample
        # T_k = exp(-Σ_{j<k} σ_j δ): an exclusive prefix sum as a constant matmul (no CumProd)
        self.register_buffer("exclusive_sum", torch.triu(torch.ones(c.ray_samples,
                                                                    c.ray_samples), 1),
                             persistent=False)

    # -- field ----------------------------------------------------------------------------------

    def field(self, images: Tensor) -> Tensor:
        """Images -> the feature field B x (C + 1) x D x H x W (last channel: raw density)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B x 3 x H x W, got {tuple(images.shape)}")
        x = images
        fine = images
        for stage in range(1, 5):
            x = self._stages.run(stage, x)
            if stage == 2:
                fine = x
        c = self.config
        size = (c.field_size, c.field_size)
        lifted = (F.interpolate(self.lift(x), size=size, mode="bilinear", align_corners=False)
                  + F.interpolate(self.lift_fine(fine), size=size, mode="bilinear",
                                  align_corners=False))
        return lifted.reshape(-1, c.field_channels + 1, c.field_depth, c.field_size, c.field_size)

    def sample_canonical(self, field: Tensor) -> Tensor:
        """The field at the canonical ray points: an axis-aligned resampling, so a trilinear
        resize (the identity when the render grid is the field grid) -- no per-direction
        machinery. Equals :meth:`sample_view` at φ = 0 (border padding in both)."""
        c = self.config
        size = (c.ray_samples, c.render_size, c.render_size)
        if tuple(field.shape[2:]) == size:
            return field
        return F.interpolate(field, size=size, mode="trilinear", align_corners=False)

    def sample_view(self, field: Tensor, phi: Tensor) -> Tensor:
        """The field at the ray points of the camera turned by φ (B), B x (C+1) x S x R x R.

        A person turned by ``R_y(φ)`` shows at ``p`` what the canonical field holds at
        ``R_y(φ)ᵀ p``; points that leave the field's cube get no density."""
        batch = field.shape[0]
        rot = rotation_about_vertical(phi.to(field).expand(batch))  # B x 3 x 3
        points = self.ray_points.reshape(1, -1, 3) @ rot  # row p -> (Rᵀ p)ᵀ = pᵀ R
        grid = points.reshape(batch, *self.ray_points.shape)
        samples = F.grid_sample(field, grid, mode="bilinear", padding_mode="border",
                                align_corners=False)
        inside = (grid.abs() <= 1.0).all(dim=-1).to(field)[:, None]  # B x 1 x S x R x R
        density = samples[:, -1:] - (1.0 - inside) * 1e4  # softplus(-1e4) = 0
        return torch.cat([samples[:, :-1], density], dim=1)

    def composite(self, samples: Tensor):
        """Volume rendering along z: features B x C x R x R and silhouette B x R x R (opacity
        ``1 - T``) from B x (C+1) x S x R x R samples (density softplus-activated)."""
        delta = 2.0 / self.config.ray_samples
        sigma_delta = F.softplus(samples[:, -1]) * delta  # B x S x R x R
        optical = torch.einsum("bsyx,st->btyx", sigma_delta, self.exclusive_sum)
        transmittance = torch.exp(-optical)
        weights = transmittance * (1.0 - torch.exp(-sigma_delta))  # B x S x R x R
        features = (samples[:, :-1] * weights[:, None]).sum(dim=2)
        silhouette = weights.sum(dim=1)
        return features, silhouette

    # -- full model -----------------------------------------------------------------------------

    def _regress(self, samples: Tensor, return_render: bool) -> Dict[str, Tensor]:
        features, silhouette = self.composite(samples)
        out = self.regressor(self.renderer(features).mean(dim=(2, 3)))
        if return_render:
            out["silhouette"] = silhouette
            out["features"] = features
        return out

    def _check_phi(self, phi, field: Tensor) -> Tensor:
        phi = torch.as_tensor(phi, dtype=field.dtype, device=field.device)
        if phi.dim() > 1 or (phi.dim() == 1 and phi.shape[0] not in (1, field.shape[0])):
            raise ValueError(f"phi must be a scalar or hold one angle per image "
                             f"({field.shape[0]}), got shape {tuple(phi.shape)}")
        return phi.reshape(-1)

    def forward_views(self, images: Tensor, phi: Union[float, Tensor]):
        """Training's two passes from one field (one backbone run): the canonical outputs and
        those from φ, both with ``silhouette`` and ``features``."""
        field = self.field(images)
        view = self.sample_view(field, self._check_phi(phi, field))
        return (self._regress(self.sample_canonical(field), True),
                self._regress(view, True))

    def forward(self, images: Tensor, phi: PhiLike = None,
                return_render: bool = False) -> Dict[str, Tensor]:
        """images B x 3 x H x W; phi None / 0 (canonical view) or B (or scalar) radians ->
        ``rotmats`` B x 24 x 3 x 3, ``betas`` B x 10, ``cam`` B x 3, ``rot6d`` B x 24 x 6 as
        seen from φ; with ``return_render`` also ``silhouette`` B x R x R and ``features``
        B x C x R x R (the rendered field)."""
        field = self.field(images)
        if phi is None or (isinstance(phi, (int, float)) and phi == 0):
            samples = self.sample_canonical(field)
        else:
            samples = self.sample_view(field, self._check_phi(phi, field))
        return self._regress(samples, return_render)


class ImpHMRExport(nn.Module):
    """The deployed graph: ``images -> (rotmats, betas, cam)`` (:data:`IMPHMR_OUTPUTS`) for the
    canonical direction φ = 0 only; no rotation, grid sampling or silhouette in it."""

    def __init__(self, model: ImpHMR) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor):
        m = self.model
        features, _ = m.composite(m.sample_canonical(m.field(images)))
        out = m.regressor(m.renderer(features).mean(dim=(2, 3)))
        return tuple(out[k] for k in IMPHMR_OUTPUTS)


def _cell_centres(n: int) -> Tensor:
    """n cell centres of [-1, 1] (grid_sample's align_corners=False convention)."""
    return (2.0 * torch.arange(n, dtype=torch.float32) + 1.0) / n - 1.0


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpHMRLossWeights:
    """λ of each term (0 disables it).

    The slides give the loss forms but no λ. ImpHMR trains with SPIN's recipe, so the shared
    λ are SPIN's: λ_2d = λ_3d = 5, λ_pose = 1, λ_shape = 1e-3. The rest are our choices:
    λ_cam = 1 (synthetic data has camera labels; the paper has no such term), λ_silh = 1 (a
    per-pixel MSE of order 0.1 like the pose term), and the imagination and consistency groups
    at weight 1 relative to the canonical one (the paper sums the three objectives).
    """

    keypoints2d: float = 5.0
    joints3d: float = 5.0
    pose: float = 1.0
    betas: float = 1e-3
    cam: float = 1.0
    silhouette: float = 1.0
    imagination: float = 1.0  # scales every imag_* term
    consistency: float = 1.0  # scales every cons_* term

    def to_dict(self) -> dict:
        return asdict(self)


def silhouette_from_vertices(vertices: Tensor, cam: Tensor, size: int) -> Tensor:
    """A low-resolution target silhouette, B x size x size in {0, 1}: the cells that the
    weak-perspective projections of the mesh vertices fall in (dense enough at render sizes)."""
    xy = weak_perspective_project(vertices, cam)  # B x V x 2 in [-1, 1]
    cell = ((xy + 1.0) * 0.5 * size).floor().long()
    valid = ((cell >= 0) & (cell < size)).all(dim=-1)  # B x V
    index = (cell[..., 1] * size + cell[..., 0]).clamp(0, size * size - 1)
    out = torch.zeros(vertices.shape[0], size * size, device=vertices.device)
    out.scatter_(1, index, valid.float())  # scatter of 1s = occupancy
    return out.reshape(-1, size, size)


def imagined_targets(rotmats: Tensor, joints: Tensor, vertices: Optional[Tensor],
                     cam: Tensor, phi: Tensor):
    """Ground truth as seen from φ (Ĵ_{-φ}, θ̂_{-φ} of L_imag): global orientation turned by
    ``R_y(φ)``; root-relative joints turned with it; the vertices (for Ŝ_{-φ}) turned about the
    crop's vertical centre line (body x = -tx) at the root's depth, which is the axis the field
    turns about."""
    rot = rotation_about_vertical(phi.to(rotmats))
    turned = rotate_global_orient(rotmats, phi)
    rel = joints - joints[:, :1]
    joints_phi = rel @ rot.transpose(1, 2)
    vertices_phi = None
    if vertices is not None:
        pivot = torch.stack([-cam[:, 1], torch.zeros_like(cam[:, 1]), joints[:, 0, 2]], -1)
        vertices_phi = (vertices - pivot[:, None]) @ rot.transpose(1, 2) + pivot[:, None]
    return turned, joints_phi, vertices_phi


class ImpHMRLoss(nn.Module):
    """``loss(canonical, targets, view=None, phi=None) -> {term: value, ..., "total"}``.

    ``canonical``: the model's output at φ = 0; ``view``: its output at ``phi`` (B), both with
    ``return_render=True`` for the silhouette terms. Terms (MSE throughout, as SPIN):

    * L_reg (``reg_*``): 2D keypoints of the posed joints, root-relative 3D joints, rotation
      matrices, β, camera against the targets; ``reg_silhouette`` against ``targets["mask"]``
      (B x h x w in [0, 1], area-resized to the render size) when given, else against the
      silhouette of the GT mesh;
    * L_imag (``imag_*``): the predictions from φ against the GT turned by φ
      (:func:`imagined_targets`): rotations, root-relative joints, β (unchanged), silhouette of
      the turned GT mesh;
    * L_cons (``cons_*``): the paper's appearance consistency between two directions, here
      φ1 = 0 and φ2 = φ (the two passes training already makes): the canonical prediction
      turned by φ (θ'_{φ1}) against the prediction from φ, and their β.

    Targets: ``rotmats`` B x 24 x 3 x 3 (parent-relative), ``betas`` B x 10, ``cam`` B x 3,
    optional ``keypoints2d`` B x 24 x 2 (crop-normalised), ``mask``. Joints and meshes come from
    the body model (the procedural body by default) through the torch LBS twin.
    """

    def __init__(self, weights: Optional[ImpHMRLossWeights] = None, body="procedural") -> None:
        super().__init__()
        self.weights = weights or ImpHMRLossWeights()
        model = load_body_model(body) if isinstance(body, str) else body
        self.body = model.to_torch()
        self.parents = [int(p) for p in PARENTS]

    def lbs(self, betas: Tensor, rotmats: Tensor):
        b = self.body
        return ops.lbs(betas, rotmats, b.v_template, b.shapedirs, b.posedirs, b.J_regressor,
                       self.parents, b.lbs_weights)

    def forward(self, canonical: Dict[str, Tensor], targets: Dict[str, Tensor],
                view: Optional[Dict[str, Tensor]] = None,
                phi: Optional[Tensor] = None) -> Dict[str, Tensor]:
        w = self.weights
        mse = F.mse_loss
        gt_rot, gt_betas, gt_cam = targets["rotmats"], targets["betas"], targets["cam"]
        gt_verts, gt_joints = self.lbs(gt_betas, gt_rot)
        _, joints = self.lbs(canonical["betas"], canonical["rotmats"])
        terms: Dict[str, Tensor] = {}
        weighted: Dict[str, float] = {}
        # (1) canonical view regression
        if "keypoints2d" in targets:
            terms["reg_keypoints2d"] = mse(weak_perspective_project(joints, canonical["cam"]),
                                           targets["keypoints2d"])
            weighted["reg_keypoints2d"] = w.keypoints2d
        terms["reg_joints3d"] = mse(joints - joints[:, :1], gt_joints - gt_joints[:, :1])
        terms["reg_pose"] = mse(canonical["rotmats"], gt_rot)
        terms["reg_betas"] = mse(canonical["betas"], gt_betas)
        terms["reg_cam"] = mse(canonical["cam"], gt_cam)
        weighted.update(reg_joints3d=w.joints3d, reg_pose=w.pose, reg_betas=w.betas,
                        reg_cam=w.cam)
        if "silhouette" in canonical:
            size = canonical["silhouette"].shape[-1]
            if "mask" in targets:
                mask = F.interpolate(targets["mask"][:, None].float(), size=(size, size),
                                     mode="area")[:, 0]
            else:
                mask = silhouette_from_vertices(gt_verts.detach(), gt_cam, size)
            terms["reg_silhouette"] = mse(canonical["silhouette"], mask)
            weighted["reg_silhouette"] = w.silhouette
        if view is not None:
            if phi is None:
                raise ValueError("the view outputs need the phi they were rendered at")
            phi = phi.to(gt_rot).expand(gt_rot.shape[0])
            # (2) arbitrary view imagination
            rot_phi, joints_phi, verts_phi = imagined_targets(gt_rot, gt_joints, gt_verts, gt_cam,
                                                              phi)
            _, view_joints = self.lbs(view["betas"], view["rotmats"])
            terms["imag_joints3d"] = mse(view_joints - view_joints[:, :1], joints_phi)
            terms["imag_pose"] = mse(view["rotmats"], rot_phi)
            terms["imag_betas"] = mse(view["betas"], gt_betas)
            weighted.update(imag_joints3d=w.joints3d * w.imagination,
                            imag_pose=w.pose * w.imagination, imag_betas=w.betas * w.imagination)
            if "silhouette" in view:
                size = view["silhouette"].shape[-1]
                target = silhouette_from_vertices(verts_phi.detach(), gt_cam, size)
                terms["imag_silhouette"] = mse(view["silhouette"], target)
                weighted["imag_silhouette"] = w.silhouette * w.imagination
            # (3) appearance consistency: θ'_{φ1=0} (turned by φ) vs θ_{φ}
            terms["cons_pose"] = mse(rotate_global_orient(canonical["rotmats"], phi),
                                     view["rotmats"])
            terms["cons_betas"] = mse(canonical["betas"], view["betas"])
            weighted.update(cons_pose=w.pose * w.consistency,
                            cons_betas=w.betas * w.consistency)
        terms["total"] = sum(weighted[k] * terms[k] for k in weighted)
        return terms
