"""``hmr-ros bag make-sample``: a rosbag2 of a synthetic walking scene, with ground truth.

Topics (frame ``camera_optical_frame``, stamps from a fixed epoch, 30 Hz by default):

Pixel quantities (K, keypoints, box centres) are in the ROS convention (top-left pixel centre
at (0, 0)).

- ``/camera/image_raw`` (``sensor_msgs/Image``, rgb8), or with ``compressed`` (jpeg, png)
  ``/camera/image_raw/compressed`` (``sensor_msgs/CompressedImage``), and ``/camera/camera_info``;
- ``/ground_truth/detections`` (``vision_msgs/Detection2DArray``): person boxes taken from the
  ground truth (named so: they are not a detector's output), for models that need boxes;
- ``/ground_truth/human_mesh`` (``hmr_ros/HumanMeshArray``): pose, shape, translation, vertices,
  joints, 2D keypoints, box and per-part visibility of every person in view;
- ``/ground_truth/mesh_faces`` (``hmr_ros/MeshFaces``, transient local, once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from hmr_ros.transport import QOS_DEFAULT, QOS_TRANSIENT_LOCAL, types
from hmr_ros.transport.images import rgb_to_compressed, rgb_to_image
from hmr_ros.transport.mesh_faces import mesh_faces_message

from .writer import BagWriter

__all__ = ["make_sample_bag", "SAMPLE_TOPICS", "camera_info_message", "ros_intrinsics"]

COMPRESSED_IMAGE_TOPIC = ("/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
SAMPLE_TOPICS = {
    "image": ("/camera/image_raw", "sensor_msgs/msg/Image"),
    "camera_info": ("/camera/camera_info", "sensor_msgs/msg/CameraInfo"),
    "detections": ("/ground_truth/detections", "vision_msgs/msg/Detection2DArray"),
    "ground_truth": ("/ground_truth/human_mesh", "hmr_ros/msg/HumanMeshArray"),
    "faces": ("/ground_truth/mesh_faces", "hmr_ros/msg/MeshFaces"),
}
_EPOCH_NS = 1_760_000_000 * 1_000_000_000
_FRAME = "camera_optical_frame"


def _header(stamp_ns: int) -> Any:
    return types.make("std_msgs/msg/Header", frame_id=_FRAME, stamp=types.make(
        "builtin_interfaces/msg/Time", sec=stamp_ns // 1_000_000_000,
        nanosec=stamp_ns % 1_000_000_000))


#: The renderer puts pixel centres at +0.5 (the image origin is the top-left pixel's corner);
#: ROS (CameraInfo, image_geometry, OpenCV) puts the top-left pixel's centre at (0, 0).
_TO_ROS_PIXELS = -0.5


def ros_intrinsics(K: np.ndarray) -> np.ndarray:
    """A renderer K (pixel corners at integers) in the ROS convention (centres at integers)."""
    K = np.asarray(K, np.float64).copy()
    K[0, 2] += _TO_ROS_PIXELS
    K[1, 2] += _TO_ROS_PIXELS
    return K


def camera_info_message(K: np.ndarray, width: int, height: int, header: Any) -> Any:
    """A ``CameraInfo`` of an ideal pinhole camera (no distortion); ``K`` in ROS pixels."""
    P = np.zeros((3, 4))
    P[:, :3] = K
    return types.make("sensor_msgs/msg/CameraInfo", header=header, height=height, width=width,
                      distortion_model="plumb_bob", d=np.zeros(5), k=np.asarray(K, float).ravel(),
                      r=np.eye(3).ravel(), p=P.ravel())


def _human(frame: Any, k: int, body: Any, header: Any, new: bool) -> Any:
    from hmr_ros.kernels import matrix_to_quaternion

    quats = np.asarray(matrix_to_quaternion(np.ascontiguousarray(frame.rotmats[k], np.float32)))
    x0, y0, x1, y1 = frame.boxes[k]
    roi = types.make("sensor_msgs/msg/RegionOfInterest", x_offset=int(x0), y_offset=int(y0),
                     width=int(np.ceil(x1) - int(x0)), height=int(np.ceil(y1) - int(y0)))
    t = frame.transl[k]
    return types.make(
        "hmr_ros/msg/HumanMesh", header=header, body_id=f"gt{k}",
        tracking_state=0 if new else 1, confidence=1.0, body_model=body.name,
        num_vertices=body.num_vertices, betas=np.asarray(frame.betas[k], np.float32),
        joint_rotations=quats.astype(np.float32).ravel(),
        translation=types.make("geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]),
                               z=float(t[2])),
        vertices=np.asarray(frame.vertices[k], np.float32).ravel(),
        joints=np.asarray(frame.joints[k], np.float32).ravel(),
        keypoints_2d=(np.asarray(frame.keypoints_2d[k], np.float64) + _TO_ROS_PIXELS
                      ).astype(np.float32).ravel(), roi=roi,
        focal_length_assumed=False, hypothesis_index=-1)


def _detection(frame: Any, k: int, header: Any) -> Any:
    x0, y0, x1, y1 = (float(v) for v in frame.boxes[k])
    hyp = types.make("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=types.make(
        "vision_msgs/msg/ObjectHypothesis", class_id="person", score=1.0))
    centre = types.make("vision_msgs/msg/Pose2D", position=types.make(
        "vision_msgs/msg/Point2D", x=0.5 * (x0 + x1) + _TO_ROS_PIXELS,
        y=0.5 * (y0 + y1) + _TO_ROS_PIXELS))
    bbox = types.make("vision_msgs/msg/BoundingBox2D", center=centre, size_x=x1 - x0,
                      size_y=y1 - y0)
    return types.make("vision_msgs/msg/Detection2D", header=header, results=[hyp], bbox=bbox,
                      id=f"gt{k}")


def make_sample_bag(out: Any, *, seconds: float = 10.0, fps: float = 30.0, people: int = 3,
                    size: int = 320, seed: int = 0, storage: str = "mcap",
                    compressed: Optional[str] = None,
                    progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Render the sequence and write the bag; returns its path. ``compressed``: None (raw
    rgb8 images) or "jpeg" / "png" (CompressedImage on ``/camera/image_raw/compressed``)."""
    from hmr_ros.data.synthetic.sequence import WalkingSequence

    if compressed not in (None, "jpeg", "png"):
        raise ValueError(f"compressed must be jpeg or png, not {compressed!r}")
    seq = WalkingSequence(seconds=seconds, fps=fps, people=people, size=size, seed=seed)
    body = seq.body
    topics = dict(SAMPLE_TOPICS)
    if compressed:
        topics["image"] = COMPRESSED_IMAGE_TOPIC
    with BagWriter(out, storage=storage) as bag:
        for key, (topic, type_name) in topics.items():
            bag.add_topic(topic, type_name,
                          QOS_TRANSIENT_LOCAL if key == "faces" else QOS_DEFAULT)
        faces_header = _header(_EPOCH_NS)
        faces_header.frame_id = ""  # faces carry no geometry of their own (MeshFaces.msg)
        faces = mesh_faces_message(body.name, body.faces, body.part, faces_header)
        bag.write(SAMPLE_TOPICS["faces"][0], _EPOCH_NS, faces)
        seen = set()
        for frame in seq:
            stamp = _EPOCH_NS + int(round(frame.time_s * 1e9))
            header = _header(stamp)
            image = (rgb_to_compressed(frame.image, header, compressed) if compressed
                     else rgb_to_image(frame.image, header))
            bag.write(topics["image"][0], stamp, image)
            bag.write(SAMPLE_TOPICS["camera_info"][0], stamp,
                      camera_info_message(ros_intrinsics(frame.K), size, size, header))
            visible = [k for k in range(len(frame.betas)) if frame.in_view[k]]
            bag.write(SAMPLE_TOPICS["detections"][0], stamp, types.make(
                "vision_msgs/msg/Detection2DArray", header=header,
                detections=[_detection(frame, k, header) for k in visible]))
            humans = [_human(frame, k, body, header, new=k not in seen) for k in visible]
            seen.update(visible)
            vis = [types.make("hmr_ros/msg/BodyPartVisibility", header=header, body_id=f"gt{k}",
                              visibility=np.asarray(frame.visibility[k], np.float32))
                   for k in visible]
            bag.write(SAMPLE_TOPICS["ground_truth"][0], stamp, types.make(
                "hmr_ros/msg/HumanMeshArray", header=header, humans=humans, visibility=vis))
            if progress:
                progress(frame.index + 1, len(seq))
    return Path(out)

