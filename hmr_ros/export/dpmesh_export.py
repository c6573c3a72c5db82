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
from typing import Mapping, Union

from .errors import ExportError
from .manifest import Manifest, StageSpec
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
    reg_sess = _parity(reg_path, feeds, DPMESH_OUTPUTS, expected_params, parity_atol)
    stages = {
        UNET_STAGE: StageSpec(file=unet_path.name, sha256=sha256_of(unet_path),
                              inputs=_specs(unet_sess.get_inputs(), UNET_INPUTS),
                              outputs=_specs(unet_sess.get_outputs(), DPMESH_FEATURES)),
        REGRESSOR_STAGE: StageSpec(file=reg_path.name, sha256=sha256_of(reg_path),
                                   inputs=_specs(reg_sess.get_inputs(), reg_inputs),
                                   outputs=_specs(reg_sess.get_outputs(), DPMESH_OUTPUTS)),
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
