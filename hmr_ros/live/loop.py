"""The live loop: newest captured frame -> the node's pipeline -> overlay + HUD on screen or
in a video, and optionally recorded (MCAP), published (ROS 2) and shown in Foxglove.

The processing loop runs in the calling (main) thread, because OpenCV windows must; capture
runs in the source's thread. Latency is measured from the moment a frame was grabbed
(``time.perf_counter``) to the moment its overlay was shown or written.
"""

from __future__ import annotations

import collections
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional

import numpy as np

from .calibration import CameraCalibration, diagonal_fov_deg, fov_intrinsics
from .sources import CapturedFrame, FrameSource, LiveError

__all__ = ["LiveOptions", "LiveLoop", "draw_hud", "format_summary", "check_window_support"]

log = logging.getLogger("hmr_ros.live")

WINDOW = "hmr-ros live"


#: pipeline timing entries that are not the regressor (the HUD's "model" is the rest)
_NOT_MODEL = frozenset({"detector", "preprocess", "refine", "postprocess", "total", "ablation",
                        "boxes", "outputs", "overlay"})


@dataclass
class LiveOptions:
    headless: bool = False
    out: Optional[str] = None  #: overlay video (.mp4)
    record: Optional[str] = None  #: MCAP rosbag2
    publish: bool = False
    foxglove: bool = False
    foxglove_host: str = "127.0.0.1"
    foxglove_port: int = 8765
    calibration: Optional[CameraCalibration] = None
    fov_deg: Optional[float] = None  #: None: the pipeline's own assumption
    max_frames: Optional[int] = None  #: stop after this many processed frames
    hud: bool = True
    on_result: Optional[Callable[[CapturedFrame, Any], None]] = None  #: per processed frame
    stats: Dict[str, Any] = field(default_factory=dict)


def check_window_support() -> None:
    """Window mode needs an OpenCV built with a GUI; the headless wheel has none."""
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error as exc:
        raise LiveError(
            "window mode needs OpenCV with GUI support, and the installed OpenCV is the headless "
            "build: `pip uninstall opencv-python-headless && pip install opencv-python`, or run "
            f"with --headless --out FILE.mp4 (OpenCV said: {str(exc).strip().splitlines()[-1]})"
        ) from None


def _percentiles(values, qs=(50, 95)) -> List[float]:
    return [float(np.percentile(values, q)) if len(values) else float("nan") for q in qs]


