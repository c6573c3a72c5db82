"""``hmr-ros import-checkpoint``: the authors' released weights -> an exported model folder.

InstanceHMR ships one checkpoint; DPMesh needs three sets of weights the user downloads
(Stable Diffusion 1.5, its ControlNet, the authors' DPMesh checkpoint). Either way the keys and
shapes are checked against our architecture before anything is written, and the result is the
same folder ``hmr-ros export`` writes (graphs + manifest), ready for ``model_dir``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=("instancehmr", "dpmesh"),
                        help="the architecture of the released checkpoint")
    parser.add_argument("checkpoint",
                        help="instancehmr: the authors' checkpoint (.pkl / .pth); dpmesh: the "
                             "authors' DPMesh checkpoint (regressor, prompt MLP, VQ decoder, "
                             "fine-tuned U-Net / ControlNet where it holds them)")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument("--backbone", default="hrnet_w32", choices=("hrnet_w32", "resnet50"),
                        help="instancehmr: the checkpoint's backbone (default hrnet_w32, the "
                             "released one)")
    parser.add_argument("--sd", default=None,
                        help="dpmesh: Stable Diffusion 1.5 weights (a single .safetensors / "
                             ".ckpt, or a diffusers folder) for the U-Net and the VAE")
    parser.add_argument("--controlnet", default=None,
                        help="dpmesh: the ControlNet weights (.safetensors / .pth, or a "
                             "diffusers folder)")
    parser.add_argument("--vae", default=None,
                        help="dpmesh: a separate VAE (default: the one in --sd)")
    parser.add_argument("--fp16-unet", action="store_true",
                        help="dpmesh: write the U-Net graph in FP16 (what TensorRT runs)")
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
        if not args.sd or not args.controlnet:
            raise ValueError("dpmesh needs --sd (Stable Diffusion 1.5) and --controlnet besides "
                             "the DPMesh checkpoint")
        from .dpmesh_export import import_dpmesh_checkpoint

        manifest = import_dpmesh_checkpoint(sd_unet=args.sd, controlnet=args.controlnet,
                                            dpmesh_ckpt=args.checkpoint,
                                            vae=args.vae or args.sd, out_dir=args.out,
                                            fp16_unet=args.fp16_unet, **common)
    for name, stage in manifest.stages.items():
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in stage.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in stage.outputs)
        print(f"{name}: {stage.file}  in: {ins}  out: {outs}")
    print(f"wrote {args.out}/manifest.json ({manifest.model}); use it with "
          f"-p model:={manifest.model} -p model_dir:={args.out}")
    return 0
