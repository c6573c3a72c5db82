"""The hmr_ros node: camera images in, human meshes out, on any `Transport`.

Threading: the transport's callbacks only store what arrives (the newest image in a one-slot
mailbox, the latest camera_info per frame, detections by stamp); one worker thread takes the
newest image and runs the frame pipeline, so a slow model drops frames (counted) instead of
building latency. Everything published for a frame carries that image's header unchanged.

Lifecycle (the managed-node states): ``configure`` loads the body model and the regressor and
creates the publishers (the mesh faces go out once, transient local); ``activate`` subscribes
and starts the worker; ``deactivate`` stops both; ``cleanup`` frees the model; ``shutdown``
does whatever is left (`hmr_ros.node.lifecycle` serves these as ROS 2 lifecycle services on the
built-in transport; rclpy's LifecycleNode does on rclpy). Bad input never stops the node: each skipped frame is logged with its
stamp and counted by reason in /diagnostics.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from hmr_ros.transport import QOS_TRANSIENT_LOCAL, QoSProfile, images, qos_from_string, types
from hmr_ros.transport.mesh_faces import mesh_faces_message

from . import outputs
from .params import NodeConfig

__all__ = ["HmrNode", "FrameSlot", "NodeStats"]

log = logging.getLogger("hmr_ros.node")


class FrameSlot:
    """A one-item mailbox: `put` replaces what the worker has not taken yet (a drop)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it replaced an item nobody took (that frame is dropped)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class NodeStats:
    """Counters and recent latencies for /diagnostics (thread-safe)."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.persons = 0
        self.skipped: Dict[str, int] = collections.Counter()
        self._arrivals: Deque[float] = collections.deque(maxlen=window)
        self._done: Deque[float] = collections.deque(maxlen=window)
        self._stages: Dict[str, Deque[float]] = {}
        self._recent_skips: Deque[float] = collections.deque(maxlen=window)
        self._window = window

    def arrived(self, dropped_previous: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped_previous)
            self._arrivals.append(time.monotonic())

    def arrived_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def skip(self, reason: str) -> int:
        """Count one occurrence of ``reason`` (its text before the first ':'); returns the
        count so far."""
        key = reason.split(":")[0][:80]
        with self._lock:
            self.skipped[key] += 1
            self._recent_skips.append(time.monotonic())
            return self.skipped[key]

    def recent_skips(self, seconds: float) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self._recent_skips if now - t <= seconds)

    def finished(self, persons: int, timing: Dict[str, float]) -> None:
        with self._lock:
            self.processed += 1
            self.persons += persons
            self._done.append(time.monotonic())
            for stage, sec in timing.items():
                self._stages.setdefault(stage, collections.deque(maxlen=self._window)).append(sec)

    @staticmethod
    def _rate(stamps: Deque[float]) -> float:
        if len(stamps) < 2:
            return 0.0
        span = stamps[-1] - stamps[0]
        return (len(stamps) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            stages = {k: (float(np.percentile(v, 50)) * 1e3, float(np.percentile(v, 95)) * 1e3)
                      for k, v in self._stages.items() if v}
            return {"received": self.received, "processed": self.processed,
                    "dropped": self.dropped, "persons": self.persons,
                    "skipped": dict(self.skipped), "input_rate": self._rate(self._arrivals),
                    "processed_rate": self._rate(self._done), "latency_ms": stages}


class HmrNode:
    """The node's logic on a transport (`hmr_ros.transport.open_transport`).

    ``pipeline_factory(config) -> (pipeline, body, backend_name)`` replaces the model loading
    (tests); by default the exported model in ``config.model_dir`` runs on ``config.backend``.
    """

    def __init__(self, transport: Any, config: NodeConfig, pipeline_factory=None) -> None:
        self.transport = transport
        self.config = config
        self.stats = NodeStats()
        self.state = "unconfigured"
        self._factory = pipeline_factory or load_pipeline
        self._slot = FrameSlot()
        self._camera_info: Dict[str, Any] = {}
        self._detections: "collections.OrderedDict[int, Any]" = collections.OrderedDict()
        self._det_cond = threading.Condition()
        self._pubs: Dict[str, Any] = {}
        self._body_pubs: Dict[str, Dict[str, Any]] = {}
        self._subs: List[Any] = []
        self._timer: Any = None
        self._worker: Optional[threading.Thread] = None
        self._running = threading.Event()
        self.pipeline: Any = None
        self.body: Any = None
        self.backend_name = ""
        self._ids = outputs.BodyIds()
        self._classes = {c.strip() for c in config.detection_classes.split(",") if c.strip()}

    # -- lifecycle -------------------------------------------------------------------------------

    def configure(self) -> None:
        if self.state != "unconfigured":
            raise RuntimeError(f"configure from state {self.state}")
        self.pipeline, self.body, self.backend_name = self._factory(self.config)
        out_qos = qos_from_string(self.config.output_qos)
        t = self.transport
        self._pubs["mesh"] = t.create_publisher("human_mesh", "hmr_ros/msg/HumanMeshArray", out_qos)
        self._pubs["faces"] = t.create_publisher("human_mesh/faces", "hmr_ros/msg/MeshFaces",
                                                 QOS_TRANSIENT_LOCAL)
        if self.config.publish_visibility:
            self._pubs["visibility"] = t.create_publisher(
                "human_mesh/visibility", "hmr_ros/msg/BodyPartVisibility", out_qos)
        if self.config.publish_rep155:
            self._pubs["tracked"] = t.create_publisher("humans/bodies/tracked",
                                                       "hri_msgs/msg/IdsList", out_qos)
        if self.config.publish_tf:  # as tf2's broadcaster: reliable, depth 100, whatever output_qos
            self._pubs["tf"] = t.create_publisher("/tf", "tf2_msgs/msg/TFMessage",
                                                  QoSProfile(depth=100))
        if self.config.publish_markers:
            self._pubs["markers"] = t.create_publisher(
                "human_mesh/markers", "visualization_msgs/msg/MarkerArray", out_qos)
        if self.config.publish_overlay:
            self._pubs["overlay"] = t.create_publisher("human_mesh/overlay",
                                                       "sensor_msgs/msg/Image", out_qos)
        self._pubs["diagnostics"] = t.create_publisher(
            "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", QoSProfile())
        faces_header = types.make("std_msgs/msg/Header", stamp=t.now())
        self._pubs["faces"].publish(mesh_faces_message(self.body.name, self.body.faces,
                                                       self.body.part, faces_header))
        self.state = "inactive"
        t.logger.info("configured: model %s on %s, body %s", self.config.model_dir,
                      self.backend_name, self.body.name)

    def activate(self) -> None:
        if self.state != "inactive":
            raise RuntimeError(f"activate from state {self.state}")
        if self._worker is not None and self._worker.is_alive():
            raise RuntimeError("activate: the previous worker is still finishing a frame")
        t, c = self.transport, self.config
        self._slot = FrameSlot()  # before the subscriptions: no frame lands in a closed slot
        in_qos = qos_from_string(c.input_qos)
        # camera_info and detections first: a transport that delivers in subscription order
        # (the built-in one) then hands over a frame's detections before the frame itself
        self._subs.append(t.create_subscription(c.camera_info_topic, "sensor_msgs/msg/CameraInfo",
                                                self._on_camera_info, in_qos))
        if c.detections_topic:
            self._subs.append(t.create_subscription(
                c.detections_topic, "vision_msgs/msg/Detection2DArray", self._on_detections,
                in_qos))
        if c.compressed:
            self._subs.append(t.create_subscription(
                f"{c.image_topic}/compressed", "sensor_msgs/msg/CompressedImage",
                self._on_image, in_qos))
        else:
            self._subs.append(t.create_subscription(c.image_topic, "sensor_msgs/msg/Image",
                                                    self._on_image, in_qos))
        self._running.set()
        self._worker = threading.Thread(target=self._work, name="hmr_ros-worker", daemon=True)
        self._worker.start()
        self._timer = t.create_timer(c.diagnostics_period, self.publish_diagnostics)
        self.state = "active"
        t.logger.info("active: image %s%s, camera_info %s%s", c.image_topic,
                      "/compressed" if c.compressed else "", c.camera_info_topic,
                      f", detections {c.detections_topic}" if c.detections_topic else "")

    def deactivate(self) -> None:
        if self.state != "active":
            raise RuntimeError(f"deactivate from state {self.state}")
        self._running.clear()
        self._slot.close()
        if self._slot.take(0) is not None:  # a frame nobody will process: dropped
            self.stats.arrived_dropped()
        if self._worker is not None:
            self._worker.join(timeout=30)
            if not self._worker.is_alive():
                self._worker = None  # else activate refuses until it has finished
        for sub in self._subs:
            sub.close()
        self._subs = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.state = "inactive"

    def cleanup(self) -> None:
        if self.state != "inactive":
            raise RuntimeError(f"cleanup from state {self.state}")
        for pub in list(self._pubs.values()) + [p for d in self._body_pubs.values()
                                                for p in d.values()]:
            pub.close()
        self._pubs, self._body_pubs = {}, {}
        self.pipeline = self.body = None
        self.state = "unconfigured"

    def shutdown(self) -> None:
        if self.state == "active":
            self.deactivate()
        if self.state == "inactive":
            self.cleanup()
        self.state = "finalized"

    # -- callbacks (transport thread): store only --------------------------------------------------

    def _on_image(self, msg: Any) -> None:
        self.stats.arrived(self._slot.put((msg, time.monotonic())))

    def _on_camera_info(self, msg: Any) -> None:
        self._camera_info[msg.header.frame_id] = msg
        if len(self._camera_info) > 16:  # a few cameras, not one entry per bogus frame id
            self._camera_info.pop(next(iter(self._camera_info)))

    def _on_detections(self, msg: Any) -> None:
        with self._det_cond:
            self._detections[_stamp_ns(msg.header)] = msg
            while len(self._detections) > 120:
                self._detections.popitem(last=False)
            self._det_cond.notify_all()

    # -- worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while self._running.is_set():
            item = self._slot.take(0.1)
            if item is None:
                continue
            try:
                self.process(*item)
            except Exception:  # noqa: BLE001 - the worker must survive anything
                log.exception("unexpected error while processing a frame")
                self.stats.skip("internal error")

    def process(self, msg: Any, arrived: float) -> Optional[Any]:
        """Run one image message through the pipeline and publish; returns the FrameResult
        (None when the frame was skipped before the pipeline)."""
        from hmr_ros.runtime import Header

        t0 = time.perf_counter()
        stamp, frame_id = _stamp_ns(msg.header), msg.header.frame_id
        try:
            rgb = images.message_to_rgb(msg, getattr(msg, "__msgtype__", None))
        except images.ImageMessageError as exc:
            self._skip(stamp, frame_id, f"bad image: {exc}")
            return None
        K = self._intrinsics(frame_id, rgb.shape[1], rgb.shape[0], stamp)
        decode_s = time.perf_counter() - t0
        boxes = None
        if self.config.detections_topic:
            t_wait = time.perf_counter()
            boxes = self._boxes(stamp, rgb.shape[1], rgb.shape[0])
            wait_s = time.perf_counter() - t_wait
            if boxes is None:  # the detector said nothing about this frame: nobody, not a
                boxes = []     # whole-frame person; counted so a dead detector shows
                self._warn(f"no detections for the frame on {self.config.detections_topic}",
                           stamp, frame_id)
        result = self.pipeline.process(rgb, K, boxes, Header(stamp_ns=stamp, frame_id=frame_id))
        if result.skipped:
            self.stats.skip(result.skipped)
            return result
        t1 = time.perf_counter()
        self._publish(result, msg.header, rgb)
        timing = dict(result.timing)
        timing.update(decode=decode_s, publish=time.perf_counter() - t1,
                      age=time.monotonic() - arrived)
        if self.config.detections_topic:
            timing["detections_wait"] = wait_s
        self.stats.finished(len(result.persons), timing)
        return result

    def _skip(self, stamp: int, frame_id: str, reason: str) -> None:
        self._warn(reason, stamp, frame_id, "skipped: ")

    def _warn(self, reason: str, stamp: int, frame_id: str, prefix: str = "") -> None:
        """Count a problem by reason; log it with the frame's stamp the first 5 times, then
        every 100th (a misconfigured camera at 30 Hz must not flood the log)."""
        count = self.stats.skip(reason)
        if count <= 5 or count % 100 == 0:
            log.warning("frame %d (%s) %s%s (%d so far)", stamp, frame_id, prefix, reason, count)

    def _intrinsics(self, frame_id: str, width: int, height: int, stamp: int) -> Optional[np.ndarray]:
        info = self._camera_info.get(frame_id)
        if info is None:
            return None  # the pipeline assumes a focal length and flags it
        K = np.asarray(info.k, np.float64).reshape(3, 3)
        if (info.width and info.width != width) or (info.height and info.height != height):
            self._warn(f"camera_info size mismatch: it is for {info.width}x{info.height}, the "
                       f"image is {width}x{height}; focal length assumed", stamp, frame_id)
            return None
        return K

    def _boxes(self, stamp: int, width: int, height: int) -> Optional[List[Any]]:
        # a detector's output may trail its image a little (or arrive in the same batch, after
        # it): wait up to 100 ms, woken as soon as detections come in
        deadline = time.monotonic() + 0.1
        with self._det_cond:
            while True:
                det = self._detections.pop(stamp, None)
                left = deadline - time.monotonic()
                if det is not None or left <= 0 or not self._running.is_set():
                    break
                self._det_cond.wait(left)
        if det is None:
            return None  # no detections for this frame: the whole frame is one person
        return detection_boxes(det, self._classes, stamp)

    # -- outputs -----------------------------------------------------------------------------------

    def _publish(self, result: Any, header: Any, rgb: np.ndarray) -> None:
        height, width = rgb.shape[:2]
        track_ids = [p.track_id for p in result.persons]
        ids = [self._ids.get(tid) for tid in track_ids]
        tracker = getattr(self.pipeline, "tracker", None)
        ended = self._ids.forget_except(tracker.active_ids() if tracker is not None else
                                        [t for t in track_ids if t >= 0])
        mesh, visibility = outputs.human_mesh_array(result, header, ids, self.body.name,
                                                    self.body.num_vertices, width, height)
        self._pubs["mesh"].publish(mesh)
        if "visibility" in self._pubs:
            for v in visibility:
                self._pubs["visibility"].publish(v)
        if "tracked" in self._pubs:
            tracked, per_body = outputs.rep155_messages(result, header, ids, width, height)
            self._pubs["tracked"].publish(tracked)
            for bid, msgs in per_body.items():
                pubs = self._body_pubs.get(bid)
                if pubs is None:
                    pubs = self._body_pubs[bid] = self._create_body_publishers(bid)
                for key, m in msgs.items():
                    pubs[key].publish(m)
            for _, bid in ended:
                for pub in self._body_pubs.pop(bid, {}).values():
                    pub.close()
        if "tf" in self._pubs and not header.frame_id:
            self._warn("image has no frame_id: no TF published", _stamp_ns(header), "")
        elif "tf" in self._pubs:
            tf = outputs.tf_message(result, header, ids)
            if tf.transforms:
                self._pubs["tf"].publish(tf)
        try:
            self._publish_views(result, header, rgb, ids, track_ids, ended)
        except Exception as exc:  # noqa: BLE001 - a view's failure must not cost the frame
            self._warn(f"markers/overlay not published: {type(exc).__name__}: {exc}",
                       _stamp_ns(header), header.frame_id)

    def _publish_views(self, result: Any, header: Any, rgb: np.ndarray, ids: List[Any],
                       track_ids: List[int], ended: List[Any]) -> None:
        """RViz markers and the overlay image: built only while someone subscribes."""
        if "markers" in self._pubs and self._pubs["markers"].subscription_count():
            self._pubs["markers"].publish(outputs.marker_array(
                result, header, ids, self.body.faces, self.body.part, track_ids,
                [tid for tid, _ in ended]))
        if "overlay" in self._pubs and self._pubs["overlay"].subscription_count():
            from hmr_ros.viz import draw_labels, draw_overlay

            overlay = draw_overlay(rgb, result.persons, self.body.faces, self.body.part,
                                   result.intrinsics)
            draw_labels(overlay, result.persons, [bid for bid, _ in ids])
            self._pubs["overlay"].publish(images.rgb_to_image(overlay, header))

    def _create_body_publishers(self, bid: str) -> Dict[str, Any]:
        q = qos_from_string(self.config.output_qos)
        base = f"humans/bodies/{bid}"
        t = self.transport
        return {"roi": t.create_publisher(f"{base}/roi",
                                          "hri_msgs/msg/NormalizedRegionOfInterest2D", q),
                "skeleton2d": t.create_publisher(f"{base}/skeleton2d", "hri_msgs/msg/Skeleton2D",
                                                 q),
                "joint_states": t.create_publisher(f"{base}/joint_states",
                                                   "sensor_msgs/msg/JointState", q)}

    def publish_diagnostics(self) -> None:
        """/diagnostics: rates, drops, skips by reason, per-stage latency p50/p95, model."""
        snap = self.stats.snapshot()
        values = [("state", self.state), ("backend", self.backend_name),
                  ("model", str(self.config.model_dir)),
                  ("body_model", self.body.name if self.body is not None else ""),
                  ("input_rate_hz", f"{snap['input_rate']:.2f}"),
                  ("processed_rate_hz", f"{snap['processed_rate']:.2f}"),
                  ("frames_received", str(snap["received"])),
                  ("frames_processed", str(snap["processed"])),
                  ("frames_dropped", str(snap["dropped"])),
                  ("frames_skipped", str(sum(snap["skipped"].values()))),
                  ("persons", str(snap["persons"]))]
        values += [(f"skipped: {reason}", str(n)) for reason, n in sorted(snap["skipped"].items())]
        for stage, (p50, p95) in sorted(snap["latency_ms"].items()):
            values += [(f"latency_ms {stage} p50", f"{p50:.2f}"),
                       (f"latency_ms {stage} p95", f"{p95:.2f}")]
        skipped = sum(snap["skipped"].values())
        recent = self.stats.recent_skips(max(5.0, 5 * self.config.diagnostics_period))
        level = 0 if not recent and snap["processed"] else 1
        message = (f"{snap['processed_rate']:.1f} Hz processed of {snap['input_rate']:.1f} Hz in, "
                   f"{snap['dropped']} dropped, {skipped} skipped")
        status = types.make("diagnostic_msgs/msg/DiagnosticStatus", level=level,
                            name=f"{self.transport.node_name}: pipeline", message=message,
                            hardware_id=self.backend_name,
                            values=[types.make("diagnostic_msgs/msg/KeyValue", key=k, value=v)
                                    for k, v in values])
        header = types.make("std_msgs/msg/Header", stamp=self.transport.now())
        pub = self._pubs.get("diagnostics")
        if pub is not None:
            pub.publish(types.make("diagnostic_msgs/msg/DiagnosticArray", header=header,
                                   status=[status]))


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def detection_boxes(msg: Any, classes=(), stamp: Optional[int] = None) -> List[Any]:
    """A vision_msgs/Detection2DArray as the pipeline's boxes: detections of ``classes`` (all
    when empty) with their best score; a non-finite or empty box is dropped with a warning.
    The node and ``hmr-ros eval`` read detections with this one function."""
    from hmr_ros.runtime import Box

    boxes = []
    for d in msg.detections:
        scores = [h.hypothesis.score for h in d.results
                  if not classes or h.hypothesis.class_id in classes]
        if classes and not scores:
            continue
        b = d.bbox
        cx, cy, w, h = b.center.position.x, b.center.position.y, b.size_x, b.size_y
        if not np.isfinite([cx, cy, w, h]).all() or w <= 0 or h <= 0:
            log.warning("frame %s: detection with a non-finite or empty box ignored", stamp)
            continue
        score = float(max(scores)) if scores else 1.0
        boxes.append(Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2,
                         score if np.isfinite(score) else 0.0))
    return boxes


def load_detector(config: NodeConfig):
    """The keypoint detector the parameters ask for, or None (the whole frame is one person).
    ``auto`` takes BlazePose when it is installed and says so either way."""
    if config.person_detector == "none":
        return None
    from hmr_ros.detect import DetectorParams, PoseKeypointDetector, default_model_dir

    model_dir = config.detector_model_dir or str(default_model_dir())
    if config.person_detector == "auto" and not (Path(model_dir) / "manifest.json").is_file():
        log.warning("person_detector auto: BlazePose is not installed in %s (hmr-ros detector "
                    "fetch); without a detections topic the whole frame is one person", model_dir)
        return None
    options: Dict[str, Any] = {"precision": config.precision}
    if config.engine_cache_dir:
        options["cache_dir"] = config.engine_cache_dir
    detector = PoseKeypointDetector(
        model_dir, backend=config.backend if config.backend != "torch" else "onnxruntime",
        threads=config.threads or None, **options,
        params=DetectorParams(min_detection_score=config.detector_min_score,
                              max_persons=config.max_persons,
                              detect_every=config.detector_every,
                              detector_tile=config.detector_tile))
    log.info("person detector: BlazePose from %s on %s", model_dir, detector.backend.name)
    return detector


def load_pipeline(config: NodeConfig) -> Tuple[Any, Any, str]:
    """The default model loading: body model, runner on the configured backend, pipeline."""
    from hmr_ros.body import load_body_model
    from hmr_ros.runtime import FramePipeline, PipelineParams, open_regressor

    body = load_body_model(config.body_model)
    # each backend takes the options it knows (select_backend ignores the others' options)
    options: Dict[str, Any] = {"precision": config.precision}
    if config.threads:
        options["threads"] = config.threads
    if config.engine_cache_dir:
        options["cache_dir"] = config.engine_cache_dir
    runner = open_regressor(config.model_dir, body, backend=config.backend, **options)
    params = PipelineParams(max_persons=config.max_persons,
                            score_threshold=config.score_threshold, mode=config.merge_mode,
                            track=config.track, smooth=config.smooth,
                            smooth_min_cutoff=config.smooth_min_cutoff,
                            smooth_beta=config.smooth_beta,
                            refine_iterations=config.refine_iterations,
                            refine_prior=config.refine_prior)
    if getattr(runner, "bottom_up", False) and config.person_detector == "auto":
        # a bottom-up model finds people itself; BlazePose only when asked for (its keypoints
        # then feed refinement)
        log.info("person detector: none needed (%s finds people itself)", runner.manifest.model)
        detector = None
    else:
        detector = load_detector(config)
    pipeline = FramePipeline(runner, params, keypoint_detector=detector)
    if pipeline.tracker is not None:
        pipeline.tracker.min_hits = config.track_min_hits
        pipeline.tracker.max_age = config.track_max_age
    return pipeline, body, runner.backend.name


def build_pipeline(overrides: Optional[Dict[str, Any]] = None) -> Tuple[Any, Any, str, Any]:
    """(pipeline, body, backend name, config) from node parameters given as a dict: the node's
    own loader for offline tools (``hmr-ros eval``, ``hmr-ros live``), so they run exactly the
    pipeline the node would with the same ``-p name:=value`` parameters."""
    from .params import config_from_overrides

    config = config_from_overrides(overrides)
    pipeline, body, backend = load_pipeline(config)
    return pipeline, body, backend, config
