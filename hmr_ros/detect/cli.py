"""``hmr-ros detector fetch | run``: install the person detector, and try it on images."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help="model directory to write (default: $HMR_ROS_DETECTOR_DIR or "
                             "~/.cache/hmr_ros/models/blazepose_full-0.10.14)")
    parser.add_argument("--wheel", default=None,
                        help="a local mediapipe-0.10.14 wheel (default: pip download it)")
    parser.add_argument("--force", action="store_true", help="convert again even if present")


def run_fetch(args: argparse.Namespace) -> int:
    from .convert import convert

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = convert(args.out, wheel=Path(args.wheel) if args.wheel else None, force=args.force)
    prov = out / "PROVENANCE.json"
    if prov.is_file():
        record = json.loads(prov.read_text())
        print(f"{out}: {record['source_package']}=={record['source_version']} "
              f"({record['license']}); parity {record.get('parity_max_difference')}")
    else:
        print(f"{out}: present")
    return 0


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (any format OpenCV reads)")
    parser.add_argument("--out", required=True, help="folder for overlays and keypoints.json")
    parser.add_argument("--model-dir", default=None, help="detector directory (default: fetched)")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | tensorrt")
    parser.add_argument("--tile", type=int, default=0,
                        help="also detect on tiles of this many pixels (far-away people)")
    parser.add_argument("--max-persons", type=int, default=5)


def run_run(args: argparse.Namespace) -> int:
    import cv2

    from hmr_ros.viz.keypoints import draw_coco17

    from .estimator import DetectorParams, PoseKeypointDetector

    det = PoseKeypointDetector(args.model_dir, backend=args.backend,
                               params=DetectorParams(detector_tile=args.tile, track=False,
                                                     max_persons=args.max_persons))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {}
    for name in args.images:
        bgr = cv2.imread(name, cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"{name}: not an image OpenCV can read; skipped")
            continue
        people = det(bgr[:, :, ::-1])
        overlay = draw_coco17(bgr[:, :, ::-1].copy(), [p.coco17 for p in people],
                              [p.box for p in people])
        target = out / (Path(name).stem + "_keypoints.png")
        cv2.imwrite(str(target), overlay[:, :, ::-1])
        record[name] = [{"box": p.box.round(1).tolist(), "score": round(p.score, 3),
                         "coco17": np.round(p.coco17, 2).tolist(),
                         "facing_camera": p.facing_camera()} for p in people]
        print(f"{name}: {len(people)} person(s) in {det.stats.timing['total'] * 1e3:.1f} ms "
              f"-> {target}")
    (out / "keypoints.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0
