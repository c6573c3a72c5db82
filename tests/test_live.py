"""``hmr-ros live``: a real video file (the astronaut photo, a person) and a sample bag through
the node's pipeline, headless to an mp4 and an MCAP; the newest-frame policy under a source
faster than the model; bad sources; camera_info YAML; ROS 2 publishing to a real subscriber."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from hmr_ros.bag import BagReader  # noqa: E402
from hmr_ros.bag.sample import make_sample_bag  # noqa: E402
from hmr_ros.cli import build_parser, main  # noqa: E402
from hmr_ros.live.calibration import PIPELINE_ASSUMED_FOV_DEG, fov_intrinsics  # noqa: E402
from hmr_ros.live.cli import run_live  # noqa: E402
from hmr_ros.live.sources import CapturedFrame, NewestFrame  # noqa: E402

NO_DETECTOR = ["-p", "person_detector:=none"]


def _write_video(path: Path, frames: int, fps: float, size: int = 192) -> Path:
    """The astronaut photo (one person), shifted a little per frame, as an mp4v video."""
    from skimage import data

    img = cv2.resize(data.astronaut()[..., ::-1], (size, size), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.ascontiguousarray(np.roll(img, i, axis=1)))
    writer.release()
    return path


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["live", *argv])


def _count_frames(path: Path):
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    cap.release()
    return n, shape


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _write_video(tmp_path_factory.mktemp("live") / "astronaut.mp4", 12, 30.0)


def test_video_headless_to_mp4_and_mcap_with_the_default_model(video, tmp_path, capsys):
    """Default model and BlazePose: every frame processed (no pacing), people found, the
    overlay video and the recording complete, and hmr-ros eval reads the recording."""
    out, rec = tmp_path / "overlay.mp4", tmp_path / "run.mcap"
    summary_path = tmp_path / "summary.json"
    assert main(["live", "--video", str(video), "--headless", "--no-pace", "--out", str(out),
                 "--record", str(rec), "--summary-json", str(summary_path)]) == 0
    printed = capsys.readouterr().out
    s = json.loads(summary_path.read_text())
    assert s["captured"] == 12 and s["processed"] == 12 and s["dropped"] == 0, s
    assert s["processed"] + s["dropped"] == s["captured"]
    assert s["persons"] >= 10, s  # BlazePose finds the astronaut in (nearly) every frame
    assert "detector" in s["stage_ms"] and s["latency_ms"]["p95"] >= s["latency_ms"]["p50"] > 0
    assert "frames captured 12, processed 12, dropped 0" in printed
    assert "assumed FOV 53°" in printed and "p95" in printed
    assert _count_frames(out) == (12, (192, 192, 3))
    with BagReader(rec) as bag:
        counts = {t.topic: t.count for t in bag.topics()}
        mesh = [m.decode() for m in bag.messages(["/human_mesh"])]
    assert counts["/camera/image_raw"] == 12 and counts["/human_mesh"] == 12, counts
    assert counts["/human_mesh/faces"] == 1 and counts["/humans/bodies/tracked"] == 12
    assert "/camera/camera_info" not in counts  # assumed intrinsics are not passed off as given
    assert sum(len(m.humans) for m in mesh) == s["persons"]
    assert all(h.focal_length_assumed for m in mesh for h in m.humans)
    # no ground truth in the recording: eval still runs and reports the frames
    report = tmp_path / "report"
    assert main(["eval", str(rec), "--report", str(report), "--no-progress", "--no-html"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["bags"][0]["frames"] == 12 and metrics["bags"][0]["status"] == "ok"


def test_a_source_faster_than_the_model_drops_frames_without_building_latency(tmp_path):
    """A video paced at 300 FPS (3.3 ms a frame) into a model that needs more: the loop takes
    the newest frame, so most frames are dropped and counted, and latency stays one frame's."""
    fast = _write_video(tmp_path / "fast.mp4", 90, 300.0, size=128)
    out = tmp_path / "o.mp4"
    s = run_live(_args("--video", str(fast), "--headless", "--out", str(out), *NO_DETECTOR))
    assert s["captured"] == 90 and s["processed"] + s["dropped"] == s["captured"], s
    assert s["dropped"] > 30, s
    total_p50 = s["stage_ms"]["total"][0]
    # a queue would make the last frames wait for all before them (~processed x stage time)
    assert s["latency_ms"]["p95"] < 10 * total_p50 + 150, s
    # the video keeps the source's timing: processed frames held over the dropped ones
    frames, shape = _count_frames(out)
    assert frames == s["frames_written"] and s["processed"] <= frames <= 90
    assert shape[:2] == (128, 128)


