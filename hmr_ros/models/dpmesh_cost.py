"""Parameters and FLOPs of DPMesh, counted without weights (meta tensors), for the model card.

``python -m hmr_ros.models.dpmesh_cost [--size full|tiny] [--batch 1]`` prints, per part, the
parameter count and the forward FLOPs of one inference (torch's ``FlopCounterMode``: matmuls and
convolutions, 2 FLOPs per multiply-add; norms, softmax and elementwise ops are not counted), plus
the weight memory in FP32 and FP16. These are counts, not measurements: latency on a GPU follows
from them only roughly (see the model card).
"""

from __future__ import annotations

import argparse
import json
from typing import Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

from .dpmesh import DPMesh, DPMeshConfig


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dpmesh_cost(config: DPMeshConfig, batch: int = 1) -> Dict[str, Dict[str, float]]:
    """{part: {"params", "flops"}} for the VAE encoder, the ControlNet, the U-Net, the keypoint
    prompt and the regressor head, and their ``total`` (FLOPs per forward of ``batch``)."""
    with torch.device("meta"):
        model = DPMesh(config).eval()
        images = torch.zeros(batch, 3, config.crop_size, config.crop_size)
        keypoints = torch.zeros(batch, 17, 3)
    bb = model.backbone
    parts = {"vae_encoder": [bb.vae_encoder, bb.vae_quant_conv], "controlnet": [bb.controlnet],
             "unet": [bb.unet], "keypoint_prompt": [bb.keypoint_prompt], "head": [model.head]}
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        features = bb(images, keypoints)
        model.head(*features)
    by_module = counter.get_flop_counts()

    def flops_of(prefix: str) -> int:
        return int(sum(by_module.get(prefix, {}).values()))

    # FlopCounterMode names modules from the one called: DPMeshBackbone.*, DPMeshHead
    names = {"vae_encoder": ["DPMeshBackbone.vae_encoder", "DPMeshBackbone.vae_quant_conv"],
             "controlnet": [], "unet": ["DPMeshBackbone.unet"],
             "keypoint_prompt": ["DPMeshBackbone.keypoint_prompt"], "head": ["DPMeshHead"]}
    total_flops = int(sum(by_module.get("Global", {}).values()))
    report: Dict[str, Dict[str, float]] = {}
    for part, modules in parts.items():
        report[part] = {"params": sum(_params(m) for m in modules),
                        "flops": sum(flops_of(n) for n in names[part])}
    # the ControlNet runs as loose blocks (no module call of its own): the rest of the backbone
    backbone_flops = flops_of("DPMeshBackbone")
    counted = sum(report[p]["flops"] for p in ("vae_encoder", "unet", "keypoint_prompt"))
    report["controlnet"]["flops"] = backbone_flops - counted
    report["total"] = {"params": _params(model), "flops": total_flops}
    for entry in report.values():
        entry["fp32_MiB"] = entry["params"] * 4 / 2 ** 20
        entry["fp16_MiB"] = entry["params"] * 2 / 2 ** 20
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    report = dpmesh_cost(DPMeshConfig.from_size(args.size), args.batch)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"DPMesh {args.size}, batch {args.batch}: parameters and forward FLOPs")
    for part, entry in report.items():
        print(f"  {part:16s} {entry['params'] / 1e6:9.2f} M params  "
              f"{entry['flops'] / 1e9:9.2f} GFLOPs  {entry['fp16_MiB']:8.1f} MiB (FP16)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
