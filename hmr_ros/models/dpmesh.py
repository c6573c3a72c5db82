"""DPMesh (Zhu et al., paper 004): a Stable-Diffusion U-Net, run once, as the image backbone.

The crop goes through the frozen VAE encoder to a latent ``z0``; the 2D keypoints become two
conditions (section 3.2): Gaussian heatmaps concatenated to ``z0`` and fed to a ControlNet
(``c_j``, eq. 4), and a prompt of lifted keypoint coordinates for every cross-attention layer
(``c_t``). One pass of the denoising U-Net at a fixed timestep gives multi-scale decoder
features and cross-attention maps; the regressor (JOTR's cascade transformer decoder over a
fused 8 x 8 map and a 3D feature volume) predicts codebook logits of a VQ-VAE pose prior, whose
decoder returns the body rotations, and regresses shape and camera directly.

Choices follow the authors' released code (github.com/EternalEvan/DPMesh) where it and the
paper differ, so their checkpoint loads (``hmr_ros.export.dpmesh_export``):

* the keypoint set is theirs (3DCrowdNet's 30 joints: SMPL's 24 + nose, eyes, ears, head top);
  our COCO-17 input is converted inside the module (:class:`KeypointConverter`), pelvis and
  neck as hip / shoulder midpoints, the joints COCO lacks absent (zero, masked);
* keypoints live in latent-pixel units (their ``input_hm_shape``), Gaussian sigma 2.5 there;
* the prompt "MLP" is one ``Linear(2, 768)`` of the coordinates / latent size (paper: two layers);
* the timestep is 1 and ``z0`` is *not* noised; the latent is the VAE posterior's mode without
  SD's 0.18215 scale, and the VAE sees the image in [0, 1] (``vae_input_range``);
* features are taken after the decoder blocks 1, 4, 7 and 11 (strides 8, 4, 2, 1 of the
  latent); head-averaged cross-attention maps of the down and up blocks at strides 2 and 4 are
  averaged per resolution and concatenated to the features of that stride;
* the pose decoder (``pose_decoder``): ``"vq"``, the paper's VQ-VAE prior (their
  ``common/vq_model.py``: PCT-style MLP-mixer decoder, soft code lookup ``softmax(logits) @
  codebook`` over the 23 body joints as 3 x 3 matrices, which are not rotations: we take their
  first two columns through Gram-Schmidt where the authors convert to axis-angle), or
  ``"vposer"``, VPoser v1's decoder from a 32-d latent regressed off the pose token (their
  ``common/model.py``, the model their released checkpoints hold; hands at rest).

The camera ``(tx, ty, gamma)`` of the authors (depth ``f * 2.5 / 256 * sigmoid(gamma)`` for a
256 crop) is our weak-perspective ``(s, tx, ty)`` with ``s = 2 / (2.5 sigmoid(gamma))`` -- the
focal length cancels. Export splits at the U-Net: :class:`DPMeshBackbone` (image, keypoints ->
`DPMESH_FEATURES`) and :class:`DPMeshHead` (features -> rotations, shape, camera).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hmr_ros.body.constants import NUM_BETAS, NUM_JOINTS
from hmr_ros.kernels import torch_ops as ops

from .camera import weak_perspective_project

__all__ = ["DPMESH_FEATURES", "DPMESH_JOINTS", "DPMESH_OUTPUTS", "POSE_DECODERS", "DPMesh",
           "DPMeshBackbone",
           "DPMeshConfig", "DPMeshHead", "DPMeshLoss", "DPMeshLossWeights", "KeypointConverter",
           "perturb_keypoints"]

#: the backbone graph's outputs, in order: U-Net decoder features at latent strides 1, 2, 4, 8
#: and the averaged cross-attention maps (one channel per prompt token) at strides 2 and 4
DPMESH_FEATURES = ("features_s1", "features_s2", "attention_s2", "features_s4", "attention_s4",
                   "features_s8")
DPMESH_OUTPUTS = ("rotmats", "betas", "cam")

#: the authors' keypoint set (3DCrowdNet's SMPL joints + face), the heatmap / prompt order
DPMESH_JOINTS = ("Pelvis", "L_Hip", "R_Hip", "Torso", "L_Knee", "R_Knee", "Spine", "L_Ankle",
                 "R_Ankle", "Chest", "L_Toe", "R_Toe", "Neck", "L_Thorax", "R_Thorax", "Head",
                 "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist",
                 "L_Hand", "R_Hand", "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "Head_top")
_COCO17 = ("Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow",
           "R_Elbow", "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle",
           "R_Ankle")
#: DPMesh joints that are midpoints of two COCO joints (3DCrowdNet adds them the same way)
_MIDPOINTS = {"Pelvis": ("L_Hip", "R_Hip"), "Neck": ("L_Shoulder", "R_Shoulder")}
#: number of 3D joint queries of the JOTR decoder (its graph joint set)
NUM_QUERY_JOINTS = 15
#: the authors' camera_3d_size: the depth range the camera's sigmoid spans (metres)
CAMERA_3D_SIZE = 2.5
CAM_MEAN = (0.9, 0.0, 0.0)
POSE_DECODERS = ("vq", "vposer")


def _unet_blocks(levels: int) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    down = ("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1)
    return down, up


@dataclass(frozen=True)
class DPMeshConfig:
    """Every size; ``DPMeshConfig.full()`` is the paper's (SD 1.5 + ControlNet, 256 crops),
    ``DPMeshConfig.tiny()`` the same architecture small enough for tests on a CPU."""

    size: str = "full"  # "full" | "tiny" | "custom": a label only, the fields decide
    crop_size: int = 256  # the VAE downsamples 8x: latent side crop / 8
    timestep: int = 1
    #: the range the VAE sees (authors: [0, 1]); inputs arrive in [-1, 1]
    vae_input_range: Tuple[float, float] = (0.0, 1.0)
    latent_scale: float = 1.0  # authors: the posterior mode, unscaled
    # --- VAE encoder (diffusers ``Encoder`` of ``AutoencoderKL``)
    vae_block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_num_groups: int = 32
    latent_channels: int = 4
    # --- U-Net and ControlNet (diffusers ``UNet2DConditionModel`` / ``ControlNetModel``)
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    cross_attention_dim: int = 768
    attention_head_dim: int = 8  # SD 1.5's (diffusers' legacy name for the number of heads)
    norm_num_groups: int = 32
    # --- conditions
    heatmap_sigma: float = 2.5  # latent pixels
    keypoint_threshold: float = 0.1  # confidence below which a keypoint is masked out
    # --- feature fusion (their VPDEncoder.outmodules) and regressor (JOTR)
    fused_channels: int = 2048
    fusion_groups: int = 16
    d_model: int = 256
    nhead: int = 8
    enc_layers: int = 2
    dec_layers: int = 4
    dim_feedforward: int = 2048
    refine_feedforward: int = 1024
    dropout: float = 0.1
    #: "vq": the paper's VQ-VAE pose prior (the authors' common/vq_model.py); "vposer": VPoser
    #: v1's decoder from a 32-d latent (common/model.py: the model of the released checkpoints)
    pose_decoder: str = "vq"
    # --- VQ pose prior (PCT-style decoder)
    vq_tokens: int = 48
    vq_classes: int = 2048
    vq_token_dim: int = 256
    vq_hidden_dim: int = 32
    vq_token_inter_dim: int = 64
    vq_hidden_inter_dim: int = 64
    vq_blocks: int = 1
    # --- training-time keypoint perturbation (noisy keypoint reasoning, section 3.3)
    #: share of joints dropped per sample while training (the authors' 10 %)
    keypoint_drop: float = 0.1
    #: Gaussian jitter of training keypoints, in crop-normalised units ([-1, 1] spans the crop)
    keypoint_jitter: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vae_input_range", "vae_block_out_channels", "block_out_channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        levels = len(self.block_out_channels)
        if levels != 4:
            raise ValueError(f"block_out_channels needs 4 levels (features at strides 1..8), "
                             f"got {self.block_out_channels}")
        factor = 2 ** (len(self.vae_block_out_channels) - 1)
        latent = self.crop_size // factor
        if self.crop_size % factor or latent % 8 or latent < 8:
            raise ValueError(f"crop_size must make a latent side that is a multiple of 8, "
                             f"got {self.crop_size} (latent {self.crop_size / factor:g})")
        if self.d_model % 2 or self.d_model % self.nhead:
            raise ValueError("d_model must be even and divisible by nhead")
        if self.dec_layers < 1 or self.enc_layers < 1:
            raise ValueError("enc_layers and dec_layers must be >= 1")
        if self.pose_decoder not in POSE_DECODERS:
            raise ValueError(f"pose_decoder must be one of {POSE_DECODERS}, "
                             f"got {self.pose_decoder!r}")

    @classmethod
    def full(cls, **overrides) -> "DPMeshConfig":
        return replace(cls(), **overrides)

    @classmethod
    def tiny(cls, **overrides) -> "DPMeshConfig":
        tiny = cls(size="tiny", crop_size=64, vae_block_out_channels=(8, 16, 16, 16),
                   vae_layers_per_block=1, vae_norm_num_groups=8,
                   block_out_channels=(16, 32, 32, 32), layers_per_block=1,
                   cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8,
                   heatmap_sigma=1.0, fused_channels=64, fusion_groups=8, d_model=32, nhead=4,
                   enc_layers=1, dec_layers=2, dim_feedforward=64, refine_feedforward=64,
                   dropout=0.0, vq_tokens=8, vq_classes=32, vq_token_dim=16, vq_hidden_dim=16,
                   vq_token_inter_dim=16, vq_hidden_inter_dim=16)
        return replace(tiny, **overrides)

    @classmethod
    def from_size(cls, size: str, **overrides) -> "DPMeshConfig":
        if size not in ("full", "tiny"):
            raise ValueError(f"size must be 'full' or 'tiny', got {size!r}")
        return cls.full(**overrides) if size == "full" else cls.tiny(**overrides)

    @property
    def latent_size(self) -> int:
        return self.crop_size // 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def num_keypoints(self) -> int:
        return len(DPMESH_JOINTS)

    @property
    def fused_size(self) -> int:
        """Side of the fused feature map the regressor reads (latent / 4; 8 at full size)."""
        return self.latent_size // 4

    def unet_kwargs(self) -> dict:
        down, up = _unet_blocks(len(self.block_out_channels))
        return dict(sample_size=self.latent_size, in_channels=self.latent_channels,
                    out_channels=self.latent_channels, down_block_types=down,
                    up_block_types=up, block_out_channels=self.block_out_channels,
                    layers_per_block=self.layers_per_block,
                    cross_attention_dim=self.cross_attention_dim,
                    attention_head_dim=self.attention_head_dim,
                    norm_num_groups=self.norm_num_groups)

    def controlnet_kwargs(self) -> dict:
        down, _ = _unet_blocks(len(self.block_out_channels))
        return dict(in_channels=self.latent_channels + self.num_keypoints,
                    down_block_types=down, block_out_channels=self.block_out_channels,
                    layers_per_block=self.layers_per_block,
                    cross_attention_dim=self.cross_attention_dim,
                    attention_head_dim=self.attention_head_dim,
                    norm_num_groups=self.norm_num_groups)

    def vae_encoder_kwargs(self) -> dict:
        return dict(in_channels=3, out_channels=self.latent_channels,
                    down_block_types=("DownEncoderBlock2D",) * len(self.vae_block_out_channels),
                    block_out_channels=self.vae_block_out_channels,
                    layers_per_block=self.vae_layers_per_block,
                    norm_num_groups=self.vae_norm_num_groups, double_z=True)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------


class KeypointConverter(nn.Module):
    """Our (B, 17, 3) COCO-17 keypoints (x, y in [-1, 1] over the crop's outer pixel edges,
    confidence in [0, 1], 0 where absent) -> the authors' (B, 30, 2) coordinates in latent
    pixels (pixel centres at integers) and a (B, 30) 0/1 mask (confident and inside the
    latent grid; always 0 for the joints COCO lacks, whose coordinates are 0 as in their data).
    """

    def __init__(self, crop_size: int, latent_size: int, threshold: float) -> None:
        super().__init__()
        first, second, present = [], [], []
        for name in DPMESH_JOINTS:
            a, b = _MIDPOINTS.get(name, (name, name))
            ok = a in _COCO17 and b in _COCO17
            first.append(_COCO17.index(a) if ok else 0)
            second.append(_COCO17.index(b) if ok else 0)
            present.append(1.0 if ok else 0.0)
        self.register_buffer("first", torch.tensor(first), persistent=False)
        self.register_buffer("second", torch.tensor(second), persistent=False)
        self.register_buffer("present", torch.tensor(present), persistent=False)
        self.crop_size, self.latent_size, self.threshold = crop_size, latent_size, threshold

    def forward(self, keypoints: Tensor) -> Tuple[Tensor, Tensor]:
        a = keypoints.index_select(1, self.first)
        b = keypoints.index_select(1, self.second)
        xy_norm = 0.5 * (a[..., :2] + b[..., :2])
        conf = torch.minimum(a[..., 2], b[..., 2]) * self.present
        # crop pixel u = (x + 1) S / 2 - 0.5 (pixel centres at integers), latent = u * L / S
        size = float(self.latent_size)
        xy = (xy_norm + 1.0) * (0.5 * size) - 0.5 * size / self.crop_size
        xy = xy * self.present[:, None]
        inside = ((xy >= 0.0) & (xy < size)).all(dim=-1)
        mask = ((conf > self.threshold) & inside).to(keypoints.dtype)
        return xy, mask


def gaussian_heatmaps(xy: Tensor, mask: Tensor, size: int, sigma: float) -> Tensor:
    """(B, J, 2) latent-pixel points, (B, J) mask -> (B, J, size, size) Gaussians, zero where
    masked (the authors' ``make_2d_gaussian_heatmap`` times the mask)."""
    grid = torch.arange(size, dtype=xy.dtype, device=xy.device)
    dx = (grid[None, None, None, :] - xy[..., 0, None, None]) / sigma
    dy = (grid[None, None, :, None] - xy[..., 1, None, None]) / sigma
    return torch.exp(-0.5 * (dx * dx + dy * dy)) * mask[..., None, None]


def perturb_keypoints(keypoints: Tensor, jitter: float, drop: float,
                      generator: Optional[torch.Generator] = None) -> Tensor:
    """Training noise of noisy-keypoint reasoning on (B, 17, 3) keypoints of our layout:
    Gaussian ``jitter`` (crop-normalised units) on every point and a share ``drop`` of points
    lost (confidence 0), as the authors mask 10 % of joints while training. Detector-like
    swaps and outliers come from ``hmr_ros.data.synthetic.keypoint_noise`` upstream."""
    noise = torch.randn(keypoints.shape[:-1] + (2,), generator=generator,
                        dtype=keypoints.dtype).to(keypoints.device)
    keep = (torch.rand(keypoints.shape[:-1], generator=generator, dtype=keypoints.dtype)
            .to(keypoints.device) >= drop).to(keypoints.dtype)
    xy = (keypoints[..., :2] + jitter * noise).clamp(-1.0, 1.0)
    return torch.cat([xy, (keypoints[..., 2] * keep)[..., None]], dim=-1)


# --------------------------------------------------------------------------------------------
# Backbone: VAE encoder, ControlNet, U-Net
# --------------------------------------------------------------------------------------------


class _Recorder:
    """What one U-Net forward leaves behind: the head-averaged cross-attention probabilities
    of the tagged layers and the decoder features by stride. A plain object (no parameters);
    it and the hooks writing into it are objects, not closures, so ``copy.deepcopy`` of the
    backbone (the FP16 export) gets its own."""

    def __init__(self) -> None:
        self.maps: List[Tensor] = []
        self.taps: Dict[int, Tensor] = {}

    def clear(self) -> None:
        self.maps.clear()
        self.taps.clear()


class _TapHook:
    def __init__(self, recorder: _Recorder, stride: int) -> None:
        self.recorder, self.stride = recorder, stride

    def __call__(self, _module, _inputs, output) -> None:
        self.recorder.taps[self.stride] = (output[0] if isinstance(output, (tuple, list))
                                           else output)


class ExplicitAttnProcessor:
    """Diffusers attention written out (``softmax(q k^T * scale) v``), so the graph exports to
    plain MatMul/Softmax and the probabilities can be read. With ``store`` set, the
    head-averaged probabilities of cross-attention calls are appended to ``store.maps``."""

    def __init__(self, store: Optional[_Recorder] = None) -> None:
        self.store = store

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None,
                 *args, **kwargs) -> Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, tokens, _ = hidden_states.shape
        heads = attn.heads
        q = attn.to_q(hidden_states).reshape(batch, tokens, heads, -1).transpose(1, 2)
        k = attn.to_k(context).reshape(batch, context.shape[1], heads, -1).transpose(1, 2)
        v = attn.to_v(context).reshape(batch, context.shape[1], heads, -1).transpose(1, 2)
        probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * attn.scale, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(batch, tokens, -1)
        out = attn.to_out[1](attn.to_out[0](out))
        if self.store is not None and encoder_hidden_states is not None:
            self.store.maps.append(probs.mean(dim=1))
        return out


