"""InstanceHMR (Gwon et al., CVPR 2024, paper 002): bottom-up multi-person SMPL regression with
instance-aware contrastive learning.

One pass over the whole (letterboxed, square) image predicts, at stride 8 (64 x 64 for 512):

* a body-centre heatmap ``H_C`` and 24 joint heatmaps ``H_J`` (logits; focal loss, eqs. 3-4);
* a centre-aligned and a joint-aligned *instance map* (``D = 64`` channels), the first with a
  sine positional encoding added; during training the features at each person's centre and
  visible joints are projected (``P_C``, ``P_J``) and pulled / pushed by eq. 1-2, so that the
  maps learn who owns which joint;
* an SMPL parameter map built from the backbone, both heatmaps and both instance maps; the
  runtime reads it at the detected centre peaks (ROMP's parsing; :class:`InstanceHMRGatherDecode`
  is that read plus :meth:`InstanceHMR.decode_params`, the exported ``decode`` graph).

**Layout = the authors' release** (github DCVL-3D/InstanceHMR_release, ROMP v1 head): module names
and shapes follow its ``ROMP`` class, so a released ``state_dict`` loads key for key (the
``_result_parser`` SMPL buffers aside, see :mod:`hmr_ros.export.instancehmr_export`). Backbones:
HRNet-W32 (stride 4, 32 ch, :mod:`.hrnet`), ResNet-50 with three deconvolutions (stride 4, 64 ch),
or ``tiny`` (same head, a 3-layer trunk; tests and CPU training). The head concatenates
CoordConv maps, then ``final_layers[1]`` (centre), ``[2]`` (camera), ``[3]`` (joint heatmaps) --
``final_layers[0]`` is an empty slot in the release, kept so the indices match.

**Parameter vector** (``P = 82`` channels, the release's order): camera ``(s, tx', ty')`` (3),
global orientation in 6D (6, the release's row-interleaved layout ``(R00, R01, R10, R11, R20,
R21)``, i.e. ``view(3, 2)`` columns), body pose as axis-angle for SMPL joints 1..21 (63; the two
hand joints are identity), β (10). The release's camera is ``x = s X + t'`` (``s = 1.1^raw``,
positive); ours is ``x = s (X + t)`` (:mod:`hmr_ros.models.camera`), so
:meth:`InstanceHMR.decode_params` returns ``t = t' / s``. The "crop" of that camera is the whole
letterboxed S x S image -- the synthetic data's ``people_cam_crop``.

**Initialisation** (ours; the release starts from its own pretraining): output convolutions start
near zero with biases at the rest pose (identity rotations, β = 0, ``s = CAM_SCALE_INIT``) and the
heatmap biases at a 0.1 foreground prior (CenterNet), so an untrained model is stable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hmr_ros.body.constants import NUM_BETAS, NUM_JOINTS
from hmr_ros.kernels import torch_ops as ops

from .backbones import (IMAGE_MEAN, IMAGE_STD, BasicBlock, Bottleneck, ResNet,
                        check_backbone_config)
from .camera import weak_perspective_project
from .hrnet import HRNetW32

__all__ = ["CAM_SCALE_INIT", "INSTANCEHMR_BACKBONES", "InstanceHMR", "InstanceHMRConfig",
           "InstanceHMRDecode", "InstanceHMRExport", "InstanceHMRGatherDecode", "InstanceHMRLoss",
           "InstanceHMRLossWeights", "PARAM_DIM", "TORSO_JOINTS", "build_targets",
           "focal_heatmap_loss", "instance_contrastive_loss", "procrustes_align"]

INSTANCEHMR_BACKBONES = ("hrnet_w32", "resnet50", "tiny")
#: (cam 3, global orientation 6D 6, body pose axis-angle 21x3, betas 10), the release's order
_CAM, _ORIENT, _BODY, _BETAS = slice(0, 3), slice(3, 9), slice(9, 72), slice(72, 82)
PARAM_DIM = 82
_BODY_JOINTS = 21  # SMPL joints 1..21; the hands (22, 23) are not regressed
#: the release's cam scale is 1.1 ** raw, so it is always positive
_CAM_SCALE_BASE = 1.1
#: weak-perspective scale of an untrained model: a 1.7 m person about half the image high
CAM_SCALE_INIT = 0.6
#: body centre = mean of these joints' projections (hips, shoulders): ROMP's torso centre
TORSO_JOINTS = (1, 2, 16, 17)
#: the release's 6D (R00, R01, R10, R11, R20, R21) -> ours (R00, R10, R20, R01, R11, R21)
_RELEASE_6D_TO_OURS = (0, 2, 4, 1, 3, 5)
_HEATMAP_PRIOR = 0.1


@dataclass(frozen=True)
class InstanceHMRConfig:
    """Sizes of the network; defaults are the release's (HRNet-W32, 512 input, 64 x 64 maps)."""

    backbone: str = "hrnet_w32"  # hrnet_w32 | resnet50 | tiny
    input_size: int = 512  # square, letterboxed whole image (multiple of 32); maps at /8
    head_channels: int = 64  # final_layers' width
    head_blocks: int = 2  # BasicBlocks per heatmap / camera head
    instance_channels: int = 128  # centre/joint instance branches' width
    embed_dim: int = 64  # instance map channels (paper table 5: 64 is best)
    param_channels: int = 64  # parameter branch width (its residual blocks use twice this)
    tiny_channels: int = 32  # the tiny trunk's width (backbone="tiny" only)
    centre_sigma: float = 2.0  # Gaussian of a GT body centre, map pixels
    joint_sigma: float = 1.5  # Gaussian of a GT joint, map pixels

    def __post_init__(self) -> None:
        if self.backbone not in INSTANCEHMR_BACKBONES:
            raise ValueError(f"backbone must be one of {INSTANCEHMR_BACKBONES}, "
                             f"got {self.backbone!r}")
        if self.backbone == "resnet50":
            check_backbone_config(self.backbone, self.input_size)
        elif self.input_size <= 0 or self.input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, "
                             f"got {self.input_size}")
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim must be a multiple of 4 (sine/cosine of x and y), "
                             f"got {self.embed_dim}")

    @property
    def crop_size(self) -> int:
        """The network's square input side (the whole image is its one "crop")."""
        return self.input_size

    @property
    def map_size(self) -> int:
        """Side of every output map (stride 8)."""
        return self.input_size // 8

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


