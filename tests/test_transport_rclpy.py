"""The rclpy transport against the built-in one, where a ROS 2 install is sourced.

Skipped where rclpy is not importable (CI, these machines). Needs rclpy with
rmw_cyclonedds_cpp (RMW_IMPLEMENTATION) and this package's interfaces built by colcon; the node
test also needs the interfaces the node publishes (hri_msgs, vision_msgs, tf2_msgs,
diagnostic_msgs: package.xml's exec_depends) and is skipped, naming them, where they are absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not importable: source a ROS 2 install")

from hmr_ros.transport import QOS_SENSOR_DATA, TransportError, cdr, open_transport  # noqa: E402
from hmr_ros.transport.rclpy_transport import RclpyTransport  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

LISTENER = r"""
import sys, time
from hmr_ros.transport.dds import DdsTransport
node = DdsTransport("hmr_dds_listener")
got = []
node.create_subscription("/human_mesh", "hmr_ros/msg/HumanMeshArray", got.append)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end and not got:
    node.spin_once(0.05)
print(got[0].header.frame_id if got else "nothing", flush=True)
"""


@pytest.fixture
def ros_domain(dds_domain):
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp") != "rmw_cyclonedds_cpp":
        pytest.skip("these tests pair rclpy with Cyclone DDS (RMW_IMPLEMENTATION)")
    return dds_domain


def test_rclpy_transport_talks_to_the_built_in_one(ros_domain):
    listener = subprocess.Popen([sys.executable, "-c", LISTENER, "20"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node = open_transport("rclpy", "hmr_rclpy_test", parameters={"rate": 3})
    try:
        assert isinstance(node, RclpyTransport)
        assert node.declare_parameter("rate", 1.0) == 3.0
        pub = node.create_publisher("/human_mesh", "hmr_ros/msg/HumanMeshArray")
        msg = node.message("hmr_ros/msg/HumanMeshArray")
        msg.header.frame_id = "from_rclpy"
        end = time.monotonic() + 20
        while listener.poll() is None and time.monotonic() < end:
            pub.publish(msg)
            node.spin_once(0.05)
        out, err = listener.communicate(timeout=30)
        assert out.strip() == "from_rclpy", err
    finally:
        node.close()


def test_rclpy_raw_subscription_decodes_and_counts_malformed(ros_domain):
    from hmr_ros.transport.dds import DdsTransport

    got = []
    node = RclpyTransport("hmr_rclpy_sub")
    try:
        sub = node.create_subscription("/img", "sensor_msgs/msg/Image", got.append,
                                       QOS_SENSOR_DATA)
        img = node.message("sensor_msgs/msg/Image", height=1, width=2, encoding="rgb8", step=6,
                           data=np.arange(6, dtype=np.uint8))
        with DdsTransport("hmr_dds_pub") as peer:
            pub = peer.create_publisher("/img", "sensor_msgs/msg/Image", QOS_SENSOR_DATA)
            end = time.monotonic() + 15
            while not got and time.monotonic() < end:
                pub.publish(img)
                node.spin_once(0.05)
        assert got and bytes(cdr.serialize(got[0], "sensor_msgs/msg/Image")) == bytes(
            cdr.serialize(img, "sensor_msgs/msg/Image"))
        sub.deliver(b"\x00\x01\x00\x00\xff\xff")  # what rclpy would hand over for a bad sample
        assert sub.dropped_malformed == 1
    finally:
        node.close()


def test_missing_type_support_is_a_clear_error(ros_domain):
    node = RclpyTransport("hmr_rclpy_types")
    try:
        with pytest.raises(TransportError, match="type support"):
            node.create_publisher("/x", "rmw_dds_common_humble/msg/Gid")
    finally:
        node.close()


def test_the_node_on_rclpy_serves_a_built_in_peer(ros_domain, tmp_path):
    """The same node logic on rclpy: an image from the built-in transport in, /human_mesh out
    to it, with the image's header."""
    import importlib.util
    import sys as _sys

    missing = [m for m in ("hri_msgs", "vision_msgs", "tf2_msgs", "diagnostic_msgs")
               if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the node publishes {', '.join(missing)}: build them with the ROS install")

    _sys.path.insert(0, str(ROOT / "tests"))
    from tiny_vishmr import tiny_vishmr

    from hmr_ros.export import export_vishmr
    from hmr_ros.node import HmrNode, declare
    from hmr_ros.transport import types
    from hmr_ros.transport.dds import DdsTransport
    from hmr_ros.transport.images import rgb_to_image

    export_vishmr(tiny_vishmr(), tmp_path / "model")
    node_transport = RclpyTransport("hmr_rclpy_node", parameters={
        "model_dir": str(tmp_path / "model"), "image_topic": "/cam/image",
        "camera_info_topic": "/cam/info", "publish_markers": False,
        "person_detector": "none"})
    node = HmrNode(node_transport, declare(node_transport))
    node.configure()
    node.activate()
    got = []
    try:
        with DdsTransport("hmr_dds_camera") as peer:
            peer.create_subscription("/human_mesh", "hmr_ros/msg/HumanMeshArray", got.append)
            pub = peer.create_publisher("/cam/image", "sensor_msgs/msg/Image", QOS_SENSOR_DATA)
            header = types.make("std_msgs/msg/Header", frame_id="cam",
                                stamp=types.make("builtin_interfaces/msg/Time", sec=42))
            img = rgb_to_image(np.zeros((48, 64, 3), np.uint8), header)
            end = time.monotonic() + 20
            while not got and time.monotonic() < end:
                pub.publish(img)
                node_transport.spin_once(0.05)
                peer.spin_once(0.05)
        assert got and got[0].header.stamp.sec == 42 and got[0].header.frame_id == "cam"
        assert len(got[0].humans) == 1 and got[0].humans[0].focal_length_assumed
    finally:
        node.shutdown()
        node_transport.close()
