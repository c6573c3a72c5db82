"""Built-in ROS 2 transport speed, against stock cyclonedds-python in the same run.

    python benchmarks/bench_transport.py [--quick] [--rounds 200]

1. Serialise / deserialise a 640x480x3 ``sensor_msgs/Image`` and a 6890-vertex
   ``hmr_ros/HumanMesh``: the one-copy codec (``hmr_ros.transport.cdr``) against the stock
   cyclonedds-python IdlStruct path (element-wise packing, Python lists). Target >= 40x.
2. Loopback round trip of a 6890-vertex mesh message (~82 KB) between two processes: this
   process publishes on /ping, an echo process republishes what it gets on /pong; p50 / p95 of
   publish-to-receive-back, with the built-in transport and with stock cyclonedds-python
   (DataWriter.write / DataReader.take of IdlStruct samples) in the same run, and with rclpy
   (its generated message class, both processes rclpy) where rclpy is importable. The goal in
   the issue is within 1.2x of rclpy on rmw_cyclonedds; without rclpy the figure measured on
   these machines before (p50 0.70 ms, p95 1.47 ms) is quoted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402

from hmr_ros.transport import cdr, idl, types  # noqa: E402

MESH = "hmr_ros/msg/HumanMesh"
IMAGE = "sensor_msgs/msg/Image"


def _messages():
    rng = np.random.default_rng(0)
    image = types.make(IMAGE, height=480, width=640, encoding="rgb8", step=1920,
                       data=rng.integers(0, 256, 640 * 480 * 3, dtype=np.uint8))
    image.header.frame_id = "camera_optical_frame"
    mesh = types.make(MESH, body_id="b1", body_model="SMPL_NEUTRAL", num_vertices=6890,
                      betas=rng.normal(size=10).astype(np.float32),
                      joint_rotations=rng.normal(size=96).astype(np.float32),
                      vertices=rng.normal(size=6890 * 3).astype(np.float32),
                      joints=rng.normal(size=72).astype(np.float32),
                      keypoints_2d=rng.normal(size=48).astype(np.float32), hypothesis_index=0,
                      hypothesis_scores=np.ones(5, np.float32))
    return {IMAGE: image, MESH: mesh}


def bench_codec(n: int, rounds: int = 7) -> None:
    """Stock and fast timed in alternating rounds; ratio of the medians over rounds, so load
    from other processes hits both sides alike."""
    print("== serialisation (median ms; stock = cyclonedds-python IdlStruct) ==")
    for name, msg in _messages().items():
        stock_obj = idl.to_idl(msg, name)
        data = bytes(cdr.serialize(msg, name))
        assert stock_obj.serialize(use_version_2=False) == data  # same bytes
        cls = type(stock_obj)
        rows = [
            ("serialise", lambda: stock_obj.serialize(use_version_2=False),
             lambda: cdr.serialize(msg, name)),
            ("deserialise", lambda: cls.deserialize(data), lambda: cdr.deserialize(data, name)),
        ]
        for what, stock, fast in rows:
            s_all, f_all = [], []
            for _ in range(rounds):
                s_all.append(median_ms(stock, max(3, n // 20), warmup=True))
                f_all.append(median_ms(fast, n, warmup=True))
            s_ms, f_ms = statistics.median(s_all), statistics.median(f_all)
            print(f"{name.split('/')[-1]:10s} {what:12s} stock {s_ms:9.3f}  fast {f_ms:8.4f}  "
                  f"speed-up {s_ms / f_ms:8.1f}x  (target >= 40x)  [{len(data)} B]")


ECHO = r'''
import sys, time
from hmr_ros.transport.dds import DdsTransport
mode = sys.argv[1]
node = DdsTransport("bench_echo")
if mode == "rclpy":
    node.close()
    import rclpy
    from rclpy.node import Node
    from hmr_ros.msg import HumanMesh
    rclpy.init()
    rnode = Node("bench_echo_rclpy")
    pub = rnode.create_publisher(HumanMesh, "/rpong", 10)
    rnode.create_subscription(HumanMesh, "/rping", pub.publish, 10)
    print("ready", flush=True)
    rclpy.spin(rnode)
elif mode == "fast":
    pub = node.create_publisher("/pong", "hmr_ros/msg/HumanMesh")
    node.create_subscription("/ping", "hmr_ros/msg/HumanMesh", pub.publish, raw=True)
    print("ready", flush=True)
    node.spin(until=lambda: False)
else:
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from cyclonedds.core import ReadCondition, SampleState, ViewState, InstanceState, WaitSet
    from cyclonedds.util import duration
    from hmr_ros.transport.idl import idl_struct
    from hmr_ros.transport.dds import dds_qos
    from hmr_ros.transport import QOS_DEFAULT
    cls = idl_struct("hmr_ros/msg/HumanMesh")
    dp = node.participant
    w = DataWriter(dp, Topic(dp, "rt/spong", cls), qos=dds_qos(QOS_DEFAULT))
    r = DataReader(dp, Topic(dp, "rt/sping", cls), qos=dds_qos(QOS_DEFAULT))
    ws = WaitSet(dp); ws.attach(ReadCondition(r, SampleState.Any | ViewState.Any | InstanceState.Any))
    print("ready", flush=True)
    while True:
        ws.wait(duration(seconds=1))
        for s in r.take(N=10):
            if isinstance(s, cls):  # not the invalid sample of a writer going away
                w.write(s)
'''


def _percentiles(samples):
    a = np.asarray(samples) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def bench_round_trip(rounds: int) -> None:
    from hmr_ros.transport.dds import DdsTransport, loopback_config

    os.environ.setdefault("CYCLONEDDS_URI", loopback_config())
    os.environ["ROS_DOMAIN_ID"] = str(150 + os.getpid() % 50)
    mesh = _messages()[MESH]
    size = len(cdr.serialize(mesh, MESH))
    print(f"== loopback round trip, {size / 1000:.1f} KB mesh, two processes ==")
    results = {}
    modes = ["stock", "fast"]
    try:
        import rclpy  # noqa: F401
        from hmr_ros.msg import HumanMesh  # noqa: F401 - the colcon-built type support
        modes.append("rclpy")
    except ImportError:
        pass
    for mode in modes:
        echo = subprocess.Popen([sys.executable, "-c", ECHO, mode], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        echo.stdout.readline()
        try:
            results[mode] = _round_trips(mode, mesh, rounds, DdsTransport)
        finally:
            echo.kill()
            echo.wait()
    for mode, (p50, p95) in results.items():
        print(f"{mode:6s} p50 {p50:7.3f} ms   p95 {p95:7.3f} ms")
    s50, s95 = results["stock"]
    f50, f95 = results["fast"]
    print(f"fast vs stock: p50 {s50 / f50:.1f}x, p95 {s95 / f95:.1f}x faster")
    if "rclpy" in results:
        r50, r95 = results["rclpy"]
        print(f"fast vs rclpy/rmw_cyclonedds (same run): p50 {f50 / r50:.2f}x, "
              f"p95 {f95 / r95:.2f}x of rclpy's time (goal <= 1.2x)")
    else:
        print(f"vs rclpy/rmw_cyclonedds as measured before (p50 0.70, p95 1.47 ms; rclpy is not "
              f"importable here): p50 {f50 / 0.70:.2f}x, p95 {f95 / 1.47:.2f}x (goal <= 1.2x)")


def _round_trips(mode, mesh, rounds, DdsTransport):
    node = DdsTransport("bench_ping")
    times, got = [], []
    try:
        if mode == "rclpy":
            return _rclpy_round_trips(mesh, rounds)
        if mode == "fast":
            pub = node.create_publisher("/ping", MESH)
            node.create_subscription("/pong", MESH, got.append, raw=True)
            send = lambda: pub.publish(mesh)  # noqa: E731 - encode + write, as the node does
            matched = lambda: pub.subscription_count() > 0  # noqa: E731
            receive = lambda: node.spin_once(0.5)  # noqa: E731
        else:
            from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState
            from cyclonedds.core import WaitSet
            from cyclonedds.pub import DataWriter
            from cyclonedds.sub import DataReader
            from cyclonedds.topic import Topic
            from cyclonedds.util import duration

            from hmr_ros.transport import QOS_DEFAULT
            from hmr_ros.transport.dds import dds_qos

            cls = idl.idl_struct(MESH)
            dp = node.participant
            w = DataWriter(dp, Topic(dp, "rt/sping", cls), qos=dds_qos(QOS_DEFAULT))
            r = DataReader(dp, Topic(dp, "rt/spong", cls), qos=dds_qos(QOS_DEFAULT))
            ws = WaitSet(dp)
            ws.attach(ReadCondition(r, SampleState.Any | ViewState.Any | InstanceState.Any))
            stock = idl.to_idl(mesh, MESH)
            send = lambda: w.write(stock)  # noqa: E731
            matched = lambda: len(w.get_matched_subscriptions()) > 0  # noqa: E731

            def receive():
                ws.wait(duration(seconds=0.5))
                got.extend(r.take(N=10))
        end = time.monotonic() + 10
        while not matched() and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.5)
        for i in range(rounds + 20):
            got.clear()
            t0 = time.perf_counter()
            send()
            while not got:
                receive()
            if i >= 20:  # warm-up
                times.append(time.perf_counter() - t0)
    finally:
        node.close()
    return _percentiles(times)


def _rclpy_round_trips(mesh, rounds):
    """The same loop with rclpy on both ends (generated message class, default executor)."""
    import rclpy
    from rclpy.node import Node

    from hmr_ros.msg import HumanMesh

    rclpy.init()
    node = Node("bench_ping_rclpy")
    got = []
    pub = node.create_publisher(HumanMesh, "/rping", 10)
    node.create_subscription(HumanMesh, "/rpong", got.append, 10)
    msg = HumanMesh()
    msg.body_id, msg.body_model, msg.num_vertices = mesh.body_id, mesh.body_model, 6890
    for field in ("betas", "joint_rotations", "vertices", "joints", "keypoints_2d",
                  "hypothesis_scores"):
        setattr(msg, field, getattr(mesh, field))
    times = []
    try:
        end = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.5)
        for i in range(rounds + 20):
            got.clear()
            t0 = time.perf_counter()
            pub.publish(msg)
            while not got:
                rclpy.spin_once(node, timeout_sec=0.5)
            if i >= 20:
                times.append(time.perf_counter() - t0)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return _percentiles(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--rounds", type=int, default=300, help="round trips per transport")
    args = ap.parse_args()
    bench_codec(20 if args.quick else 200)
    bench_round_trip(50 if args.quick else args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
