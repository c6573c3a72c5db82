"""OCHMR (Khirodkar et al., paper 001): an HMR regressor conditioned on body-centre maps.

A top-down crop is ambiguous when people overlap: which of them is "the" person? OCHMR tells the
network with a context of two maps in the crop's coordinates -- the target's own body centre
(local) and the centres of everyone in the frame (global) -- injected into the backbone by CoNorm
blocks (supplement listing 1) after the configured stages (table 3: after stage 2 is best).
The rest is SPIN: global pooling and an iterative regressor from mean parameters.

The paper estimates the centre maps with a separate HRNet; here :func:`centre_maps` draws them
from the detector's person boxes (or keypoints) the pipeline already has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hmr_ros.body.constants import NUM_BETAS, NUM_JOINTS
from hmr_ros.kernels import torch_ops as ops

from .backbones import (EfficientNetLite, IMAGE_MEAN, IMAGE_STD, ResNet, build_backbone,
                        check_backbone_config)
from hmr_ros.runtime.context import centre_maps  # noqa: F401 - re-exported

from .heads import IDENTITY_6D

__all__ = ["CONORM_NORMALIZATIONS", "CoNorm", "IterativeRegressor", "OCHMR", "OCHMRConfig",
           "OCHMR_OUTPUTS", "centre_maps"]

#: graph output names, in order, for export
OCHMR_OUTPUTS = ("rotmats", "betas", "cam")
#: what CoNorm does to the feature before modulating it; "none" is listing 1
CONORM_NORMALIZATIONS = ("none", "instance", "batch")
#: SPIN's camera mean (s, tx, ty): the person fills ~90 % of the crop
CAM_MEAN = (0.9, 0.0, 0.0)


@dataclass(frozen=True)
class OCHMRConfig:
    """Every size of the network; defaults are the paper's (ResNet-50, 224 crops, CoNorm after
    stage 2, SPIN's 3 iterations)."""

    backbone: str = "resnet50"  # resnet18|34|50, efficientnet_lite0|1|2
    #: a .pth (torchvision ResNet, EfficientNet-PyTorch lite) or "auto" (lite pip weights)
    pretrained_backbone: Optional[str] = None
    crop_size: int = 224  # square input crop, pixels (multiple of 32)
    #: backbone stages (1..4, strides 4/8/16/32) after which a CoNorm block modulates features
    conorm_stages: Tuple[int, ...] = (2,)
    conorm_latent: int = 128  # K of listing 1
    conorm_normalization: str = "none"  # see CoNorm
    iterations: int = 3  # SPIN's iterative error feedback
    regressor_hidden: int = 1024
    regressor_dropout: float = 0.5  # SPIN's; 0 for deterministic small-batch fitting
    centre_map_size: int = 56  # side of the context maps fed to the network (crop / 4)
    #: Gaussian sigma of a body centre, as a fraction of the map side
    centre_sigma: float = 0.04

    def __post_init__(self) -> None:
        check_backbone_config(self.backbone, self.crop_size)
        stages = tuple(self.conorm_stages)
        if not stages or any(s not in (1, 2, 3, 4) for s in stages) or len(set(stages)) != len(
                stages):
            raise ValueError(f"conorm_stages must be distinct stage indices from {{1,2,3,4}}, "
                             f"got {self.conorm_stages!r}")
        object.__setattr__(self, "conorm_stages", tuple(sorted(stages)))
        if self.conorm_normalization not in CONORM_NORMALIZATIONS:
            raise ValueError(f"conorm_normalization must be one of {CONORM_NORMALIZATIONS}, "
                             f"got {self.conorm_normalization!r}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.centre_map_size < 4:
            raise ValueError(f"centre_map_size must be >= 4, got {self.centre_map_size}")

    def to_dict(self) -> dict:
        return asdict(self)


class CoNorm(nn.Module):
    """Context normalisation (supplement listing 1): ``X' = X * Φ_scale(λ) + Φ_bias(λ)``,
    ``λ = Φ_latent(context)``.

    Φ_latent is conv3x3(2 -> K) + ReLU, Φ_scale and Φ_bias are conv3x3(K -> C); the 2-channel
    context (local, global centre map) is bilinearly resized (align_corners=False) to the
    feature's size first -- all as in the listing.

    Choices the listing leaves open, documented here:

    * Normalisation: listing 1 modulates ``X`` directly, with no normalisation, although the
      name suggests one. ``normalization="none"`` (default) is the listing; ``"instance"`` /
      ``"batch"`` first apply InstanceNorm2d / BatchNorm2d without affine (SPADE-style).
    * Initialisation: Φ_scale's bias starts at 1 (weights at torch's default), so an untrained
      block is close to the identity plus a small context-dependent term; a pretrained backbone
      is then not scrambled by a random multiplicative gate on its first step. The function
      class is unchanged.
    """

    def __init__(self, num_channels: int, latent_channels: int = 128,
                 normalization: str = "none") -> None:
        super().__init__()
        if normalization not in CONORM_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {CONORM_NORMALIZATIONS}, "
                             f"got {normalization!r}")
        self.phi_latent = nn.Sequential(nn.Conv2d(2, latent_channels, 3, padding=1), nn.ReLU())
        self.phi_scale = nn.Conv2d(latent_channels, num_channels, 3, padding=1)
        self.phi_bias = nn.Conv2d(latent_channels, num_channels, 3, padding=1)
        nn.init.ones_(self.phi_scale.bias)
        nn.init.zeros_(self.phi_bias.bias)
        if normalization == "instance":
            self.norm: nn.Module = nn.InstanceNorm2d(num_channels, affine=False)
        elif normalization == "batch":
            self.norm = nn.BatchNorm2d(num_channels, affine=False)
        else:
            self.norm = nn.Identity()

    def forward(self, features: Tensor, context: Tensor) -> Tensor:
        """B x C x h x w features, B x 2 x H' x W' context -> B x C x h x w."""
        if context.shape[1] != 2:
            raise ValueError(f"CoNorm context must have 2 channels (local, global centre map), "
                             f"got {tuple(context.shape)}")
        context = F.interpolate(context, size=features.shape[2:], mode="bilinear",
                                align_corners=False)
        latent = self.phi_latent(context)
        return self.norm(features) * self.phi_scale(latent) + self.phi_bias(latent)


