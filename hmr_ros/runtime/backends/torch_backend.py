"""Torch backend: the stages of an in-memory :class:`~hmr_ros.models.VisHMR` behind the backend
interface, for debugging and for parity checks of exported graphs/engines against the network
they came from (and for running checkpoints during training without exporting)."""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from hmr_ros.export.manifest import TensorSpec

from ..errors import EngineError
from .base import BackendBase

# Stage input names are the exported graphs' (hmr_ros.export.onnx_export), repeated here so this
# module does not import the exporter.
STAGE_A_INPUTS = ("images",)
STAGE_B_INPUTS = ("uv_features", "pooled", "z")


def _batched(name: str, shape) -> TensorSpec:
    return TensorSpec(name, ("batch", *(int(d) for d in shape[1:])), "float32")


class TorchBackend(BackendBase):
    """``model.stage_a`` / ``model.stage_b`` under ``torch.no_grad``.

    ``eval_mode=True`` (default) puts the model in eval mode: training-mode BatchNorm would use
    batch statistics and not match the exported graphs. NumPy feeds give NumPy outputs; when
    every feed is a torch tensor, outputs stay torch tensors on the model's device.
    ``manifest``: the model's export manifest, when a runner needs it (preprocessing, heads).
    """

    name = "torch"

    def __init__(self, model, device: Optional[str] = None, eval_mode: bool = True,
                 manifest=None):
        import torch

        from hmr_ros.kernels import torch_ops
        from hmr_ros.models import POSE_DIM, STAGE_A_OUTPUTS, STAGE_B_OUTPUTS

        if not all(hasattr(model, a) for a in ("stage_a", "stage_b", "config")):
            raise EngineError(f"TorchBackend needs a VisHMR model (stage_a/stage_b), got "
                              f"{type(model).__name__}")
        self.model = model.to(device) if device is not None else model
        if eval_mode:
            self.model.eval()
        self._torch = torch
        self.manifest = manifest
        param = next(self.model.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        cfg = self.model.config
        # Shapes from one dry run at batch 1 (cheap next to loading the model).
        with torch.no_grad():
            images = torch.zeros(1, 3, cfg.crop_size, cfg.crop_size, device=self.device)
            features, iuv, pooled = self.model.stage_a(images)
            uv = torch_ops.iuv_warp(features, iuv, cfg.uv_size, cfg.fg_threshold)
            z = torch.zeros(1, cfg.num_hypotheses, POSE_DIM, device=self.device)
            # the keypoint-conditioned variant's fourth input, as its ONNX export has it
            kp = (torch.zeros(1, 17, 3, device=self.device)
                  if getattr(cfg, "keypoint_input", False) else None)
            out_b = self.model.stage_b(uv, pooled, z, kp)
        b_inputs = tuple(zip(STAGE_B_INPUTS, (uv, pooled, z))) + (
            (("keypoints", kp),) if kp is not None else ())
        self._outputs = {"stage_a": tuple(STAGE_A_OUTPUTS), "stage_b": tuple(STAGE_B_OUTPUTS)}
        super().__init__({
            "stage_a": ((_batched("images", images.shape),),
                        tuple(_batched(n, t.shape) for n, t in
                              zip(STAGE_A_OUTPUTS, (features, iuv, pooled)))),
            "stage_b": (tuple(_batched(n, t.shape) for n, t in b_inputs),
                        tuple(_batched(n, out_b[n].shape) for n in STAGE_B_OUTPUTS)),
        })

    def run(self, stage: str, feeds: Mapping[str, object]) -> Dict[str, object]:
        torch = self._torch
        self.check_feeds(stage, feeds)
        keep_torch = all(isinstance(v, torch.Tensor) for v in feeds.values())
        args = {}
        for name, value in feeds.items():
            if isinstance(value, torch.Tensor):
                t = value
            elif hasattr(value, "__cuda_array_interface__"):
                t = torch.as_tensor(value, device="cuda")
            else:
                t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
            args[name] = t.to(self.device, torch.float32)
        with torch.no_grad():
            if stage == "stage_a":
                values = self.model.stage_a(args["images"])
                out = dict(zip(self._outputs["stage_a"], values))
            else:
                result = self.model.stage_b(args["uv_features"], args["pooled"], args["z"],
                                            args.get("keypoints"))
                out = {n: result[n] for n in self._outputs["stage_b"]}
        if keep_torch:
            return out
        return {n: t.detach().cpu().numpy() for n, t in out.items()}
