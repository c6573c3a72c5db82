"""Export VisHMR as deployable stage graphs (paper 000 split for TensorRT / ONNX Runtime).

Stage A: image crop -> backbone features, IUV, pooled feature. Stage B: UV features (+ pooled
feature, + z noise as an input) -> visible rotations, visibility, K hypotheses with their
log-likelihoods, betas, camera. Warping, matching, slerp and LBS run as compiled kernels between
and after the stages (hmr_ros.kernels), never inside the graphs. The flow's inverse is exported
with precomputed inverse matrices, since triangular solves do not export.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Union

from .errors import ExportError
from .manifest import Manifest, StageSpec, TensorSpec, sha256_of
from .trt_support import check_tensorrt_compat

STAGE_A_INPUTS = ("images",)
STAGE_B_INPUTS = ("uv_features", "pooled", "z")
#: the keypoint-conditioned variant's stage B also takes (B, 17, 3) crop-normalised keypoints
STAGE_B_KEYPOINT_INPUTS = STAGE_B_INPUTS + ("keypoints",)


def _stage_modules(model):
    import torch

    from hmr_ros.models import STAGE_B_OUTPUTS

    class StageA(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images):
            return self.m.stage_a(images)

    class StageB(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, uv_features, pooled, z, keypoints=None):
            out = self.m.stage_b(uv_features, pooled, z, keypoints)
            return tuple(out[k] for k in STAGE_B_OUTPUTS)

    # eval(): the exporter restores each wrapper's mode on everything inside it afterwards, and
    # training mode would switch BatchNorm to batch statistics and drop the frozen flow inverse.
    return StageA(model).eval(), StageB(model).eval()


def _export_one(module, args, path: Path, inputs, outputs, opset: int) -> None:
    import torch

    dynamic = {name: {0: "batch"} for name in (*inputs, *outputs)}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deliberate: it needs no onnxscript and produces
        # plain opset-17 graphs that TensorRT's parser reads.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                          input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=dynamic, do_constant_folding=True)


def _specs(session_io, names) -> tuple:
    by_name = {t.name: t for t in session_io}
    return tuple(TensorSpec(n, tuple(d if isinstance(d, int) else "batch"
                                     for d in by_name[n].shape), "float32") for n in names)


def export_vishmr(model, out_dir: Union[str, Path], opset: int = 17,
                  check_tensorrt: bool = True, body_name: str = "procedural") -> Manifest:
    """Writes ``stage_a.onnx``, ``stage_b.onnx`` and ``manifest.json`` into ``out_dir``.

    The model is put in eval mode with its flow inverse frozen. Raises :class:`ExportError`
    when a graph uses an op TensorRT's parser lacks (``check_tensorrt=False`` to skip).
    """
    import onnxruntime as ort
    import torch

    from hmr_ros.kernels import torch_ops
    from hmr_ros.models import IMAGE_MEAN, IMAGE_STD, POSE_DIM, STAGE_A_OUTPUTS, STAGE_B_OUTPUTS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    model.freeze_for_export()
    stage_a, stage_b = _stage_modules(model)
    crop = cfg.crop_size
    with torch.no_grad():
        images = torch.zeros(2, 3, crop, crop)
        features, iuv, pooled = model.stage_a(images)
        uv = torch_ops.iuv_warp(features, iuv, cfg.uv_size, cfg.fg_threshold)
        z = torch.zeros(2, cfg.num_hypotheses, POSE_DIM)
        keypoint_input = bool(getattr(cfg, "keypoint_input", False))
        b_inputs = STAGE_B_KEYPOINT_INPUTS if keypoint_input else STAGE_B_INPUTS
        b_args = (uv, pooled, z) + ((torch.zeros(2, 17, 3),) if keypoint_input else ())
        _export_one(stage_a, (images,), out / "stage_a.onnx", STAGE_A_INPUTS, STAGE_A_OUTPUTS,
                    opset)
        _export_one(stage_b, b_args, out / "stage_b.onnx", b_inputs, STAGE_B_OUTPUTS, opset)
    stages = {}
    for name, inputs, outputs in (("stage_a", STAGE_A_INPUTS, STAGE_A_OUTPUTS),
                                  ("stage_b", b_inputs, STAGE_B_OUTPUTS)):
        path = out / f"{name}.onnx"
        if check_tensorrt:
            problems = check_tensorrt_compat(path)
            if problems:
                raise ExportError(f"{path}: not buildable by TensorRT: "
                                  + "; ".join(map(str, problems)))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        stages[name] = StageSpec(file=path.name, sha256=sha256_of(path),
                                 inputs=_specs(sess.get_inputs(), inputs),
                                 outputs=_specs(sess.get_outputs(), outputs))
    v_template = model.body.v_template
    manifest = Manifest(
        model="vishmr",
        stages=stages,
        preprocessing={"crop_size": crop, "mean": list(IMAGE_MEAN), "std": list(IMAGE_STD),
                       "channel_order": "RGB", "layout": "NCHW", "scale": 1.0 / 255.0},
        body={"name": getattr(model, "body_name", body_name),
              "num_vertices": int(v_template.shape[0]), "num_joints": 24,
              "num_betas": int(model.body.shapedirs.shape[-1])},
        heads={"num_hypotheses": cfg.num_hypotheses, "pose_dim": POSE_DIM,
               "atlas_size": cfg.uv_size, "fg_threshold": cfg.fg_threshold,
               "feature_channels": int(features.shape[1]), "pooled_channels": int(pooled.shape[1]),
               "feature_size": int(features.shape[-1]),
               "keypoint_input": "coco17_crop_normalised" if keypoint_input else None},
        config=asdict(cfg),
        opset=opset,
    )
    manifest.save(out)
    return manifest


#: what an SMPL-parameter regressor's graph returns (OCHMR, ImpHMR): parent-relative rotations
#: (B, 24, 3, 3), shape (B, 10) and the crop's weak-perspective camera (s, tx, ty) (B, 3)
PARAM_OUTPUTS = ("rotmats", "betas", "cam")
PARAM_STAGE = "regressor"


def _param_module(model, takes_context: bool):
    import torch

    class ParamRegressor(torch.nn.Module):
        """``model(images[, context])`` as the tuple `PARAM_OUTPUTS` (a graph has no dicts)."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images, context=None):
            out = self.m(images, context) if takes_context else self.m(images)
            if isinstance(out, (tuple, list)):  # already in PARAM_OUTPUTS order
                return tuple(out)
            return tuple(out[k] for k in PARAM_OUTPUTS)

    return ParamRegressor(model).eval()


