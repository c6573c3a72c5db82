"""DPMesh as two graphs, and the authors' checkpoint turned into one.

``unet.onnx``: (``images``, ``keypoints``) -> `DPMESH_FEATURES` -- VAE encoder, keypoint
conditions, ControlNet and the U-Net pass (the heavy part; optionally FP16 inside with float32
inputs and outputs). ``regressor.onnx``: `DPMESH_FEATURES` -> ``rotmats``,
``betas``, ``cam`` (fusion, JOTR decoder, VQ pose decoder). Both are checked against torch
with ONNX Runtime and against TensorRT's op list before the manifest is written.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

from .errors import ExportError
from .manifest import Manifest, StageSpec, TensorSpec
from .onnx_export import _export_one, _specs, sha256_of
from .trt_support import check_tensorrt_compat

UNET_STAGE = "unet"
REGRESSOR_STAGE = "regressor"
UNET_INPUTS = ("images", "keypoints")
DPMESH_MEAN = (0.5, 0.5, 0.5)
DPMESH_STD = (0.5, 0.5, 0.5)


def _half_backbone(backbone):
    """A copy of ``backbone`` computing in FP16 between float32 inputs and outputs."""
    import copy

    import torch

    class HalfBackbone(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images, keypoints):
            feats = self.inner(images.half(), keypoints.half())
            return tuple(f.float() for f in feats)

    return HalfBackbone(copy.deepcopy(backbone).half().eval()).eval()


def _check_trt(path: Path) -> None:
    problems = check_tensorrt_compat(path)
    if problems:
        raise ExportError(f"{path}: not buildable by TensorRT: " + "; ".join(map(str, problems)))


def _parity(path: Path, feeds: Mapping[str, "object"], names, expected, atol: float) -> object:
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(list(names), dict(feeds))
    for key, a, b in zip(names, expected, got):
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        if not err <= atol:
            raise ExportError(f"{path}: ONNX Runtime differs from torch on '{key}' by {err:.2e} "
                              f"(> {atol:g})")
    return sess


def _traced_specs(names, arrays) -> tuple:
    """TensorSpecs of the traced outputs: the batch axis dynamic, every other axis its size."""
    return tuple(TensorSpec(n, ("batch",) + tuple(int(d) for d in a.shape[1:]), "float32")
                 for n, a in zip(names, arrays))


def export_dpmesh(model, out_dir: Union[str, Path], *, body, opset: int = 17,
                  fp16_unet: bool = False, check_tensorrt: bool = True,
                  parity_atol: float = 1e-3, fp16_atol: float = 5e-2) -> Manifest:
    """Writes ``unet.onnx``, ``regressor.onnx`` and ``manifest.json`` for a `DPMesh`.

    ``fp16_unet``: the U-Net graph computes in FP16 (weights stored in half; inputs and outputs
    stay float32) and is compared to the float32 torch backbone within ``fp16_atol``; ONNX
    Runtime must be able to run it on the CPU for that check. Raises :class:`ExportError` on a
    parity failure or an op TensorRT's parser lacks (``check_tensorrt=False`` skips that).
    """
    import torch

    from hmr_ros.models.dpmesh import DPMESH_FEATURES, DPMESH_OUTPUTS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    model.eval()
    crop = int(cfg.crop_size)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, crop, crop, generator=gen) * 2 - 1
    keypoints = torch.cat([torch.rand(2, 17, 2, generator=gen) * 1.6 - 0.8,
                           torch.rand(2, 17, 1, generator=gen)], dim=-1)
    backbone, head = model.backbone.eval(), model.head.eval()
    unet_path, reg_path = out / f"{UNET_STAGE}.onnx", out / f"{REGRESSOR_STAGE}.onnx"
    reg_inputs = tuple(DPMESH_FEATURES)
    with torch.no_grad():
        features = backbone(images, keypoints)
        expected_features = [f.numpy() for f in features]
        expected_params = [t.numpy() for t in head(*features)]
        unet_module = _half_backbone(backbone) if fp16_unet else backbone
        _export_one(unet_module, (images, keypoints), unet_path, UNET_INPUTS, DPMESH_FEATURES,
                    opset)
        _export_one(head, tuple(features), reg_path, reg_inputs, DPMESH_OUTPUTS, opset)
    if check_tensorrt:
        _check_trt(unet_path)
        _check_trt(reg_path)
    unet_sess = _parity(unet_path, {"images": images.numpy(), "keypoints": keypoints.numpy()},
                        DPMESH_FEATURES, expected_features,
                        fp16_atol if fp16_unet else parity_atol)
    feeds = {n: a for n, a in zip(DPMESH_FEATURES, expected_features)}
    _parity(reg_path, feeds, DPMESH_OUTPUTS, expected_params, parity_atol)
    # ONNX shape inference loses some inner sizes (attention maps, reshapes): the manifest takes
    # them from the traced tensors, so every axis but the batch is a number (TensorRT buffer
    # plans size each "batch" axis as max_batch)
    unet_out = _traced_specs(DPMESH_FEATURES, expected_features)
    stages = {
        UNET_STAGE: StageSpec(file=unet_path.name, sha256=sha256_of(unet_path),
                              inputs=_specs(unet_sess.get_inputs(), UNET_INPUTS),
                              outputs=unet_out),
        REGRESSOR_STAGE: StageSpec(file=reg_path.name, sha256=sha256_of(reg_path),
                                   inputs=unet_out,
                                   outputs=_traced_specs(DPMESH_OUTPUTS, expected_params)),
    }
    manifest = Manifest(
        model="dpmesh",
        stages=stages,
        preprocessing={"crop_size": crop, "mean": list(DPMESH_MEAN), "std": list(DPMESH_STD),
                       "channel_order": "RGB", "layout": "NCHW", "scale": 1.0 / 255.0},
        body={"name": getattr(body, "name", "procedural"),
              "num_vertices": int(body.num_vertices), "num_joints": 24, "num_betas": 10},
        heads={"outputs": "smpl_params", "predicts_visibility": False,
               "keypoint_input": "coco17_crop_normalised",
               "chain": [UNET_STAGE, REGRESSOR_STAGE], "unet_fp16": bool(fp16_unet)},
        config=asdict(cfg),
        opset=opset,
    )
    manifest.save(out)
    return manifest


# --------------------------------------------------------------------------------------------
# The authors' checkpoint
# --------------------------------------------------------------------------------------------

#: reference name prefix -> ours, for the DPMesh-specific modules (longest prefix first)
REFERENCE_PREFIXES = (
    ("backbone.outmodules.", "head.outmodules."),
    ("kp_lifting.", "backbone.keypoint_prompt."),
    ("transformer.encoder.layers.", "head.encoder.layers."),
    ("transformer.decoder.layers.", "head.decoder_layers."),
    ("transformer.decoder.norm.", "head.decoder_norm."),
    ("transformer.decoder.joint_img_regress.", "head.joint_img_regress."),
    ("transformer.decoder.fc_pos_3d.", "head.fc_pos_3d."),
    ("transformer.smpl_tgt", "head.smpl_tgt"),
    ("transformer.kp_tgt", "head.kp_tgt"),
    ("cascade_shaoe_out.", "head.cascade_shape_out."),  # sic, the authors' spelling
    ("vqvae.codebook", "head.vqvae.codebook"),
    ("vqvae.decoder_token_mlp.", "head.vqvae.decoder_token_mlp."),
    ("vqvae.decoder_start.", "head.vqvae.decoder_start."),
    ("vqvae.decoder_layer_norm.", "head.vqvae.decoder_layer_norm."),
    ("vqvae.decoder.", "head.vqvae.decoder."),
    ("vqvae.recover_embed.", "head.vqvae.recover_embed."),
    ("vposer.vposer.bodyprior_dec_", "head.vposer.bodyprior_dec_"),
)
#: same name under ``head.``
REFERENCE_HEAD_NAMES = ("spose_shape_cam_param", "exponent", "query.", "down_linear.",
                        "conv2d_to_3d.", "conv_3d_coord.", "refine_3d.", "cascade_root_pose_out.",
                        "cascade_pose_out.", "cascade_cam_out.")
#: reference entries with no counterpart: the VQ-VAE's encoder and EMA state (pose-prior
#: pre-training only), the stored sinusoid table (recomputed), the frozen CLIP text encoder
REFERENCE_UNUSED = ("vqvae.start_embed.", "vqvae.encoder.", "vqvae.encoder_layer_norm.",
                    "vqvae.token_mlp.", "vqvae.feature_embed.", "vqvae.ema_", "pos_embed_1d.",
                    "vposer.vposer.bodyprior_enc_",
                    "backbone.sd_model.cond_stage_model.")
#: where the diffusion weights sit in the authors' checkpoint (LDM layout below it)
SD_PREFIX = "backbone.sd_model."


def reference_to_ours(name: str) -> Union[str, None]:
    """Our parameter name for a DPMesh-specific reference name; None for the unused ones.
    Raises KeyError for a name this mapping does not know (a different reference layout)."""
    for ref, ours in REFERENCE_PREFIXES:
        if name.startswith(ref):
            return ours + name[len(ref):]
    if name.startswith(REFERENCE_HEAD_NAMES):
        return "head." + name
    if name.startswith(REFERENCE_UNUSED):
        return None
    raise KeyError(name)


def _read_state(path) -> Dict[str, "object"]:
    """A state dict from a .safetensors / .ckpt / .pth(.tar) file or a diffusers folder,
    unwrapped from 'network' / 'state_dict' / 'model' and the DDP 'module.' prefix."""
    import torch

    path = Path(path)
    if path.is_dir():
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if (path / name).exists():
                return _read_state(path / name)
        raise ExportError(f"{path}: no diffusion_pytorch_model.safetensors/.bin in the folder")
    if not path.exists():
        raise ExportError(f"{path}: no such checkpoint")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    for key in ("network", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ExportError(f"{path}: not a state dict ({type(state).__name__})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def merge_lora(state: Dict[str, "object"]) -> Dict[str, "object"]:
    """Folds lora_diffusion's injected layers (``X.linear.weight`` + ``X.lora_up.weight @
    X.lora_down.weight``, scale 1 as the authors inject them) into plain ``X.weight``."""
    out = {}
    for key, value in state.items():
        if ".lora_down." in key or ".lora_up." in key:
            continue
        if ".linear." in key:
            stem = key[: key.index(".linear.")]
            leaf = key[key.index(".linear.") + len(".linear."):]
            up, down = state.get(f"{stem}.lora_up.weight"), state.get(f"{stem}.lora_down.weight")
            if up is not None and down is not None:
                if leaf == "weight":
                    value = value + (up.float() @ down.float()).to(value.dtype)
                out[f"{stem}.{leaf}"] = value
                continue
        out[key] = value
    return out


def _diffusion_weights(model, ldm: Dict[str, "object"], sources: Dict[str, "object"]
                       ) -> Dict[str, "object"]:
    """Our ``backbone.{unet,controlnet,vae_*}`` weights from the LDM-layout entries of the
    authors' checkpoint -- their LoRA-tuned U-Net and trained ControlNet, which take precedence
    -- or, for a part the checkpoint lacks, from a separate file (SD 1.5 single file, ControlNet
    file, diffusers folder), converted with diffusers' own single-file converters."""
    from diffusers.loaders.single_file_utils import (convert_controlnet_checkpoint,
                                                     convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)

    backbone = model.backbone
    cfg = model.config
    out: Dict[str, object] = {}
    parts = {
        "unet": ("model.diffusion_model.", "conv_in.weight", convert_ldm_unet_checkpoint,
                 dict(backbone.unet.config)),
        "controlnet": ("control_model.", "controlnet_mid_block.weight",
                       convert_controlnet_checkpoint, dict(backbone.controlnet.config)),
        "vae": ("first_stage_model.", "encoder.conv_in.weight", convert_ldm_vae_checkpoint,
                {"down_block_types": cfg.vae_encoder_kwargs()["down_block_types"],
                 "up_block_types": ()}),
    }
    for part, (prefix, marker, convert, config) in parts.items():
        state = {k: v for k, v in ldm.items() if k.startswith(prefix)} or sources.get(part)
        if not state:
            raise ExportError(f"no {part} weights: the DPMesh checkpoint holds none under "
                              f"'{SD_PREFIX}{prefix}' and no separate {part} file was given")
        if marker not in state:  # LDM layout
            if part == "vae" and not any(k.startswith(prefix) for k in state):
                state = {prefix + k: v for k, v in state.items()}
            if part == "unet" and not any(k.startswith(prefix) for k in state):
                state = {prefix + k: v for k, v in state.items()}
            state = convert(merge_lora(state), config)
        state = {k: v for k, v in state.items() if v is not None}
        if part == "vae":
            for k, v in state.items():
                if k.startswith("encoder."):
                    out["backbone.vae_encoder." + k[len("encoder."):]] = v
                elif k.startswith("quant_conv."):
                    out["backbone.vae_quant_conv." + k[len("quant_conv."):]] = v
        else:
            for k, v in state.items():
                if not k.startswith("controlnet_cond_embedding."):
                    out[f"backbone.{part}.{k}"] = v
    return out