class LiveLoop:
    """``LiveLoop(source, pipeline, body, options).run()`` -> summary dict."""

    def __init__(self, source: FrameSource, pipeline: Any, body: Any, options: LiveOptions,
                 backend: str = "") -> None:
        self.source = source
        self.pipeline = pipeline
        self.body = body
        self.options = options
        self.backend = backend
        self.processed = 0
        self.skipped = 0
        self.persons = 0
        self.frames_written = 0
        self.latencies: List[float] = []
        self.stage_times: Dict[str, List[float]] = collections.defaultdict(list)
        self._done_at: Deque[float] = collections.deque(maxlen=30)
        self._stop = threading.Event()
        self._writer: Any = None
        self._last_index: Optional[int] = None
        self._size = None
        self.intrinsics_note = ""

    # -- setup / teardown ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish (Ctrl-C, SIGTERM, q)."""
        self._stop.set()

    def _open_outputs(self) -> None:
        from .sinks import BagRecorder, LiveTopics, RosPublisher

        o = self.options
        self.topics = LiveTopics(self.body, self.pipeline)
        self.recorder = BagRecorder(o.record, self.body) if o.record else None
        self.ros = RosPublisher(self.body) if o.publish else None
        self.foxglove = None
        if o.foxglove:
            from .foxglove_view import FoxgloveView  # the optional foxglove-sdk, only when asked

            self.foxglove = FoxgloveView(o.foxglove_host, o.foxglove_port, faces=self.body.faces,
                                         vertex_part=self.body.part, body_model=self.body.name)

    def _close_outputs(self) -> None:
        for name in ("recorder", "ros", "foxglove"):
            sink = getattr(self, name, None)
            if sink is not None:
                try:
                    sink.close()
                except Exception:  # noqa: BLE001 - close the others all the same
                    log.exception("closing %s failed", name)
        if self._writer is not None:
            self._writer.release()

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        o = self.options
        if not o.headless:
            check_window_support()
        self._open_outputs()
        previous = {}
        self.interrupted = False

        def on_signal(*_: Any) -> None:  # finish the frame in hand, then the summary
            self.interrupted = True
            self.stop()

        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, on_signal)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
        self.started = time.perf_counter()
        self.source.start()
        try:
            while not self._stop.is_set():
                frame = self.source.mailbox.take(0.05)
                if frame is None:
                    if self.source.finished.is_set() and self.source.mailbox.take(0) is None:
                        break
                    continue
                self._process(frame)
                if o.max_frames is not None and self.processed >= o.max_frames:
                    break
        except KeyboardInterrupt:  # a handler other than ours (not the main thread)
            self.interrupted = True
        finally:
            self.source.stop()
            self.ended = time.perf_counter()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close_outputs()
            if not o.headless:
                import cv2

                cv2.destroyAllWindows()
        if self.source.error is not None:
            raise LiveError(f"{self.source.name}: capture failed: "
                            f"{type(self.source.error).__name__}: {self.source.error}")
        summary = self.summary()
        summary["interrupted"] = self.interrupted
        return summary

    def _intrinsics(self, frame: CapturedFrame) -> Optional[np.ndarray]:
        h, w = frame.rgb.shape[:2]
        o = self.options
        if o.calibration is not None:
            self.intrinsics_note = f"calibrated ({o.calibration.source})"
            return o.calibration.for_size(w, h)
        if frame.camera_info is not None:
            self.intrinsics_note = "camera_info from the bag"
            return np.asarray(frame.camera_info.k, np.float64).reshape(3, 3)
        if o.fov_deg is not None:
            self.intrinsics_note = f"assumed FOV {o.fov_deg:.0f}° (diagonal, --fov)"
            return fov_intrinsics(o.fov_deg, w, h)
        return None  # the pipeline assumes one and says so (HUD shows its FOV)

    def _process(self, frame: CapturedFrame) -> None:
        from hmr_ros.node.outputs import header_message
        from hmr_ros.runtime import Header
        from hmr_ros.viz import draw_labels, draw_overlay

        K = self._intrinsics(frame)
        h, w = frame.rgb.shape[:2]
        result = self.pipeline.process(frame.rgb, K, None,
                                       Header(stamp_ns=frame.stamp_ns, frame_id=frame.frame_id))
        self.processed += 1
        timing = dict(result.timing)
        if result.skipped:
            self.skipped += 1
            overlay = frame.rgb.copy()
            ids, messages, ended = [], [], []
        else:
            if result.assumed_intrinsics and result.intrinsics is not None:
                fov = diagonal_fov_deg(result.intrinsics, w, h)
                self.intrinsics_note = (f"assumed FOV {fov:.0f}° (diagonal; --camera-info or "
                                        "--fov to set)")
            self.persons += len(result.persons)
            header = header_message(frame.stamp_ns, frame.frame_id)
            t0 = time.perf_counter()
            ids, messages, ended = self.topics.ids_and_messages(
                result, header, w, h, build=self.recorder is not None or self.ros is not None)
            if self.recorder is not None or self.ros is not None:
                from .sinks import input_messages

                if self.recorder is not None:
                    self.recorder.write(frame.stamp_ns, input_messages(frame, header, K, False)
                                        + messages)
                if self.ros is not None:
                    self.ros.publish(input_messages(frame, header, K, True) + messages, ended)
                    self.ros.publish_markers(result, header, ids)
            if self.foxglove is not None:
                self.foxglove.publish(frame.rgb, result, result.intrinsics, frame.stamp_ns)
            timing["outputs"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            overlay = draw_overlay(frame.rgb, result.persons, self.body.faces, self.body.part,
                                   result.intrinsics)
            draw_labels(overlay, result.persons, [bid for bid, _ in ids])
            timing["overlay"] = time.perf_counter() - t0
        for stage, sec in timing.items():
            self.stage_times[stage].append(sec)
        if self.options.on_result is not None:
            self.options.on_result(frame, result)
        bgr = np.ascontiguousarray(overlay[..., ::-1])
        if self.options.hud:
            draw_hud(bgr, self._hud_lines(timing))
        self._show(bgr, frame)
        self.latencies.append(time.perf_counter() - frame.captured_at)
        self._done_at.append(time.perf_counter())

    def _show(self, bgr: np.ndarray, frame: CapturedFrame) -> None:
        import cv2

        o = self.options
        if o.out:
            if self._writer is None:
                self._size = (bgr.shape[1], bgr.shape[0])
                self._writer = cv2.VideoWriter(str(o.out), cv2.VideoWriter_fourcc(*"mp4v"),
                                               float(self.source.fps), self._size)
                if not self._writer.isOpened():
                    raise LiveError(f"cannot write video {o.out} (mp4v): check the folder "
                                    "exists and the name ends in .mp4")
            if (bgr.shape[1], bgr.shape[0]) != self._size:
                bgr = cv2.resize(bgr, self._size)
            # the video keeps the source's timing: a processed frame stays on screen for the
            # source frames dropped after it (as a viewer of the window saw it)
            repeat = 1 if self._last_index is None else max(1, frame.index - self._last_index)
            for _ in range(repeat):
                self._writer.write(bgr)
            self.frames_written += repeat
        self._last_index = frame.index
        if not o.headless:
            cv2.imshow(WINDOW, bgr)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                self.stop()

    # -- HUD and summary -------------------------------------------------------------------------

    def _hud_lines(self, timing: Dict[str, float]) -> List[str]:
        done = self._done_at
        fps = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] \
            else 0.0
        lat = self.latencies[-30:]
        dropped, captured = self.source.mailbox.dropped, self.source.captured
        # the regressor's own stages, whatever the model calls them (VisHMR's stage_a / iuv_warp
        # / stage_b / merge_lbs, regressor / unet / lbs, InstanceHMR's letterbox / maps / ...)
        model = sum(v for k, v in timing.items() if k not in _NOT_MODEL)
        stages = [f"{k} {v * 1e3:.0f}" for k, v in (("det", timing.get("detector")),
                                                     ("model", model or None),
                                                     ("refine", timing.get("refine")),
                                                     ("draw", timing.get("overlay")))
                  if v is not None]
        lines = [f"{fps:4.1f} FPS (source {self.source.fps:.0f})  {self.backend}",
                 f"latency {np.mean(lat) * 1e3 if lat else 0:.0f} ms  ({'  '.join(stages)} ms)",
                 f"dropped {dropped} of {captured}"]
        if self.intrinsics_note:
            lines.append(self.intrinsics_note)
        return lines

    def summary(self) -> Dict[str, Any]:
        elapsed = max(getattr(self, "ended", time.perf_counter()) - self.started, 1e-9)
        p50, p95 = _percentiles(self.latencies)
        stages = {k: [round(v * 1e3, 2) for v in _percentiles(vals)]
                  for k, vals in self.stage_times.items()}
        return {"source": self.source.name, "captured": self.source.captured,
                "processed": self.processed, "dropped": self.source.mailbox.dropped,
                "skipped": self.skipped, "persons": self.persons,
                "frames_written": self.frames_written, "source_fps": self.source.fps,
                "processing_fps": self.processed / elapsed, "seconds": elapsed,
                "latency_ms": {"p50": p50 * 1e3, "p95": p95 * 1e3},
                "stage_ms": stages, "intrinsics": self.intrinsics_note}


