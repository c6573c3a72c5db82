"""Frame sources of ``hmr-ros live``: a camera, a video file or a bag, captured in a thread.

A source's capture thread stamps each frame with ``time.perf_counter()`` the moment it is
grabbed and hands it to a `NewestFrame` mailbox: the processing loop always takes the newest
frame, so a slow model drops frames instead of building latency. A video file or a bag is
delivered at its recorded rate (like a camera) unless pacing is off; then the thread waits for
the loop to take each frame (offline rendering: nothing dropped).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np

__all__ = ["LiveError", "CapturedFrame", "NewestFrame", "FrameSource", "CameraSource",
           "VideoSource", "BagSource", "open_source"]

log = logging.getLogger("hmr_ros.live")

DEFAULT_FRAME_ID = "camera_optical_frame"


class LiveError(RuntimeError):
    """A source that cannot be opened or a display that cannot be shown; says what to do."""


@dataclass
class CapturedFrame:
    index: int  #: 0-based number of the frame in the source
    rgb: np.ndarray  #: H x W x 3 uint8
    stamp_ns: int  #: the frame's ROS stamp (the bag's header stamp; capture time otherwise)
    frame_id: str
    captured_at: float  #: time.perf_counter() when it was grabbed
    message: Any = None  #: the bag's image message (CDR bytes) as received, when from a bag
    message_type: str = ""  #: its ROS type name
    camera_info: Any = None  #: the latest sensor_msgs/CameraInfo of the bag before this frame


class NewestFrame:
    """A one-frame mailbox like the node's `FrameSlot`, plus a blocking put for sources that
    must not drop (``--no-pace``) and a count of frames replaced before anyone took them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[CapturedFrame] = None
        self._closed = False
        self.dropped = 0

    def put(self, item: CapturedFrame, wait: bool = False) -> bool:
        """Store ``item``; with ``wait`` first wait until the previous one was taken. Returns
        False when the mailbox was closed (nobody takes frames any more)."""
        with self._cond:
            while wait and self._item is not None and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Optional[CapturedFrame]:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> Optional[CapturedFrame]:
        """Close; returns the frame nobody will take (it is dropped), if any."""
        with self._cond:
            self._closed = True
            item, self._item = self._item, None
            if item is not None:
                self.dropped += 1
            self._cond.notify_all()
            return item

    @property
    def closed(self) -> bool:
        return self._closed


class FrameSource:
    """Reads frames (`frames`) in a capture thread into a `NewestFrame` mailbox.

    ``pace``: deliver at the source's rate (a video file or bag; a camera paces itself).
    """

    name = "source"
    live = False  #: a camera: frames come at its own rate, never waited for

    def __init__(self, pace: bool = True) -> None:
        self.pace = pace
        self.fps = 30.0
        self.mailbox = NewestFrame()
        self.captured = 0
        self.finished = threading.Event()  #: the source has no more frames (or failed)
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def frames(self) -> Iterator[Tuple[np.ndarray, Optional[float], dict]]:
        """(rgb, source time in seconds or None, extra CapturedFrame fields) per frame."""
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._capture, name=f"hmr_ros-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        start_wall, start_src = None, None
        wall_epoch_ns = time.time_ns()
        try:
            for index, (rgb, t_src, extra) in enumerate(self.frames()):
                if self._stop.is_set():
                    break
                if self.pace and not self.live and t_src is not None:
                    if start_wall is None:
                        start_wall, start_src = time.perf_counter(), t_src
                    delay = start_wall + (t_src - start_src) - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                captured_at = time.perf_counter()
                if "stamp_ns" not in extra:  # camera / video: the capture (video: nominal) time
                    extra["stamp_ns"] = (time.time_ns() if self.live or t_src is None
                                         else wall_epoch_ns + int(round(t_src * 1e9)))
                extra.setdefault("frame_id", DEFAULT_FRAME_ID)
                frame = CapturedFrame(index=index, rgb=rgb, captured_at=captured_at, **extra)
                self.captured += 1
                if not self.mailbox.put(frame, wait=not self.pace and not self.live):
                    self.captured -= 1  # closed before it went in: never captured for us
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which reports it
            self.error = exc
        finally:
            self.finished.set()
            self.release()

    def stop(self) -> None:
        self._stop.set()
        self.mailbox.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def release(self) -> None:
        """Free the device / file (called from the capture thread when it ends)."""


