"""``hmr-ros``: the package's command line.

Subcommands are grouped (``hmr-ros body export``); each is one function taking the parsed
arguments plus one function adding its options, registered in ``COMMANDS``. To add a command,
write the two functions and add a row; ``build_parser`` does the rest. Heavy modules are imported
inside the commands so ``hmr-ros --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["COMMANDS", "build_parser", "main"]

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="procedural",
        help="'procedural' (default) or the path of an SMPL .npz/.pkl file",
    )


def _body_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output mesh, .obj or .ply")
    _add_model_argument(parser)
    parser.add_argument(
        "--betas", default="", help="comma-separated shape coefficients b0,b1,... (missing = 0)"
    )
    parser.add_argument(
        "--pose", choices=("rest", "random"), default="rest",
        help="rest = T-pose; random = small random rotation per joint (N(0, 0.3 rad))",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for --pose random")
    parser.add_argument(
        "--part-colors", action="store_true", help="colour vertices by body part"
    )


def _body_export(args: argparse.Namespace) -> int:
    """Pose a body with the NumPy reference LBS and write it as a mesh."""
    from .body import NUM_BETAS, NUM_JOINTS, axis_angle_to_matrix, load_body_model, part_colors
    from .body import pose_body, save_mesh

    model = load_body_model(args.model)
    betas = np.zeros((1, NUM_BETAS))
    values = _parse_floats(args.betas, "--betas")
    if len(values) > NUM_BETAS:
        raise ValueError(f"--betas takes at most {NUM_BETAS} values, got {len(values)}")
    betas[0, : len(values)] = values
    axis_angle = np.zeros((1, NUM_JOINTS, 3))
    if args.pose == "random":
        axis_angle = np.random.default_rng(args.seed).normal(0.0, 0.3, axis_angle.shape)
        axis_angle[:, 0] = 0.0  # keep the body upright: no random global orientation
    vertices, _ = pose_body(model, betas, axis_angle_to_matrix(axis_angle))
    colors = part_colors(model.part) if args.part_colors else None
    path = save_mesh(args.out, vertices[0], model.faces, colors)
    print(f"wrote {path} ({model.num_vertices} vertices, {model.num_faces} faces)")
    return 0


def _body_info(args: argparse.Namespace) -> int:
    """Print a body model's sizes and rest-pose extent."""
    from .body import load_body_model

    model = load_body_model(args.model)
    extent = np.ptp(model.v_template, axis=0)
    print(f"model:    {model.name}")
    print(f"vertices: {model.num_vertices}")
    print(f"faces:    {model.num_faces}")
    print(f"joints:   {model.j_regressor.shape[0]}")
    print(f"betas:    {model.shapedirs.shape[-1]}")
    print(f"extent:   {extent[0]:.3f} x {extent[1]:.3f} x {extent[2]:.3f} m (x, y, z)")
    print(f"parts:    {np.bincount(model.part, minlength=24).tolist()} vertices each")
    return 0


def _body_faces_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output file (.cdr)")
    _add_model_argument(parser)


def _body_faces(args: argparse.Namespace) -> int:
    """The constant triangle list and vertex parts of a body, as the node publishes them."""
    from .body import load_body_model
    from .transport.mesh_faces import write_faces_file

    model = load_body_model(args.model)
    path = write_faces_file(args.out, model)
    print(f"wrote {path} ({model.name}: {model.num_faces} faces, {model.num_vertices} vertices)")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=("vishmr", "ochmr", "imphmr", "instancehmr", "dpmesh"),
                        default="vishmr", help="architecture of the checkpoint (default vishmr; "
                        "the authors' released weights: hmr-ros import-checkpoint)")
    parser.add_argument("--body", default="procedural",
                        help="all but vishmr: the body model the manifest names (procedural, "
                             "what training used, or your SMPL file)")
    parser.add_argument("--checkpoint", required=True,
                        help="training checkpoint (.pt) written by hmr_ros (config + weights)")
    parser.add_argument("--out", required=True, help="output directory for the stage graphs")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17, default 17)")
    parser.add_argument("--skip-tensorrt-check", action="store_true",
                        help="write graphs even if TensorRT's ONNX parser would reject them")