class ResNet50Deconv(ResNet):
    """ResNet-50 trunk + three stride-2 deconvolutions to stride 4, 64 channels (the release's
    ``ResNet_50``: torchvision keys plus ``deconv_layers``, no ``fc``)."""

    def __init__(self) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        del self.fc
        layers, in_ch = [], 2048
        for out_ch in (256, 128, 64):
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.deconv_layers = nn.Sequential(*layers)
        self.out_channels = 64

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv_layers(super().forward(x))


class TinyTrunk(nn.Module):
    """Two stride-2 convs and a residual block: a stride-4 feature for tests and CPU runs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.block = BasicBlock(channels, channels)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.block(F.relu(self.bn2(self.conv2(x))))


def _build_trunk(config: InstanceHMRConfig) -> nn.Module:
    if config.backbone == "hrnet_w32":
        return HRNetW32()
    if config.backbone == "resnet50":
        return ResNet50Deconv()
    return TinyTrunk(config.tiny_channels)


class _ConvBNReLU(nn.Module):
    """conv (with bias) + BN + ReLU: the release's ``TransBlock``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride, 1)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _head(in_ch: int, channels: int, blocks: int, out_ch: int) -> nn.Sequential:
    """ROMP's head: stride-2 conv-BN-ReLU, ``blocks`` residual blocks, 1x1 conv."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(in_ch, channels, 3, 2, 1), nn.BatchNorm2d(channels), nn.ReLU()),
        nn.Sequential(*[nn.Sequential(BasicBlock(channels, channels)) for _ in range(blocks)]),
        nn.Conv2d(channels, out_ch, 1))


def _projector(dim: int) -> nn.Sequential:
    """P_C / P_J: three bias-free linear layers with ReLUs between (training only)."""
    return nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(),
                         nn.Linear(dim, dim, bias=False), nn.ReLU(),
                         nn.Linear(dim, dim, bias=False))


def coord_maps(size: int) -> Tensor:
    """1 x 2 x size x size CoordConv channels (x, y) in [-1, 1], pixel centres at the ends."""
    ramp = torch.linspace(-1.0, 1.0, size)
    return torch.stack([ramp.view(1, -1).expand(size, size),
                        ramp.view(-1, 1).expand(size, size)])[None]


def sine_position_encoding(size: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """1 x dim x size x size DETR sine encoding (normalised to 2π): dim/2 channels of y then
    dim/2 of x, each alternating sin / cos over geometric frequencies -- the release's."""
    feats = dim // 2
    pos = torch.arange(1, size + 1, dtype=torch.float32) / (size + 1e-6) * 2 * math.pi
    freq = temperature ** (2 * (torch.arange(feats) // 2).float() / feats)
    angles = pos[:, None] / freq  # size x feats
    enc = torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=2).flatten(1)
    y = enc.t()[:, :, None].expand(feats, size, size)
    x = enc.t()[:, None, :].expand(feats, size, size)
    return torch.cat([y, x])[None]


class InstanceHMR(nn.Module):
    """Whole image -> centre / joint heatmaps, instance maps, SMPL parameter map (module docs).

    ``forward(images)`` takes B x 3 x S x S ImageNet-normalised RGB (``(rgb/255 - IMAGE_MEAN) /
    IMAGE_STD``; the HRNet converts to its weights' normalisation inside) and returns
    ``centre_heatmap`` (B x 1 x h x w logits), ``joint_heatmaps`` (B x 24 x h x w logits),
    ``centre_embed`` / ``joint_embed`` (B x D x h x w), ``param_map`` (B x 82 x h x w).
    """

    def __init__(self, config: InstanceHMRConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = _build_trunk(config)
        c = self.backbone.out_channels + 2  # + CoordConv
        hc, ic, d, pc = (config.head_channels, config.instance_channels, config.embed_dim,
                         config.param_channels)
        self.final_layers = nn.ModuleList([
            None,  # empty in the release too: keeps its indices
            _head(c, hc, config.head_blocks, 1),
            _head(c, hc, config.head_blocks, 3),
            _head(c, hc, config.head_blocks, NUM_JOINTS)])
        for prefix in ("centerid", "jointid"):
            setattr(self, f"{prefix}_trans1", _ConvBNReLU(c, ic, 2))
            setattr(self, f"{prefix}_resblock1", BasicBlock(ic, ic))
            setattr(self, f"{prefix}_trans2", _ConvBNReLU(ic + 1 + NUM_JOINTS, ic, 1))
            setattr(self, f"{prefix}_resblock2", BasicBlock(ic, ic))
            setattr(self, f"{prefix}_outconv", nn.Conv2d(ic, d, 1))
        self.ct_projector = _projector(d)
        self.jt_projector = _projector(d)
        self.params_trans1 = _ConvBNReLU(c, pc, 2)
        self.params_trans_c = _ConvBNReLU(pc + 1 + d, pc, 1)
        self.params_trans_j = _ConvBNReLU(pc + NUM_JOINTS + d, pc, 1)
        self.params_resblock1 = BasicBlock(2 * pc, 2 * pc)
        self.params_resblock2 = BasicBlock(2 * pc, 2 * pc)
        self.params_outconv = nn.Conv2d(2 * pc, PARAM_DIM - 3, 1)
        feature_size = config.input_size // 4
        self.register_buffer("coords", coord_maps(feature_size), persistent=False)
        self.register_buffer("position", sine_position_encoding(config.map_size, d),
                             persistent=False)
        self._init_outputs()

    def _init_outputs(self) -> None:
        """Rest pose, β = 0, ``CAM_SCALE_INIT`` and a 0.1 heatmap prior (module docs)."""
        prior = math.log(_HEATMAP_PRIOR / (1 - _HEATMAP_PRIOR))
        for index in (1, 3):
            nn.init.constant_(self.final_layers[index][-1].bias, prior)
        cam_out = self.final_layers[2][-1]
        nn.init.normal_(cam_out.weight, std=1e-3)
        with torch.no_grad():
            cam_out.bias.copy_(torch.tensor(
                [math.log(CAM_SCALE_INIT) / math.log(_CAM_SCALE_BASE), 0.0, 0.0]))
        nn.init.normal_(self.params_outconv.weight, std=1e-3)
        bias = torch.zeros(PARAM_DIM - 3)
        bias[_ORIENT.start - 3:_ORIENT.stop - 3] = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
        with torch.no_grad():
            self.params_outconv.bias.copy_(bias)

    def _instance_map(self, prefix: str, x: Tensor, heatmaps: Tensor) -> Tensor:
        h = getattr(self, f"{prefix}_resblock1")(getattr(self, f"{prefix}_trans1")(x))
        h = getattr(self, f"{prefix}_trans2")(torch.cat([h, heatmaps], 1))
        return getattr(self, f"{prefix}_outconv")(getattr(self, f"{prefix}_resblock2")(h))

    def forward(self, images: Tensor) -> Dict[str, Tensor]:
        size = self.config.input_size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(f"images must be B x 3 x {size} x {size}, got {tuple(images.shape)}")
        features = self.backbone(images)
        x = torch.cat([features, self.coords.expand(features.shape[0], -1, -1, -1)], 1)
        centre = self.final_layers[1](x)
        cam = self.final_layers[2](x)
        cam = torch.cat([torch.exp(cam[:, :1] * math.log(_CAM_SCALE_BASE)), cam[:, 1:]], 1)
        joints = self.final_layers[3](x)
        heatmaps = torch.cat([centre, joints], 1)
        centre_embed = self._instance_map("centerid", x, heatmaps) + self.position
        joint_embed = self._instance_map("jointid", x, heatmaps)
        p = self.params_trans1(x)
        pc = self.params_trans_c(torch.cat([p, centre, centre_embed], 1))
        pj = self.params_trans_j(torch.cat([p, joints, joint_embed], 1))
        params = self.params_outconv(self.params_resblock2(self.params_resblock1(
            torch.cat([pc, pj], 1))))
        return {"centre_heatmap": centre, "joint_heatmaps": joints, "centre_embed": centre_embed,
                "joint_embed": joint_embed, "param_map": torch.cat([cam, params], 1)}

    @staticmethod
    def decode_params(vectors: Tensor) -> Dict[str, Tensor]:
        """N x 82 parameter vectors (module docs) -> ``rotmats`` N x 24 x 3 x 3 parent-relative,
        ``betas`` N x 10, ``cam`` N x 3 in our ``x = s (X + t)`` convention."""
        if vectors.dim() != 2 or vectors.shape[1] != PARAM_DIM:
            raise ValueError(f"params must be N x {PARAM_DIM}, got {tuple(vectors.shape)}")
        n = vectors.shape[0]
        raw = vectors[:, _CAM]
        scale = raw[:, :1]
        cam = torch.cat([scale, raw[:, 1:] / scale], 1)
        orient6d = vectors[:, _ORIENT][:, list(_RELEASE_6D_TO_OURS)]
        orient = ops.rot6d_to_matrix(orient6d)[:, None]
        body = ops.axis_angle_to_matrix(vectors[:, _BODY].reshape(n, _BODY_JOINTS, 3))
        # identity hands by broadcasting (not expand(n, ...)), so exported shapes stay static
        eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)
        hands = torch.zeros_like(vectors[:, :1])[:, :, None, None] + eye.expand(
            NUM_JOINTS - 1 - _BODY_JOINTS, 3, 3)
        return {"rotmats": torch.cat([orient, body, hands], 1), "betas": vectors[:, _BETAS],
                "cam": cam}


class InstanceHMRExport(nn.Module):
    """``maps`` graph: images -> (centre probabilities after sigmoid, parameter map)."""

    def __init__(self, model: InstanceHMR) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        out = self.model(images)
        return torch.sigmoid(out["centre_heatmap"]), out["param_map"]


class InstanceHMRDecode(nn.Module):
    """N x 82 parameter vectors -> (rotmats, betas, cam)."""

    def forward(self, params: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        out = InstanceHMR.decode_params(params)
        return out["rotmats"], out["betas"], out["cam"]


class InstanceHMRGatherDecode(nn.Module):
    """``decode`` graph: the parameter map (B x 82 x h x w) and the centre peaks' flat indices
    (B x K int32, ``row * w + column``, -1 for an empty slot, as `hmr_ros.kernels.centre_peaks`
    returns them) -> (rotmats, betas, cam) per slot, (B, K, ...). Empty slots read pixel 0 (the
    runtime keeps the first ``count`` of each image), so the gather stays on the device and
    nobody waits for the number of people before the end of the frame. K is fixed when the graph
    is exported (the manifest's ``max_people``), so only the batch axis varies, as TensorRT's
    profiles and buffer plans expect."""

    def __init__(self, slots: int) -> None:
        super().__init__()
        self.slots = int(slots)

    def forward(self, param_map: Tensor, index: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        K = self.slots  # a constant, not the traced shape: the graph's outputs stay static
        flat = index.clamp_min(0).long()[:, None, :].expand(-1, PARAM_DIM, K)
        vectors = param_map.flatten(2).gather(2, flat).transpose(1, 2).reshape(-1, PARAM_DIM)
        out = InstanceHMR.decode_params(vectors)
        return (out["rotmats"].reshape(-1, K, 24, 3, 3), out["betas"].reshape(-1, K, 10),
                out["cam"].reshape(-1, K, 3))


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def map_cells(points: Tensor, size: int) -> Tensor:
    """Continuous map-pixel coordinates (..., 2) (x, y; pixel centres at +0.5) -> the integer
    cell (..., 2) they fall in, clamped into the map."""
    return points.floor().long().clamp(0, size - 1)


def _gaussians(cells: Tensor, mask: Tensor, size: int, sigma: float) -> Tensor:
    """Max over the last point axis of unit-peak Gaussians at integer ``cells`` (..., K, 2)
    where ``mask`` (..., K): ... x size x size."""
    grid = torch.arange(size, dtype=torch.float32, device=cells.device)
    cx, cy = cells[..., 0].float(), cells[..., 1].float()
    gx = torch.exp(-(grid - cx[..., None]) ** 2 / (2 * sigma ** 2))  # ... K x size
    gy = torch.exp(-(grid - cy[..., None]) ** 2 / (2 * sigma ** 2))
    g = gy[..., :, None] * gx[..., None, :] * mask[..., None, None].float()
    return g.amax(dim=-3)


def _inside(points: Tensor, size: int) -> Tensor:
    return ((points >= 0) & (points < size)).all(-1)


def build_targets(batch: Mapping[str, Tensor], config: InstanceHMRConfig) -> Dict[str, Tensor]:
    """A collated batch of synthetic samples (the image is the whole, square frame) -> ``images``
    (B x 3 x S x S, ImageNet-normalised) and the targets :class:`InstanceHMRLoss` takes.

    Map-pixel coordinates are image pixels x ``h / image side``. The body centre is the torso
    centre (mean of hips and shoulders, ROMP's); a person counts (``valid``) when present and its
    centre falls inside the map. ``joints2d_vis``: the joint is seen (``people_visibility`` >
    0.5, paper: "visible joints") and inside the map; only those get joint-heatmap peaks and
    contrastive samples. ``cam`` is ``people_cam_crop`` (crop = the whole image, so resizing does
    not change it); ``joints3d`` root-relative.
    """
    image = batch["image"]
    if image.dtype == torch.uint8:  # B x H x W x 3, as stored
        image = image.permute(0, 3, 1, 2).float() / 255.0
    if image.shape[-1] != image.shape[-2]:
        raise ValueError(f"synthetic images must be square, got {tuple(image.shape)}")
    side, size, h = image.shape[-1], config.input_size, config.map_size
    if side != size:
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=side > size)
    mean = torch.tensor(IMAGE_MEAN, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=image.device).view(1, 3, 1, 1)
    scale = h / side
    joints2d = batch["people_keypoints2d"].float() * scale
    centres = joints2d[:, :, list(TORSO_JOINTS)].mean(2)
    valid = batch["people_valid"].bool() & _inside(centres, h)
    vis = (batch["people_visibility"] > 0.5) & _inside(joints2d, h) & valid[..., None]
    joints3d = batch["people_joints"].float()
    centre_cells, joint_cells = map_cells(centres, h), map_cells(joints2d, h)
    centre_heatmap = _gaussians(centre_cells, valid, h, config.centre_sigma)[:, None]
    # joints: B x M x 24 -> B x 24 x M so the max runs over people
    joint_heatmaps = _gaussians(joint_cells.transpose(1, 2), vis.transpose(1, 2), h,
                                config.joint_sigma)
    return {
        "images": (image - mean) / std,
        "valid": valid,
        "centres": centres,
        "joints2d": joints2d,
        "joints2d_vis": vis.float(),
        "rotmats": batch["people_rel_rotmats"].float(),
        "betas": batch["people_betas"].float(),
        "cam": batch["people_cam_crop"].float(),
        "joints3d": joints3d - joints3d[:, :, :1],
        "centre_heatmap": centre_heatmap,
        "joint_heatmaps": joint_heatmaps,
    }


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def focal_heatmap_loss(logits: Tensor, target: Tensor, eps: float = 1e-4) -> Tensor:
    """Eq. 3 (CenterNet's focal loss) on one heatmap channel over the batch: ``H = σ(logits)``,
    positives where the target is 1 (``H̃'``), negatives weighted by ``(1 - H̃)^4``; normalised
    by the number of positives (at least 1, so a map without people still learns "nobody")."""
    prob = torch.sigmoid(logits).clamp(eps, 1 - eps)
    positive = (target >= 1 - 1e-6).float()
    pos = torch.log(prob) * (1 - prob) ** 2 * positive
    neg = torch.log(1 - prob) * prob ** 2 * (1 - target) ** 4 * (1 - positive)
    return -(pos.sum() + neg.sum()) / positive.sum().clamp_min(1.0)


def _gather(maps: Tensor, cells: Tensor) -> Tensor:
    """maps B x C x h x w, cells B x ... x 2 (x, y) -> B x ... x C."""
    b, c, _, w = maps.shape
    flat = (cells[..., 1] * w + cells[..., 0]).reshape(b, 1, -1).expand(b, c, -1)
    picked = maps.flatten(2).gather(2, flat)  # B x C x K
    return picked.transpose(1, 2).reshape(*cells.shape[:-1], c)


def instance_contrastive_loss(centre_feats: Tensor, joint_feats: Tensor, valid: Tensor,
                              joint_mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Eqs. 1-2 -> (push, pull).

    centre_feats B x M x D (``u``), joint_feats B x M x K x D (``v``), valid B x M, joint_mask
    B x M x K. Push: mean over the image's unordered centre pairs of ``1 + cos(u_i, u_j)`` (the
    release's reading of eq. 2's ``2 / N(N-1)``; images with N >= 2); pull: per person the mean
    over its K_i visible joints of ``1 - cos(u_i, v_i^k)``, averaged over people with K_i > 0,
    then over images. Both are averaged over the images that have such pairs (0 if none).
    """
    u = F.normalize(centre_feats, dim=-1, eps=1e-8)
    v = F.normalize(joint_feats, dim=-1, eps=1e-8)
    jm = joint_mask.float() * valid[..., None].float()
    count = jm.sum(-1)  # B x M
    pull_person = ((1 - (u[:, :, None] * v).sum(-1)) * jm).sum(-1) / count.clamp_min(1)
    has = (count > 0).float()
    pull_image = (pull_person * has).sum(1) / has.sum(1).clamp_min(1)
    image_has = (has.sum(1) > 0).float()
    pull = (pull_image * image_has).sum() / image_has.sum().clamp_min(1)
    # the release drops people without visible joints from both terms
    m = has
    pairs = torch.triu(m[:, :, None] * m[:, None, :], diagonal=1)
    push_pair = (1 + u @ u.transpose(1, 2)) * pairs
    pair_count = pairs.sum((1, 2))
    push_image = push_pair.sum((1, 2)) / pair_count.clamp_min(1)
    image_pairs = (pair_count > 0).float()
    push = (push_image * image_pairs).sum() / image_pairs.sum().clamp_min(1)
    return push, pull


def procrustes_align(pred: Tensor, gt: Tensor) -> Tensor:
    """Similarity transform (scale, rotation, translation) of each pred N x J x 3 onto gt,
    differentiable (SVD), reflections excluded."""
    mu_p, mu_g = pred.mean(1, keepdim=True), gt.mean(1, keepdim=True)
    x, y = pred - mu_p, gt - mu_g
    u, s, vh = torch.linalg.svd(x.transpose(1, 2) @ y)
    sign = torch.sign(torch.linalg.det(u @ vh))
    z = torch.ones_like(s)
    z = torch.cat([z[:, :2], sign[:, None]], 1)
    rot = u @ torch.diag_embed(z) @ vh
    scale = (s * z).sum(1) / (x ** 2).sum((1, 2)).clamp_min(1e-12)
    return scale[:, None, None] * x @ rot + mu_g


@dataclass
class InstanceHMRLossWeights:
    """Eq. 5's λ (paper §3.2: 50, 160, 50, 80, 6, 1.6, 200, 360, 400). The release applies
    λ_cont = 50 to each of its two parts (CenterID, JointID) -- so do we. ``cam`` is not in eq. 5
    (the 2D term supervises the camera); the release's config has Cam: 200 for its own camera
    target, off by default here."""

    push: float = 50.0
    pull: float = 50.0
    centre_map: float = 160.0
    joint_map: float = 50.0
    pose: float = 80.0
    shape: float = 6.0
    prior: float = 1.6
    joints3d: float = 200.0
    pa_joints3d: float = 360.0
    keypoints2d: float = 400.0
    cam: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class InstanceHMRLoss(nn.Module):
    """Eq. 5 on a batch: :func:`build_targets`' targets, the model's outputs.

    Per-person terms use the parameter map read at each valid person's GT centre cell (as the
    release supervises, matching predictions to ground truth by centre) and decoded by
    :meth:`InstanceHMR.decode_params`. ``pose``: squared error of the 24 relative rotation
    matrices (our interchange format; the release compares its own parameters); ``shape``:
    squared error of β; ``prior``: ``|β|²`` (the paper's mixture-of-Gaussians pose prior needs
    SMPLify's licensed GMM, not shipped); ``joints3d`` / ``pa_joints3d``: Euclidean distance of
    the body's LBS joints, root-relative / after Procrustes alignment, against ``joints3d``
    (skipped when absent); ``keypoints2d``: Euclidean distance, in the image's normalised [-1, 1]
    coordinates, of their weak-perspective projection to the GT 2D joints inside the image.

    ``body``: a module ``(betas, rotmats) -> (vertices, joints)``, e.g. the training's
    ``BodyLBS``; ``projectors``: the model (its ``ct_projector`` / ``jt_projector``), without
    which the contrastive terms compare the raw instance-map features.
    """

    def __init__(self, body: nn.Module, weights: Optional[InstanceHMRLossWeights] = None) -> None:
        super().__init__()
        self.body = body
        self.weights = weights or InstanceHMRLossWeights()

    def forward(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor],
                projectors: Optional[nn.Module] = None) -> Dict[str, Tensor]:
        param_map = outputs["param_map"]
        size = param_map.shape[-1]
        valid = targets["valid"].bool()
        centre_cells = map_cells(targets["centres"], size)
        joint_cells = map_cells(targets["joints2d"], size)
        vis = targets["joints2d_vis"] > 0.5
        terms: Dict[str, Tensor] = {}
        terms["centre_map"] = focal_heatmap_loss(outputs["centre_heatmap"],
                                                 targets["centre_heatmap"])
        joint_maps, joint_targets = outputs["joint_heatmaps"], targets["joint_heatmaps"]
        terms["joint_map"] = torch.stack([
            focal_heatmap_loss(joint_maps[:, j], joint_targets[:, j])
            for j in range(joint_maps.shape[1])]).mean()
        u = _gather(outputs["centre_embed"], centre_cells)  # B x M x D
        b, m = valid.shape
        v = _gather(outputs["joint_embed"], joint_cells.reshape(b, -1, 2)).reshape(
            b, m, NUM_JOINTS, -1)
        if projectors is not None:
            u, v = projectors.ct_projector(u), projectors.jt_projector(v)
        terms["push"], terms["pull"] = instance_contrastive_loss(u, v, valid, vis)

        vectors = _gather(param_map, centre_cells)[valid]  # N x 82
        pred = InstanceHMR.decode_params(vectors)
        n = float(max(vectors.shape[0], 1))
        gt_rot, gt_betas = targets["rotmats"][valid], targets["betas"][valid]
        terms["pose"] = ((pred["rotmats"] - gt_rot) ** 2).sum() / (n * NUM_JOINTS * 9)
        terms["shape"] = ((pred["betas"] - gt_betas) ** 2).sum() / (n * NUM_BETAS)
        terms["prior"] = (pred["betas"] ** 2).sum() / (n * NUM_BETAS)
        terms["cam"] = ((pred["cam"] - targets["cam"][valid]) ** 2).sum() / (n * 3)
        _, joints = self.body(pred["betas"], pred["rotmats"])
        rel = joints - joints[:, :1]
        zero = param_map.sum() * 0.0
        if "joints3d" in targets and vectors.shape[0]:
            gt3d = targets["joints3d"][valid]
            terms["joints3d"] = (rel - gt3d).norm(dim=-1).mean()
            terms["pa_joints3d"] = (procrustes_align(rel, gt3d) - gt3d).norm(dim=-1).mean()
        else:
            terms["joints3d"] = terms["pa_joints3d"] = zero
        gt2d = targets["joints2d"][valid] / (size / 2) - 1
        inside = _inside(targets["joints2d"][valid], size).float()
        err2d = (weak_perspective_project(joints, pred["cam"]) - gt2d).norm(dim=-1)
        terms["keypoints2d"] = (err2d * inside).sum() / inside.sum().clamp_min(1)
        if not vectors.shape[0]:
            for key in ("pose", "shape", "prior", "cam", "keypoints2d"):
                terms[key] = zero
        w = self.weights
        terms["total"] = sum(getattr(w, key) * value for key, value in terms.items())
        return terms