def test_newest_frame_mailbox_counts_replacements_and_blocks_when_asked():
    box = NewestFrame()
    frames = [CapturedFrame(i, np.zeros((2, 2, 3), np.uint8), i, "f", 0.0) for i in range(3)]
    box.put(frames[0])
    box.put(frames[1])
    assert box.dropped == 1 and box.take(0.01).index == 1 and box.take(0.01) is None
    box.put(frames[2])
    taker = threading.Timer(0.2, box.take, args=(0.01,))
    taker.start()
    t0 = time.perf_counter()
    box.put(frames[0], wait=True)  # waits until the timer took frame 2
    assert time.perf_counter() - t0 > 0.15 and box.dropped == 1
    assert box.close().index == 0 and box.dropped == 2 and box.put(frames[1]) is False


def test_camera_info_yaml_is_used_and_fov_sets_the_assumed_focal(video, tmp_path):
    K = np.array([[210.0, 0.0, 90.0], [0.0, 205.0, 100.0], [0.0, 0.0, 1.0]])
    yaml_path = tmp_path / "cam.yaml"
    yaml_path.write_text(
        "image_width: 192\nimage_height: 192\ncamera_name: test\n"
        f"camera_matrix:\n  rows: 3\n  cols: 3\n  data: {K.ravel().tolist()}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients:\n  rows: 1\n  cols: 5\n"
        "  data: [0, 0, 0, 0, 0]\n")
    seen = []
    s = run_live(_args("--video", str(video), "--headless", "--no-pace", "--max-frames", "3",
                       "--camera-info", str(yaml_path), *NO_DETECTOR),
                 on_result=lambda frame, result: seen.append(result))
    assert len(seen) == 3 and s["processed"] == 3
    for result in seen:
        assert not result.assumed_intrinsics
        np.testing.assert_allclose(result.intrinsics, K)
    assert "calibrated" in s["intrinsics"]
    seen.clear()
    s = run_live(_args("--video", str(video), "--headless", "--no-pace", "--max-frames", "1",
                       "--fov", "70", *NO_DETECTOR), on_result=lambda f, r: seen.append(r))
    np.testing.assert_allclose(seen[0].intrinsics, fov_intrinsics(70.0, 192, 192))
    assert "FOV 70°" in s["intrinsics"]
    # without either, the pipeline's own assumption, shown with its field of view
    seen.clear()
    s = run_live(_args("--video", str(video), "--headless", "--no-pace", "--max-frames", "1",
                       *NO_DETECTOR), on_result=lambda f, r: seen.append(r))
    assert seen[0].assumed_intrinsics and f"{PIPELINE_ASSUMED_FOV_DEG:.0f}°" in s["intrinsics"]


def test_bag_source_uses_its_camera_info_and_records_compressed_as_received(tmp_path):
    bag = make_sample_bag(tmp_path / "sample", seconds=0.5, fps=10, people=1, size=128, seed=3,
                          compressed="jpeg")
    with BagReader(bag) as reader:
        info = next(m.decode() for m in reader.messages(["/camera/camera_info"]))
        jpeg = [m.data for m in reader.messages(["/camera/image_raw/compressed"])]
    seen, rec = [], tmp_path / "rec.mcap"
    s = run_live(_args("--bag", str(bag), "--headless", "--no-pace", "--record", str(rec),
                       *NO_DETECTOR), on_result=lambda f, r: seen.append(r))
    assert s["captured"] == len(jpeg) == s["processed"] and s["dropped"] == 0
    np.testing.assert_allclose(seen[0].intrinsics, np.asarray(info.k).reshape(3, 3))
    with BagReader(rec) as reader:
        counts = {t.topic: t.count for t in reader.topics()}
        recorded = [m.data for m in reader.messages(["/camera/image_raw/compressed"])]
    assert recorded == jpeg  # the camera's bytes, unchanged
    assert counts["/camera/camera_info"] == len(jpeg) and counts["/human_mesh"] == len(jpeg)