def _export(args: argparse.Namespace) -> int:
    """Export a checkpoint as ONNX stage graphs plus manifest.json."""
    from .export import TENSORRT_VERSION, export_vishmr
    from .models.checkpoint import load_checkpoint

    if args.opset < 17:
        raise ValueError(f"--opset must be >= 17, got {args.opset}")
    if args.model == "vishmr":
        model = load_checkpoint(args.checkpoint)
        manifest = export_vishmr(model, args.out, opset=args.opset,
                                 check_tensorrt=not args.skip_tensorrt_check)
    elif args.model == "instancehmr":
        from .body import load_body_model
        from .export.instancehmr_export import export_instancehmr
        from .train.instancehmr import load_instancehmr_checkpoint

        model, _ = load_instancehmr_checkpoint(args.checkpoint)
        manifest = export_instancehmr(model, args.out, body=load_body_model(args.body),
                                      opset=args.opset,
                                      check_tensorrt=not args.skip_tensorrt_check)
    elif args.model == "dpmesh":
        manifest = _export_dpmesh(args)
    else:
        manifest = _export_param_regressor(args)
    for name, stage in manifest.stages.items():
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in stage.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in stage.outputs)
        print(f"{name}: {stage.file}  in: {ins}  out: {outs}")
    check = "skipped" if args.skip_tensorrt_check else f"passed (TensorRT {TENSORRT_VERSION} ops)"
    print(f"wrote {args.out}/manifest.json; TensorRT op check {check}")
    return 0


def _export_param_regressor(args: argparse.Namespace):
    """OCHMR / ImpHMR: a ``hmr-ros train`` checkpoint as one graph + manifest (ImpHMR's canonical
    view only; OCHMR with the centre-map size and sigma it was trained with)."""
    from .body import load_body_model
    from .export import export_param_regressor
    from .train.param_regressor import load_param_checkpoint

    model, cfg = load_param_checkpoint(args.checkpoint)
    held = type(model).__name__.lower()
    if held != args.model:
        raise ValueError(f"{args.checkpoint} is a {held} checkpoint, not {args.model}")
    body = load_body_model(args.body)
    kwargs = {"name": args.model, "body": body, "opset": args.opset,
              "check_tensorrt": not args.skip_tensorrt_check}
    if args.model == "ochmr":
        kwargs["context"] = {"channels": 2, "size": cfg.centre_map_size,
                             "sigma": cfg.centre_sigma}
    else:
        from .models.imphmr import ImpHMRExport

        kwargs["module"] = ImpHMRExport(model)
    return export_param_regressor(model, args.out, **kwargs)


def _export_dpmesh(args: argparse.Namespace):
    """DPMesh: a ``hmr-ros train`` checkpoint as the U-Net and regressor graphs + manifest."""
    from .body import load_body_model
    from .export.dpmesh_export import export_dpmesh
    from .train.dpmesh import load_dpmesh_training_checkpoint

    model, _ = load_dpmesh_training_checkpoint(args.checkpoint)
    return export_dpmesh(model, args.out, body=load_body_model(args.body), opset=args.opset,
                         check_tensorrt=not args.skip_tensorrt_check)


#: group -> subcommand -> (help, add arguments, run); or a top-level command -> (help, add, run)
def _lazy(module: str, add_name: str, run_name: str) -> Tuple[AddArguments, Run]:
    """(add arguments, run) of a command whose module is imported only when it is used, so
    ``hmr-ros --help`` does not load torch, ONNX Runtime or the kernels."""
    import importlib

    def add(parser: argparse.ArgumentParser) -> None:
        getattr(importlib.import_module(module, __package__), add_name)(parser)

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module, __package__), run_name)(args)

    return add, run


