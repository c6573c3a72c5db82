"""The node: three processes on loopback DDS (publisher -> node -> reader), bad input on the
wire and in parameters, and the newest-frame policy under a flood."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hmr_ros.bag import BagReader
from hmr_ros.bag.sample import SAMPLE_TOPICS, make_sample_bag
from hmr_ros.export import export_vishmr
from hmr_ros.node import HmrNode, ParameterError, declare
from hmr_ros.node.node import FrameSlot
from hmr_ros.transport import QOS_SENSOR_DATA, QOS_TRANSIENT_LOCAL, QoSProfile, types
from hmr_ros.transport.dds import DdsTransport
from hmr_ros.transport.images import rgb_to_image
from tiny_vishmr import tiny_vishmr

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_node_model")
    export_vishmr(tiny_vishmr(), out)
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample_bag(tmp_path_factory.mktemp("node_sample") / "bag", seconds=1.5, fps=10,
                           people=2, size=160, seed=5)


def _spin_until(node, cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        node.spin_once(0.05)
    return cond()


def test_publisher_node_reader_in_three_processes(tmp_path, model_dir, sample, dds_domain):
    with BagReader(sample) as bag:
        inputs = [m.decode() for m in bag.messages([SAMPLE_TOPICS["image"][0]])]
        # the people the node must process: the boxes the pipeline's selection keeps
        from hmr_ros.runtime import Box, PipelineParams, select_boxes

        pp, dets = PipelineParams(), {}
        for m in bag.messages([SAMPLE_TOPICS["detections"][0]]):
            d = m.decode()
            boxes = [Box(x.bbox.center.position.x - x.bbox.size_x / 2,
                         x.bbox.center.position.y - x.bbox.size_y / 2,
                         x.bbox.center.position.x + x.bbox.size_x / 2,
                         x.bbox.center.position.y + x.bbox.size_y / 2, 1.0)
                     for x in d.detections]
            dets[(d.header.stamp.sec, d.header.stamp.nanosec)] = len(select_boxes(
                boxes, 160, 160, pp.score_threshold, pp.min_box_size, pp.max_persons, []))
    in_headers = {(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id): m
                  for m in inputs}
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "hmr_ros.cli", "node", "--loopback", "--duration", "60",
         "-p", f"model_dir:={model_dir}", "-p", "image_topic:=/camera/image_raw",
         "-p", "camera_info_topic:=/camera/camera_info",
         "-p", "detections_topic:=/ground_truth/detections", "-p", "track_min_hits:=1",
         "-p", "diagnostics_period:=0.5", "-p", "person_detector:=none"],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got = {k: [] for k in ("mesh", "vis", "tracked", "tf", "markers", "overlay", "diag")}
    try:
        with DdsTransport("hmr_test_reader") as reader:
            subs = [("mesh", "/human_mesh", "hmr_ros/msg/HumanMeshArray"),
                    ("vis", "/human_mesh/visibility", "hmr_ros/msg/BodyPartVisibility"),
                    ("tracked", "/humans/bodies/tracked", "hri_msgs/msg/IdsList"),
                    ("tf", "/tf", "tf2_msgs/msg/TFMessage"),
                    ("markers", "/human_mesh/markers", "visualization_msgs/msg/MarkerArray"),
                    ("overlay", "/human_mesh/overlay", "sensor_msgs/msg/Image"),
                    ("diag", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")]
            for key, topic, type_name in subs:
                reader.create_subscription(topic, type_name, got[key].append,
                                           QoSProfile(depth=100))
            # wait for the node's outputs to be there, then play the bag into it
            assert _spin_until(reader, lambda: got["diag"], 60), node_proc.stderr.read()
            player = subprocess.run(
                [sys.executable, "-m", "hmr_ros.cli", "play", str(sample), "--loopback",
                 "--topics", SAMPLE_TOPICS["image"][0], SAMPLE_TOPICS["camera_info"][0],
                 SAMPLE_TOPICS["detections"][0], "--wait-for-subscribers", "10"],
                cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
            assert player.returncode == 0, player.stderr
            assert _spin_until(reader, lambda: len(got["mesh"]) >= 5 and got["overlay"], 30)
            _spin_until(reader, lambda: False, 1.0)
            # faces: a late joiner still gets them (transient local)
            faces = []
            reader.create_subscription("/human_mesh/faces", "hmr_ros/msg/MeshFaces",
                                       faces.append, QOS_TRANSIENT_LOCAL)
            assert _spin_until(reader, lambda: faces, 10)
    finally:
        node_proc.terminate()
        out, err = node_proc.communicate(timeout=60)
    assert node_proc.returncode == 0, err
    assert "frames received" in out
    assert faces[0].num_vertices == 5424 and len(faces[0].triangles) % 3 == 0
    # every output carries an input's header, and holds the people of that frame
    for msg in got["mesh"]:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
        assert key in in_headers
        assert len(msg.humans) == dets[key[:2]] == len(msg.visibility)
        for h in msg.humans:
            assert h.header == msg.header and len(h.vertices) == 3 * 5424
            assert len(h.joint_rotations) == 96 and not h.focal_length_assumed
            assert np.isfinite(h.vertices).all()
    with_people = [m for m in got["mesh"] if m.humans]
    assert with_people
    ids = {h.body_id for m in got["mesh"] for h in m.humans}
    assert ids and all(len(i) == 5 for i in ids)
    for msg in got["tracked"]:
        assert set(msg.ids) <= ids
    for v in got["vis"]:
        assert (v.header.stamp.sec, v.header.stamp.nanosec, v.header.frame_id) in in_headers
    # TF: body_<id> hangs off the image's frame; every other frame off one of them
    children = {t.child_frame_id: t.header.frame_id for m in got["tf"] for t in m.transforms}
    image_frame = inputs[0].header.frame_id
    for child, parent in children.items():
        seen = set()
        while parent != image_frame:
            assert parent in children and parent not in seen, (child, parent)
            seen.add(parent)
            parent = children[parent]
    assert any(c.startswith("body_") for c in children)
    overlay = got["overlay"][-1]
    assert (overlay.width, overlay.height) == (inputs[0].width, inputs[0].height)
    mesh_markers = [mk for m in got["markers"] for mk in m.markers if mk.ns == "hmr_ros/mesh"]
    assert mesh_markers and len(mesh_markers[0].points) == 3 * 10752
    keys = {kv.key: kv.value for kv in got["diag"][-1].status[0].values}
    assert int(keys["frames_processed"]) >= len(got["mesh"]) - 1
    assert "latency_ms stage_a p50" in keys


# -- in one process: bad input through the wire, parameters ----------------------------------------

def _node(model_dir, **params):
    transport = DdsTransport("hmr_node_under_test", parameters={
        "model_dir": str(model_dir), "image_topic": "/img", "camera_info_topic": "/info",
        "track_min_hits": 1, "person_detector": "none", **params})
    node = HmrNode(transport, declare(transport))
    node.configure()
    node.activate()
    return transport, node


def _image(h=48, w=64, seed=0, frame="cam", stamp=1):
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    header = types.make("std_msgs/msg/Header", frame_id=frame,
                        stamp=types.make("builtin_interfaces/msg/Time", sec=stamp))
    return rgb_to_image(rgb, header)


def test_bad_input_on_the_wire_is_logged_and_skipped(model_dir, dds_domain, caplog):
    transport, node = _node(model_dir)
    spinner = threading.Thread(target=transport.spin)
    spinner.start()
    try:
        with DdsTransport("hmr_bad_publisher") as pub_node:
            img_pub = pub_node.create_publisher("/img", "sensor_msgs/msg/Image", QOS_SENSOR_DATA)
            info_pub = pub_node.create_publisher("/info", "sensor_msgs/msg/CameraInfo",
                                                 QOS_SENSOR_DATA)
            end = time.monotonic() + 10
            while img_pub.subscription_count() == 0 and time.monotonic() < end:
                time.sleep(0.05)
            bad = []
            m = _image(stamp=101)
            m.encoding = "16UC1"
            bad.append(m)
            m = _image(stamp=102)
            m.step = 7
            bad.append(m)
            bad.append(types.make("sensor_msgs/msg/Image", encoding="rgb8", header=_image(
                stamp=103).header))
            with caplog.at_level(logging.WARNING):
                for m in bad:
                    img_pub.publish(m)
                    time.sleep(0.3)  # one at a time: the node keeps the newest frame only
                # camera_info with NaN K, then zero K: processed with an assumed focal length
                for k in (np.full(9, np.nan), np.zeros(9)):
                    info_pub.publish(types.make("sensor_msgs/msg/CameraInfo", k=k, width=64,
                                                height=48, header=_image().header))
                    time.sleep(0.2)
                    img_pub.publish(_image(stamp=104))
                    time.sleep(0.5)
                end = time.monotonic() + 10
                while node.stats.snapshot()["processed"] < 2 and time.monotonic() < end:
                    time.sleep(0.05)
        snap = node.stats.snapshot()
        assert sum(snap["skipped"].values()) == 3 and snap["processed"] == 2
        for stamp in ("101000000000", "102000000000", "103000000000"):
            assert f"frame {stamp}" in caplog.text  # every skip is logged with the stamp
        assert "16UC1" in caplog.text and "step 7" in caplog.text and "empty image" in caplog.text
    finally:
        transport.close()
        spinner.join(timeout=10)
    node.shutdown()


def test_detections_with_nan_or_outside_boxes_are_dropped(model_dir, dds_domain, caplog):
    transport, node = _node(model_dir, detections_topic="/dets", detection_classes="person")
    try:
        def det(cx, cy, w, h, cls="person"):
            hyp = types.make("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=types.make(
                "vision_msgs/msg/ObjectHypothesis", class_id=cls, score=0.9))
            return types.make("vision_msgs/msg/Detection2D", results=[hyp], bbox=types.make(
                "vision_msgs/msg/BoundingBox2D", center=types.make(
                    "vision_msgs/msg/Pose2D", position=types.make(
                        "vision_msgs/msg/Point2D", x=cx, y=cy)), size_x=w, size_y=h))

        img = _image(stamp=7)
        node._on_detections(types.make("vision_msgs/msg/Detection2DArray", header=img.header,
                                       detections=[det(np.nan, 10, 20, 20), det(500, 500, 30, 30),
                                                   det(30, 24, 30, 40), det(30, 24, 30, 40, "cat"),
                                                   det(20, 20, -5, 10)]))
        with caplog.at_level(logging.WARNING):
            result = node.process(img, time.monotonic())
        assert result.skipped is None and len(result.persons) == 1  # only the good person box
        assert "non-finite or empty box" in caplog.text
    finally:
        node.shutdown()
        transport.close()


def test_a_flood_drops_frames_keeps_latency_bounded_and_memory_flat(model_dir, dds_domain):
    import resource  # noqa: F401 - Linux only, like the node's targets

    def rss_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    transport, node = _node(model_dir, publish_markers=False, publish_overlay=False)
    spinner = threading.Thread(target=transport.spin)
    spinner.start()
    try:
        with DdsTransport("hmr_flooder") as pub_node:
            pub = pub_node.create_publisher("/img", "sensor_msgs/msg/Image", QOS_SENSOR_DATA)
            end = time.monotonic() + 10
            while pub.subscription_count() == 0 and time.monotonic() < end:
                time.sleep(0.05)
            frames = [_image(seed=i % 4, stamp=1000 + i) for i in range(4)]
            rss = []
            for rnd in range(3):
                for i in range(700):
                    msg = frames[i % 4]
                    msg.header.stamp.sec = 1000 + rnd * 1000 + i
                    pub.publish(msg)
                    if i % 50 == 0:
                        time.sleep(0.01)
                time.sleep(1.0)
                rss.append(rss_kb())
        snap = node.stats.snapshot()
        # best effort over loopback: DDS itself sheds part of a flood; of what arrives, frames
        # that come while the worker is busy are dropped (and counted), never queued
        assert snap["received"] > 100 and snap["dropped"] > 0.3 * snap["received"], snap
        assert snap["processed"] + snap["dropped"] <= snap["received"]
        age_p95 = snap["latency_ms"]["age"][1]
        assert age_p95 < 2000, age_p95  # a processed frame is never old: no queue builds up
        assert rss[2] - rss[1] < 50_000, rss  # kB: flat once warm
    finally:
        transport.close()
        spinner.join(timeout=10)
    node.shutdown()


def test_frame_slot_keeps_only_the_newest():
    slot = FrameSlot()
    assert slot.put(1) is False and slot.put(2) is True
    assert slot.take(0.01) == 2 and slot.take(0.01) is None


@pytest.mark.parametrize("params, text", [
    ({"max_persons": 0}, "'max_persons'"),
    ({"merge_mode": "best"}, "'merge_mode'"),
    ({"backend": "cuda"}, "'backend'"),
    ({"score_threshold": 2.0}, "'score_threshold'"),
    ({"input_qos": "fastest"}, "'input_qos'"),
    ({"body_model": "/nope/SMPL.npz"}, "'body_model'"),
    ({"max_persns": 3}, "unknown parameter"),
    ({"track": "maybe"}, "'track'"),
])
def test_bad_parameters_are_refused_naming_the_parameter(model_dir, params, text, dds_domain):
    with DdsTransport("hmr_param_test",
                      parameters={"model_dir": str(model_dir), **params}) as transport:
        with pytest.raises(ParameterError, match=text):
            declare(transport)


def test_missing_model_is_refused_at_start(tmp_path, dds_domain):
    with DdsTransport("hmr_param_model",
                      parameters={"model_dir": str(tmp_path)}) as transport:
        with pytest.raises(ParameterError, match="model_dir.*manifest.json"):
            declare(transport)


def test_node_cli_reports_bad_parameters(tmp_path, capsys, dds_domain):
    from hmr_ros.cli import main

    params = tmp_path / "hmr.yaml"
    params.write_text("hmr_node:\n  ros__parameters:\n    max_persons: 0\n")
    assert main(["node", "--loopback", "--params", str(params)]) == 1
    assert "max_persons" in capsys.readouterr().err


def test_ros_arguments_of_ros2_run_and_launch(tmp_path):
    from hmr_ros.node.ros_args import split_ros_args

    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_persons: 3\n"
                      "cam_node:\n  ros__parameters:\n    max_persons: 2\n    smooth: true\n")
    plain, ros = split_ros_args(["--transport", "dds", "--ros-args", "-r", "__node:=cam_node",
                                 "-r", "__ns:=/robot", "-r", "image:=/camera/image_raw",
                                 "-r", "other_node:camera_info:=/x", "--params-file",
                                 str(params), "-p", "score_threshold:=0.3",
                                 "--log-level", "debug", "--", "--extra"])
    assert plain == ["--transport", "dds", "--extra"]
    assert (ros.node_name, ros.namespace) == ("cam_node", "/robot")
    assert ros.remaps == {"image": "/camera/image_raw"}  # other_node's rule is not ours
    assert ros.parameters_for("cam_node") == {"max_persons": 2, "smooth": True,
                                              "score_threshold": 0.3}
    assert ros.log_level == "debug"
    with pytest.raises(ValueError, match="from:=to"):
        split_ros_args(["--ros-args", "-r", "image"])


def test_remapped_topics_on_the_built_in_transport(dds_domain):
    with DdsTransport("remapped", "/robot", remaps={"image": "/camera/image_raw"}) as node:
        sub = node.create_subscription("image", "sensor_msgs/msg/Image", lambda m: None)
        pub = node.create_publisher("out", "std_msgs/msg/Header")
        assert sub.topic == "/camera/image_raw" and pub.topic == "/robot/out"


def test_missing_detections_mean_nobody_and_are_counted(model_dir, dds_domain):
    transport, node = _node(model_dir, detections_topic="/dets")
    try:
        result = node.process(_image(stamp=9), time.monotonic())
        assert result.persons == ()  # not a whole-frame phantom person
        snap = node.stats.snapshot()
        assert any(k.startswith("no detections") for k in snap["skipped"])
        assert "detections_wait" in snap["latency_ms"]
    finally:
        node.shutdown()
        transport.close()


def test_absurd_camera_matrices_fall_back_to_the_assumed_focal_length(model_dir, dds_domain):
    transport, node = _node(model_dir)
    try:
        for k in ([1e308, 0, 32, 0, 1e308, 24, 0, 0, 1], [1e-300, 0, 32, 0, 1e-300, 24, 0, 0, 1],
                  [100, 0, 1e300, 0, 100, 24, 0, 0, 1]):
            img = _image(stamp=11)
            node._on_camera_info(types.make("sensor_msgs/msg/CameraInfo", k=np.array(k, float),
                                            header=img.header))
            result = node.process(img, time.monotonic())
            assert result.assumed_intrinsics and len(result.persons) == 1
            assert np.isfinite(result.persons[0].vertices).all()
    finally:
        node.shutdown()
        transport.close()


def test_published_tf_chain_reproduces_the_joints(model_dir):
    """Chaining body_<id> and the joint frames from the image frame gives back the joints."""
    from hmr_ros.body import procedural_body
    from hmr_ros.kernels import quaternion_to_matrix
    from hmr_ros.node import outputs
    from hmr_ros.runtime import Box, FramePipeline, OrtVisHMR, PipelineParams

    pipe = FramePipeline(OrtVisHMR(model_dir, procedural_body()), PipelineParams(track=False))
    result = pipe.process(_image(h=96, w=128, seed=3).data.reshape(96, 128, 3),
                          boxes=[Box(10, 5, 90, 90)])
    header = outputs.header_message(5, "cam")
    tf = outputs.tf_message(result, header, [("abcde", True)])
    pose = {"cam": (np.eye(3), np.zeros(3))}
    for t in tf.transforms:  # parents come before children
        R0, p0 = pose[t.header.frame_id]
        q = t.transform.rotation
        R = np.asarray(quaternion_to_matrix(np.array([[q.w, q.x, q.y, q.z]], np.float32)))[0]
        v = t.transform.translation
        pose[t.child_frame_id] = (R0 @ R, p0 + R0 @ np.array([v.x, v.y, v.z]))
    joints = result.persons[0].joints
    for i, name in enumerate(outputs.SMPL_JOINTS):
        np.testing.assert_allclose(pose[f"{name}_abcde"][1], joints[i], atol=1e-4)


def test_parameter_files_of_namespaced_launches(tmp_path):
    from hmr_ros.node import read_params_yaml

    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    max_persons: 3\n    smooth: true\n"
                    "/robot/hmr_node:\n  ros__parameters:\n    max_persons: 2\n"
                    "other:\n  ros__parameters:\n    max_persons: 9\n")
    assert read_params_yaml(path, "hmr_node") == {"max_persons": 2, "smooth": True}


def test_lifecycle_services_on_the_built_in_transport(model_dir, dds_domain):
    """A client sends rmw_cyclonedds-style requests (16-byte header + CDR) to the node's
    lifecycle services and gets the echoed header back with the answer."""
    import struct

    from cyclonedds._clayer import ddspy_take, ddspy_write
    from cyclonedds.core import InstanceState, SampleState, ViewState
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from hmr_ros.node.lifecycle import LifecycleServer
    from hmr_ros.transport import cdr
    from hmr_ros.transport.dds import dds_qos
    from hmr_ros.transport.idl import service_idl_struct

    transport = DdsTransport("hmr_managed", parameters={"model_dir": str(model_dir),
                                                        "person_detector": "none"})
    node = HmrNode(transport, declare(transport))
    server = LifecycleServer(transport, node, {"configure": node.configure,
                                               "activate": node.activate,
                                               "deactivate": node.deactivate,
                                               "cleanup": node.cleanup,
                                               "shutdown": node.shutdown})
    mask = SampleState.Any | ViewState.Any | InstanceState.Any
    with DdsTransport("hmr_lifecycle_client") as client:
        dp = client.participant

        def call(service, srv, request, seq):
            w = DataWriter(dp, Topic(dp, f"rq/hmr_managed/{service}Request",
                                     service_idl_struct(f"lifecycle_msgs_srv/msg/{srv}_Request")),
                           qos=dds_qos(QoSProfile()))
            r = DataReader(dp, Topic(dp, f"rr/hmr_managed/{service}Reply",
                                     service_idl_struct(f"lifecycle_msgs_srv/msg/{srv}_Response")),
                           qos=dds_qos(QoSProfile()))
            end = time.monotonic() + 10
            while not w.get_matched_subscriptions() and time.monotonic() < end:
                transport.spin_once(0.02)
            header = struct.pack("<Qq", 0xABCDEF, seq)
            body = cdr.serialize(request, f"lifecycle_msgs_srv/msg/{srv}_Request")[4:]
            data = cdr.HEADER_LE + header + body
            ddspy_write(w._ref, data + b"\0" * (-len(data) % 4))
            while time.monotonic() < end:
                transport.spin_once(0.02)
                got = ddspy_take(r._ref, mask, 10)
                for reply, info in ([] if isinstance(got, int) else got):
                    if info.valid_data:
                        assert bytes(reply[4:20]) == header  # the client's id, echoed
                        return cdr.deserialize(cdr.HEADER_LE + bytes(reply[20:]),
                                               f"lifecycle_msgs_srv/msg/{srv}_Response")
            raise AssertionError(f"no reply from {service}")

        empty = types.make("lifecycle_msgs_srv/msg/GetState_Request")
        assert call("get_state", "GetState", empty, 1).current_state.label == "unconfigured"
        labels = [t.transition.label for t in call(
            "get_available_transitions", "GetAvailableTransitions",
            types.make("lifecycle_msgs_srv/msg/GetAvailableTransitions_Request"),
            2).available_transitions]
        assert labels == ["configure", "shutdown"]
        configure = types.make("lifecycle_msgs_srv/msg/ChangeState_Request",
                               transition=types.make("lifecycle_msgs/msg/Transition", id=1))
        assert call("change_state", "ChangeState", configure, 3).success
        assert node.state == "inactive"
        activate = types.make("lifecycle_msgs_srv/msg/ChangeState_Request",
                              transition=types.make("lifecycle_msgs/msg/Transition",
                                                    label="activate"))
        assert call("change_state", "ChangeState", activate, 4).success
        assert call("get_state", "GetState", empty, 5).current_state.label == "active"
        assert not call("change_state", "ChangeState", configure, 6).success  # not from active
    assert server.available_transition_labels() == ["deactivate", "shutdown"]
    node.shutdown()
    transport.close()
