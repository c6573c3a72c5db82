"""``make demo``: the real system on loopback, as separate processes over the built-in transport.

    hmr-ros play SAMPLE_BAG  ->  hmr-ros node  ->  hmr-ros record OUT/run

The sample bag (``hmr-ros bag make-sample``: people walking past a pillar, with ground truth)
is generated on first use. Afterwards the recorded bag is read back and the demo writes an
overlay video (MP4) and prints frames in / processed / dropped, persons, processing FPS,
latency p50/p95 from the image's arrival to the mesh's arrival (both received by the recorder,
so one clock), and MPJPE / PA-MPJPE / PVE against the bag's ground truth (persons matched by
box overlap).

    python -m hmr_ros.apps.demo_ros [--out out/demo_ros] [--seconds 10] [--domain-id 42]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

IMAGE, INFO, DETS, GT = ("/camera/image_raw", "/camera/camera_info", "/ground_truth/detections",
                         "/ground_truth/human_mesh")


def _cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "hmr_ros.cli", *args]


def run(out: Path, seconds: float, domain: int, model_dir: str = "") -> int:
    from hmr_ros.bag.sample import make_sample_bag

    out.mkdir(parents=True, exist_ok=True)
    sample = out / f"sample_{int(seconds)}s"
    if not (sample / "metadata.yaml").is_file():
        print(f"generating the sample bag {sample} ({seconds:g} s at 30 Hz) ...", flush=True)
        make_sample_bag(sample, seconds=seconds)
    recorded = out / "run"
    if recorded.exists():
        import shutil

        shutil.rmtree(recorded)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    node_args = ["node", "--loopback", "-p", f"image_topic:={IMAGE}",
                 "-p", f"camera_info_topic:={INFO}", "-p", f"detections_topic:={DETS}"]
    if model_dir:
        node_args += ["-p", f"model_dir:={model_dir}"]
    node = subprocess.Popen(_cli(*node_args), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    recorder = subprocess.Popen(
        _cli("record", str(recorded), "--loopback", "--topics", IMAGE, "/human_mesh",
             "--type", f"{IMAGE}:sensor_msgs/msg/Image",
             "--type", "/human_mesh:hmr_ros/msg/HumanMeshArray"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        print("node and recorder started; playing the bag into the node ...", flush=True)
        play = subprocess.run(_cli("play", str(sample), "--loopback", "--topics", IMAGE, INFO,
                                   DETS, "--wait-for-subscribers", "60"),
                              env=env, capture_output=True, text=True)
        if play.returncode != 0:
            print(play.stdout + play.stderr, file=sys.stderr)
            return 1
        time.sleep(2.0)  # the last frames through the node and into the recorder
    finally:
        for proc in (node, recorder):
            proc.send_signal(signal.SIGTERM)
        node_out = node.communicate(timeout=60)[0]
        recorder.communicate(timeout=60)
    stats = [line for line in node_out.splitlines() if line.startswith("frames received")]
    return report(sample, recorded, out, stats[-1] if stats else "")


def _stamp(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def report(sample: Path, recorded: Path, out: Path, node_stats: str) -> int:
    from hmr_ros.bag import BagReader

    arrivals: Dict[int, int] = {}
    meshes: Dict[int, Tuple[int, Any]] = {}
    with BagReader(recorded) as bag:
        for m in bag.messages():
            msg = m.decode()
            if m.topic == IMAGE:
                arrivals[_stamp(msg.header)] = m.timestamp_ns
            else:
                meshes[_stamp(msg.header)] = (m.timestamp_ns, msg)
    frames_in, gt, images, K = 0, {}, {}, None
    with BagReader(sample) as bag:
        for m in bag.messages([IMAGE, INFO, GT]):
            msg = m.decode()
            if m.topic == IMAGE:
                frames_in += 1
                images[_stamp(msg.header)] = msg
            elif m.topic == INFO and K is None:
                K = np.asarray(msg.k, np.float64).reshape(3, 3)
            else:
                gt[_stamp(msg.header)] = msg
    latencies = np.array([(t - arrivals[s]) / 1e6 for s, (t, _) in meshes.items()
                          if s in arrivals])
    persons = sum(len(msg.humans) for _, msg in meshes.values())
    times = sorted(t for t, _ in meshes.values())
    fps = (len(times) - 1) / ((times[-1] - times[0]) / 1e9) if len(times) > 1 else 0.0
    print()
    print(f"frames in: {frames_in}, processed: {len(meshes)} "
          f"(node: {node_stats or 'no report'})")
    print(f"persons: {persons}, processing rate: {fps:.1f} FPS")
    if len(latencies):
        print(f"latency image -> /human_mesh: p50 {np.percentile(latencies, 50):.1f} ms, "
              f"p95 {np.percentile(latencies, 95):.1f} ms")
    errors = _errors(meshes, gt)
    if errors:
        print(f"vs ground truth ({len(errors['mpjpe'])} persons matched): "
              f"MPJPE {np.mean(errors['mpjpe']):.1f} mm, "
              f"PA-MPJPE {np.mean(errors['pa_mpjpe']):.1f} mm, PVE {np.mean(errors['pve']):.1f} mm")
    video = _video(meshes, images, K, out / "overlay.mp4")
    print(f"overlay video: {video}; recorded bag: {recorded}")
    return 0 if meshes else 1


def _iou(a: Any, b: Any) -> float:
    ax0, ay0, ax1, ay1 = a.x_offset, a.y_offset, a.x_offset + a.width, a.y_offset + a.height
    bx0, by0, bx1, by1 = b.x_offset, b.y_offset, b.x_offset + b.width, b.y_offset + b.height
    inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def _errors(meshes: Dict[int, Tuple[int, Any]], gt: Dict[int, Any]) -> Dict[str, List[float]]:
    from scipy.optimize import linear_sum_assignment

    from hmr_ros.eval.metrics import mpjpe, pa_mpjpe, pve

    errs: Dict[str, List[float]] = {"mpjpe": [], "pa_mpjpe": [], "pve": []}
    for stamp, (_, pred) in meshes.items():
        truth = gt.get(stamp)
        if truth is None or not pred.humans or not truth.humans:
            continue
        cost = np.array([[1 - _iou(p.roi, g.roi) for g in truth.humans] for p in pred.humans])
        for r, c in zip(*linear_sum_assignment(cost)):
            if cost[r, c] > 0.5:
                continue
            p, g = pred.humans[r], truth.humans[c]
            pj, gj = (np.asarray(x.joints, np.float64).reshape(1, 24, 3) for x in (p, g))
            errs["mpjpe"].append(float(mpjpe(pj, gj)[0]))
            errs["pa_mpjpe"].append(float(pa_mpjpe(pj, gj)[0]))
            if len(p.vertices) == len(g.vertices):
                pv, gv = (np.asarray(x.vertices, np.float64).reshape(1, -1, 3) for x in (p, g))
                errs["pve"].append(float(pve(pv, gv, pj, gj)[0]))
    return errs if errs["mpjpe"] else {}


def _video(meshes: Dict[int, Tuple[int, Any]], images: Dict[int, Any], K: Any,
           path: Path) -> Path:
    import cv2

    from hmr_ros.body import procedural_body
    from hmr_ros.transport.images import image_to_rgb
    from hmr_ros.viz import draw_overlay

    body = procedural_body()
    writer = None
    for stamp in sorted(images):
        rgb = image_to_rgb(images[stamp])
        if stamp in meshes:
            msg = meshes[stamp][1]
            persons = [_Person(h, v) for h, v in zip(msg.humans, msg.visibility)
                       if h.num_vertices == body.num_vertices]
            rgb = draw_overlay(rgb, persons, body.faces, body.part, K)
        if writer is None:
            h, w = rgb.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    if writer is not None:
        writer.release()
    return path


class _Person:
    """What draw_overlay reads of a person, from a HumanMesh message."""

    def __init__(self, h: Any, visibility: Any) -> None:
        self.vertices = np.asarray(h.vertices, np.float32).reshape(-1, 3)
        self.visibility = np.asarray(visibility.visibility, np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/demo_ros", help="output folder (default out/demo_ros)")
    ap.add_argument("--seconds", type=float, default=10.0, help="sample bag length (default 10)")
    ap.add_argument("--domain-id", type=int, default=42, help="ROS domain of the demo")
    ap.add_argument("--model-dir", default="", help="model (default: the bundled one)")
    args = ap.parse_args(argv)
    return run(Path(args.out), args.seconds, args.domain_id, args.model_dir)


if __name__ == "__main__":
    raise SystemExit(main())
