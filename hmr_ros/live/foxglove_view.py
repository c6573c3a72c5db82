"""A live 3D view of the pipeline's output in Foxglove, over the foxglove-sdk WebSocket server.

`FoxgloveView` serves, per frame (all stamped with the frame's time):

- ``/hmr/scene`` (foxglove.SceneUpdate): one entity per person (``person_<track id>``, or
  ``tentative_<n>`` while the tracker has not confirmed it) holding the mesh as an indexed
  triangle list whose vertices are coloured by their body part's visibility ω (red occluded,
  green visible, as in the on-screen overlay), the 24 joints as spheres and the kinematic
  skeleton as lines; plus the entity ``camera_frustum`` (the image's field of view drawn at
  `FRUSTUM_DEPTH_M`). Persons that left are deleted, so an empty frame empties the scene.
- ``/camera/image`` (foxglove.CompressedImage, JPEG) and ``/camera/calibration``
  (foxglove.CameraCalibration from K), so the Image panel projects the scene onto the image.
- ``/human_mesh``: the node's raw output, ``hmr_ros/msg/HumanMeshArray`` in ROS 2 CDR with
  its ``ros2msg`` definition, built and serialized by the same code the node publishes with.
- ``/tf`` (foxglove.FrameTransform): `WORLD_FRAME` -> the camera frame. The camera frame has
  OpenCV axes (x right, y down, z forward); the world frame is z up, x forward, y left, so
  people stand upright in the 3D panel.

The server binds to 127.0.0.1 unless told otherwise (the stream carries camera images).
Open it in Foxglove with "Open connection" -> Foxglove WebSocket -> ``ws://127.0.0.1:8765``,
then load the saved layout ``config/foxglove/hmr_live_layout.json`` with Layouts -> Import from
file (a 3D panel on the scene, an Image panel with the scene projected, a Raw Messages panel on
/human_mesh).
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Set

import numpy as np

from hmr_ros.body.constants import PARENTS
from hmr_ros.node import outputs
from hmr_ros.transport import cdr, types
from hmr_ros.viz.overlay import visibility_colors

__all__ = ["FoxgloveView", "TOPICS", "WORLD_FRAME", "FRUSTUM_DEPTH_M", "HUMAN_MESH_TYPE"]

LOG = logging.getLogger(__name__)

#: topic -> what it carries; the saved layout names the same topics.
TOPICS = {"scene": "/hmr/scene", "image": "/camera/image", "calibration": "/camera/calibration",
          "human_mesh": "/human_mesh", "tf": "/tf"}
WORLD_FRAME = "world"
FRUSTUM_DEPTH_M = 0.5
HUMAN_MESH_TYPE = "hmr_ros/msg/HumanMeshArray"
JPEG_QUALITY = 85
#: camera optical frame (x right, y down, z forward) in a z-up, x-forward world: (x, y, z, w).
_OPTICAL_IN_WORLD = (-0.5, 0.5, -0.5, 0.5)
_JOINT_DIAMETER_M = 0.04
_SKELETON_RGBA = (1.0, 1.0, 1.0, 1.0)
_FRUSTUM_RGBA = (0.3, 0.6, 1.0, 1.0)
_INSTALL_HINT = "pip install 'hmr_ros[live]'"


def _import_foxglove() -> Any:
    try:
        import foxglove
        import foxglove.channels
        import foxglove.messages
    except ImportError as exc:
        raise RuntimeError(f"the live Foxglove view needs the foxglove-sdk package ({exc}); "
                           f"install it with: {_INSTALL_HINT}") from None
    return foxglove


def frustum_segments(K: np.ndarray, width: int, height: int, depth: float) -> np.ndarray:
    """(16, 3) points, pairs of segment ends: the optical centre to the image corners at
    ``depth`` metres, and the rectangle joining those corners (camera frame)."""
    K = np.asarray(K, np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (fx > 0 and fy > 0):
        raise ValueError(f"K has a non-positive focal length (fx={fx}, fy={fy})")
    pixels = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    corners = np.column_stack([(pixels[:, 0] - cx) / fx * depth,
                               (pixels[:, 1] - cy) / fy * depth, np.full(4, depth)])
    segments = []
    for i in range(4):
        segments += [np.zeros(3), corners[i], corners[i], corners[(i + 1) % 4]]
    return np.array(segments)


class FoxgloveView:
    """Serves each processed frame to Foxglove (see the module docstring for the topics).

    ``faces`` (F, 3) and ``vertex_part`` (V,) come from the body model; ``body_model`` is the
    name written into /human_mesh (the node writes the body's name there). ``port=0`` binds a
    free port, read back from `port`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *, faces: np.ndarray,
                 vertex_part: np.ndarray, frame_id: str = "camera", name: str = "hmr_ros live",
                 body_model: str = "") -> None:
        fg = _import_foxglove()
        self._fg = fg
        self._msgs = fg.messages
        self.faces = np.asarray(faces)
        self.vertex_part = np.asarray(vertex_part)
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {self.faces.shape}")
        if self.vertex_part.ndim != 1:
            raise ValueError(f"vertex_part must be (V,), got {self.vertex_part.shape}")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(self.vertex_part)):
            raise ValueError(f"faces index vertices outside 0..{len(self.vertex_part) - 1}")
        if self.vertex_part.size and (self.vertex_part.min() < 0 or self.vertex_part.max() > 23):
            raise ValueError("vertex_part must hold part indices 0..23")
        if not frame_id:
            raise ValueError("frame_id must not be empty")
        self.frame_id = frame_id
        self.body_model = body_model
        self._indices: List[int] = self.faces.astype(np.int64).reshape(-1).tolist()
        self._vertex_part_list: List[int] = self.vertex_part.astype(np.int64).tolist()
        self._body_ids = outputs.BodyIds()
        self._shown: Set[str] = set()
        self._context = fg.Context()  # own channels: two views never share topics
        try:
            self._server = fg.start_server(name=name, host=host, port=int(port),
                                           context=self._context)
        except Exception as exc:  # the Rust server raises RuntimeError for a taken port
            raise RuntimeError(f"cannot start the Foxglove server on {host}:{port}: {exc}"
                               ) from exc
        ch = fg.channels
        self._scene = ch.SceneUpdateChannel(TOPICS["scene"], context=self._context)
        self._image = ch.CompressedImageChannel(TOPICS["image"], context=self._context)
        self._calibration = ch.CameraCalibrationChannel(TOPICS["calibration"],
                                                        context=self._context)
        self._tf = ch.FrameTransformChannel(TOPICS["tf"], context=self._context)
        definition, _ = types.typestore().generate_msgdef(HUMAN_MESH_TYPE, ros_version=2)
        self._human_mesh = fg.Channel(
            TOPICS["human_mesh"], message_encoding="cdr",
            schema=fg.Schema(name=HUMAN_MESH_TYPE, encoding="ros2msg",
                             data=definition.encode()),
            context=self._context)
        self._host = host
        self._closed = False

    @property
    def port(self) -> int:
        """The port the server is bound to (the chosen one when constructed with port 0)."""
        return int(self._server.port)

    @property
    def host(self) -> str:
        return self._host

    def close(self) -> None:
        """Stop the server (idempotent); clients see the connection close."""
        if not self._closed:
            self._closed = True
            self._server.stop()

    def __enter__(self) -> "FoxgloveView":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- per frame ------------------------------------------------------------------------------

    def publish(self, rgb: np.ndarray, result: Any, K: np.ndarray, stamp_ns: int) -> None:
        """Send one frame: image, calibration, transform, scene and /human_mesh, all stamped
        ``stamp_ns``. A person whose mesh is not finite is left out of the scene (warning)."""
        if self._closed:
            raise RuntimeError("FoxgloveView.publish after close()")
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        K = np.asarray(K, np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ValueError(f"K must be a finite 3x3 matrix, got shape {K.shape}")
        height, width = rgb.shape[:2]
        stamp_ns = int(stamp_ns)
        m = self._msgs
        ts = m.Timestamp(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)

        self._tf.log(m.FrameTransform(
            timestamp=ts, parent_frame_id=WORLD_FRAME, child_frame_id=self.frame_id,
            translation=m.Vector3(x=0.0, y=0.0, z=0.0),
            rotation=m.Quaternion(x=_OPTICAL_IN_WORLD[0], y=_OPTICAL_IN_WORLD[1],
                                  z=_OPTICAL_IN_WORLD[2], w=_OPTICAL_IN_WORLD[3])),
            log_time=stamp_ns)
        # messages nobody subscribed to are not built (the mesh costs milliseconds per person)
        if self._calibration.has_sinks():
            self._calibration.log(self._calibration_message(ts, K, width, height),
                                  log_time=stamp_ns)
        if self._image.has_sinks():
            self._image.log(self._image_message(ts, rgb), log_time=stamp_ns)
        if self._scene.has_sinks():
            self._scene.log(self._scene_update(ts, result, K, width, height), log_time=stamp_ns)
        mesh_bytes = self._human_mesh_bytes(result, stamp_ns, width, height)  # keeps body ids
        if mesh_bytes is not None:
            self._human_mesh.log(mesh_bytes, log_time=stamp_ns)

    def _calibration_message(self, ts: Any, K: np.ndarray, width: int, height: int) -> Any:
        P = np.zeros((3, 4))
        P[:, :3] = K
        return self._msgs.CameraCalibration(
            timestamp=ts, frame_id=self.frame_id, width=width, height=height,
            distortion_model="plumb_bob", D=[0.0] * 5, K=K.reshape(-1).tolist(),
            R=np.eye(3).reshape(-1).tolist(), P=P.reshape(-1).tolist())

    def _image_message(self, ts: Any, rgb: np.ndarray) -> Any:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("cv2.imencode could not encode the frame as JPEG")
        return self._msgs.CompressedImage(timestamp=ts, frame_id=self.frame_id,
                                          data=jpeg.tobytes(), format="jpeg")

    def _human_mesh_bytes(self, result: Any, stamp_ns: int, width: int,
                          height: int) -> Optional[bytes]:
        """The frame's HumanMeshArray as CDR, or None when nobody listens; the REP-155 body
        ids advance either way, so they stay stable across a client's reconnect."""
        track_ids = [p.track_id for p in result.persons]
        ids = [self._body_ids.get(tid) for tid in track_ids]
        self._body_ids.forget_except([t for t in track_ids if t >= 0])
        if not self._human_mesh.has_sinks():
            return None
        header = outputs.header_message(stamp_ns, self.frame_id)
        msg, _ = outputs.human_mesh_array(result, header, ids, self.body_model,
                                          len(self.vertex_part), width, height)
        return cdr.serialize(msg, HUMAN_MESH_TYPE)

    def _scene_update(self, ts: Any, result: Any, K: np.ndarray, width: int, height: int) -> Any:
        m = self._msgs
        entities = [self._frustum_entity(ts, K, width, height)]
        shown = {"camera_frustum"}
        tentative = 0
        for index, person in enumerate(result.persons):
            if person.track_id >= 0:
                entity_id = f"person_{person.track_id}"
            else:
                entity_id, tentative = f"tentative_{tentative}", tentative + 1
            entity = self._person_entity(ts, entity_id, person, index)
            if entity is not None:
                entities.append(entity)
                shown.add(entity_id)
        deletions = [m.SceneEntityDeletion(timestamp=ts, type=m.SceneEntityDeletionType.MatchingId,
                                           id=gone) for gone in sorted(self._shown - shown)]
        self._shown = shown
        return m.SceneUpdate(deletions=deletions, entities=entities)

    def _person_entity(self, ts: Any, entity_id: str, person: Any, index: int) -> Optional[Any]:
        m = self._msgs
        vertices = np.asarray(person.vertices, np.float64)
        joints = np.asarray(person.joints, np.float64)
        if vertices.shape != (len(self.vertex_part), 3):
            LOG.warning("person %d (%s): %s vertices, the body model has %d: not drawn",
                        index, entity_id, vertices.shape, len(self.vertex_part))
            return None
        if not (np.all(np.isfinite(vertices)) and np.all(np.isfinite(joints))):
            LOG.warning("person %d (%s): mesh or joints not finite: not drawn", index, entity_id)
            return None
        part_rgb = visibility_colors(person.visibility)  # (24, 3)
        part_colors = [m.Color(r=r, g=g, b=b, a=1.0) for r, g, b in part_rgb.tolist()]
        points = [m.Point3(x=x, y=y, z=z) for x, y, z in vertices.tolist()]
        colors = [part_colors[p] for p in self._vertex_part_list]
        mesh = m.TriangleListPrimitive(points=points, colors=colors, indices=self._indices)
        spheres = [m.SpherePrimitive(
            pose=m.Pose(position=m.Vector3(x=x, y=y, z=z),
                        orientation=m.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
            size=m.Vector3(x=_JOINT_DIAMETER_M, y=_JOINT_DIAMETER_M, z=_JOINT_DIAMETER_M),
            color=m.Color(r=r, g=g, b=b, a=1.0))
            for (x, y, z), (r, g, b) in zip(joints.tolist(), part_rgb.tolist())]
        bones = [j for child, parent in enumerate(PARENTS) if parent >= 0
                 for j in (int(parent), child)]
        skeleton = m.LinePrimitive(
            type=m.LinePrimitiveLineType.LineList, thickness=3.0, scale_invariant=True,
            points=[m.Point3(x=x, y=y, z=z) for x, y, z in joints.tolist()],
            color=m.Color(r=_SKELETON_RGBA[0], g=_SKELETON_RGBA[1], b=_SKELETON_RGBA[2],
                          a=_SKELETON_RGBA[3]),
            indices=bones)
        return m.SceneEntity(timestamp=ts, frame_id=self.frame_id, id=entity_id,
                             frame_locked=True, triangles=[mesh], spheres=spheres,
                             lines=[skeleton])

    def _frustum_entity(self, ts: Any, K: np.ndarray, width: int, height: int) -> Any:
        m = self._msgs
        segments = frustum_segments(K, width, height, FRUSTUM_DEPTH_M)
        r, g, b, a = _FRUSTUM_RGBA
        line = m.LinePrimitive(type=m.LinePrimitiveLineType.LineList, thickness=2.0,
                               scale_invariant=True,
                               points=[m.Point3(x=x, y=y, z=z) for x, y, z in segments.tolist()],
                               color=m.Color(r=r, g=g, b=b, a=a))
        return m.SceneEntity(timestamp=ts, frame_id=self.frame_id, id="camera_frustum",
                             frame_locked=True, lines=[line])