def _diffusers():
    try:
        import diffusers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - an install problem, stated plainly
        raise ImportError("DPMesh needs diffusers (pip install diffusers==0.42.1)") from exc
    from diffusers import ControlNetModel, UNet2DConditionModel
    from diffusers.models.autoencoders.vae import Encoder
    return Encoder, UNet2DConditionModel, ControlNetModel


class DPMeshBackbone(nn.Module):
    """(images (B, 3, S, S) in [-1, 1], keypoints (B, 17, 3) ours) -> `DPMESH_FEATURES`.

    ``vae_encoder`` + ``vae_quant_conv`` are AutoencoderKL's encoder half (frozen, no grad),
    ``controlnet`` a ControlNetModel whose ``conv_in`` takes latent + heatmaps (its own
    conditioning embedding is removed: DPMesh concatenates instead of adding), ``unet`` SD's
    UNet2DConditionModel, ``keypoint_prompt`` the authors' ``kp_lifting``.
    """

    def __init__(self, config: DPMeshConfig) -> None:
        super().__init__()
        Encoder, UNet2DConditionModel, ControlNetModel = _diffusers()
        self.config = config
        self.keypoints = KeypointConverter(config.crop_size, config.latent_size,
                                           config.keypoint_threshold)
        self.vae_encoder = Encoder(**config.vae_encoder_kwargs())
        self.vae_quant_conv = nn.Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.vae_encoder.requires_grad_(False)
        self.vae_quant_conv.requires_grad_(False)
        self.controlnet = ControlNetModel(**config.controlnet_kwargs())
        self.controlnet.controlnet_cond_embedding = None
        self.unet = UNet2DConditionModel(**config.unet_kwargs())
        self.keypoint_prompt = nn.Linear(2, config.cross_attention_dim)
        self._record = _Recorder()
        self._set_processors()
        ups = self.unet.up_blocks
        # decoder blocks 1, 4, 7, 11 of the LDM numbering: the second layer of the three
        # coarser levels (before their upsampler) and the last layer of the finest
        taps = {8: ups[0].resnets[min(1, len(ups[0].resnets) - 1)],
                4: ups[1].attentions[min(1, len(ups[1].attentions) - 1)],
                2: ups[2].attentions[min(1, len(ups[2].attentions) - 1)],
                1: ups[3].attentions[-1]}
        for stride, module in taps.items():
            module.register_forward_hook(_TapHook(self._record, stride))

    def _set_processors(self) -> None:
        plain = ExplicitAttnProcessor()
        recording = ExplicitAttnProcessor(self._record)
        self.controlnet.set_attn_processor({name: plain for name in
                                            self.controlnet.attn_processors})
        # the authors' selector 'up_cross+down_cross': the middle block is not read
        self.unet.set_attn_processor({
            name: recording if name.endswith("attn2.processor") and not name.startswith(
                "mid_block") else plain for name in self.unet.attn_processors})

    def latent(self, images: Tensor) -> Tensor:
        lo, hi = self.config.vae_input_range
        x = images * (0.5 * (hi - lo)) + 0.5 * (hi + lo)
        moments = self.vae_quant_conv(self.vae_encoder(x))
        return moments[:, : self.config.latent_channels] * self.config.latent_scale

    def conditions(self, keypoints: Tensor) -> Tuple[Tensor, Tensor]:
        """-> heatmaps (B, 30, L, L) and the prompt (B, 30, cross_attention_dim)."""
        cfg = self.config
        xy, mask = self.keypoints(keypoints)
        heatmaps = gaussian_heatmaps(xy, mask, cfg.latent_size, cfg.heatmap_sigma)
        return heatmaps, self.keypoint_prompt(xy / cfg.latent_size)

    def _control(self, latent: Tensor, heatmaps: Tensor, timestep: Tensor,
                 prompt: Tensor) -> Tuple[List[Tensor], Tensor]:
        net = self.controlnet
        emb = net.time_embedding(net.time_proj(timestep).to(latent.dtype))
        h = net.conv_in(torch.cat([latent, heatmaps], dim=1))
        residuals = [h]
        for block in net.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=prompt)
            else:
                h, res = block(hidden_states=h, temb=emb)
            residuals.extend(res)
        h = net.mid_block(h, emb, encoder_hidden_states=prompt)
        down = [zero(r) for zero, r in zip(net.controlnet_down_blocks, residuals)]
        return down, net.controlnet_mid_block(h)

    def forward(self, images: Tensor, keypoints: Tensor) -> Tuple[Tensor, ...]:
        cfg = self.config
        with torch.no_grad():
            latent = self.latent(images)
        heatmaps, prompt = self.conditions(keypoints)
        timestep = torch.full((images.shape[0],), cfg.timestep, dtype=torch.long,
                              device=images.device)
        down, mid = self._control(latent, heatmaps, timestep, prompt)
        self._record.clear()
        self.unet(latent, timestep, encoder_hidden_states=prompt,
                  down_block_additional_residuals=down, mid_block_additional_residual=mid,
                  return_dict=False)
        attn = {}
        side = cfg.latent_size
        for stride in (2, 4):
            tokens = (side // stride) ** 2
            maps = [m for m in self._record.maps if m.shape[1] == tokens]
            mean = torch.stack(maps).mean(0)  # B x (h w) x J
            attn[stride] = mean.transpose(1, 2).reshape(mean.shape[0], -1, side // stride,
                                                         side // stride)
        taps = dict(self._record.taps)
        self._record.clear()
        return (taps[1], taps[2], attn[2], taps[4], attn[4], taps[8])


# --------------------------------------------------------------------------------------------
# Head: feature fusion, JOTR regressor, VQ pose decoder
# --------------------------------------------------------------------------------------------


class _MLPBlock(nn.Module):
    def __init__(self, dim: int, inter_dim: int, dropout: float) -> None:
        super().__init__()
        self.ff = nn.Sequential(nn.Linear(dim, inter_dim), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(inter_dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.ff(x)


class MixerLayer(nn.Module):
    """MLP-mixer layer of the PCT pose tokenizer: token mixing, then channel mixing."""

    def __init__(self, hidden_dim: int, hidden_inter_dim: int, tokens: int, token_inter_dim: int,
                 dropout: float) -> None:
        super().__init__()
        self.layernorm1 = nn.LayerNorm(hidden_dim)
        self.MLP_token = _MLPBlock(tokens, token_inter_dim, dropout)
        self.layernorm2 = nn.LayerNorm(hidden_dim)
        self.MLP_channel = _MLPBlock(hidden_dim, hidden_inter_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.MLP_token(self.layernorm1(x).transpose(1, 2)).transpose(1, 2)
        z = self.MLP_channel(self.layernorm2(x + y))
        return x + y + z


class VQPoseDecoder(nn.Module):
    """The decoder half of the VQ-VAE pose prior: per-token class probabilities (B, T, K) ->
    soft codebook features -> mixer -> (B, 23, 9) body-joint matrices (row-major 3 x 3)."""

    BODY_JOINTS = NUM_JOINTS - 1

    def __init__(self, config: DPMeshConfig) -> None:
        super().__init__()
        c = config
        self.register_buffer("codebook", torch.randn(c.vq_classes, c.vq_token_dim))
        self.decoder_token_mlp = nn.Linear(c.vq_tokens, self.BODY_JOINTS)
        self.decoder_start = nn.Linear(c.vq_token_dim, c.vq_hidden_dim)
        self.decoder = nn.ModuleList([
            MixerLayer(c.vq_hidden_dim, c.vq_hidden_inter_dim, self.BODY_JOINTS,
                       c.vq_token_inter_dim, 0.0) for _ in range(c.vq_blocks)])
        self.decoder_layer_norm = nn.LayerNorm(c.vq_hidden_dim)
        self.recover_embed = nn.Linear(c.vq_hidden_dim, 9)
        # rest pose at init: the matrices start at the identity whatever the codes
        nn.init.normal_(self.recover_embed.weight, std=1e-3)
        with torch.no_grad():
            self.recover_embed.bias.copy_(torch.eye(3).flatten())

    def forward(self, probs: Tensor) -> Tensor:
        feat = torch.matmul(probs, self.codebook)  # B x T x D
        feat = self.decoder_token_mlp(feat.transpose(1, 2)).transpose(1, 2)
        feat = self.decoder_start(feat)
        for layer in self.decoder:
            feat = layer(feat)
        return self.recover_embed(self.decoder_layer_norm(feat))


class VPoserDecoder(nn.Module):
    """VPoser v1's decoder (human_body_prior 0.8, the 'snapshot' the authors load): a 32-d
    latent -> leaky-ReLU MLP -> 21 body joints in 6D ((3, 2) row-major, Gram-Schmidt) ->
    (B, 21, 3, 3). Names match the checkpoint's ``bodyprior_dec_*``."""

    LATENT = 32
    HIDDEN = 512
    JOINTS = 21

    def __init__(self) -> None:
        super().__init__()
        self.bodyprior_dec_fc1 = nn.Linear(self.LATENT, self.HIDDEN)
        self.bodyprior_dec_fc2 = nn.Linear(self.HIDDEN, self.HIDDEN)
        self.bodyprior_dec_out = nn.Linear(self.HIDDEN, self.JOINTS * 6)
        # rest pose at init (the pretrained prior maps z = 0 near its mean pose instead)
        nn.init.normal_(self.bodyprior_dec_out.weight, std=1e-3)
        with torch.no_grad():
            self.bodyprior_dec_out.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
                                              .repeat(self.JOINTS))

    def forward(self, latent: Tensor) -> Tensor:
        x = F.leaky_relu(self.bodyprior_dec_fc1(latent), negative_slope=0.2)
        x = F.leaky_relu(self.bodyprior_dec_fc2(x), negative_slope=0.2)
        six = self.bodyprior_dec_out(x).reshape(latent.shape[0], self.JOINTS, 6)
        return ops.rot6d_to_matrix(six[..., [0, 2, 4, 1, 3, 5]])


class _EncoderLayer(nn.Module):
    """DETR's post-norm transformer encoder layer (sequence-first tensors)."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d, ff)
        self.linear2 = nn.Linear(ff, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        q = src + pos
        src = self.norm1(src + self.drop(self.self_attn(q, q, src, need_weights=False)[0]))
        ff = self.linear2(self.drop(F.relu(self.linear1(src))))
        return self.norm2(src + self.drop(ff))


class _TransformerEncoder(nn.Module):
    def __init__(self, d: int, nhead: int, ff: int, dropout: float, layers: int,
                 final_norm: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_EncoderLayer(d, nhead, ff, dropout)
                                     for _ in range(layers)])
        self.norm = nn.LayerNorm(d) if final_norm else None

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src if self.norm is None else self.norm(src)


class _DecoderLayer(nn.Module):
    def __init__(self, d: int, nhead: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d, ff)
        self.linear2 = nn.Linear(ff, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.drop(self.self_attn(q, q, tgt, need_weights=False)[0]))
        att = self.multihead_attn(tgt + query_pos, memory + pos, memory, need_weights=False)[0]
        tgt = self.norm2(tgt + self.drop(att))
        ff = self.linear2(self.drop(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.drop(ff))


def _inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp_min(eps) / (1.0 - x).clamp_min(eps))


def sample_volume(volume: Tensor, points: Tensor) -> Tensor:
    """Trilinear sampling (``grid_sample`` 5-D, zeros padding, align_corners=True) written as a
    2-D ``grid_sample`` over every depth slice and a hat-weighted sum over depth, because ONNX
    GridSample before opset 20 and TensorRT sample 2-D only.

    volume: B x C x D x H x W; points: B x N x 3 in [-1, 1] as (x, y, z) -> B x C x N.
    """
    b, c, d, h, w = volume.shape
    planes = volume.reshape(b, c * d, h, w)
    grid = points[:, None, :, :2]  # B x 1 x N x 2
    sampled = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True).reshape(b, c, d, -1)  # B x C x D x N
    z = (points[..., 2] + 1.0) * (0.5 * (d - 1))  # B x N, depth in slice units
    slices = torch.arange(d, dtype=volume.dtype, device=volume.device)
    weights = (1.0 - (z[:, None, :] - slices[None, :, None]).abs()).clamp_min(0.0)  # B x D x N
    return (sampled * weights[:, None]).sum(dim=2)


def _sine_table(positions: int, dim: int) -> Tensor:
    """The transformer's sinusoid table (JOTR's PositionalEncoding1D)."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    i = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(i, 2, rounding_mode="floor") / dim)
    table = torch.where(i.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


def _sine_position_2d(size: int, dim: int) -> Tensor:
    """DETR's normalised sine embedding of a size x size grid -> (size*size, dim)."""
    half = dim // 2
    coords = torch.arange(1, size + 1, dtype=torch.float32) / (size + 1e-6) * 2 * math.pi
    dim_t = torch.arange(half, dtype=torch.float32)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    y = coords[:, None, None] / dim_t  # H x 1 x half
    x = coords[None, :, None] / dim_t  # 1 x W x half

    def interleave(t: Tensor) -> Tensor:
        return torch.stack((t[..., 0::2].sin(), t[..., 1::2].cos()), dim=-1).flatten(-2)

    pos_y = interleave(y).expand(size, size, half)
    pos_x = interleave(x).expand(size, size, half)
    return torch.cat([pos_y, pos_x], dim=-1).reshape(size * size, dim)


def _cascade(hs: Tensor, layers: nn.ModuleList) -> Tensor:
    """JOTR's cascade: the first decoder layer's output predicts, each later one adds an offset
    from [its hidden state, the running prediction]."""
    out = layers[0](hs[0])
    for i in range(1, len(layers)):
        out = out + layers[i](torch.cat([hs[i], out], dim=-1))
    return out


def _cascade_layers(d: int, out_dim: int, n: int) -> nn.ModuleList:
    return nn.ModuleList([nn.Linear(d, out_dim)] +
                         [nn.Linear(d + out_dim, out_dim) for _ in range(n - 1)])


class DPMeshHead(nn.Module):
    """`DPMESH_FEATURES`... -> rotations (B, 24, 3, 3), betas (B, 10), cam (B, 3). The
    keypoints entered through the backbone's conditions; the authors' regressor does not read
    them again.

    ``forward_dict`` returns the intermediate outputs the losses need as well (VQ logits,
    the decoder's 3D joint estimate, the fused feature map used by noisy-keypoint reasoning).
    Parameter names follow the authors' ``Model`` / ``VPDEncoder.outmodules`` / PCT decoder so
    their checkpoint maps on by renaming prefixes only.
    """

    def __init__(self, config: DPMeshConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        b = c.block_out_channels
        attn_ch = c.num_keypoints
        c1, c2, c4, c8 = b[0], b[1] + attn_ch, b[2] + attn_ch, b[3]
        self.outmodules = nn.ModuleList([
            nn.Sequential(nn.Conv2d(c1, c1, 3, stride=2, padding=1),
                          nn.GroupNorm(c.fusion_groups, c1),
                          nn.ReLU(), nn.Conv2d(c1, c1, 3, stride=2, padding=1)),
            nn.Sequential(nn.Conv2d(c2, c2, 3, stride=2, padding=1)),
            nn.Sequential(nn.Conv2d(c1 + c2 + c4 + c8, c.fused_channels, 1),
                          nn.GroupNorm(c.fusion_groups, c.fused_channels), nn.ReLU()),
        ])
        d, side = c.d_model, c.fused_size
        self.down_linear = nn.Conv2d(c.fused_channels, d, 1)
        self.conv2d_to_3d = nn.Conv2d(c.fused_channels, d * side, 1)
        self.exponent = nn.Parameter(torch.tensor(3.0))
        self.conv_3d_coord = nn.Sequential(nn.Conv3d(d + 3, d, 1))
        self.refine_3d = _TransformerEncoder(d, c.nhead, c.refine_feedforward, c.dropout,
                                             c.enc_layers, final_norm=True)
        self.register_buffer("pos_table", _sine_table(side ** 3, d), persistent=False)
        self.register_buffer("pos_2d", _sine_position_2d(side, d), persistent=False)
        self.encoder = _TransformerEncoder(d, c.nhead, c.dim_feedforward, c.dropout,
                                           c.enc_layers, final_norm=False)
        self.decoder_layers = nn.ModuleList([_DecoderLayer(d, c.nhead, c.dim_feedforward,
                                                           c.dropout) for _ in range(c.dec_layers)])
        self.decoder_norm = nn.LayerNorm(d)
        self.joint_img_regress = _cascade_layers(d, 3, c.dec_layers)
        self.fc_pos_3d = nn.Sequential(nn.Linear(3, d), nn.LayerNorm(d), nn.ReLU(),
                                       nn.Linear(d, d))
        self.smpl_tgt = nn.Parameter(torch.zeros(d))
        self.kp_tgt = nn.Parameter(torch.zeros(d))
        # query tokens: pose [, VQ tokens], shape, camera
        self.num_param_tokens = (c.vq_tokens if c.pose_decoder == "vq" else 0) + 3
        self.spose_shape_cam_param = nn.Parameter(torch.randn(self.num_param_tokens, d))
        self.query = nn.Embedding(NUM_QUERY_JOINTS, d)
        self.cascade_root_pose_out = _cascade_layers(d, 6, c.dec_layers)
        pose_dim = c.vq_classes if c.pose_decoder == "vq" else VPoserDecoder.LATENT
        self.cascade_pose_out = _cascade_layers(d, pose_dim, c.dec_layers)
        self.cascade_shape_out = _cascade_layers(d, NUM_BETAS, c.dec_layers)
        self.cascade_cam_out = _cascade_layers(d, 3, c.dec_layers)
        if c.pose_decoder == "vq":
            self.vqvae = VQPoseDecoder(c)
        else:
            self.vposer = VPoserDecoder()
        self._init_mean()

    def _init_mean(self) -> None:
        """Outputs start at the mean: identity root, uniform codes (rest body through the VQ
        decoder's init), zero β, the camera of a person filling 90 % of the crop."""
        gamma = math.log(2 / (CAMERA_3D_SIZE * CAM_MEAN[0]) / (1 - 2 / (CAMERA_3D_SIZE *
                                                                       CAM_MEAN[0])))
        means = {"cascade_root_pose_out": (1.0, 0.0, 0.0, 1.0, 0.0, 0.0),  # (3, 2) row-major
                 "cascade_pose_out": None, "cascade_shape_out": None,
                 "cascade_cam_out": (0.0, 0.0, gamma)}
        with torch.no_grad():
            for name, mean in means.items():
                for i, layer in enumerate(getattr(self, name)):
                    nn.init.normal_(layer.weight, std=1e-3)
                    layer.bias.zero_()
                    if i == 0 and mean is not None:
                        layer.bias.copy_(torch.tensor(mean))

    def fuse(self, features: Sequence[Tensor]) -> Tensor:
        """`DPMESH_FEATURES` -> (B, fused_channels, L/4, L/4), the authors' VPDEncoder tail."""
        f1, f2, a2, f4, a4, f8 = features
        s4 = torch.cat([f4, a4, F.interpolate(f8, scale_factor=2.0, mode="nearest")], dim=1)
        y = torch.cat([self.outmodules[0](f1), self.outmodules[1](torch.cat([f2, a2], dim=1)),
                       s4], dim=1)
        return self.outmodules[2](y)

    def _volume(self, fused: Tensor, exponent: Tensor) -> Tensor:
        """The 3D feature volume (B, d, D, H, W) the decoder samples at its joint estimates."""
        b, d, side = fused.shape[0], self.config.d_model, self.config.fused_size
        dense = self.conv2d_to_3d(fused).reshape(b, d, side, side, side)
        ramp = torch.arange(side, dtype=fused.dtype, device=fused.device) / side
        z = torch.pow(ramp, exponent)[:, None, None].expand(side, side, side)
        y = ramp[None, :, None].expand(side, side, side)
        x = ramp[None, None, :].expand(side, side, side)
        anchors = torch.stack([z, y, x])[None].expand(b, 3, side, side, side)
        dense = self.conv_3d_coord(torch.cat([dense, anchors], dim=1))
        seq = dense.flatten(2).permute(2, 0, 1)  # (D H W) x B x d
        seq = self.refine_3d(seq, self.pos_table[:, None, :])
        return seq.permute(1, 2, 0).reshape(b, d, side, side, side)

    def forward_dict(self, features: Sequence[Tensor]) -> Dict[str, Tensor]:
        fused = self.fuse(features)
        b = fused.shape[0]
        exponent = self.exponent.clamp(1.0, 20.0)
        volume = self._volume(fused, exponent)
        memory = self.encoder(self.down_linear(fused).flatten(2).permute(2, 0, 1),
                              self.pos_2d[:, None, :])
        pos = self.pos_2d[:, None, :].expand(-1, b, -1)
        query_pos = torch.cat([self.spose_shape_cam_param, self.query.weight], dim=0)
        query_pos = query_pos[:, None, :].expand(-1, b, -1)
        n_par = self.num_param_tokens
        tgt = torch.cat([self.smpl_tgt.expand(n_par, b, -1),
                         self.kp_tgt.expand(NUM_QUERY_JOINTS, b, -1)], dim=0)
        hidden, joint_img = [], None
        mem, mem_pos = memory, pos
        for i, layer in enumerate(self.decoder_layers):
            tgt = self.decoder_norm(layer(tgt, mem, mem_pos, query_pos))
            hidden.append(tgt[:n_par])
            joint_hs = tgt[n_par:].transpose(0, 1)  # B x 15 x d
            if i == 0:
                joint_img = torch.sigmoid(self.joint_img_regress[0](joint_hs))
            else:
                inv = _inverse_sigmoid(joint_img)
                joint_img = torch.sigmoid(inv + self.joint_img_regress[i](
                    torch.cat([joint_hs, inv], dim=-1)))
            grid = torch.cat([joint_img[..., :2] * 2 - 1,
                              torch.pow(joint_img[..., 2:], exponent) * 2 - 1], dim=-1)
            sampled = sample_volume(volume, grid).permute(2, 0, 1)  # 15 x B x d
            sampled_pos = self.fc_pos_3d(_inverse_sigmoid(joint_img)).transpose(0, 1)
            mem = torch.cat([memory, sampled], dim=0)
            mem_pos = torch.cat([pos, sampled_pos], dim=0)
        hs = torch.stack(hidden)  # L x n_par x B x d
        root6 = _cascade(hs[:, 0], self.cascade_root_pose_out)
        betas = _cascade(hs[:, -2], self.cascade_shape_out)
        cam_raw = _cascade(hs[:, -1], self.cascade_cam_out)
        # authors' 6D is a (3, 2) matrix row-major; ours stores the two columns
        root = ops.rot6d_to_matrix(root6[:, [0, 2, 4, 1, 3, 5]])
        extra: Dict[str, Tensor] = {}
        if self.config.pose_decoder == "vq":
            logits = _cascade(hs[:, 1:-2].transpose(1, 2), self.cascade_pose_out)  # B x T x K
            body_mats = self.vqvae(torch.softmax(logits, dim=-1)).reshape(b, -1, 3, 3)
            body_rot = ops.rot6d_to_matrix(body_mats[..., :, :2].transpose(-1, -2).reshape(
                b, -1, 6))
            extra = {"vq_logits": logits, "body_matrices": body_mats}
        else:
            latent = _cascade(hs[:, 0], self.cascade_pose_out)  # from the pose token, as root
            hands = torch.eye(3, dtype=latent.dtype, device=latent.device).expand(b, 2, 3, 3)
            body_rot = torch.cat([self.vposer(latent), hands], dim=1)  # hands at rest
            extra = {"pose_latent": latent}
        rotmats = torch.cat([root[:, None], body_rot], dim=1)
        scale = 2.0 / (CAMERA_3D_SIZE * torch.sigmoid(cam_raw[:, 2:]))
        cam = torch.cat([scale, cam_raw[:, :2]], dim=1)
        return {"rotmats": rotmats, "betas": betas, "cam": cam, "joint_img": joint_img,
                "fused": fused, **extra}

    def forward(self, *features: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        out = self.forward_dict(features)
        return out["rotmats"], out["betas"], out["cam"]


class DPMesh(nn.Module):
    """(images (B, 3, S, S) in [-1, 1], keypoints (B, 17, 3) ours) -> dict with ``rotmats``
    (B, 24, 3, 3, parent-relative), ``betas`` (B, 10), ``cam`` (B, 3; weak-perspective crop
    camera, ``camera.py``), and ``joint_img``, ``fused`` and the pose decoder's input
    (``vq_logits`` + ``body_matrices``, or VPoser's ``pose_latent``).

    While training, keypoints are perturbed (``perturb_keypoints``: jitter + dropped joints)
    unless ``clean_keypoints=True`` (the NKR teacher's view), drawn from ``generator`` (a CPU
    generator; the trainer keys one by step so a resumed run draws the same noise)."""

    def __init__(self, config: DPMeshConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = DPMeshBackbone(config)
        self.head = DPMeshHead(config)

    def forward(self, images: Tensor, keypoints: Tensor, clean_keypoints: bool = False,
                generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B x 3 x S x S, got {tuple(images.shape)}")
        if keypoints.dim() != 3 or keypoints.shape[1:] != (17, 3) or (
                keypoints.shape[0] != images.shape[0]):
            raise ValueError(f"keypoints must be B x 17 x 3 with the images' B, got "
                             f"{tuple(keypoints.shape)}")
        if self.training and not clean_keypoints:
            keypoints = perturb_keypoints(keypoints, self.config.keypoint_jitter,
                                          self.config.keypoint_drop, generator)
        features = self.backbone(images, keypoints)
        return self.head.forward_dict(features)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DPMeshLossWeights:
    """λ of eq. 6 (supplement: 5, 2, 1, 0.1) and the NKR temperature."""

    keypoints2d: float = 5.0
    joints3d: float = 2.0
    smpl: float = 1.0
    nkr: float = 0.1
    nkr_temperature: float = 0.1


class DPMeshLoss(nn.Module):
    """Eqs. 6-8 + NKR (eq. 5). ``body``: a module ``(betas, rotmats) -> (vertices, joints)``
    (the trainer's ``BodyLBS``).

    Terms: ``keypoints2d`` L1 of the projected joints vs ``keypoints2d`` (B, 24, 2, crop-
    normalised) weighted by ``keypoints2d_conf``; ``joints3d`` L1 of root-relative joints vs
    ``joints3d`` (B, 24, 3) weighted by ``joints3d_conf`` when given; ``smpl`` L1 of the
    rotation matrices + L1 of β (eq. 8) on samples with ``has_smpl``; ``nkr`` (when
    ``teacher_features`` are passed) SimCLR/InfoNCE between the student's and the teacher's
    pooled fused features over the batch + their MSE. Missing targets leave their term out.
    """

    def __init__(self, body: nn.Module, weights: DPMeshLossWeights = DPMeshLossWeights()) -> None:
        super().__init__()
        self.body, self.weights = body, weights

    def nkr(self, student: Tensor, teacher: Tensor) -> Tensor:
        s = F.normalize(student.flatten(1), dim=1)
        t = F.normalize(teacher.detach().flatten(1), dim=1)
        logits = s @ t.t() / self.weights.nkr_temperature
        labels = torch.arange(s.shape[0], device=s.device)
        return F.cross_entropy(logits, labels) + F.mse_loss(student, teacher.detach())

    def forward(self, out: Dict[str, Tensor], targets: Dict[str, Tensor],
                teacher_features: Optional[Tensor] = None) -> Dict[str, Tensor]:
        w = self.weights
        terms: Dict[str, Tensor] = {}
        _, joints = self.body(out["betas"], out["rotmats"])
        if "keypoints2d" in targets:
            proj = weak_perspective_project(joints, out["cam"])
            conf = targets.get("keypoints2d_conf", torch.ones_like(proj[..., 0]))
            err = (proj - targets["keypoints2d"]).abs() * conf[..., None]
            terms["keypoints2d"] = err.sum() / (2 * (conf > 0).sum()).clamp_min(1)
        if "joints3d" in targets:
            pred = joints - joints[:, :1]
            gt = targets["joints3d"] - targets["joints3d"][:, :1]
            conf = targets.get("joints3d_conf", torch.ones_like(gt[..., 0]))
            err = (pred - gt).abs() * conf[..., None]
            terms["joints3d"] = err.sum() / (3 * (conf > 0).sum()).clamp_min(1)
        if "rel_rotmats" in targets:
            has = targets.get("has_smpl", torch.ones_like(out["betas"][:, 0]))
            has = (has > 0).to(out["betas"].dtype)
            per = ((out["rotmats"] - targets["rel_rotmats"]).abs().flatten(1).mean(1)
                   + (out["betas"] - targets["betas"]).abs().mean(1))
            terms["smpl"] = (per * has).sum() / has.sum().clamp_min(1.0)
        if teacher_features is not None:
            terms["nkr"] = self.nkr(out["fused"], teacher_features)
        terms["total"] = sum(getattr(w, k) * v for k, v in terms.items())
        return terms


def teacher_copy(model: DPMesh) -> DPMesh:
    """A frozen copy of ``model`` as NKR's teacher (the paper trains one on clean keypoints
    first; starting from the student's weights is the cheap variant)."""
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher
