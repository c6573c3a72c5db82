"""``hmr-ros live``: a camera, video file or bag through the node's pipeline, with meshes on
screen or in a video, recorded as MCAP, published on ROS 2 and viewed in Foxglove on request.
`hmr_ros.live.foxglove_view` (the Foxglove server) is imported only when asked for."""

from .calibration import CameraCalibration, fov_intrinsics, load_camera_info_yaml
from .loop import LiveLoop, LiveOptions, draw_hud, format_summary
from .sources import (BagSource, CameraSource, CapturedFrame, LiveError, NewestFrame,
                      VideoSource, open_source)

__all__ = ["BagSource", "CameraCalibration", "CameraSource", "CapturedFrame", "LiveError",
           "LiveLoop", "LiveOptions", "NewestFrame", "VideoSource", "draw_hud", "fov_intrinsics",
           "format_summary", "load_camera_info_yaml", "open_source"]