def export_param_regressor(model, out_dir: Union[str, Path], *, name: str, body,
                           context: Union[dict, None] = None, module=None, opset: int = 17,
                           check_tensorrt: bool = True, parity_atol: float = 1e-3) -> Manifest:
    """Writes one graph, ``regressor.onnx`` (``images`` [+ ``context``] -> `PARAM_OUTPUTS`),
    and ``manifest.json`` (``model: name``) for a top-down SMPL-parameter regressor.

    ``context``: ``{"channels", "size", "sigma"}`` when the model takes OCHMR's centre maps
    (the runtime draws them with `hmr_ros.runtime.context.centre_maps` at that size and sigma).
    ``module``: the module to export instead of ``model`` itself (ImpHMR's canonical-view
    wrapper), taking the same inputs and returning `PARAM_OUTPUTS` as a dict or tuple. ONNX
    Runtime must reproduce torch on a batch of 2 within ``parity_atol`` before the manifest is
    written; a graph TensorRT cannot parse raises :class:`ExportError` (``check_tensorrt``).
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    from hmr_ros.models import IMAGE_MEAN, IMAGE_STD

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    crop = int(cfg.crop_size)
    model.eval()
    takes_context = context is not None
    wrapped = _param_module(module if module is not None else model, takes_context)
    inputs = ("images", "context") if takes_context else ("images",)
    gen = torch.Generator().manual_seed(0)
    args = (torch.rand(2, 3, crop, crop, generator=gen) * 2 - 1,)
    if takes_context:
        size = int(context["size"])
        args += (torch.rand(2, int(context.get("channels", 2)), size, size, generator=gen),)
    path = out / f"{PARAM_STAGE}.onnx"
    with torch.no_grad():
        expected = [t.numpy() for t in wrapped(*args)]
        _export_one(wrapped, args, path, inputs, PARAM_OUTPUTS, opset)
    if check_tensorrt:
        problems = check_tensorrt_compat(path)
        if problems:
            raise ExportError(f"{path}: not buildable by TensorRT: "
                              + "; ".join(map(str, problems)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(list(PARAM_OUTPUTS), {n: a.numpy() for n, a in zip(inputs, args)})
    for key, a, b in zip(PARAM_OUTPUTS, expected, got):
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        if not err <= parity_atol:
            raise ExportError(f"{path}: ONNX Runtime differs from torch on '{key}' by {err:.2e} "
                              f"(> {parity_atol:g})")
    stage = StageSpec(file=path.name, sha256=sha256_of(path),
                      inputs=_specs(sess.get_inputs(), inputs),
                      outputs=_specs(sess.get_outputs(), PARAM_OUTPUTS))
    manifest = Manifest(
        model=name,
        stages={PARAM_STAGE: stage},
        preprocessing={"crop_size": crop, "mean": list(IMAGE_MEAN), "std": list(IMAGE_STD),
                       "channel_order": "RGB", "layout": "NCHW", "scale": 1.0 / 255.0},
        body={"name": getattr(body, "name", "procedural"),
              "num_vertices": int(body.num_vertices), "num_joints": 24, "num_betas": 10},
        heads={"outputs": "smpl_params", "predicts_visibility": False,
               "context": None if context is None else
               {"kind": "centre_maps", "channels": int(context.get("channels", 2)),
                "size": int(context["size"]), "sigma": float(context["sigma"])}},
        config=asdict(cfg),
        opset=opset,
    )
    manifest.save(out)
    return manifest
