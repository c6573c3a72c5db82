"""ROS 1 bags holding our own message types (issue 13: ``hmr-ros eval`` reads ROS 1 bags).

The ROS 1 bag is written the way ROS 1 tools write one: ROS 1 definitions (``std_msgs/Header``
with ``seq``) in the connection headers, their ROS 1 md5sums, ROS 1 serialization. Our .msg
files are registered from ``msg/*.msg``; vision_msgs (not in rosbags' Noetic store) from our
ROS 2 definitions written out as ROS 1 text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hmr_ros.bag import BagReader
from hmr_ros.bag.sample import make_sample_bag
from hmr_ros.transport import types

MSG_DIR = Path(__file__).resolve().parent.parent / "msg"
GROUND_TRUTH = "/ground_truth/human_mesh"


def ros1_typestore():
    """rosbags' Noetic store plus our .msg files and the vision_msgs we publish."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    ros1 = get_typestore(Stores.ROS1_NOETIC)
    for path in sorted(MSG_DIR.glob("*.msg")):
        ros1.register(get_types_from_msg(path.read_text(), f"hmr_ros/msg/{path.stem}"))
    ros2 = types.typestore()
    for name in [n for n in ros2.fielddefs if n.startswith("vision_msgs/")]:
        text, _ = ros2.generate_msgdef(name, ros_version=1)
        found = get_types_from_msg(text, name)
        ros1.register({k: v for k, v in found.items() if k not in ros1.fielddefs})
    return ros1


def to_ros1(obj, name, ros1, seq):
    """Our ROS 2 message as the ROS 1 store's class: fields by name, ``seq`` for headers."""
    values = {}
    for field, (kind, details) in ros1.fielddefs[name][1]:
        if name == "std_msgs/msg/Header" and field == "seq":
            values[field] = seq
            continue
        value = getattr(obj, field.lower())  # ROS 1 CameraInfo: D, K, R, P
        if kind == types.Nodetype.NAME:
            value = to_ros1(value, details, ros1, seq)
        elif kind in (types.Nodetype.ARRAY, types.Nodetype.SEQUENCE) and \
                details[0][0] == types.Nodetype.NAME:
            value = [to_ros1(v, details[0][1], ros1, seq) for v in value]
        values[field] = value
    return ros1.types[name](**values)


def write_ros1_copy(src: Path, out: Path) -> Path:
    """Every sample of the rosbag2 ``src`` in a genuine ROS 1 bag ``out``."""
    from rosbags.rosbag1 import Writer

    ros1 = ros1_typestore()
    with BagReader(src) as bag, Writer(out) as writer:
        conns = {}
        for seq, m in enumerate(bag.messages()):
            if m.topic not in conns:
                conns[m.topic] = writer.add_connection(m.topic, m.type_name, typestore=ros1)
            msg = to_ros1(m.decode(), m.type_name, ros1, seq)
            writer.write(conns[m.topic], m.timestamp_ns,
                         bytes(ros1.serialize_ros1(msg, m.type_name)))
    return out


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("ros1")
    src = make_sample_bag(root / "seq", seconds=1, fps=5, people=2, size=160, storage="sqlite3")
    return src, write_ros1_copy(src, root / "seq.bag")


def test_ros1_bag_has_ros1_definitions(bags):
    from rosbags.rosbag1 import Reader

    _, ros1_bag = bags
    with Reader(ros1_bag) as reader:
        defs = {c.msgtype: c.msgdef.data for c in reader.connections}
        digests = {c.msgtype: c.digest for c in reader.connections}
    assert "MSG: std_msgs/Header\nuint32 seq\ntime stamp" in defs["hmr_ros/msg/HumanMeshArray"]
    assert "hmr_ros/HumanMesh[] humans" in defs["hmr_ros/msg/HumanMeshArray"]
    # sensor_msgs/Image's md5sum as ROS 1 (Noetic) computes it
    assert digests["sensor_msgs/msg/Image"] == "060021388200f6f0f447d0fcd9c64743"


