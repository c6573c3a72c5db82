"""The live Foxglove view, checked from the outside: a real WebSocket client speaking the
Foxglove WebSocket protocol subscribes to the real foxglove-sdk server, receives what one
frame produced, and decodes it (protobuf from the advertised descriptors, CDR with the
project's decoder)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("foxglove")
websockets = pytest.importorskip("websockets")

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from hmr_ros.body import load_body_model
from hmr_ros.body.posing import pose_body
from hmr_ros.live.foxglove_view import (
    FRUSTUM_DEPTH_M,
    HUMAN_MESH_TYPE,
    TOPICS,
    FoxgloveView,
    frustum_segments,
)
from hmr_ros.runtime.results import FrameResult, Header, PersonResult
from hmr_ros.transport import cdr
from hmr_ros.viz.overlay import visibility_colors

LAYOUT = Path(__file__).resolve().parents[1] / "config" / "foxglove" / "hmr_live_layout.json"
#: the SDK speaks the renamed protocol; older servers the original name (same messages)
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
OP_MESSAGE_DATA = 0x01
WIDTH, HEIGHT = 320, 240
K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])


@pytest.fixture(scope="module")
def body():
    return load_body_model("procedural")


def _person(body, track_id, x_offset, seed):
    """A posed procedural body standing upright 3 m in front of the camera (OpenCV axes)."""
    rng = np.random.default_rng(seed)
    rotmats = np.tile(np.eye(3), (1, 24, 1, 1))
    rotmats[0, 0] = np.diag([1.0, -1.0, -1.0])  # model y-up -> camera y-down
    verts, joints = pose_body(body, np.zeros((1, 10)), rotmats)
    transl = np.array([x_offset, 0.0, 3.0])
    verts, joints = verts[0] + transl, joints[0] + transl
    uv = joints[:, :2] / joints[:, 2:] * 300.0 + np.array([160.0, 120.0])
    return PersonResult(
        track_id=track_id, bbox=np.r_[uv.min(0), uv.max(0)], score=0.9,
        rel_rotmats=rotmats[0], betas=np.zeros(10), transl=transl, vertices=verts,
        joints=joints, keypoints2d=uv, visibility=rng.uniform(0, 1, 24), hypothesis=0)


def _frame(persons, stamp_ns=1_500_000_000):
    return FrameResult(header=Header(stamp_ns=stamp_ns, frame_id="camera"),
                       persons=tuple(persons), intrinsics=K)


def _image():
    return np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _protobuf_class(channel):
    """The message class of an advertised protobuf channel, from its FileDescriptorSet."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    pending = list(fds.file)
    while pending:  # add each file once its dependencies are in the pool
        added = [f for f in pending if all(_has_file(pool, d) for d in f.dependency)]
        assert added, "advertised descriptors have unresolvable dependencies"
        for f in added:
            pool.Add(f)
        pending = [f for f in pending if f not in added]
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


def _has_file(pool, name):
    try:
        pool.FindFileByName(name)
        return True
    except KeyError:
        return False


class Client:
    """A minimal Foxglove WebSocket protocol client: advertise -> subscribe -> message data."""

    def __init__(self, ws):
        self.ws = ws
        self.channels = {}  # topic -> advertised channel
        self.by_subscription = {}  # subscription id -> topic

    @classmethod
    async def connect(cls, port, topics):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=SUBPROTOCOLS,
                                      proxy=None, max_size=None)
        client = cls(ws)
        while not all(t in client.channels for t in topics):
            msg = await asyncio.wait_for(ws.recv(), 5)
            if isinstance(msg, str):
                parsed = json.loads(msg)
                if parsed["op"] == "advertise":
                    client.channels.update({c["topic"]: c for c in parsed["channels"]})
        subs = [{"id": i + 10, "channelId": client.channels[t]["id"]} for i, t in enumerate(topics)]
        client.by_subscription = {s["id"]: t for s, t in zip(subs, topics)}
        await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
        return client

    async def next_message(self, timeout):
        """(topic, receive time ns, payload) of the next Message Data frame."""
        while True:
            msg = await asyncio.wait_for(self.ws.recv(), timeout)
            if isinstance(msg, bytes) and msg[0] == OP_MESSAGE_DATA:
                sub_id, log_time = struct.unpack_from("<IQ", msg, 1)
                return self.by_subscription[sub_id], log_time, msg[13:]


async def _receive_frame(view, frame, topics, timeout=10.0):
    """Publish ``frame`` until one message per topic arrived (a subscription takes effect a
    little after the subscribe op is sent); returns topic -> (log time, payload)."""
    client = await Client.connect(view.port, topics)
    got = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < len(topics):
        assert loop.time() < deadline, f"only {sorted(got)} of {topics} arrived"
        view.publish(_image(), frame, K, frame.header.stamp_ns)
        try:
            while len(got) < len(topics):
                topic, log_time, payload = await client.next_message(0.2)
                got.setdefault(topic, (log_time, payload))
        except TimeoutError:
            pass
    return client, got