def checkpoint_pose_decoder(state: Mapping[str, "object"]) -> str:
    """``"vposer"`` for the authors' released model (``vposer.*`` entries), else ``"vq"``."""
    return "vposer" if any(k.startswith("vposer.") for k in state) else "vq"


def check_state(model, state: Dict[str, "object"]) -> None:
    """Raises ``ExportError`` naming the missing, unexpected and mis-shaped entries of
    ``state`` against ``model.state_dict()`` (works on meta tensors: no values are read)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(state) & set(expected))
             if tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        def head(items):
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
        raise ExportError("checkpoint does not fit DPMesh(config): "
                          + "; ".join(f"{what} [{head(items)}]" for what, items in
                                      (("missing", missing), ("unexpected", unexpected),
                                       ("shape mismatch", wrong)) if items))


def convert_dpmesh_state(model, state: Dict[str, "object"],
                         sources: Optional[Dict[str, Dict[str, "object"]]] = None
                         ) -> Dict[str, "object"]:
    """The authors' checkpoint (``module.`` stripped) -> our state dict for ``model``: the
    DPMesh-specific entries renamed, the LDM-layout diffusion parts under
    ``backbone.sd_model.`` (or ``sources[part]`` for part in unet / controlnet / vae) LoRA-folded
    and converted with diffusers (the checkpoint's own parts take precedence)."""
    found = checkpoint_pose_decoder(state)
    if found != model.config.pose_decoder:
        raise ExportError(f"the checkpoint's pose decoder is {found!r}, the model's "
                          f"{model.config.pose_decoder!r} (DPMeshConfig(pose_decoder=...))")
    ours: Dict[str, object] = {}
    ldm: Dict[str, object] = {}
    unknown = []
    for name, value in state.items():
        if name.startswith(SD_PREFIX):
            ldm[name[len(SD_PREFIX):]] = value
            continue
        try:
            target = reference_to_ours(name)
        except KeyError:
            unknown.append(name)
            continue
        if target is not None:
            ours[target] = value
    if unknown:
        raise ExportError(f"{len(unknown)} entries outside the DPMesh layout: "
                          f"{', '.join(sorted(unknown)[:8])}")
    ours.update(_diffusion_weights(model, ldm, sources or {}))
    return ours


def load_dpmesh_checkpoint(model, *, dpmesh_ckpt, sd_unet=None, controlnet=None, vae=None):
    """Fills ``model`` (a `DPMesh`) from the authors' checkpoint (a path, or its state dict
    as `_read_state` returns it), the diffusion parts from it or, where it lacks them, from
    the given files; every key and shape is checked (``ExportError`` lists the
    mismatches). Returns the model."""
    sources = {part: _read_state(path) for part, path in
               (("unet", sd_unet), ("controlnet", controlnet), ("vae", vae)) if path is not None}
    raw = dpmesh_ckpt if isinstance(dpmesh_ckpt, dict) else _read_state(dpmesh_ckpt)
    where = "checkpoint" if isinstance(dpmesh_ckpt, dict) else str(dpmesh_ckpt)
    try:
        state = convert_dpmesh_state(model, raw, sources)
        check_state(model, state)
    except ExportError as exc:
        raise ExportError(f"{where}: {exc}") from None
    model.load_state_dict(state, strict=True)
    return model


def import_dpmesh_checkpoint(*, dpmesh_ckpt, out_dir: Union[str, Path], body, sd_unet=None,
                             controlnet=None, vae=None, config=None, fp16_unet: bool = True,
                             opset: int = 17, check_tensorrt: bool = True) -> Manifest:
    """``hmr-ros import-checkpoint --model dpmesh``: builds `DPMesh` (``config``, or the full
    size with the checkpoint's pose decoder), loads the authors' checkpoint (``dpmesh_ckpt``:
    their ``*_ckpt.pth.tar``, whose ``backbone.sd_model.*`` already hold the LoRA-tuned U-Net,
    the ControlNet and the VAE encoder; ``sd_unet`` / ``controlnet`` / ``vae``: SD 1.5 /
    ControlNet single files or diffusers folders, used only for a part the checkpoint lacks)
    and exports it (``export_dpmesh``; the U-Net graph in FP16 by default)."""
    from hmr_ros.models.dpmesh import DPMesh, DPMeshConfig

    state = _read_state(dpmesh_ckpt)
    if config is None:  # the full size, with the pose decoder the checkpoint holds
        config = DPMeshConfig.full(pose_decoder=checkpoint_pose_decoder(state))
    model = DPMesh(config)
    load_dpmesh_checkpoint(model, dpmesh_ckpt=state, sd_unet=sd_unet,
                           controlnet=controlnet, vae=vae)
    return export_dpmesh(model, out_dir, body=body, opset=opset, fp16_unet=fp16_unet,
                         check_tensorrt=check_tensorrt)