def test_ros1_bag_reads_like_the_rosbag2_original(bags):
    src, ros1_bag = bags
    with BagReader(src) as a, BagReader(ros1_bag) as b:
        assert not a.is_ros1 and b.is_ros1
        assert [(t.topic, t.type_name, t.count) for t in a.topics()] == \
            [(t.topic, t.type_name, t.count) for t in b.topics()]
        left, right = list(a.messages()), list(b.messages())
    assert len(left) == len(right) > 0
    topics = {m.topic for m in right}
    assert {"/camera/image_raw", "/camera/camera_info", "/ground_truth/detections",
            GROUND_TRUTH} <= topics
    for x, y in zip(left, right):
        assert (x.topic, x.type_name, x.timestamp_ns) == (y.topic, y.type_name, y.timestamp_ns)
        mx, my = x.decode(), y.decode()
        assert (my.header.stamp.sec, my.header.stamp.nanosec, my.header.frame_id) == \
            (mx.header.stamp.sec, mx.header.stamp.nanosec, mx.header.frame_id)
        if x.type_name == "sensor_msgs/msg/Image":
            np.testing.assert_array_equal(my.data, mx.data)
            assert (my.height, my.width, my.encoding) == (mx.height, mx.width, mx.encoding)
        elif x.type_name == "sensor_msgs/msg/CameraInfo":
            np.testing.assert_array_equal(my.k, mx.k)
            np.testing.assert_array_equal(my.d, mx.d)
        elif x.type_name == "vision_msgs/msg/Detection2DArray":
            assert len(my.detections) == len(mx.detections)
            for dx, dy in zip(mx.detections, my.detections):
                assert dy.id == dx.id
                assert (dy.bbox.center.position.x, dy.bbox.size_x) == \
                    (dx.bbox.center.position.x, dx.bbox.size_x)
        elif x.type_name == "hmr_ros/msg/HumanMeshArray":
            assert len(my.humans) == len(mx.humans) > 0
            assert [h.body_id for h in my.humans] == [h.body_id for h in mx.humans]
            for hx, hy in zip(mx.humans, my.humans):
                assert hy.header.frame_id == hx.header.frame_id
                for field in ("vertices", "joints", "keypoints_2d", "betas", "joint_rotations"):
                    np.testing.assert_array_equal(getattr(hy, field), getattr(hx, field))
                assert (hy.translation.x, hy.translation.z) == (hx.translation.x, hx.translation.z)
            assert [v.body_id for v in my.visibility] == [v.body_id for v in mx.visibility]
            for vx, vy in zip(mx.visibility, my.visibility):
                np.testing.assert_array_equal(vy.visibility, vx.visibility)
        elif x.type_name == "hmr_ros/msg/MeshFaces":
            np.testing.assert_array_equal(my.triangles, mx.triangles)
            np.testing.assert_array_equal(my.vertex_part, mx.vertex_part)
        # the whole sample, re-encoded as ROS 2 CDR, is byte-identical
        assert y.data == x.data


def test_eval_on_the_ros1_bag_equals_eval_on_the_rosbag2_original(bags):
    from hmr_ros.eval.bag_eval import DEFAULT_TOPICS, evaluate_bags
    from hmr_ros.node.node import build_pipeline

    src, ros1_bag = bags
    pipeline = build_pipeline({"person_detector": "none", "refine_iterations": 0})[0]
    report = evaluate_bags([src, ros1_bag], pipeline, dict(DEFAULT_TOPICS), table2=False,
                           worst_frames=0)
    per_sequence = report["per_sequence"]
    assert len(per_sequence) == 2, report.get("failed")
    first, second = per_sequence.values()
    assert first["frames"] == 5 and first["matched"] > 0
    assert first == second


def test_ros1_bag_converted_with_a_ros2_type_store_is_read(bags, tmp_path, caplog):
    """``rosbags.convert`` handed our ROS 2 store writes Header without ``seq`` into the
    connection headers but ``seq`` onto the wire; the reader falls back to the ROS 1 Header."""
    from rosbags.convert import convert

    src, _ = bags
    out = tmp_path / "converted.bag"
    convert([src], out, None, None, None, "none", None, types.typestore(), [], [], [], [])
    key = lambda m: (m.topic, m.timestamp_ns)  # noqa: E731 - equal stamps: order may differ
    with BagReader(src) as a, BagReader(out) as b:
        left, right = sorted(a.messages(), key=key), sorted(b.messages(), key=key)
    assert [key(m) for m in left] == [key(m) for m in right] and len(left) > 0
    assert all(x.data == y.data for x, y in zip(left, right))
    assert "carry a ROS 1 Header seq" in caplog.text
    humans = [m.decode() for m in right if m.topic == GROUND_TRUTH]
    assert len(humans) == 5 and len(humans[0].humans[0].vertices) > 0
