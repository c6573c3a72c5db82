"""``hmr-ros live``: webcam, video or bag in, meshes on screen (or in a video), recorded,
published on ROS 2 and shown in Foxglove on request -- the node's pipeline and default model."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any, Dict

__all__ = ["add_arguments", "run", "run_live"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="camera index (cv2.VideoCapture(N))")
    src.add_argument("--video", metavar="FILE", help="a video file, delivered at its frame rate")
    src.add_argument("--bag", metavar="BAG", help="a rosbag2 / ROS 1 bag's images (and its "
                     "camera_info), delivered at the recorded rate")
    parser.add_argument("--image-topic", default="", help="--bag: the image topic (default: the "
                        "first sensor_msgs/Image or CompressedImage topic)")
    parser.add_argument("--no-pace", action="store_true", help="read a video / bag as fast as "
                        "it is processed, dropping nothing (offline rendering)")
    parser.add_argument("--camera-info", metavar="YAML", help="ROS camera_info YAML "
                        "(camera_calibration's output) for the intrinsics")
    parser.add_argument("--fov", type=float, metavar="DEG", help="assumed diagonal field of "
                        "view without --camera-info (default: the pipeline's, 53 degrees = "
                        "focal length equal to the image diagonal)")
    parser.add_argument("--headless", action="store_true", help="no window (e.g. with --out)")
    parser.add_argument("--out", metavar="FILE.mp4", help="write the overlay video (mp4v) at "
                        "the source's frame rate")
    parser.add_argument("--record", metavar="OUT.mcap", help="record inputs and outputs as an "
                        "MCAP rosbag2 (hmr-ros eval and Foxglove open it)")
    parser.add_argument("--publish", action="store_true", help="also publish the node's topics "
                        "on the built-in ROS 2 transport (ROS_DOMAIN_ID applies)")
    parser.add_argument("--foxglove", action="store_true", help="serve a live 3D view to "
                        "Foxglove (foxglove-sdk WebSocket server)")
    parser.add_argument("--foxglove-host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument("--foxglove-port", type=int, default=8765, help="default 8765")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="stop after N processed frames")
    parser.add_argument("--no-hud", action="store_true", help="no text overlay")
    parser.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a node parameter (model_dir, backend, person_detector, threads, "
                             "...), repeatable, as for hmr-ros node")


def run_live(args: argparse.Namespace, **extra: Any) -> Dict[str, Any]:
    """Open the source, build the node's pipeline, run the loop; returns the summary.
    ``extra``: further `LiveOptions` fields (tests: ``on_result``)."""
    from hmr_ros.node.cli import parse_overrides
    from hmr_ros.node.node import build_pipeline

    from .calibration import load_camera_info_yaml
    from .loop import LiveLoop, LiveOptions, check_window_support
    from .sources import LiveError, open_source

    if args.out and not args.out.lower().endswith(".mp4"):
        raise LiveError(f"--out must name an .mp4 file, got {args.out}")
    if not args.headless:
        check_window_support()  # before loading anything: fail fast with the fix
    calibration = load_camera_info_yaml(args.camera_info) if args.camera_info else None
    overrides = parse_overrides(args.param)
    source = open_source(camera=args.camera, video=args.video, bag=args.bag,
                         pace=not args.no_pace, image_topic=args.image_topic)
    pipeline, body, backend, _ = build_pipeline(overrides)
    options = LiveOptions(headless=args.headless, out=args.out, record=args.record,
                          publish=args.publish, foxglove=args.foxglove,
                          foxglove_host=args.foxglove_host, foxglove_port=args.foxglove_port,
                          calibration=calibration, fov_deg=args.fov, max_frames=args.max_frames,
                          hud=not args.no_hud, **extra)
    return LiveLoop(source, pipeline, body, options, backend=backend).run()


def run(args: argparse.Namespace) -> int:
    from .loop import format_summary

    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] [%(name)s]: %(message)s")
    summary = run_live(args)
    print(format_summary(summary), flush=True)
    for label, path in (("overlay video", args.out), ("recording", args.record)):
        if path:
            print(f"{label}: {path}")
    if args.summary_json:
        with open(args.summary_json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 130 if summary.get("interrupted") else 0
