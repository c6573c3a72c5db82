"""``hmr-ros infer``: the pipeline on image files, with pictures, meshes and numbers out.

Per image it writes ``<stem>_overlay.png`` (meshes over the image, parts coloured by
visibility), one mesh per person (``<stem>_person<k>.obj`` or ``.ply``, camera frame) and
``<stem>.json`` with every person's result. At the end it prints persons found, per-stage
latency and FPS, and -- when ground truth is given (``--gt``) -- MPJPE / PA-MPJPE / PVE.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List

import numpy as np


log = logging.getLogger("hmr_ros.infer")


def add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model-dir", default=None,
                        help="exported model folder (manifest.json + stage graphs); default: the "
                             "bundled model (the node's model_dir default)")
    parser.add_argument("--person-detector", choices=("auto", "blazepose", "none"),
                        default="auto",
                        help="people and 2D keypoints without --boxes (and keypoints for the "
                             "given boxes): blazepose, none (whole image), auto = blazepose "
                             "when fetched")
    parser.add_argument("--refine-iterations", type=int, default=5,
                        help="fit each body to its detected keypoints (the node's default; 0 = "
                             "off)")
    parser.add_argument("--body", default="procedural",
                        help="body model the model was trained with: 'procedural' or an SMPL file")
    parser.add_argument("--camera-info", help="ROS camera_info YAML with the intrinsics; without "
                        "it the focal length is assumed (and the results say so)")
    parser.add_argument("--boxes", help="JSON {image name: [[x0, y0, x1, y1, score], ...]}; "
                        "without it each image is one whole-frame box")
    parser.add_argument("--gt", help="ground truth .npz (names, joints3d, vertices) to score "
                        "against")
    parser.add_argument("--mode", default="ks_matched",
                        choices=("visible", "global", "ks_highest", "ks_matched"))
    parser.add_argument("--max-persons", type=int, default=5)
    parser.add_argument("--mesh-format", choices=("obj", "ply"), default="obj")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"),
                        help="auto: TensorRT when installed with a GPU, else ONNX Runtime")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")


def run_infer(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hmr_ros.body import load_body_model, save_mesh
    from hmr_ros.runtime import FramePipeline, Header, PipelineParams, open_regressor
    from hmr_ros.viz import draw_overlay

    from .inputs import collect_images, read_boxes, read_camera_info, read_rgb

    images = collect_images(args.images)
    if not images:
        raise ValueError("no images found in " + ", ".join(args.images))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    body = load_body_model(args.body)
    from hmr_ros.node.params import default_model_dir

    model_dir = args.model_dir or default_model_dir()
    runner = open_regressor(model_dir, body, backend=args.backend, threads=args.threads)
    bottom_up = getattr(runner, "bottom_up", False)
    # a bottom-up model finds people itself: BlazePose only when asked for by name
    detector = None if bottom_up and args.person_detector == "auto" else _detector(args)
    print(f"model {model_dir} on {runner.backend.name}; person detector: "
          + ("BlazePose" if detector is not None else
             f"none ({runner.manifest.model} finds people itself)" if bottom_up else
             "none (boxes or the whole image)"))
    pipe = FramePipeline(runner, PipelineParams(max_persons=args.max_persons, mode=args.mode,
                                                track=False,
                                                refine_iterations=args.refine_iterations),
                         keypoint_detector=detector)
    K = read_camera_info(Path(args.camera_info)) if args.camera_info else None
    boxes = read_boxes(Path(args.boxes)) if args.boxes else {}
    gt = _load_gt(Path(args.gt)) if args.gt else None

    stage_times: Dict[str, List[float]] = {}
    persons_found, frames, skipped = 0, 0, []
    predictions: Dict[str, object] = {}
    for path in tqdm(images, desc="infer", unit="img"):
        image = read_rgb(path)
        if image is None:
            skipped.append(f"{path.name}: not a readable image")
            log.warning("%s: not a readable image, skipped", path)
            continue
        result = pipe.process(image, K, boxes.get(path.name, boxes.get("*")),
                              Header(stamp_ns=frames, frame_id=path.stem))
        frames += 1
        if result.skipped:
            skipped.append(f"{path.name}: {result.skipped}")
            continue
        for name, sec in result.timing.items():
            stage_times.setdefault(name, []).append(sec)
        persons_found += len(result.persons)
        # the intrinsics the pipeline resolved (an unusable camera_info K becomes the assumed one)
        intr = (result.intrinsics if result.intrinsics is not None
                else _assumed_K(image.shape[1], image.shape[0]))
        overlay = draw_overlay(image, result.persons, body.faces, body.part, intr)
        _write_png(out / f"{path.stem}_overlay.png", overlay)
        for k, p in enumerate(result.persons):
            save_mesh(out / f"{path.stem}_person{k}.{args.mesh_format}", p.vertices, body.faces)
        (out / f"{path.stem}.json").write_text(json.dumps(_frame_json(path.name, result),
                                                          indent=1))
        if result.persons:
            predictions[path.name] = result.persons[0]
    _print_summary(frames, persons_found, stage_times, skipped)
    if gt is not None:
        _print_metrics(predictions, gt)
    return 0 if frames else 1


def _detector(args):
    if args.person_detector == "none":
        return None
    from hmr_ros.detect import DetectorParams, PoseKeypointDetector, default_model_dir

    if args.person_detector == "auto" and not (default_model_dir() / "manifest.json").is_file():
        log.warning("no person detector fetched (hmr-ros detector fetch): whole images as boxes")
        return None
    return PoseKeypointDetector(backend=args.backend, threads=args.threads,
                                params=DetectorParams(track=False, max_persons=args.max_persons))


def _assumed_K(width: int, height: int) -> np.ndarray:
    from hmr_ros.runtime import resolve_intrinsics

    return resolve_intrinsics(None, width, height).matrix()


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


def _frame_json(name: str, result) -> dict:
    r = lambda a: np.round(np.asarray(a, np.float64), 6).tolist()  # noqa: E731
    return {
        "image": name, "stamp_ns": result.header.stamp_ns,
        "assumed_intrinsics": result.assumed_intrinsics, "notes": list(result.notes),
        "timing_ms": {k: round(v * 1e3, 3) for k, v in result.timing.items()},
        "persons": [{
            "track_id": p.track_id, "bbox": r(p.bbox), "score": p.score,
            "transl": r(p.transl), "betas": r(p.betas), "rel_rotmats": r(p.rel_rotmats),
            "joints": r(p.joints), "keypoints2d": r(p.keypoints2d),
            # null: the model has no visibility head (JSON has no NaN)
            "visibility": r(p.visibility) if np.isfinite(p.visibility).all() else None,
            "hypothesis": p.hypothesis,
            "match_scores": None if p.match_scores is None else r(p.match_scores),
        } for p in result.persons],
    }


def _print_summary(frames, persons, stage_times, skipped) -> None:
    print(f"images processed: {frames}, persons found: {persons}, skipped: {len(skipped)}")
    for s in skipped:
        print(f"  skipped {s}")
    if not stage_times:
        return
    order = ["detector", "preprocess", "letterbox", "maps", "centres", "decode", "unet",
             "stage_a", "iuv_warp", "stage_b", "merge_lbs", "regressor", "lbs", "boxes",
             "refine", "postprocess"]
    order += sorted(set(stage_times) - set(order) - {"total"})
    parts = [f"{k} {1e3 * np.mean(stage_times[k]):.1f}" for k in order if k in stage_times]
    if "refine" in stage_times:
        parts[-1] += " (refine included)"
    total = np.mean(stage_times["total"])
    print("latency per frame (ms, mean): " + ", ".join(parts) + f"; total {1e3 * total:.1f}")
    print(f"throughput: {1.0 / total:.1f} FPS (pipeline only, image decoding and writing "
          "excluded)")


def _load_gt(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("names", "joints3d") if k not in z.files]
        if missing:
            raise ValueError(f"{path}: ground truth needs keys {missing}")
        return {k: z[k] for k in z.files}


def _print_metrics(predictions: dict, gt: dict) -> None:
    from hmr_ros.eval.metrics import mpjpe, pa_mpjpe, pve

    names = [str(n) for n in gt["names"]]
    idx = [i for i, n in enumerate(names) if n in predictions]
    if not idx:
        print("ground truth given, but no image with a prediction matches its names")
        return
    pj = np.stack([predictions[names[i]].joints for i in idx])
    gj = gt["joints3d"][idx]
    line = (f"vs ground truth ({len(idx)} persons): MPJPE {mpjpe(pj, gj).mean():.1f} mm, "
            f"PA-MPJPE {pa_mpjpe(pj, gj).mean():.1f} mm")
    if "vertices" in gt:
        pv = np.stack([predictions[names[i]].vertices for i in idx])
        line += f", PVE {pve(pv, gt['vertices'][idx], pj, gj).mean():.1f} mm"
    print(line)