@pytest.mark.parametrize("argv, text", [
    (["--video", "/nonexistent/clip.mp4", "--headless"], "video file not found"),
    (["--camera", "97", "--headless"], "cannot open camera 97"),
    (["--bag", "/nonexistent/bag", "--headless"], "bag not found"),
    (["--video", "VIDEO", "--headless", "--camera-info", "/nonexistent.yaml"],
     "camera_info file not found"),
    (["--video", "VIDEO"], "pip install opencv-python"),  # the headless OpenCV has no windows
])
def test_bad_sources_and_displays_give_a_clear_error(argv, text, video, capsys):
    argv = [str(video) if a == "VIDEO" else a for a in argv]
    assert main(["live", *argv]) == 1
    err = capsys.readouterr().err
    assert "hmr-ros live: error:" in err and text in err, err


def test_text_file_as_video_is_refused(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert main(["live", "--video", str(bad), "--headless"]) == 1
    assert "cannot read video" in capsys.readouterr().err


def test_publish_reaches_a_ros2_subscriber(tmp_path, dds_domain):
    from hmr_ros.transport import QOS_TRANSIENT_LOCAL
    from hmr_ros.transport.dds import DdsTransport

    paced = _write_video(tmp_path / "paced.mp4", 40, 20.0, size=96)  # 2 s: discovery has time
    got = {"mesh": [], "faces": [], "image": []}
    with DdsTransport("live_listener") as listener:
        listener.create_subscription("/human_mesh", "hmr_ros/msg/HumanMeshArray",
                                     got["mesh"].append)
        listener.create_subscription("/human_mesh/faces", "hmr_ros/msg/MeshFaces",
                                     got["faces"].append, QOS_TRANSIENT_LOCAL)
        listener.create_subscription("/camera/image_raw", "sensor_msgs/msg/Image",
                                     got["image"].append)
        done = {}
        worker = threading.Thread(target=lambda: done.update(run_live(_args(
            "--video", str(paced), "--headless", "--publish", *NO_DETECTOR))))
        worker.start()
        end = time.monotonic() + 30
        while (worker.is_alive() or not got["mesh"]) and time.monotonic() < end:
            listener.spin_once(0.05)
        worker.join(timeout=10)
    assert done["processed"] > 0
    assert len(got["faces"]) == 1 and len(got["mesh"]) >= 5, {k: len(v) for k, v in got.items()}
    human = got["mesh"][-1].humans[0]  # no detector: the whole frame is one person
    assert len(human.vertices) == 3 * human.num_vertices > 0
    assert got["image"] and got["image"][-1].width == 96


def test_ctrl_c_ends_cleanly_with_the_summary_and_a_playable_video(tmp_path):
    import signal
    import subprocess
    import sys

    clip = _write_video(tmp_path / "long.mp4", 300, 30.0, size=96)  # 10 s paced
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "hmr_ros.cli", "live", "--video", str(clip),
                             "--headless", "--out", str(out), *NO_DETECTOR],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Ctrl-C once the loop runs (the first overlay frame opened the video), not during the
    # imports, which a loaded machine can stretch past any fixed delay
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    line = next(ln for ln in stdout.splitlines() if "frames captured" in ln)
    captured = int(line.split("frames captured ")[1].split(",")[0])
    assert 0 < captured < 300 and "p95" in stdout
    frames, _ = _count_frames(out)
    assert frames > 0  # the writer was closed: the file plays
