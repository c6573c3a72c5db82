"""``hmr-ros eval-video``: run the deployed path over the footage and score it (see the package
docs for the metrics). Writes ``report.json``, ``persons.jsonl`` (one line per person and
frame) and overlay PNGs into ``--out``, and prints the tables."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .metrics import (ARMS_DOWN_DEG, BODY_NAMES, COCO_BODY, SMPL_FOR_COCO, Tally,
                      acceleration_jitter, baseline_rotmats, box_region, mesh_faces_camera,
                      pck_hits, shoulder_facing, silhouette_iou, torso_size)

log = logging.getLogger("hmr_ros.eval_video")

VIDEO_TILE = 320  # vtest's walkers are ~80 px tall in 768 x 576: the detector needs tiles
BOX_MARGIN = 0.1
METHODS = ("model",) + tuple(ARMS_DOWN_DEG)  # meshes scored: the model and the pose baselines
STAGES = ("person_detector", "keypoints", "preprocess", "stage_a", "iuv_warp", "stage_b",
          "merge_lbs", "postprocess", "total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True,
                        help="exported VisHMR folder (manifest.json + stage graphs)")
    parser.add_argument("--footage", default=None,
                        help="folder with vtest.avi and the stills (default: $HMR_ROS_FOOTAGE_DIR "
                             "or ~/.cache/hmr_ros/footage, written by `hmr-ros footage fetch`)")
    parser.add_argument("--frames", type=int, default=0,
                        help="video frames to run (default 0: all 795)")
    parser.add_argument("--out", default="out/eval_video",
                        help="output folder (default out/eval_video, git-ignored)")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads per session (default: its own choice)")
    parser.add_argument("--body", default="procedural",
                        help="body model the model was trained with: 'procedural' or an SMPL file")
    parser.add_argument("--detector-dir", default=None,
                        help="BlazePose folder (default: the one `hmr-ros detector fetch` wrote)")
    parser.add_argument("--max-persons", type=int, default=5)
    parser.add_argument("--refine-iterations", type=int, default=0,
                        help="fit each body to its detected keypoints at run time (node "
                             "parameter refine_iterations); 0 = off")
    parser.add_argument("--overlays", type=int, default=6,
                        help="video frames to draw as overlay PNGs (default 6; stills always)")
    parser.add_argument("--no-stills", action="store_true", help="only the video")


# --- one frame's people ------------------------------------------------------------------------


class _Recorder:
    """The keypoint detector as the pipeline calls it, keeping the people it returned last
    (the pipeline only hands on their COCO-17 arrays; facing and segmentation need more)."""

    def __init__(self, detector):
        self.detector = detector
        self.last: list = []

    def __call__(self, image):
        self.last = self.detector(image)
        return self.last

    def keypoints_for_boxes(self, image, boxes):
        found = self.detector.keypoints_for_boxes(image, boxes)
        self.last = [q for q in found if q is not None]
        return found

    def find(self, coco17: Optional[np.ndarray]):
        if coco17 is None:
            return None
        for q in self.last:
            if np.array_equal(np.asarray(q.coco17, np.float32), coco17):
                return q
        return None


@dataclass
class _Track:
    frames: List[int] = field(default_factory=list)
    points: Dict[str, list] = field(default_factory=dict)  # method -> [(12, 2)]
    valid: list = field(default_factory=list)  # [(12,) bool]
    scale: list = field(default_factory=list)


class SourceScore:
    """Everything measured on one source (the video, or the stills together)."""

    def __init__(self, name: str):
        self.name = name
        self.tally = Tally()
        self.tracks: Dict[int, _Track] = {}
        self.timing: List[Dict[str, float]] = []  # per frame: stage -> seconds
        self.frames = 0
        self.person_frames = 0
        self.skipped: List[str] = []

    # metrics of one frame's people
    def score_frame(self, frame: int, rgb, result, recorder, runner, faces, fg_mask=None,
                    detector=None) -> List[dict]:
        from hmr_ros.runtime.camera import Intrinsics, project

        from .masks import mesh_mask, segmentation_mask

        persons = result.persons
        self.person_frames += len(persons)
        if not persons:
            return []
        h, w = rgb.shape[:2]
        intr = Intrinsics.from_matrix(result.intrinsics)
        meshes = _baseline_meshes(persons, runner)  # method -> (verts (N, V, 3), joints (N, 24, 3))
        boxes = [p.bbox for p in persons]
        records = []
        for i, p in enumerate(persons):
            q = recorder.find(p.detected_keypoints)
            kp = p.detected_keypoints
            rec = {"frame": frame, "track_id": p.track_id,
                   "bbox": np.round(p.bbox, 1).tolist(), "score": round(float(p.score), 3)}
            size = torso_size(kp) if kp is not None else float("nan")
            rec["torso_px"] = None if not np.isfinite(size) else round(size, 2)
            proj = {m: project(meshes[m][1][i], intr) for m in METHODS}
            # PCK
            if kp is not None:
                rec["pck_hits"], n_counted = {}, 0
                for m in METHODS:
                    hit, counted = pck_hits(proj[m], kp)
                    n_counted = int(counted.sum())
                    self.tally.add("pck", m, hit.sum(), counted.sum())
                    for j, name in enumerate(BODY_NAMES):
                        self.tally.add(f"pck:{name}", m, hit[j], counted[j])
                    rec["pck_hits"][m] = int(hit.sum())
                rec["pck_counted"] = n_counted
            # front / back
            facing = q.facing_camera() if q is not None else None
            rec["facing_landmarks"] = facing
            mesh_facing = mesh_faces_camera(p.global_orient, p.joints[0])
            rec["facing_mesh"] = mesh_facing
            if facing is not None:
                self.tally.add("facing", "model", float(mesh_facing == facing))
                self.tally.add("facing", "always_facing", float(facing))
            by_shoulders = shoulder_facing(kp) if kp is not None else None
            rec["facing_shoulders"] = by_shoulders
            if by_shoulders is not None:
                self.tally.add("facing_shoulders", "model", float(mesh_facing == by_shoulders))
                self.tally.add("facing_shoulders", "always_facing", float(by_shoulders))
            # silhouettes
            masks = {}
            if fg_mask is not None and _isolated(i, boxes, (h, w)):
                masks["bgsub"] = fg_mask
            if detector is not None and q is not None:
                masks["seg"] = segmentation_mask(detector, rgb, q.roi)
            if masks:
                sil = {m: mesh_mask(meshes[m][0][i], faces, result.intrinsics, h, w)
                       for m in METHODS}
                rec["iou"] = {}
                for kind, mask in masks.items():
                    rec["iou"][kind] = {}
                    for m in METHODS:
                        iou = silhouette_iou(sil[m], mask, p.bbox, BOX_MARGIN)
                        if np.isfinite(iou):
                            self.tally.add(f"iou_{kind}", m, iou, 1, keep=iou)
                            rec["iou"][kind][m] = round(iou, 4)
                rec["_masks"] = masks  # for overlays; dropped before writing
                rec["_silhouette"] = sil["model"]
            # jitter material
            if p.track_id >= 0 and kp is not None:
                t = self.tracks.setdefault(p.track_id, _Track())
                t.frames.append(frame)
                for m in METHODS:
                    t.points.setdefault(m, []).append(proj[m][SMPL_FOR_COCO])
                t.points.setdefault("detector", []).append(np.asarray(kp)[COCO_BODY, :2])
                t.valid.append(np.asarray(kp)[COCO_BODY, 2] >= 0.5)
                t.scale.append(size)
            records.append(rec)
        return records

    def add_timing(self, result, detector_timing: dict) -> None:
        """The pipeline's stages (its ``detector`` split into the person detector and the
        keypoint model, as the detector timed them), any others it reports as they come."""
        t = {k: v for k, v in result.timing.items() if k != "detector"}
        t["person_detector"] = detector_timing.get("detector", 0.0)
        t["keypoints"] = detector_timing.get("landmarks", 0.0)
        self.timing.append(t)

    def finish_jitter(self) -> None:
        for track in self.tracks.values():
            frames = np.asarray(track.frames)
            # split into runs of consecutive frames
            cuts = np.nonzero(np.diff(frames) != 1)[0] + 1
            for run in np.split(np.arange(len(frames)), cuts):
                if len(run) < 3:
                    continue
                valid = np.stack([track.valid[k] for k in run])
                scale = np.asarray([track.scale[k] for k in run])
                for m, pts in track.points.items():
                    total, n = acceleration_jitter(np.stack([pts[k] for k in run]), valid, scale)
                    if n:
                        self.tally.add("jitter", m, total, n)

    def summary(self, warmup: int = 1) -> dict:
        t = self.tally
        out = {"frames": self.frames, "person_frames": self.person_frames,
               "tracks": len(self.tracks), "skipped": self.skipped}
        methods = METHODS + ("always_facing", "detector")
        for metric in ("pck", "facing", "facing_shoulders", "iou_bgsub", "iou_seg", "jitter"):
            row = {}
            for m in methods:
                n = t.count(metric, m)
                if not n:
                    continue
                row[m] = {"value": t.mean(metric, m), "n": n}
                vals = t.values.get((metric, m))
                if vals:
                    row[m]["median"] = float(np.median(vals))
            out[metric] = row
        out["pck_per_joint"] = {name: {m: {"value": t.mean(f"pck:{name}", m),
                                           "n": t.count(f"pck:{name}", m)}
                                       for m in METHODS if t.count(f"pck:{name}", m)}
                                for name in BODY_NAMES}
        frames = self.timing[warmup:] if len(self.timing) > warmup else self.timing
        if frames:
            keys = set().union(*frames)
            order = [k for k in STAGES if k in keys] + sorted(keys - set(STAGES))
            order = [k for k in order if k != "total"] + ["total"]
            ms = {k: float(1e3 * np.mean([f.get(k, 0.0) for f in frames])) for k in order}
            out["timing_ms"] = ms  # mean per frame; a stage a frame skipped counts 0
            out["fps"] = 1e3 / ms["total"] if ms["total"] > 0 else None
            out["timed_frames"] = len(frames)
            out["warmup_frames_excluded"] = len(self.timing) - len(frames)
        return out


def _baseline_meshes(persons, runner) -> Dict[str, tuple]:
    """method -> (vertices (N, V, 3), joints (N, 24, 3)) in the camera frame: the model's own,
    and each constant-pose baseline (the model's global orientation, shape and translation)."""
    n = len(persons)
    out = {"model": (np.stack([p.vertices for p in persons]),
                     np.stack([p.joints for p in persons]))}
    rel = np.stack([p.rel_rotmats for p in persons]).astype(np.float32)
    betas = np.ascontiguousarray(np.stack([p.betas for p in persons]), np.float32)
    transl = np.stack([p.transl for p in persons])[:, None, :]
    names = list(ARMS_DOWN_DEG)
    all_rel = np.concatenate([baseline_rotmats(rel, ARMS_DOWN_DEG[k]) for k in names])
    verts, joints = runner.lbs(np.ascontiguousarray(np.tile(betas, (len(names), 1))),
                               np.ascontiguousarray(all_rel, np.float32))
    verts, joints = np.asarray(verts), np.asarray(joints)
    for k, name in enumerate(names):
        sl = slice(k * n, (k + 1) * n)
        out[name] = (verts[sl] + transl, joints[sl] + transl)
    return out


def _isolated(i: int, boxes, shape) -> bool:
    """Person i's grown box overlaps no other person's grown box (background subtraction cannot
    tell people apart)."""
    mine = box_region(boxes[i], shape, BOX_MARGIN)
    return not any(np.any(mine & box_region(b, shape, BOX_MARGIN))
                   for j, b in enumerate(boxes) if j != i)


# --- pictures ----------------------------------------------------------------------------------


def draw_frame(rgb, result, records, body, scale: int = 1) -> np.ndarray:
    """Meshes (tinted by visibility) with their silhouette outlined in red, person-mask
    outlines (yellow: background subtraction, cyan: BlazePose segmentation), the detected
    COCO-17 skeleton and box, the model's projected joints (magenta) and track ids; ``scale`` x
    upsampled for small people."""
    import cv2

    from hmr_ros.viz import draw_overlay
    from hmr_ros.viz.keypoints import draw_coco17

    K = np.array(result.intrinsics, np.float64, copy=True)
    K[:2, 2] += 0.5  # rasteriser pixel centres at +0.5 (see masks.mesh_mask)
    img = draw_overlay(rgb, result.persons, body.faces, body.part, K, alpha=0.55)
    if scale != 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    img = np.ascontiguousarray(img)

    def up(x):  # pixel (centres at integers) -> the upsampled image's pixel
        return (np.asarray(x, np.float64) + 0.5) * scale - 0.5

    from .masks import mesh_mask

    h, w = rgb.shape[:2]
    for p, rec in zip(result.persons, records):
        sil = rec.get("_silhouette")
        if sil is None:
            sil = mesh_mask(p.vertices, body.faces, result.intrinsics, h, w)
        contours, _ = cv2.findContours(sil.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        contours = [np.round(up(c)).astype(np.int32) for c in contours]
        cv2.drawContours(img, contours, -1, (255, 40, 40), 1, cv2.LINE_AA)
        for kind, colour in (("bgsub", (255, 230, 0)), ("seg", (0, 255, 255))):
            mask = rec.get("_masks", {}).get(kind)
            if mask is None:
                continue
            region = mask & box_region(rec["bbox"], mask.shape, BOX_MARGIN)
            contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            contours = [np.round(up(c)).astype(np.int32) for c in contours]
            cv2.drawContours(img, contours, -1, colour, 1, cv2.LINE_AA)
    seen = [p for p in result.persons if p.detected_keypoints is not None]
    draw_coco17(img, [np.concatenate([up(p.detected_keypoints[:, :2]),
                                      p.detected_keypoints[:, 2:]], 1) for p in seen],
                [up(p.bbox) for p in seen], min_confidence=0.5, thickness=1)
    for p in result.persons:
        for x, y in up(p.keypoints2d[SMPL_FOR_COCO]):
            if np.isfinite([x, y]).all():
                cv2.drawMarker(img, (int(round(x)), int(round(y))), (255, 0, 255),
                               cv2.MARKER_TILTED_CROSS, 5 if scale == 1 else 7, 1)
        x0, y0 = up(p.bbox[:2])
        cv2.putText(img, f"#{p.track_id}", (int(x0), max(10, int(y0) - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


# --- the run -----------------------------------------------------------------------------------


def _jsonable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def evaluate_video(path: Path, runner, body, detector_dir, args, out: Path, persons_log
                   ) -> dict:
    import cv2

    from hmr_ros.detect import DetectorParams, PoseKeypointDetector
    from hmr_ros.runtime import FramePipeline, Header, PipelineParams

    from .masks import median_background

    params = DetectorParams(detector_tile=VIDEO_TILE, track=True, max_persons=args.max_persons)
    detector = PoseKeypointDetector(detector_dir, backend="onnxruntime", params=params,
                                    threads=args.threads)
    recorder = _Recorder(detector)
    pipe = FramePipeline(runner, PipelineParams(max_persons=args.max_persons, track=True,
                                               refine_iterations=args.refine_iterations),
                         keypoint_detector=recorder)
    t0 = time.perf_counter()
    background = median_background(str(path))
    log.info("median background in %.1f s", time.perf_counter() - t0)
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps_file = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
    limit = args.frames if args.frames and args.frames > 0 else total
    draw_at = set(np.linspace(0, max(limit - 1, 0), args.overlays).round().astype(int).tolist()
                  ) if args.overlays > 0 else set()
    score = SourceScore(path.name)
    drawn = []
    try:
        from tqdm import tqdm
        bar = tqdm(total=limit, desc=path.name, unit="frame", file=sys.stderr)
    except ImportError:  # pragma: no cover
        bar = None
    frame = 0
    while frame < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        stamp = int(round(frame * 1e9 / fps_file)) if fps_file > 0 else frame
        result = pipe.process(rgb, header=Header(stamp_ns=stamp, frame_id=f"{path.stem}:{frame}"))
        score.frames += 1
        if result.skipped:
            score.skipped.append(f"frame {frame}: {result.skipped}")
        else:
            score.add_timing(result, detector.stats.timing)
            fg = None if background is None else _fg(rgb, background)
            recs = score.score_frame(frame, rgb, result, recorder, runner, body.faces, fg,
                                     detector)
            for r in recs:
                persons_log.write(json.dumps({"source": path.name, **_jsonable(r)}) + "\n")
            if frame in draw_at and result.persons:
                target = out / f"{path.stem}_{frame:04d}.png"
                _write_png(target, draw_frame(rgb, result, recs, body, scale=2))
                drawn.append(target.name)
            elif frame in draw_at:  # nobody here: draw the next frame with people instead
                draw_at.add(frame + 1)
        frame += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    cap.release()
    score.finish_jitter()
    summary = score.summary()
    summary.update({"file": path.name, "frames_in_file": total, "file_fps": fps_file,
                    "detector": asdict(params), "detector_runs": detector.stats.detector_runs,
                    "background": None if background is None else "median of 100 frames",
                    "overlays": drawn})
    return summary


def _fg(rgb, background):
    from .masks import foreground_mask

    return foreground_mask(rgb, background)


def evaluate_stills(paths: List[Path], runner, body, detector_dir, args, out: Path, persons_log
                    ) -> dict:
    import cv2

    from hmr_ros.detect import DetectorParams, PoseKeypointDetector
    from hmr_ros.runtime import FramePipeline, Header, PipelineParams

    params = DetectorParams(detector_tile=0, track=False, max_persons=args.max_persons)
    detector = PoseKeypointDetector(detector_dir, backend="onnxruntime", params=params,
                                    threads=args.threads)
    recorder = _Recorder(detector)
    pipe = FramePipeline(runner, PipelineParams(max_persons=args.max_persons, track=False,
                                               refine_iterations=args.refine_iterations),
                         keypoint_detector=recorder)
    score = SourceScore("stills")
    per_image, drawn = {}, []
    first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR) if paths else None
    if first is not None:  # warm-up (fresh sessions); not scored, not timed
        pipe.process(np.ascontiguousarray(first[:, :, ::-1]))
    for k, path in enumerate(paths):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            score.skipped.append(f"{path.name}: not readable")
            continue
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        result = pipe.process(rgb, header=Header(stamp_ns=k, frame_id=path.stem))
        score.frames += 1
        if result.skipped:
            score.skipped.append(f"{path.name}: {result.skipped}")
            continue
        score.add_timing(result, detector.stats.timing)
        recs = score.score_frame(k, rgb, result, recorder, runner, body.faces, None, detector)
        for r in recs:
            persons_log.write(json.dumps({"source": path.name, **_jsonable(r)}) + "\n")
        per_image[path.name] = [_jsonable(r) for r in recs]
        target = out / f"{path.stem}.png"
        _write_png(target, draw_frame(rgb, result, recs, body, scale=1))
        drawn.append(target.name)
    summary = score.summary(warmup=0)
    summary.update({"files": [p.name for p in paths], "detector": asdict(params),
                    "per_image": per_image, "overlays": drawn,
                    "note": "timed after one untimed warm-up run on the first still"})
    return summary


def run(args: argparse.Namespace) -> int:
    from hmr_ros.body import load_body_model
    from hmr_ros.eval.footage import STILLS, VIDEO, check_footage, default_footage_dir
    from hmr_ros.runtime import VisHMRRunner

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.frames < 0:
        raise ValueError(f"--frames must be >= 0, got {args.frames}")
    footage_dir = Path(args.footage).expanduser() if args.footage else default_footage_dir()
    files = check_footage(footage_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    body = load_body_model(args.body)
    runner = VisHMRRunner(args.model_dir, body, backend="onnxruntime", threads=args.threads)
    manifest = footage_dir / "manifest.json"
    report = {
        "arguments": {k: v for k, v in vars(args).items() if not callable(v)},
        "model_dir": str(args.model_dir), "model_takes_keypoints": runner.takes_keypoints,
        "backend": runner.backend.name, "threads": args.threads,
        "footage": {"dir": str(footage_dir),
                    "manifest": json.loads(manifest.read_text()) if manifest.is_file() else None},
        "definitions": _DEFINITIONS,
    }
    with open(out / "persons.jsonl", "w") as persons_log:
        report["video"] = evaluate_video(files[VIDEO], runner, body, args.detector_dir, args,
                                         out, persons_log)
        if not args.no_stills:
            report["stills"] = evaluate_stills([files[n] for n in STILLS], runner, body,
                                               args.detector_dir, args, out, persons_log)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    print(format_report(report))
    print(f"wrote {out / 'report.json'}, {out / 'persons.jsonl'} and "
          f"{len(report['video']['overlays']) + len(report.get('stills', {}).get('overlays', []))}"
          " overlay PNGs")
    return 0


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x).__name__)


_DEFINITIONS = {
    "baselines": "the model's global orientation, shape (betas) and translation with joints "
                 "1..23 replaced by a constant pose: apose = rest pose with the shoulders turned "
                 "45 deg about the body's forward axis (upper arms 45 deg below horizontal); "
                 "tpose = rest pose; always_facing = every person faces the camera",
    "pck": "COCO-17 shoulders, elbows, wrists, hips, knees, ankles with detector confidence "
           ">= 0.5; hit when the projected SMPL joint of the same name is within 0.2 x torso "
           "size (|mid-shoulder - mid-hip| of the detected keypoints, all four >= 0.5)",
    "facing": "people with PersonKeypoints.facing_camera() not None; agreement of the mesh's "
              "facing (R_global @ +z . -pelvis > 0) with it",
    "facing_shoulders": "same, the reference being the detected shoulders' order: facing when "
                        "cross(mid_shoulder - mid_hip, L_shoulder - R_shoulder) > 0 (image "
                        "axes), only when the shoulder span >= 0.3 torso size",
    "iou_bgsub": "mesh silhouette vs background subtraction (median of 100 frames, max RGB "
                 "diff > 30, open 3x3, close 7x7, holes filled) inside the person box grown "
                 "10 %; people whose grown box touches another's are left out",
    "iou_seg": "mesh silhouette vs BlazePose segmentation (p > 0.5, landmark model rerun on "
               "the person's region, warped to the image) inside the person box grown 10 %",
    "jitter": "tracked people, 3 consecutive frames: mean |p[t+1] - 2p[t] + p[t-1]| / torso "
              "size[t] over the 12 body points confident (>= 0.5) in all 3 frames; torso sizes "
              "per frame^2",
    "timing": "FramePipeline.process wall time per frame (ms), first video frame excluded; "
              "person_detector + keypoints = the BlazePose detector call",
}


def format_report(report: dict) -> str:
    lines = []
    cols = ("model", "apose", "tpose", "always_facing", "detector")
    head = f"{'':30s}" + "".join(f"{c:>14s}" for c in cols) + f"{'n':>8s}"
    for key in ("video", "stills"):
        s = report.get(key)
        if not s:
            continue
        name = s.get("file", "stills: " + ", ".join(s.get("files", [])))
        lines.append(f"\n{name}: {s['frames']} frames, {s['person_frames']} person-frames, "
                     f"{s['tracks']} tracks")
        lines.append(head)
        for metric, label, fmt in (("pck", "PCK@0.2 (%)", "pct"),
                                   ("facing", "front/back agreement (%)", "pct"),
                                   ("facing_shoulders", "  same, vs shoulder order (%)", "pct"),
                                   ("iou_bgsub", "silhouette IoU, bg-sub", "iou"),
                                   ("iou_seg", "silhouette IoU, BlazePose seg", "iou"),
                                   ("jitter", "jitter (torso/frame^2)", "jit")):
            row = s.get(metric, {})
            if not row:
                continue
            cells, n = [], 0
            for c in cols:
                v = row.get(c)
                if v is None and metric.startswith("facing") and c in ARMS_DOWN_DEG and row:
                    cells.append(f"{'=model':>14s}")
                    continue
                if v is None:
                    cells.append(f"{'-':>14s}")
                    continue
                n = max(n, v["n"])
                val = v["value"]
                text = (f"{100 * val:.1f}" if fmt == "pct" else f"{val:.3f}" if fmt == "iou"
                        else f"{val:.4f}")
                if "median" in v:
                    text += f" ({v['median']:.2f})"
                cells.append(f"{text:>14s}")
            lines.append(f"{label:30s}" + "".join(cells) + f"{n:>8d}")
        pj = s.get("pck_per_joint", {})
        if pj:
            lines.append("PCK@0.2 per joint (%): model / apose / tpose")
            parts = []
            for name, row in pj.items():
                vals = "/".join(f"{100 * row[m]['value']:.0f}" for m in METHODS if m in row)
                parts.append(f"{name} {vals}")
            for i in range(0, len(parts), 4):
                lines.append("  " + ", ".join(parts[i:i + 4]))
        if "timing_ms" in s:
            t = s["timing_ms"]
            lines.append("per frame (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items())
                         + f"; {s['fps']:.1f} FPS over {s['timed_frames']} frames")
        if s.get("skipped"):
            lines.append(f"skipped: {len(s['skipped'])} ({s['skipped'][0]} ...)")
    return "\n".join(lines)
