"""``hmr-ros import-checkpoint``: the authors' released weights -> an exported model folder.

InstanceHMR ships one checkpoint. DPMesh's released checkpoint holds its LoRA-tuned Stable
Diffusion 1.5 U-Net, its ControlNet and the VAE encoder besides the regressor; Stable Diffusion /
ControlNet files are needed only for a part a checkpoint lacks. Either way the keys and shapes
are checked against our architecture before anything is written, and the result is the same
folder ``hmr-ros export`` writes (graphs + manifest), ready for ``model_dir``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=("instancehmr", "dpmesh"),
                        help="the architecture of the released checkpoint")
    parser.add_argument("checkpoint",
                        help="instancehmr: the authors' checkpoint (.pkl / .pth); dpmesh: the "
                             "authors' *_ckpt.pth.tar (regressor, keypoint prompt, pose "
                             "decoder, LoRA-tuned U-Net, ControlNet, VAE encoder)")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument("--backbone", default="hrnet_w32", choices=("hrnet_w32", "resnet50"),
                        help="instancehmr: the checkpoint's backbone (default hrnet_w32, the "
                             "released one)")
    parser.add_argument("--sd", default=None,
                        help="dpmesh: Stable Diffusion 1.5 weights (a single .safetensors / "
                             ".ckpt, or a diffusers folder), only where the checkpoint lacks "
                             "the U-Net or the VAE")
    parser.add_argument("--controlnet", default=None,
                        help="dpmesh: ControlNet weights (.safetensors / .pth, or a diffusers "
                             "folder), only where the checkpoint lacks them")
    parser.add_argument("--vae", default=None,
                        help="dpmesh: a separate VAE (default: the checkpoint's, else --sd's)")
    parser.add_argument("--fp32-unet", action="store_true",
                        help="dpmesh: write the U-Net graph in FP32 (default FP16, what "
                             "TensorRT runs; its parity is checked on the CPU, which is slow)")
    parser.add_argument("--body", default="procedural",
                        help="the body model the manifest names (your SMPL file for released "
                             "weights, which were trained with SMPL)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17, default 17)")
    parser.add_argument("--skip-tensorrt-check", action="store_true",
                        help="write graphs even if TensorRT's ONNX parser would reject them")


def run(args: argparse.Namespace) -> int:
    from hmr_ros.body import load_body_model

    if args.opset < 17:
        raise ValueError(f"--opset must be >= 17, got {args.opset}")
    body = load_body_model(args.body)
    common = {"body": body, "opset": args.opset, "check_tensorrt": not args.skip_tensorrt_check}
    if args.model == "instancehmr":
        from .instancehmr_export import import_instancehmr_checkpoint

        manifest = import_instancehmr_checkpoint(args.checkpoint, args.out,
                                                 backbone=args.backbone, **common)
    else:
        from .dpmesh_export import import_dpmesh_checkpoint

        manifest = import_dpmesh_checkpoint(dpmesh_ckpt=args.checkpoint, out_dir=args.out,
                                            sd_unet=args.sd, controlnet=args.controlnet,
                                            vae=args.vae or args.sd,
                                            fp16_unet=not args.fp32_unet, **common)
    for name, stage in manifest.stages.items():
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in stage.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in stage.outputs)
        print(f"{name}: {stage.file}  in: {ins}  out: {outs}")
    print(f"wrote {args.out}/manifest.json ({manifest.model}); use it with "
          f"-p model:={manifest.model} -p model_dir:={args.out}")
    return 0