class _Stages:
    """The backbone as four stages (output strides 4, 8, 16, 32), without copying its modules.

    Kept a plain object (not an ``nn.Module``) so the backbone's parameters stay under
    ``backbone.*`` only and torchvision / EfficientNet-PyTorch checkpoints still load into it.
    ResNet: stem + layer1, layer2, layer3, layer4. EfficientNet-Lite: the MBConv blocks grouped by
    the stride they reach (the stride-16 group holds two of EfficientNet's stages), the 1x1 head
    conv closing stage 4.
    """

    def __init__(self, backbone: nn.Module) -> None:
        self.backbone = backbone
        if isinstance(backbone, ResNet):
            self.kind = "resnet"
            layers = (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
            self.channels = [layer[-1].bn2.num_features if not hasattr(layer[-1], "bn3")
                             else layer[-1].bn3.num_features for layer in layers]
        elif isinstance(backbone, EfficientNetLite):
            self.kind = "lite"
            stride, groups = 2, [[] for _ in range(4)]  # the stem has stride 2
            for i, block in enumerate(backbone._blocks):
                stride *= block._depthwise_conv.stride[0]
                groups[{2: 0, 4: 0, 8: 1, 16: 2, 32: 3}[stride]].append(i)
            self.block_groups = groups
            self.channels = [backbone._blocks[g[-1]]._project_conv.out_channels
                             for g in groups[:3]] + [backbone.out_channels]
        else:
            raise TypeError(f"no stage split known for {type(backbone).__name__}")

    def run(self, stage: int, x: Tensor) -> Tensor:
        b = self.backbone
        if self.kind == "resnet":
            if stage == 1:
                x = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
                return x
            return getattr(b, f"layer{stage}")(x)
        if stage == 1:
            if b.renormalize:
                x = x * b._in_scale + b._in_shift
            x = b._relu(b._bn0(b._conv_stem(b._stem_pad(x))))
        for i in self.block_groups[stage - 1]:
            x = b._blocks[i](x)
        if stage == 4:
            x = b._relu(b._bn1(b._conv_head(x)))
        return x


class IterativeRegressor(nn.Module):
    """SPIN's regressor (OCHMR's and ImpHMR's): [feature, current params] -> residual update,
    ``iterations`` times, from mean parameters. SPIN reads those from a fitted SMPL file we do
    not ship; the identity pose, the mean body and SPIN's camera mean are the neutral choice."""

    def __init__(self, feature_dim: int, hidden: int, iterations: int, dropout: float) -> None:
        super().__init__()
        self.iterations = iterations
        params = NUM_JOINTS * 6 + NUM_BETAS + 3
        self.fc1 = nn.Linear(feature_dim + params, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.dec_pose = nn.Linear(hidden, NUM_JOINTS * 6)
        self.dec_shape = nn.Linear(hidden, NUM_BETAS)
        self.dec_cam = nn.Linear(hidden, 3)
        for layer in (self.dec_pose, self.dec_shape, self.dec_cam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)  # SPIN: start at the mean
        self.register_buffer("init_pose", torch.tensor(IDENTITY_6D).repeat(NUM_JOINTS))
        self.register_buffer("init_betas", torch.zeros(NUM_BETAS))
        self.register_buffer("init_cam", torch.tensor(CAM_MEAN))

    def forward(self, feature: Tensor) -> Dict[str, Tensor]:
        """B x F -> ``rotmats`` B x 24 x 3 x 3, ``betas`` B x 10, ``cam`` B x 3, ``rot6d``."""
        batch = feature.shape[0]
        pose = self.init_pose.expand(batch, -1)
        betas = self.init_betas.expand(batch, -1)
        cam = self.init_cam.expand(batch, -1)
        for _ in range(self.iterations):
            h = self.drop(F.relu(self.fc1(torch.cat([feature, pose, betas, cam], dim=1))))
            h = self.drop(F.relu(self.fc2(h)))
            pose = pose + self.dec_pose(h)
            betas = betas + self.dec_shape(h)
            cam = cam + self.dec_cam(h)
        rot6d = pose.reshape(batch, NUM_JOINTS, 6)
        return {"rotmats": ops.rot6d_to_matrix(rot6d), "betas": betas, "cam": cam, "rot6d": rot6d}


class OCHMR(nn.Module):
    """Crop + centre-map context -> SMPL rotations (24 x 3 x 3), β (10), camera (s, tx, ty).

    Input images are ImageNet-normalised (``(rgb/255 - IMAGE_MEAN) / IMAGE_STD``), as for VisHMR;
    an EfficientNet-Lite backbone converts to its own normalisation in its first op. ``rotmats``
    are parent-relative (index 0 = global orientation), the layout of the body model's LBS.
    """

    def __init__(self, config: OCHMRConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, config.pretrained_backbone,
                                       input_norm=(IMAGE_MEAN, IMAGE_STD))
        self._stages = _Stages(self.backbone)
        self.conorm = nn.ModuleDict({
            str(s): CoNorm(self._stages.channels[s - 1], config.conorm_latent,
                           config.conorm_normalization) for s in config.conorm_stages})
        self.regressor = IterativeRegressor(self.backbone.out_channels, config.regressor_hidden,
                                            config.iterations, config.regressor_dropout)

    def features(self, images: Tensor, context: Tensor) -> Tensor:
        """Backbone with CoNorm after the configured stages: B x C x H/32 x W/32."""
        x = images
        for stage in range(1, 5):
            x = self._stages.run(stage, x)
            key = str(stage)
            if key in self.conorm:
                x = self.conorm[key](x, context)
        return x

    def forward(self, images: Tensor, context: Tensor) -> Dict[str, Tensor]:
        """images B x 3 x H x W, context B x 2 x h x w (local, global centre map in the crop) ->
        ``rotmats`` B x 24 x 3 x 3, ``betas`` B x 10, ``cam`` B x 3 (and ``rot6d`` B x 24 x 6,
        the regressed 6D before Gram-Schmidt, for losses)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B x 3 x H x W, got {tuple(images.shape)}")
        if context.dim() != 4 or context.shape[1] != 2 or context.shape[0] != images.shape[0]:
            raise ValueError(f"context must be B x 2 x h x w with the images' B, got "
                             f"{tuple(context.shape)} for images {tuple(images.shape)}")
        return self.regressor(self.features(images, context).mean(dim=(2, 3)))
