"""The node end to end on loopback: image published -> /human_mesh received, 1 and 5 persons.

    python benchmarks/bench_node.py [--frames 60] [--size 640x480] [--model-dir DIR]

A node process (``hmr-ros node``, built-in transport, the bundled model unless given) and this
process as camera and consumer: per frame it publishes the person boxes and a VGA image with a
fresh stamp and waits for the /human_mesh with that stamp (one frame in flight, so nothing is
dropped). Printed: end-to-end p50 / p95, the node's own pipeline time p50 (from /diagnostics),
and the share of the end-to-end time spent outside the pipeline (image decode, serialisation,
transport, both ways): the goal is <= 10 %.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hmr_ros.transport import QOS_SENSOR_DATA, QoSProfile, types  # noqa: E402
from hmr_ros.transport.dds import DdsTransport, loopback_config  # noqa: E402
from hmr_ros.transport.images import rgb_to_image  # noqa: E402


def _boxes(n: int, width: int, height: int):
    w = width / (n + 1)
    return [(w * (i + 0.5), height * 0.15, w * (i + 1.4), height * 0.95) for i in range(n)]


def run_case(node: DdsTransport, persons: int, frames: int, width: int, height: int):
    image_pub = node.create_publisher("/bench/image", "sensor_msgs/msg/Image", QOS_SENSOR_DATA)
    det_pub = node.create_publisher("/bench/detections", "vision_msgs/msg/Detection2DArray",
                                    QOS_SENSOR_DATA)
    got = {}
    node.create_subscription("/human_mesh", "hmr_ros/msg/HumanMeshArray",
                             lambda m: got.setdefault(m.header.stamp.nanosec, time.perf_counter()),
                             QoSProfile(depth=50))
    diags = []
    node.create_subscription("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", diags.append)
    end = time.monotonic() + 60
    while image_pub.subscription_count() == 0 and time.monotonic() < end:
        node.spin_once(0.05)
    rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    times = []
    for i in range(frames + 5):
        stamp = types.make("builtin_interfaces/msg/Time", sec=persons, nanosec=i + 1)
        header = types.make("std_msgs/msg/Header", stamp=stamp, frame_id="bench_camera")
        dets = []
        for x0, y0, x1, y1 in _boxes(persons, width, height):
            hyp = types.make("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=types.make(
                "vision_msgs/msg/ObjectHypothesis", class_id="person", score=1.0))
            dets.append(types.make("vision_msgs/msg/Detection2D", header=header, results=[hyp],
                                   bbox=types.make("vision_msgs/msg/BoundingBox2D",
                                                   center=types.make("vision_msgs/msg/Pose2D",
                                                                     position=types.make(
                                                                         "vision_msgs/msg/Point2D",
                                                                         x=(x0 + x1) / 2,
                                                                         y=(y0 + y1) / 2)),
                                                   size_x=x1 - x0, size_y=y1 - y0)))
        det_pub.publish(types.make("vision_msgs/msg/Detection2DArray", header=header,
                                   detections=dets))
        t0 = time.perf_counter()
        image_pub.publish(rgb_to_image(rgb, header))
        deadline = time.monotonic() + 10
        while i + 1 not in got and time.monotonic() < deadline:
            node.spin_once(0.002)
        if i + 1 in got and i >= 5:  # warm-up frames excluded
            times.append(got[i + 1] - t0)
    # the node's own pipeline time, from its diagnostics
    end = time.monotonic() + 3
    while time.monotonic() < end:
        node.spin_once(0.1)
    values = {kv.key: kv.value for d in diags[-1:] for kv in d.status[0].values}
    node_ms = {k: float(values.get(f"latency_ms {k} p50", "nan"))
               for k in ("total", "decode", "publish", "age", "detections_wait")}
    return np.asarray(times) * 1e3, node_ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--model-dir", default="")
    args = ap.parse_args()
    width, height = map(int, args.size.split("x"))
    os.environ.setdefault("CYCLONEDDS_URI", loopback_config())
    os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    print(f"== node end to end, {width}x{height} rgb8, {args.frames} frames per case ==")
    for persons in (1, 5):
        cmd = [sys.executable, "-m", "hmr_ros.cli", "node", "-p", "image_topic:=/bench/image",
               "-p", "camera_info_topic:=/bench/camera_info",
               "-p", "detections_topic:=/bench/detections", "-p", "diagnostics_period:=0.5",
               "-p", "publish_markers:=false", "-p", "publish_overlay:=false",
               "-p", "person_detector:=none",
               "-p", f"max_persons:={persons}"]
        if args.model_dir:
            cmd += ["-p", f"model_dir:={args.model_dir}"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            with DdsTransport(f"bench_camera_{persons}") as node:
                e2e, node_ms = run_case(node, persons, args.frames, width, height)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        p50, p95 = np.percentile(e2e, 50), np.percentile(e2e, 95)
        pipeline = node_ms["total"]
        share = (p50 - pipeline) / p50 * 100
        print(f"{persons} person(s): end to end p50 {p50:7.1f} ms  p95 {p95:7.1f} ms | pipeline "
              f"p50 {pipeline:7.1f} ms | outside the pipeline {share:5.1f} % (goal <= 10 %)")
        print(f"    in the node (p50): decode {node_ms['decode']:.2f} ms, waiting for the "
              f"frame's detections {node_ms['detections_wait']:.2f} ms, publish (all outputs) "
              f"{node_ms['publish']:.2f} ms, arrival to outputs sent {node_ms['age']:.1f} ms; "
              f"transport both ways ~{p50 - node_ms['age']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