def _person_entities(scene):
    return [e for e in scene.entities if e.id != "camera_frustum"]


def test_scene_and_human_mesh_reach_a_websocket_client(body):
    persons = [_person(body, 3, -0.4, 1), _person(body, -1, 0.5, 2)]
    frame = _frame(persons)
    with FoxgloveView(port=0, faces=body.faces, vertex_part=body.part,
                      body_model=body.name) as view:
        assert view.port > 0

        async def run():
            client, got = await _receive_frame(view, frame, [TOPICS["scene"], TOPICS["human_mesh"]])
            await client.ws.close()
            return client, got

        client, got = asyncio.run(run())

    scene_cls = _protobuf_class(client.channels[TOPICS["scene"]])
    log_time, payload = got[TOPICS["scene"]]
    assert log_time == frame.header.stamp_ns
    scene = scene_cls.FromString(payload)
    entities = _person_entities(scene)
    assert len(entities) == len(persons)
    assert sorted(e.id for e in entities) == ["person_3", "tentative_0"]
    for entity, person in zip(entities, persons):
        assert entity.frame_id == "camera"
        (mesh,) = entity.triangles
        assert len(mesh.indices) // 3 == len(body.faces)
        np.testing.assert_array_equal(np.array(mesh.indices).reshape(-1, 3), body.faces)
        pts = np.array([[p.x, p.y, p.z] for p in mesh.points])
        np.testing.assert_allclose(pts, person.vertices, atol=1e-9)
        rgb = np.array([[c.r, c.g, c.b] for c in mesh.colors])
        np.testing.assert_allclose(rgb, visibility_colors(person.visibility)[body.part],
                                   atol=1e-6)
        assert len(entity.spheres) == 24
        assert len(entity.lines[0].indices) == 2 * 23  # one segment per non-root joint
    (frustum,) = [e for e in scene.entities if e.id == "camera_frustum"]
    ends = np.array([[p.x, p.y, p.z] for p in frustum.lines[0].points])
    np.testing.assert_allclose(ends, frustum_segments(K, WIDTH, HEIGHT, FRUSTUM_DEPTH_M))
    assert np.isclose(ends[:, 2].max(), FRUSTUM_DEPTH_M)

    advertised = client.channels[TOPICS["human_mesh"]]
    assert advertised["encoding"] == "cdr" and advertised["schemaEncoding"] == "ros2msg"
    assert advertised["schemaName"] == HUMAN_MESH_TYPE
    assert "hmr_ros/HumanMesh[] humans" in advertised["schema"]
    mesh_msg = cdr.deserialize(got[TOPICS["human_mesh"]][1], HUMAN_MESH_TYPE)
    assert len(mesh_msg.humans) == len(persons)
    for human, person in zip(mesh_msg.humans, persons):
        assert human.num_vertices == body.num_vertices
        assert len(human.vertices) == 3 * body.num_vertices
        np.testing.assert_allclose(np.reshape(human.vertices, (-1, 3)), person.vertices,
                                   atol=1e-5)
        assert human.body_model == body.name
    assert mesh_msg.header.stamp.sec == 1 and mesh_msg.header.stamp.nanosec == 500_000_000