def draw_hud(bgr: np.ndarray, lines: List[str]) -> np.ndarray:
    """Text lines in a dark box in the top-left corner, in place (scaled to the frame)."""
    import cv2

    if not lines:
        return bgr
    scale = max(0.35, min(0.6, bgr.shape[1] / 1100))
    line_h = int(22 * scale / 0.6)
    # OpenCV's Hershey fonts have no degree sign
    lines = [ln.replace("°", " deg") for ln in lines]
    width = max(cv2.getTextSize(ln, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for ln in lines)
    x1, y1 = min(bgr.shape[1], width + 12), min(bgr.shape[0], line_h * len(lines) + 8)
    bgr[:y1, :x1] = (bgr[:y1, :x1] * 0.35).astype(np.uint8)
    for i, ln in enumerate(lines):
        cv2.putText(bgr, ln, (6, line_h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def format_summary(s: Dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v[0]:.1f}/{v[1]:.1f}" for k, v in sorted(s["stage_ms"].items()))
    text = (f"{s['source']}: frames captured {s['captured']}, processed {s['processed']}, "
            f"dropped {s['dropped']} ({100.0 * s['dropped'] / max(s['captured'], 1):.1f} %), "
            f"skipped {s['skipped']}, persons {s['persons']}\n"
            f"processing {s['processing_fps']:.1f} FPS (source {s['source_fps']:.1f} FPS) over "
            f"{s['seconds']:.1f} s\n"
            f"latency capture -> display: p50 {s['latency_ms']['p50']:.1f} ms, "
            f"p95 {s['latency_ms']['p95']:.1f} ms\n"
            f"per stage p50/p95 ms: {stages}")
    if s.get("intrinsics"):
        text += f"\nintrinsics: {s['intrinsics']}"
    return text
