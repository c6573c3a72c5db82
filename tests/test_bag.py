"""Bags: rosbag2 (MCAP, sqlite3) and ROS 1 in, rosbag2 out, the sample bag, play and record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmr_ros.bag import BagError, BagReader, BagWriter
from hmr_ros.bag.sample import SAMPLE_TOPICS, make_sample_bag
from hmr_ros.transport import QOS_TRANSIENT_LOCAL, cdr, types
from hmr_ros.transport.images import (ImageMessageError, compressed_to_rgb, image_to_rgb,
                                      rgb_to_compressed, rgb_to_image)
from tests.ros.messages import NODE_TYPES, example_message

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "walk"
    return make_sample_bag(out, seconds=0.5, fps=10, people=2, size=96, seed=3)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_then_read_back_every_type(tmp_path, storage):
    out = tmp_path / f"bag_{storage}"
    with BagWriter(out, storage=storage) as bag:
        for i, t in enumerate(NODE_TYPES):
            bag.add_topic(f"/t{i}", t, QOS_TRANSIENT_LOCAL if i == 0 else types_default())
            bag.write(f"/t{i}", 1000 + i, example_message(t, 1))
    with BagReader(out) as bag:
        summaries = {s.topic: s for s in bag.topics()}
        assert summaries["/t0"].durability == "transient_local"
        assert summaries["/t1"].durability == "volatile"
        seen = {}
        for m in bag.messages():
            seen[m.topic] = m
    for i, t in enumerate(NODE_TYPES):
        m = seen[f"/t{i}"]
        assert m.type_name == t and m.timestamp_ns == 1000 + i
        assert bytes(cdr.serialize(m.decode(), t)) == bytes(cdr.serialize(example_message(t, 1), t))


def types_default():
    from hmr_ros.transport import QOS_DEFAULT

    return QOS_DEFAULT


def test_sample_bag_decodes_with_an_empty_type_store(sample_bag):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    counts, people = {}, 0
    with AnyReader([sample_bag], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic == SAMPLE_TOPICS["ground_truth"][0] and msg.humans:
                people += 1
                h = msg.humans[0]
                assert len(h.vertices) == 3 * h.num_vertices and len(h.joint_rotations) == 96
                assert msg.visibility[0].visibility.shape == (24,)
            if conn.topic == SAMPLE_TOPICS["detections"][0] and msg.detections:
                assert msg.detections[0].results[0].hypothesis.class_id == "person"
    assert counts[SAMPLE_TOPICS["image"][0]] == 5 and counts[SAMPLE_TOPICS["faces"][0]] == 1
    assert people >= 3  # walkers enter the view in the first frames


def test_sample_bag_ground_truth_is_consistent(sample_bag):
    from hmr_ros.kernels import quaternion_to_matrix

    msgs = {}
    with BagReader(sample_bag) as bag:
        for m in bag.messages():
            msgs.setdefault(m.topic, []).append(m.decode())
    info = msgs[SAMPLE_TOPICS["camera_info"][0]][4]
    K = np.asarray(info.k).reshape(3, 3)
    gt = msgs[SAMPLE_TOPICS["ground_truth"][0]][4]
    image = msgs[SAMPLE_TOPICS["image"][0]][4]
    assert gt.humans
    assert gt.header == image.header == info.header  # one stamp and frame per frame
    for h in gt.humans:
        joints = np.asarray(h.joints).reshape(24, 3)
        proj = joints @ K.T
        np.testing.assert_allclose(proj[:, :2] / proj[:, 2:], np.asarray(h.keypoints_2d).reshape(
            24, 2), atol=1e-3)
        q = np.asarray(h.joint_rotations).reshape(24, 4)
        assert np.all(q[:, 0] >= 0)
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
        assert np.isfinite(np.asarray(quaternion_to_matrix(q.astype(np.float32)))).all()
    # tracking state: NEW on a person's first frame in view, TRACKED after
    first_seen = {}
    for i, frame_gt in enumerate(msgs[SAMPLE_TOPICS["ground_truth"][0]]):
        for h in frame_gt.humans:
            first_seen.setdefault(h.body_id, i)
            assert h.tracking_state == (0 if first_seen[h.body_id] == i else 1)
    faces = msgs[SAMPLE_TOPICS["faces"][0]][0]
    assert faces.header.frame_id == ""
    assert len(faces.vertex_part) == faces.num_vertices == gt.humans[0].num_vertices
    assert faces.triangles.max() < faces.num_vertices


def test_corrupt_and_truncated_bags_name_the_file(tmp_path, sample_bag):
    import shutil

    mcap = next(Path(sample_bag).glob("*.mcap"))
    broken = tmp_path / "broken"
    shutil.copytree(sample_bag, broken)
    target = broken / mcap.name
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match="broken"):
        with BagReader(broken) as bag:
            for _ in bag.messages():
                pass
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(BagError, match="garbage.mcap"):
        BagReader(garbage).open()
    sqlite_bag = tmp_path / "sq"
    with BagWriter(sqlite_bag, storage="sqlite3") as bag:
        bag.add_topic("/a", "std_msgs/msg/Header")
        for i in range(50):
            bag.write("/a", i, example_message("std_msgs/msg/Header", i))
    db = next(sqlite_bag.glob("*.db3"))
    raw = bytearray(db.read_bytes())
    raw[100:] = os.urandom(len(raw) - 100)
    db.write_bytes(bytes(raw))
    with pytest.raises(BagError, match="sq"):
        with BagReader(sqlite_bag) as bag:
            list(bag.messages())
    with pytest.raises(BagError, match="no such bag"):
        BagReader(tmp_path / "missing")
    with pytest.raises(BagError, match="already exists"):
        BagWriter(sqlite_bag)


def test_ros1_bag_is_read_as_ros2_messages(tmp_path):
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ros1 = get_typestore(Stores.ROS1_NOETIC)
    Image, Header, Time = (ros1.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                    "builtin_interfaces/msg/Time"))
    data = np.arange(12, dtype=np.uint8)
    msg = Image(header=Header(seq=7, stamp=Time(sec=5, nanosec=6), frame_id="cam"), height=2,
                width=2, encoding="rgb8", is_bigendian=0, step=6, data=data)
    path = tmp_path / "old.bag"
    with Writer(path) as w:
        conn = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ros1)
        w.write(conn, 42, ros1.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    with BagReader(path) as bag:
        (m,) = list(bag.messages())
    img = m.decode()
    assert (img.header.stamp.sec, img.header.stamp.nanosec, img.header.frame_id) == (5, 6, "cam")
    np.testing.assert_array_equal(img.data, data)
    np.testing.assert_array_equal(image_to_rgb(img).reshape(-1), data)


def test_images_raw_and_compressed():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for enc in ("rgb8", "bgr8"):
        np.testing.assert_array_equal(image_to_rgb(rgb_to_image(rgb, encoding=enc)), rgb)
    mono = rgb_to_image(rgb[..., 0], encoding="mono8")
    np.testing.assert_array_equal(image_to_rgb(mono)[..., 2], rgb[..., 0])
    padded = types.make("sensor_msgs/msg/Image", height=5, width=7, encoding="rgb8", step=24,
                        data=np.pad(rgb.reshape(5, 21), ((0, 0), (0, 3))).reshape(-1))
    np.testing.assert_array_equal(image_to_rgb(padded), rgb)
    np.testing.assert_array_equal(compressed_to_rgb(rgb_to_compressed(rgb, fmt="png")), rgb)
    jpeg = compressed_to_rgb(rgb_to_compressed(np.full((16, 16, 3), 128, np.uint8)))
    assert np.abs(jpeg.astype(int) - 128).max() <= 2
    bad = [
        (types.make("sensor_msgs/msg/Image", height=2, width=2, encoding="16UC1", step=4,
                    data=np.zeros(8, np.uint8)), "not supported"),
        (types.make("sensor_msgs/msg/Image", encoding="rgb8"), "empty image"),
        (types.make("sensor_msgs/msg/Image", height=4, width=4, encoding="rgb8", step=12,
                    data=np.zeros(10, np.uint8)), "needs 48"),
        (types.make("sensor_msgs/msg/Image", height=4, width=4, encoding="rgb8", step=5,
                    data=np.zeros(48, np.uint8)), "step 5"),
        (types.make("sensor_msgs/msg/Image", height=100000, width=100000, encoding="mono8",
                    step=100000), "exceeds"),
        (types.make("sensor_msgs/msg/CompressedImage", format="jpeg",
                    data=np.frombuffer(b"not a jpeg", np.uint8)), "not a PNG or JPEG"),
        (types.make("sensor_msgs/msg/CompressedImage", format="jpeg",
                    data=np.frombuffer(b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda", np.uint8)),
         "not a PNG or JPEG"),
        (types.make("sensor_msgs/msg/CompressedImage", format="tiff",
                    data=np.zeros(4, np.uint8)), "not supported"),
    ]
    # a small PNG that claims 9000 x 9000 pixels is refused before decoding
    huge = bytearray(bytes(rgb_to_compressed(rgb, fmt="png").data))
    huge[16:24] = (9000).to_bytes(4, "big") * 2
    bad.append((types.make("sensor_msgs/msg/CompressedImage", format="png",
                           data=np.frombuffer(bytes(huge), np.uint8)), "exceeds"))
    from hmr_ros.transport.images import compressed_dimensions

    for fmt in ("jpeg", "png"):
        assert compressed_dimensions(rgb_to_compressed(rgb, fmt=fmt).data) == (7, 5)
    for msg, text in bad:
        with pytest.raises(ImageMessageError, match=text):
            (compressed_to_rgb if msg.__msgtype__.endswith("CompressedImage") else image_to_rgb)(msg)


def test_play_in_one_process_record_in_another(tmp_path, sample_bag, dds_domain):
    """``hmr-ros play --as-fast-as-consumed`` in a child process, `record_topics` here, with
    the types and QoS learnt from discovery."""
    from hmr_ros.bag.replay import record_topics
    from hmr_ros.transport.dds import DdsTransport

    out = tmp_path / "recorded"
    topics = [SAMPLE_TOPICS["image"][0], SAMPLE_TOPICS["ground_truth"][0]]
    player = subprocess.Popen([sys.executable, "-m", "hmr_ros.cli", "play", str(sample_bag),
                               "--as-fast-as-consumed", "--loopback", "--topics", *topics,
                               "--wait-for-subscribers", "15"],
                              cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        with DdsTransport("hmr_recorder") as node:
            stats = record_topics(out, node, topics, duration_s=30, max_messages=10,
                                  discovery_timeout_s=20)
    finally:
        stdout, stderr = player.communicate(timeout=60)
    assert player.returncode == 0, stderr
    assert stats.types == {t: dict(SAMPLE_TOPICS.values())[t] for t in topics}
    assert all(q.reliability == "reliable" and q.durability == "volatile"
               for q in stats.qos.values())
    assert "published 10 messages" in stdout

    def decoded(bag_path, wanted):
        with BagReader(bag_path) as bag:
            return [(m.topic, bytes(cdr.serialize(m.decode(), m.type_name)))
                    for m in bag.messages(wanted)]

    # --as-fast-as-consumed waits for every sample to be acknowledged: nothing is lost
    got = decoded(out, None)
    assert len(got) == 10 and sorted(got) == sorted(decoded(sample_bag, topics))


def test_record_stops_on_request_and_leaves_a_readable_bag(tmp_path, dds_domain):
    from hmr_ros.bag.replay import record_topics
    from hmr_ros.transport import QOS_TRANSIENT_LOCAL
    from hmr_ros.transport.dds import DdsTransport

    with DdsTransport("hmr_pub_latched") as pub_node, DdsTransport("hmr_rec") as node:
        latched = pub_node.create_publisher("/faces", "hmr_ros/msg/MeshFaces", QOS_TRANSIENT_LOCAL)
        latched.publish(example_message("hmr_ros/msg/MeshFaces"))
        got = []
        stats = record_topics(tmp_path / "rec", node, ["/faces"], discovery_timeout_s=10,
                              stop=lambda: got.append(1) or len(got) > 40)
    assert stats.qos["/faces"].durability == "transient_local"  # adapted: latched sample kept
    with BagReader(tmp_path / "rec") as bag:
        (summary,) = bag.topics()
        assert summary.durability == "transient_local" and summary.count == 1


def test_shipped_mesh_faces_equal_the_procedural_body(tmp_path):
    from hmr_ros.body import procedural_body
    from hmr_ros.cli import main
    from hmr_ros.transport.mesh_faces import load_faces_resource, mesh_faces_message

    body = procedural_body()
    shipped = load_faces_resource(body.name)
    assert shipped.body_model == body.name and shipped.num_vertices == body.num_vertices
    np.testing.assert_array_equal(shipped.triangles.reshape(-1, 3), body.faces)
    np.testing.assert_array_equal(shipped.vertex_part, body.part)
    assert main(["body", "faces", "--out", str(tmp_path / "f.cdr")]) == 0
    assert (tmp_path / "f.cdr").read_bytes() == bytes(cdr.serialize(shipped,
                                                                    "hmr_ros/msg/MeshFaces"))
    with pytest.raises(FileNotFoundError, match="hmr-ros body faces"):
        load_faces_resource("SMPL_NEUTRAL")
    with pytest.raises(ValueError, match="face indices"):
        mesh_faces_message("x", np.array([[0, 1, 5]]), np.zeros(3))


def test_sample_bag_with_compressed_images(tmp_path):
    from hmr_ros.bag.sample import COMPRESSED_IMAGE_TOPIC

    path = make_sample_bag(tmp_path / "jpeg", seconds=0.2, fps=10, people=1, size=64,
                           compressed="jpeg", storage="sqlite3")
    with BagReader(path) as bag:
        topics = {t.topic: t.type_name for t in bag.topics()}
        assert topics[COMPRESSED_IMAGE_TOPIC[0]] == COMPRESSED_IMAGE_TOPIC[1]
        assert SAMPLE_TOPICS["image"][0] not in topics
        msg = next(m for m in bag.messages([COMPRESSED_IMAGE_TOPIC[0]])).decode()
    assert msg.format == "jpeg" and compressed_to_rgb(msg).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="jpeg or png"):
        make_sample_bag(tmp_path / "x", compressed="gif")


def test_record_cli_closes_the_bag_on_sigterm(tmp_path, dds_domain):
    import signal
    import time

    from hmr_ros.transport.dds import DdsTransport

    out = tmp_path / "cli_rec"
    rec = subprocess.Popen([sys.executable, "-m", "hmr_ros.cli", "record", str(out), "--loopback",
                            "--topics", "/h", "--type", "/h:std_msgs/msg/Header"], cwd=ROOT,
                           env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    with DdsTransport("hmr_header_pub") as node:
        pub = node.create_publisher("/h", "std_msgs/msg/Header")
        end = time.monotonic() + 20
        while pub.subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        for i in range(5):
            pub.publish(example_message("std_msgs/msg/Header", i))
        pub.wait_for_acks(5.0)
        time.sleep(0.3)
        rec.send_signal(signal.SIGTERM)
        stdout, stderr = rec.communicate(timeout=30)
    assert rec.returncode == 0, stderr
    assert "stopped by signal" in stdout
    with BagReader(out) as bag:
        assert [m.decode().frame_id for m in bag.messages()] == [
            example_message("std_msgs/msg/Header", i).frame_id for i in range(5)]