def test_image_calibration_and_transform(body):
    topics = [TOPICS["image"], TOPICS["calibration"], TOPICS["tf"]]
    with FoxgloveView(port=0, faces=body.faces, vertex_part=body.part) as view:
        async def run():
            client, got = await _receive_frame(view, _frame([_person(body, 0, 0, 3)]), topics)
            await client.ws.close()
            return client, got

        client, got = asyncio.run(run())
    image = _protobuf_class(client.channels[TOPICS["image"]]).FromString(got[TOPICS["image"]][1])
    assert image.format == "jpeg" and image.frame_id == "camera"
    import cv2

    decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (HEIGHT, WIDTH, 3)
    calib = _protobuf_class(client.channels[TOPICS["calibration"]]).FromString(
        got[TOPICS["calibration"]][1])
    assert (calib.width, calib.height, calib.frame_id) == (WIDTH, HEIGHT, "camera")
    np.testing.assert_allclose(np.reshape(calib.K, (3, 3)), K)
    tf = _protobuf_class(client.channels[TOPICS["tf"]]).FromString(got[TOPICS["tf"]][1])
    assert (tf.parent_frame_id, tf.child_frame_id) == ("world", "camera")
    # the camera looks along the world's +x, its "down" (y) is the world's -z: people upright
    q = np.array([tf.rotation.w, tf.rotation.x, tf.rotation.y, tf.rotation.z])
    w, x, y, z = q / np.linalg.norm(q)
    world_from_camera = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(world_from_camera @ [0, 0, 1], [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(world_from_camera @ [0, 1, 0], [0, 0, -1], atol=1e-9)


def test_empty_frame_deletes_the_persons_and_nan_mesh_is_skipped(body, caplog):
    good, broken = _person(body, 7, 0.0, 4), _person(body, 8, 0.6, 5)
    broken.vertices[10] = np.nan
    with FoxgloveView(port=0, faces=body.faces, vertex_part=body.part) as view:
        async def run():
            client, got = await _receive_frame(view, _frame([good, broken]),
                                               [TOPICS["scene"], TOPICS["human_mesh"]])
            view.publish(_image(), _frame([], 2_000_000_000), K, 2_000_000_000)
            later = {}
            while len(later) < 2:  # skip repeats of the first frame still in flight
                topic, log_time, payload = await client.next_message(5)
                if log_time == 2_000_000_000:
                    later[topic] = payload
            await client.ws.close()
            return client, got, later

        with caplog.at_level(logging.WARNING, logger="hmr_ros.live.foxglove_view"):
            client, got, later = asyncio.run(run())
    scene_cls = _protobuf_class(client.channels[TOPICS["scene"]])
    first = scene_cls.FromString(got[TOPICS["scene"]][1])
    assert [e.id for e in _person_entities(first)] == ["person_7"]
    assert any("person_8" in r.getMessage() and "not finite" in r.getMessage()
               for r in caplog.records)
    # the raw output is the node's, NaN and all: both persons are there
    assert len(cdr.deserialize(got[TOPICS["human_mesh"]][1], HUMAN_MESH_TYPE).humans) == 2

    empty = scene_cls.FromString(later[TOPICS["scene"]])
    assert _person_entities(empty) == []
    assert [d.id for d in empty.deletions] == ["person_7"]
    assert len(cdr.deserialize(later[TOPICS["human_mesh"]], HUMAN_MESH_TYPE).humans) == 0


def _listening_addresses(port):
    """Local addresses of IPv4/IPv6 sockets listening on ``port`` (Linux /proc/net)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.append(address)
    return found


def test_binds_loopback_by_default_and_close_stops_the_server(body):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp to read the bound address")
    view = FoxgloveView(port=0, faces=body.faces, vertex_part=body.part)
    other = FoxgloveView(port=0, faces=body.faces, vertex_part=body.part)
    try:
        assert view.port != other.port
        assert _listening_addresses(view.port) == ["0100007F"]  # 127.0.0.1, nothing else
        with pytest.raises(RuntimeError, match="cannot start the Foxglove server"):
            FoxgloveView(port=view.port, faces=body.faces, vertex_part=body.part)
    finally:
        other.close()
    view.close()
    view.close()  # idempotent

    async def connect():
        await websockets.connect(f"ws://127.0.0.1:{view.port}", subprotocols=SUBPROTOCOLS,
                                 proxy=None, open_timeout=2)

    with pytest.raises(OSError):
        asyncio.run(connect())
    with pytest.raises(RuntimeError, match="after close"):
        view.publish(_image(), _frame([]), K, 0)


def test_bad_input_is_refused(body):
    with pytest.raises(ValueError, match="faces"):
        FoxgloveView(port=0, faces=body.faces[:, :2], vertex_part=body.part)
    with FoxgloveView(port=0, faces=body.faces, vertex_part=body.part) as view:
        with pytest.raises(ValueError, match="3x3"):
            view.publish(_image(), _frame([]), K[:2], 0)
        with pytest.raises(ValueError, match="uint8"):
            view.publish(_image().astype(np.float32), _frame([]), K, 0)


def test_missing_sdk_names_the_extra(body, monkeypatch):
    monkeypatch.setitem(sys.modules, "foxglove", None)  # what an uninstalled package looks like
    with pytest.raises(RuntimeError, match=r"pip install 'hmr_ros\[live\]'"):
        FoxgloveView(port=0, faces=body.faces, vertex_part=body.part)


def test_saved_layout_shows_the_published_topics():
    layout = json.loads(LAYOUT.read_text())
    panels = layout["configById"]

    def leaves(node):
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(layout["layout"])) == sorted(panels)
    by_kind = {key.split("!")[0]: cfg for key, cfg in panels.items()}
    assert set(by_kind) == {"3D", "Image", "RawMessages"}
    assert by_kind["3D"]["topics"][TOPICS["scene"]]["visible"] is True
    assert by_kind["3D"]["followTf"] == "world"
    assert by_kind["Image"]["imageMode"] == {"imageTopic": TOPICS["image"],
                                             "calibrationTopic": TOPICS["calibration"]}
    assert by_kind["Image"]["topics"][TOPICS["scene"]]["visible"] is True
    assert by_kind["RawMessages"]["topicPath"] == TOPICS["human_mesh"]
    named = {t for cfg in panels.values() for t in cfg.get("topics", {})}
    assert named <= set(TOPICS.values()), f"layout names topics the view never publishes: {named}"
