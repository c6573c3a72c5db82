"""Where ``hmr-ros live`` sends a frame's inputs and outputs: an MCAP recording and/or the
built-in ROS 2 transport, with the node's topics and the node's own message converters
(`hmr_ros.node.outputs`), so a recording replays into ``hmr-ros eval`` / Foxglove and a
subscriber cannot tell the demo from the node.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from hmr_ros.node import outputs
from hmr_ros.transport import QOS_DEFAULT, QOS_TRANSIENT_LOCAL, QoSProfile

from .sources import CapturedFrame

__all__ = ["LiveTopics", "frame_messages", "BagRecorder", "RosPublisher", "IMAGE_TOPIC",
           "COMPRESSED_TOPIC", "CAMERA_INFO_TOPIC"]

log = logging.getLogger("hmr_ros.live")

#: the topics ``hmr-ros eval`` looks for by default
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
Message = Tuple[str, str, Any]  # (topic, type name, message)


class LiveTopics:
    """Tracker ids -> REP-155 body ids across frames, as the node keeps them (`BodyIds`)."""

    def __init__(self, body: Any, pipeline: Any) -> None:
        self.body = body
        self.pipeline = pipeline
        self.ids = outputs.BodyIds()

    def ids_and_messages(self, result: Any, header: Any, width: int, height: int,
                         build: bool = True
                         ) -> Tuple[List[Tuple[str, bool]], List[Message], List[str]]:
        """((body id, new) per person, output messages (only with ``build``: nobody needs
        them without a recording or publishing), body ids whose track ended)."""
        track_ids = [p.track_id for p in result.persons]
        ids = [self.ids.get(tid) for tid in track_ids]
        tracker = getattr(self.pipeline, "tracker", None)
        ended = self.ids.forget_except(tracker.active_ids() if tracker is not None else
                                       [t for t in track_ids if t >= 0])
        messages = frame_messages(result, header, ids, self.body, width, height) if build else []
        return ids, messages, [bid for _, bid in ended]


def frame_messages(result: Any, header: Any, ids: List[Tuple[str, bool]], body: Any, width: int,
                   height: int) -> List[Message]:
    """The node's output messages of one frame: /human_mesh, /human_mesh/visibility, REP-155
    (/humans/bodies/tracked and per body roi, skeleton2d, joint_states) and /tf."""
    mesh, visibility = outputs.human_mesh_array(result, header, ids, body.name,
                                                body.num_vertices, width, height)
    out: List[Message] = [("/human_mesh", "hmr_ros/msg/HumanMeshArray", mesh)]
    out += [("/human_mesh/visibility", "hmr_ros/msg/BodyPartVisibility", v) for v in visibility]
    tracked, per_body = outputs.rep155_messages(result, header, ids, width, height)
    out.append(("/humans/bodies/tracked", "hri_msgs/msg/IdsList", tracked))
    kinds = {"roi": "hri_msgs/msg/NormalizedRegionOfInterest2D",
             "skeleton2d": "hri_msgs/msg/Skeleton2D", "joint_states": "sensor_msgs/msg/JointState"}
    for bid, msgs in per_body.items():
        out += [(f"/humans/bodies/{bid}/{key}", kinds[key], m) for key, m in msgs.items()]
    if header.frame_id:
        tf = outputs.tf_message(result, header, ids)
        if tf.transforms:
            out.append(("/tf", "tf2_msgs/msg/TFMessage", tf))
    return out


def input_messages(frame: CapturedFrame, header: Any, K: Optional[np.ndarray],
                   decode: bool) -> List[Message]:
    """The frame's image (the bag's message as received, else an rgb8 Image) and its
    camera_info (the bag's, else one from the K the pipeline was given; none when assumed).
    ``decode``: message objects, not the bag's CDR bytes (a transport publishes objects)."""
    from hmr_ros.bag.sample import camera_info_message
    from hmr_ros.transport import cdr
    from hmr_ros.transport.images import rgb_to_image

    out: List[Message] = []
    if frame.message is not None:
        topic = COMPRESSED_TOPIC if frame.message_type.endswith("CompressedImage") else IMAGE_TOPIC
        msg = cdr.deserialize(frame.message, frame.message_type) if decode else frame.message
        out.append((topic, frame.message_type, msg))
    else:
        out.append((IMAGE_TOPIC, "sensor_msgs/msg/Image", rgb_to_image(frame.rgb, header)))
    if frame.camera_info is not None:
        out.append((CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", frame.camera_info))
    elif K is not None:
        h, w = frame.rgb.shape[:2]
        out.append((CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo",
                    camera_info_message(K, w, h, header)))
    return out


class BagRecorder:
    """``--record out.mcap``: inputs and outputs of every processed frame, stamped with the
    frame's stamp; the mesh faces once (transient local, replayed latched)."""

    def __init__(self, path: Any, body: Any) -> None:
        from hmr_ros.bag.writer import BagWriter

        self.path = path
        self.body = body
        self.writer = BagWriter(path, storage="mcap")
        self.writer.open()
        self.frames = 0

    def write(self, stamp_ns: int, messages: List[Message]) -> None:
        if self.frames == 0:
            from hmr_ros.transport.mesh_faces import mesh_faces_message

            header = outputs.header_message(stamp_ns, "")
            self._write("/human_mesh/faces", "hmr_ros/msg/MeshFaces", stamp_ns,
                        mesh_faces_message(self.body.name, self.body.faces, self.body.part,
                                           header), QOS_TRANSIENT_LOCAL)
        for topic, type_name, msg in messages:
            self._write(topic, type_name, stamp_ns, msg)
        self.frames += 1

    def _write(self, topic: str, type_name: str, stamp_ns: int, msg: Any,
               qos: QoSProfile = QOS_DEFAULT) -> None:
        self.writer.add_topic(topic, type_name, qos)
        self.writer.write(topic, stamp_ns, msg)

    def close(self) -> None:
        self.writer.close()


class RosPublisher:
    """``--publish``: the same messages on the built-in ROS 2 transport (publishers made on
    first use; a body's topics closed when its track ends, as the node does; RViz markers
    only while someone subscribes to them)."""

    def __init__(self, body: Any, node_name: str = "hmr_live", namespace: str = "",
                 output_qos: str = "default") -> None:
        from hmr_ros.transport import open_transport, qos_from_string, types
        from hmr_ros.transport.mesh_faces import mesh_faces_message

        self.body = body
        self.transport = open_transport("dds", node_name, namespace)
        self.qos = qos_from_string(output_qos)
        self._pubs: Dict[str, Any] = {}
        faces = self.transport.create_publisher("/human_mesh/faces", "hmr_ros/msg/MeshFaces",
                                                QOS_TRANSIENT_LOCAL)
        self._pubs["/human_mesh/faces"] = faces
        faces.publish(mesh_faces_message(body.name, body.faces, body.part,
                                         types.make("std_msgs/msg/Header",
                                                    stamp=self.transport.now())))
        self._markers = self.transport.create_publisher(
            "/human_mesh/markers", "visualization_msgs/msg/MarkerArray", self.qos)

    def publish(self, messages: List[Message], ended: List[str] = ()) -> None:
        for topic, type_name, msg in messages:
            pub = self._pubs.get(topic)
            if pub is None:
                qos = QoSProfile(depth=100) if topic == "/tf" else self.qos
                pub = self._pubs[topic] = self.transport.create_publisher(topic, type_name, qos)
            pub.publish(msg)
        for bid in ended:
            for topic in [t for t in self._pubs if t.startswith(f"/humans/bodies/{bid}/")]:
                self._pubs.pop(topic).close()

    def publish_markers(self, result: Any, header: Any, ids: List[Tuple[str, bool]]) -> None:
        if self._markers.subscription_count():
            self._markers.publish(outputs.marker_array(
                result, header, ids, self.body.faces, self.body.part,
                [p.track_id for p in result.persons]))

    def close(self) -> None:
        self.transport.close()