class CameraSource(FrameSource):
    live = True

    def __init__(self, index: int, pace: bool = True) -> None:
        import cv2

        super().__init__(pace)
        self.name = f"camera {index}"
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise LiveError(f"cannot open camera {index} (cv2.VideoCapture({index}) failed: no "
                            "such device, or it is busy or not readable by this user)")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._cap.release()
            raise LiveError(f"camera {index} opened but delivers no frames")
        self._first = bgr
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0

    def frames(self):
        bgr = self._first
        while bgr is not None:
            yield np.ascontiguousarray(bgr[..., ::-1]), None, {}
            ok, bgr = self._cap.read()
            if not ok:
                log.warning("%s: read failed; stopping", self.name)
                return

    def release(self) -> None:
        self._cap.release()


class VideoSource(FrameSource):
    def __init__(self, path: Any, pace: bool = True) -> None:
        import cv2

        super().__init__(pace)
        self.path = Path(path)
        self.name = f"video {self.path.name}"
        if not self.path.is_file():
            raise LiveError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        ok, bgr = (self._cap.read() if self._cap.isOpened() else (False, None))
        if not ok or bgr is None:
            self._cap.release()
            raise LiveError(f"cannot read video {self.path}: not a video OpenCV can decode")
        self._first = bgr
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.1 <= fps <= 10000.0 else 30.0

    def frames(self):
        bgr, index = self._first, 0
        while bgr is not None:
            yield np.ascontiguousarray(bgr[..., ::-1]), index / self.fps, {}
            index += 1
            ok, bgr = self._cap.read()
            if not ok:
                return

    def release(self) -> None:
        self._cap.release()


IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class BagSource(FrameSource):
    """Images of a rosbag2 / ROS 1 bag (the first image topic, or ``image_topic``), with the
    bag's camera_info when it has one; paced by the bag's receive times."""

    def __init__(self, path: Any, image_topic: str = "", pace: bool = True) -> None:
        from hmr_ros.bag import BagReader
        from hmr_ros.bag.reader import BagError

        super().__init__(pace)
        self.path = Path(path)
        self.name = f"bag {self.path.name}"
        if not self.path.exists():
            raise LiveError(f"bag not found: {self.path}")
        try:
            with BagReader(self.path) as bag:
                topics = bag.topics()
        except BagError as exc:
            raise LiveError(str(exc)) from exc
        images = [t for t in topics if t.type_name in IMAGE_TYPES]
        if image_topic:
            images = [t for t in images if t.topic == image_topic]
        if not images:
            raise LiveError(f"{self.path}: no image topic{' ' + image_topic if image_topic else ''}"
                            f" (sensor_msgs/Image or CompressedImage); it has "
                            f"{[t.topic for t in topics]}")
        self.image_topic, self.image_type = images[0].topic, images[0].type_name
        infos = [t.topic for t in topics if t.type_name == "sensor_msgs/msg/CameraInfo"]
        self.info_topic = infos[0] if infos else ""
        duration = 0.0
        with BagReader(self.path) as bag:
            duration = bag.duration_ns * 1e-9
        count = images[0].count
        self.fps = (count - 1) / duration if count > 1 and duration > 0 else 30.0

    def frames(self):
        from hmr_ros.bag import BagReader
        from hmr_ros.transport.images import ImageMessageError, message_to_rgb

        info = None
        with BagReader(self.path) as bag:
            if self.info_topic:  # a bag may store a frame's camera_info just after its image
                info = next((m.decode() for m in bag.messages([self.info_topic])), None)
        with BagReader(self.path) as bag:
            topics = [self.image_topic] + ([self.info_topic] if self.info_topic else [])
            for m in bag.messages(topics):
                if m.topic == self.info_topic:
                    info = m.decode()
                    continue
                msg = m.decode()
                try:
                    rgb = message_to_rgb(msg, m.type_name)
                except ImageMessageError as exc:
                    log.warning("%s: image at %d skipped: %s", self.path, m.timestamp_ns, exc)
                    continue
                stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
                yield rgb, m.timestamp_ns * 1e-9, {
                    "stamp_ns": stamp, "frame_id": msg.header.frame_id or DEFAULT_FRAME_ID,
                    "message": m.data, "message_type": m.type_name, "camera_info": info}


def open_source(camera: Optional[int] = None, video: Optional[str] = None,
                bag: Optional[str] = None, pace: bool = True, image_topic: str = "") -> FrameSource:
    """The one source the arguments name."""
    given = [x is not None for x in (camera, video, bag)]
    if sum(given) != 1:
        raise LiveError("give exactly one source: --camera N, --video FILE or --bag BAG")
    if camera is not None:
        return CameraSource(int(camera), pace)
    if video is not None:
        return VideoSource(video, pace)
    return BagSource(bag, image_topic, pace)
