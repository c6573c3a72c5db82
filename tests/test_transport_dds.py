"""The built-in ROS 2 transport between real processes on loopback DDS."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hmr_ros.transport import (QOS_SENSOR_DATA, QOS_TRANSIENT_LOCAL, QoSProfile, TransportError,
                               cdr, open_transport, qos_from_string, types)
from hmr_ros.transport.dds import DdsTransport, resolve_topic
from hmr_ros.transport.graph import participant_info, parse_participant_info, ros_distro_layout
from tests.ros.messages import NODE_TYPES, example_message
from tests.ros.peer import topic_of

ROOT = Path(__file__).resolve().parents[1]


def _peer(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.ros.peer", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


def _spin_until(node, condition, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not condition():
        node.spin_once(0.05)
    return condition()


def test_every_node_type_crosses_between_two_processes(dds_domain):
    got = {}
    with DdsTransport("hmr_test_sub") as node:
        for t in NODE_TYPES:
            node.create_subscription(topic_of(t), t, lambda m, t=t: got.setdefault(t, m))
        peer = _peer("publish", "--seconds", "30")
        try:
            ok = _spin_until(node, lambda: len(got) == len(NODE_TYPES), 25)
        finally:
            peer.kill()
            _, err = peer.communicate()
        assert ok, f"missing {sorted(set(NODE_TYPES) - set(got))}; peer stderr: {err[-2000:]}"
        for t in NODE_TYPES:
            expected = bytes(cdr.serialize(example_message(t, 0), t))
            assert bytes(cdr.serialize(got[t], t)) == expected, t
        assert all(s.dropped_malformed == 0 for s in node.subscriptions)


def test_a_third_process_sees_node_topics_types_and_qos_in_ros_layout(dds_domain):
    with DdsTransport("hmr_graph_test", "/robot") as node:
        mesh = node.create_publisher("/human_mesh", "hmr_ros/msg/HumanMeshArray")
        faces = node.create_publisher("human_mesh/faces", "hmr_ros/msg/MeshFaces",
                                      QOS_TRANSIENT_LOCAL)
        image_sub = node.create_subscription("/camera/image_raw", "sensor_msgs/msg/Image",
                                             lambda m: None, QOS_SENSOR_DATA)
        peer = _peer("observe", "--seconds", "15", "--expect-node", "hmr_graph_test",
                     "--expect-topics", "/human_mesh", "/robot/human_mesh/faces")
        out, err = peer.communicate(timeout=60)
        assert peer.returncode == 0, err
        snap = json.loads(out)
        nodes = [n for n in snap["nodes"] if n["name"] == "hmr_graph_test"]
        assert len(nodes) == 1 and nodes[0]["namespace"] == "/robot"
        pubs = {p["topic"]: p for p in snap["publications"]}
        subs = {s["topic"]: s for s in snap["subscriptions"]}
        assert pubs["/human_mesh"]["type"] == "hmr_ros/msg/HumanMeshArray"
        assert (pubs["/human_mesh"]["reliability"], pubs["/human_mesh"]["durability"],
                pubs["/human_mesh"]["depth"]) == ("reliable", "volatile", 10)
        assert (pubs["/robot/human_mesh/faces"]["durability"],
                pubs["/robot/human_mesh/faces"]["depth"]) == ("transient_local", 1)
        assert (subs["/camera/image_raw"]["reliability"], subs["/camera/image_raw"]["depth"]) == (
            "best_effort", 5)
        user = bytes.fromhex(pubs["/human_mesh"]["user_data"]).decode()
        assert user == f"typehash={types.type_hash('hmr_ros/msg/HumanMeshArray')};"
        # the node owns exactly its endpoints, by GID; its participant says enclave=/
        assert sorted(nodes[0]["writers"]) == sorted([mesh.gid.hex(), faces.gid.hex()])
        assert nodes[0]["readers"] == [image_sub.gid.hex()]
        assert bytes.fromhex(snap["participants"][nodes[0]["participant"]]) == b"enclave=/;"


def test_malformed_samples_are_counted_drops_and_good_ones_still_arrive(dds_domain, caplog):
    got = []
    with DdsTransport("hmr_victim") as node:
        sub = node.create_subscription("/img", "sensor_msgs/msg/Image", got.append,
                                       QoSProfile(depth=100))
        peer = _peer("garbage", "--topic", "/img", "--type", "sensor_msgs/msg/Image",
                     "--repeat", "12")
        with caplog.at_level(logging.WARNING):
            ok = _spin_until(node, lambda: sub.dropped_malformed >= 12 and len(got) >= 5, 25)
            out, err = peer.communicate(timeout=30)
            node.spin_once(0.1)
        assert ok, (sub.dropped_malformed, len(got), out, err)
        report = json.loads(out.strip().splitlines()[-1])
        # Cyclone itself refuses to send samples whose structure does not fit the type
        assert report["refused"] == report["structural"] == 3
        assert report["sent_bad"] == 12 and sub.dropped_malformed == 12
        expected = bytes(cdr.serialize(example_message("sensor_msgs/msg/Image", 0),
                                       "sensor_msgs/msg/Image"))
        assert all(bytes(cdr.serialize(m, "sensor_msgs/msg/Image")) == expected for m in got)
        assert "not UTF-8" in caplog.text


def test_oversized_samples_and_callback_errors_do_not_escape(dds_domain, caplog):
    with DdsTransport("hmr_pub") as a, DdsTransport("hmr_sub", max_sample_bytes=1000) as b:
        got = []

        def callback(msg):
            got.append(msg)
            raise RuntimeError("bug in a callback")

        sub = b.create_subscription("/x", "sensor_msgs/msg/Image", callback)
        pub = a.create_publisher("/x", "sensor_msgs/msg/Image")
        big = types.make("sensor_msgs/msg/Image", data=np.zeros(5000, np.uint8))
        small = types.make("sensor_msgs/msg/Image", data=np.zeros(10, np.uint8))
        _spin_until(b, lambda: pub.subscription_count() > 0, 5)
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                pub.publish(big)
                pub.publish(small)
            assert _spin_until(b, lambda: sub.dropped_oversized == 3 and len(got) == 3, 5)
        assert sub.callback_errors == 3 and "bug in a callback" in caplog.text


def test_transient_local_reaches_a_late_subscriber(dds_domain):
    with DdsTransport("hmr_latch") as a:
        pub = a.create_publisher("/faces", "hmr_ros/msg/MeshFaces", QOS_TRANSIENT_LOCAL)
        pub.publish(example_message("hmr_ros/msg/MeshFaces"))
        with DdsTransport("hmr_late") as b:
            got = []
            b.create_subscription("/faces", "hmr_ros/msg/MeshFaces", got.append,
                                  QOS_TRANSIENT_LOCAL)
            assert _spin_until(b, lambda: got, 5)


def test_timers_parameters_and_names(dds_domain):
    with DdsTransport("hmr_misc", parameters={"rate": "2.5", "flag": "true",
                                              "typo": 1}) as node:
        ticks = []
        timer = node.create_timer(0.02, lambda: ticks.append(time.monotonic()))
        _spin_until(node, lambda: len(ticks) >= 5, 2)
        timer.cancel()
        n = len(ticks)
        for _ in range(5):
            node.spin_once(0.02)
        assert n >= 5 and len(ticks) == n
        assert node.declare_parameter("rate", 1.0) == 2.5
        assert node.declare_parameter("flag", False) is True
        assert node.declare_parameter("depth", 5) == 5
        assert node.undeclared_parameters() == ["typo"]
        with DdsTransport("hmr_bad", parameters={"n": "x"}) as bad:
            with pytest.raises(TransportError, match="not a valid int"):
                bad.declare_parameter("n", 1)
        now = node.now()
        assert abs(now.sec + now.nanosec * 1e-9 - time.time()) < 1
    assert resolve_topic("image", "n", "/cam") == "/cam/image"
    assert resolve_topic("~/debug", "n", "/cam") == "/cam/n/debug"
    for bad in ("/a b", "/1x", "/a//b", "/a/__b"):
        with pytest.raises(TransportError):
            resolve_topic(bad, "n", "/")
    with pytest.raises(TransportError, match="domain id"):
        DdsTransport("x", domain_id=300)
    with pytest.raises(TransportError, match="unknown transport"):
        open_transport("zmq", "x")


def test_qos_strings_and_validation():
    assert qos_from_string("sensor_data") == QOS_SENSOR_DATA
    assert qos_from_string("best_effort,keep_last,3") == QoSProfile("best_effort", "volatile",
                                                                     "keep_last", 3)
    with pytest.raises(ValueError, match="unknown QoS token"):
        qos_from_string("fast")
    with pytest.raises(ValueError):
        QoSProfile(depth=0)


@pytest.mark.parametrize("distro, size", [("humble", 24), ("jazzy", 16), ("iron", 16)])
def test_graph_layouts_round_trip(distro, size):
    layout = ros_distro_layout(distro)
    guid = bytes(range(16))
    msg = participant_info(layout, guid, [{"name": "n", "namespace": "/", "readers": [guid],
                                           "writers": []}])
    assert len(msg.gid.data) == size
    parsed = parse_participant_info(cdr.serialize(msg, layout.info_type, pad=True))
    assert parsed["layout"] == ("humble" if distro == "humble" else "jazzy")
    assert parsed["gid"] == guid and parsed["nodes"][0]["readers"] == [guid]
    with pytest.raises(TransportError, match="unsupported"):
        ros_distro_layout("foxy")


def test_humble_layout_on_the_wire_has_no_type_hash(dds_domain):
    from cyclonedds._clayer import ddspy_take
    from cyclonedds.core import InstanceState, SampleState, ViewState
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from hmr_ros.transport.dds import dds_qos
    from hmr_ros.transport.idl import idl_struct

    with DdsTransport("hmr_humble", ros_distro="humble") as node:
        node.create_publisher("/a", "std_msgs/msg/Header")
        dp = DomainParticipant(dds_domain)
        topic = Topic(dp, "ros_discovery_info",
                      idl_struct("rmw_dds_common_humble/msg/ParticipantEntitiesInfo"))
        reader = DataReader(dp, topic, qos=dds_qos(QOS_TRANSIENT_LOCAL))
        end, parsed = time.monotonic() + 5, None
        while time.monotonic() < end and parsed is None:
            for data, info in ddspy_take(reader._ref, SampleState.Any | ViewState.Any |
                                         InstanceState.Any, 10):
                parsed = parse_participant_info(data)
            time.sleep(0.05)
        assert parsed and parsed["layout"] == "humble"
        assert parsed["nodes"][0]["name"] == "hmr_humble"
        assert parsed["nodes"][0]["writers"] == [node.publishers[0].gid]


def test_close_from_another_thread_while_spinning_and_publishing(dds_domain):
    import threading

    node = DdsTransport("hmr_threads")
    pub = node.create_publisher("/x", "std_msgs/msg/Header")
    node.create_subscription("/x", "std_msgs/msg/Header", lambda m: None)
    errors = []

    def spin():
        try:
            node.spin()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    def publish():
        msg = types.make("std_msgs/msg/Header")
        while not node.closed:
            try:
                pub.publish(msg)
            except TransportError:
                return  # closed under our feet: the documented error
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=spin), threading.Thread(target=publish)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    node.close()
    for t in threads:
        t.join(timeout=15)
    assert not any(t.is_alive() for t in threads) and errors == []
    node.spin_once(0.01)  # a no-op after close
    with pytest.raises(TransportError, match="closed"):
        node.create_publisher("/y", "std_msgs/msg/Header")


def test_close_from_a_callback_and_nested_spin(dds_domain):
    node = DdsTransport("hmr_self_close")
    calls = []

    def tick():
        calls.append(1)
        if len(calls) == 1:
            with pytest.raises(TransportError, match="inside a callback"):
                node.spin_once(0.01)
        if len(calls) == 2:
            node.close()  # from the spinning thread: must not wait for itself

    node.create_timer(0.01, tick)
    start = time.monotonic()
    node.spin()
    assert node.closed and len(calls) == 2 and time.monotonic() - start < 5


def test_endpoint_close_after_transport_close_is_harmless(dds_domain):
    node = DdsTransport("hmr_order")
    pub = node.create_publisher("/a", "std_msgs/msg/Header")
    sub = node.create_subscription("/a", "std_msgs/msg/Header", lambda m: None)
    node.close()
    pub.close()
    sub.close()
    with pytest.raises(TransportError, match="closed"):
        pub.publish(types.make("std_msgs/msg/Header"))


def test_a_real_rclpy_nodes_graph_sample_parses_and_reencodes_identically():
    """A ros_discovery_info sample captured from rclpy on rmw_cyclonedds (tests/data/README.md):
    our Jazzy layout reads it, and encodes the same content to the same bytes."""
    data = (ROOT / "tests" / "data" / "ros_discovery_info_rclpy_jazzy.bin").read_bytes()
    parsed = parse_participant_info(data)
    assert parsed["layout"] == "jazzy"
    (node,) = parsed["nodes"]
    assert (node["name"], node["namespace"]) == ("image_pub", "/")
    assert (len(node["readers"]), len(node["writers"])) == (7, 10)
    # every endpoint GID shares the participant's GUID prefix, as DDS GUIDs do
    assert all(g[:12] == parsed["gid"][:12] for g in node["readers"] + node["writers"])
    layout = ros_distro_layout("jazzy")
    ours = cdr.serialize(participant_info(layout, parsed["gid"], parsed["nodes"]),
                         layout.info_type, pad=True)
    assert ours == data[:len(ours)] and len(data) - len(ours) < 4