COMMANDS: Dict[str, object] = {
    "infer": ("run the bundled (or a given) model on images: overlays, meshes, JSON",
              *_lazy(".apps.infer", "add_infer_arguments", "run_infer")),
    "synth": ("generate synthetic occlusion training data (npz shards) or a preview PNG",
              *_lazy(".data.synthetic.cli", "add_synth_arguments", "run_synth")),
    "train": ("train VisHMR from a YAML config (torchrun for several GPUs)",
              *_lazy(".train.cli", "add_arguments", "run")),
    "evaluate": ("paper table 2 (ablation modes, occluded split) on synthetic validation data",
                 *_lazy(".eval.ablation", "add_arguments", "run")),
    "eval": ("replay bags through the node's pipeline and score it against their ground truth",
             *_lazy(".eval.bag_eval", "add_arguments", "run")),
    "live": ("webcam / video / bag in, meshes on screen or in a video, recorded, published",
             *_lazy(".live.cli", "add_arguments", "run")),
    "eval-video": ("score the deployed path on real footage against constant-pose baselines",
                   *_lazy(".eval.video.run", "add_arguments", "run")),
    "footage": {"fetch": ("download OpenCV's sample footage (Debian opencv-doc) for eval-video",
                          *_lazy(".eval.footage", "add_fetch_arguments", "run_fetch"))},
    "export": ("export a trained model as ONNX stage graphs + manifest", _export_arguments,
               _export),
    "import-checkpoint": ("the authors' released weights (InstanceHMR, DPMesh) -> an exported "
                          "model folder", *_lazy(".export.import_cli", "add_arguments", "run")),
    "build-engine": ("build the TensorRT engines of an exported model ahead of time",
                     *_lazy(".runtime.engine_cache", "build_engine_arguments",
                            "run_build_engine")),
    "node": ("run the ROS 2 node: camera topics in, /human_mesh and friends out",
             *_lazy(".node.cli", "add_node_arguments", "run_node")),
    "play": ("publish a bag's topics on ROS 2 (built-in transport or rclpy)",
             *_lazy(".bag.cli", "add_play_arguments", "run_play")),
    "record": ("record ROS 2 topics from the wire into a rosbag2",
               *_lazy(".bag.cli", "add_record_arguments", "run_record")),
    "bag": {
        "make-sample": ("write a synthetic walking-people bag with ground truth",
                        *_lazy(".bag.cli", "add_make_sample_arguments", "run_make_sample")),
        "info": ("topics, types, counts and QoS of a bag",
                 *_lazy(".bag.cli", "add_info_arguments", "run_info")),
    },
    "convert": {
        "3dpw": ("a 3DPW sequence file + its images -> rosbag2 with ground truth",
                 *_lazy(".bag.convert", "add_3dpw_arguments", "run_3dpw")),
        "spin": ("a SPIN/PARE-format .npz + its images -> rosbag2 with ground truth",
                 *_lazy(".bag.convert", "add_spin_arguments", "run_spin")),
        "synthetic": ("synthetic generator samples -> rosbag2 with ground truth",
                      *_lazy(".bag.convert", "add_synthetic_arguments", "run_synthetic")),
    },
    "detector": {
        "fetch": ("download BlazePose (MediaPipe 0.10.14) and convert it to ONNX, checked",
                  *_lazy(".detect.cli", "add_fetch_arguments", "run_fetch")),
        "run": ("find people and their 2D keypoints in images (overlays + JSON)",
                *_lazy(".detect.cli", "add_run_arguments", "run_run")),
    },
    "body": {
        "export": ("pose a body model and write it as .obj/.ply", _body_export_arguments,
                   _body_export),
        "info": ("print a body model's sizes", _add_model_argument, _body_info),
        "faces": ("write a body model's hmr_ros/MeshFaces (CDR) for consumers of /human_mesh",
                  _body_faces_arguments, _body_faces),
    },
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hmr-ros", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for group, commands in COMMANDS.items():
        if isinstance(commands, tuple):  # a top-level command
            text, add_arguments, run = commands
            sub = groups.add_parser(group, help=text, description=text)
            add_arguments(sub)
            sub.set_defaults(run=run, command="")
            continue
        group_parser = groups.add_parser(group, help=f"{group} commands")
        subs = group_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        for name, (text, add_arguments, run) in commands.items():
            sub = subs.add_parser(name, help=text, description=text)
            add_arguments(sub)
            sub.set_defaults(run=run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``hmr-ros`` (and ``python -m hmr_ros.cli``); returns the exit status."""
    from .body.errors import BodyModelError
    from .export.errors import ExportError
    from .runtime.errors import EngineError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (BodyModelError, ExportError, EngineError, ValueError, OSError, RuntimeError) as exc:
        # RuntimeError: BagError, TransportError
        name = f"{args.group} {args.command}".strip()
        print(f"hmr-ros {name}: error: {exc}", file=sys.stderr)
        return 1


def _parse_floats(text: str, option: str) -> List[float]:
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"{option} expects comma-separated numbers, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())
