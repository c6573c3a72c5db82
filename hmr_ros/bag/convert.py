"""``hmr-ros convert``: datasets -> rosbag2 with ground truth, in the sample bag's layout.

``hmr-ros convert 3dpw SEQUENCE.pkl --images DIR --out BAG``, ``hmr-ros convert spin NPZ --images
DIR --out BAG`` and ``hmr-ros convert synthetic --num N --out BAG`` write the topics of
``hmr_ros.bag.sample`` (same names, types and message layout, so ``hmr-ros eval`` reads them):
``/camera/image_raw`` (rgb8; or ``/camera/image_raw/compressed`` with ``--compressed``),
``/camera/camera_info``, ``/ground_truth/detections`` and ``/ground_truth/human_mesh``
(``/ground_truth/mesh_faces`` only for ``synthetic``, whose body model is known). Storage is
sqlite3 by default (``--storage mcap`` too). All pixel quantities are in the ROS convention
(top-left pixel centre at (0, 0)). Per source:

* **3DPW** (``formats.threedpw.ThreeDPWSequence``): one message per image frame at 30 Hz (stamps
  from the frame ids), the people with ``campose_valid`` in that frame; camera-frame pose
  (global orientation ``R_cam @ R_world``), betas, the 24 joints, their projection with the
  sequence's ``cam_intrinsics`` and the reader's box (projected joints' square x 1.3, clipped).
  No vertices (the SMPL model is not bundled). ``translation`` is the camera-frame pelvis minus
  the SMPL neutral template's rest pelvis (exact for betas = 0; off by the betas' effect on the
  rest pelvis, about a centimetre, otherwise). ``body_model`` is ``SMPL_MALE`` / ``SMPL_FEMALE``
  / ``SMPL_NEUTRAL`` from ``genders``.
* **SPIN/PARE npz** (``formats.spin_npz.SpinNpzDataset``): entries sharing an ``imgname`` are the
  people of one image; one message per image, ``1 / --fps`` apart. The files carry no
  intrinsics: K is ``--focal`` (default: the image diagonal in pixels) with the principal point
  at the image centre. Pose and betas where ``has_smpl``; joints (``S``) and 2D keypoints
  (``part``) only when all 24 are known in SMPL order (``--keypoint-layout smpl24`` files; the
  SPIN-24 layout maps only 15 joints); the box is ``center`` +- ``scale`` * 100 px.
  ``translation`` is unknown (zero).
* **synthetic** (``data.synthetic.SyntheticGenerator``): sample ``i`` of the seeded dataset is
  frame ``i`` (independent scenes, not a video), with everything the sample bag has.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from hmr_ros.transport import QOS_DEFAULT, QOS_TRANSIENT_LOCAL, types
from hmr_ros.transport.images import rgb_to_compressed, rgb_to_image

from .sample import (
    _EPOCH_NS,
    _TO_ROS_PIXELS,
    COMPRESSED_IMAGE_TOPIC,
    SAMPLE_TOPICS,
    _detection,
    _header,
    _human,
    camera_info_message,
    ros_intrinsics,
)
from .writer import BagWriter

__all__ = [
    "SMPL_NUM_VERTICES",
    "SMPL_REST_PELVIS",
    "ConvertFrame",
    "convert_3dpw",
    "convert_spin",
    "convert_synthetic",
    "write_frames",
]

SMPL_NUM_VERTICES = 6890
#: Rest-pose pelvis joint of the SMPL neutral template (betas = 0), metres.
SMPL_REST_PELVIS = np.array([-0.00217368, -0.24078917, 0.02858379])
_3DPW_FPS = 30.0


class ConvertFrame(SimpleNamespace):
    """One image and its people, with the attributes ``sample._human``/``_detection`` read.

    ``image`` H x W x 3 uint8 RGB; ``K`` 3 x 3 in ROS pixels; ``stamp_ns``; per person ``k``:
    ``rotmats[k]`` 24 x 3 x 3, ``betas[k]``, ``transl[k]`` (3,), ``vertices[k]`` / ``joints[k]``
    (may be empty), ``keypoints_2d[k]`` and ``boxes[k]`` in *renderer* pixels (ROS + 0.5, as in
    ``sample``), ``visibility[k]`` (24,) or empty, ``ids[k]`` (track id, int) and
    ``bodies[k]`` (``.name``, ``.num_vertices``).
    """


def _gt_person(rotmats: np.ndarray, betas: np.ndarray, transl: np.ndarray,
               joints: Optional[np.ndarray], keypoints_ros: Optional[np.ndarray],
               box_ros: np.ndarray, width: int, height: int) -> Dict[str, np.ndarray]:
    """One person's arrays with ROS pixels moved to the renderer convention ``_human`` expects
    and the box clipped to the image."""
    shift = -_TO_ROS_PIXELS
    box = np.asarray(box_ros, np.float64) + shift
    box = np.clip(box, 0.0, [width, height, width, height])
    return {
        "rotmats": np.asarray(rotmats, np.float32).reshape(24, 3, 3),
        "betas": np.asarray(betas, np.float32).ravel(),
        "transl": np.asarray(transl, np.float64).reshape(3),
        "joints": (np.zeros((0, 3), np.float32) if joints is None
                   else np.asarray(joints, np.float32).reshape(24, 3)),
        "keypoints_2d": (np.zeros((0, 2)) if keypoints_ros is None
                         else np.asarray(keypoints_ros, np.float64).reshape(24, 2) + shift),
        "boxes": box,
        "vertices": np.zeros((0, 3), np.float32),
        "visibility": np.zeros(0, np.float32),
    }


def _frame(stamp_ns: int, image: np.ndarray, K: np.ndarray, people: List[Dict[str, Any]]
           ) -> ConvertFrame:
    keys = ("rotmats", "betas", "transl", "joints", "keypoints_2d", "boxes", "vertices",
            "visibility", "ids", "bodies")
    return ConvertFrame(stamp_ns=int(stamp_ns), image=image, K=np.asarray(K, np.float64),
                        **{k: [p[k] for p in people] for k in keys})


def write_frames(out: Any, frames: Iterable[ConvertFrame], *, storage: str = "sqlite3",
                 compressed: Optional[str] = None, faces_body: Any = None,
                 total: Optional[int] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Write ``frames`` as a bag in the sample bag's layout; returns the number of frames.
    ``faces_body``: a ``BodyModel`` whose faces go on ``/ground_truth/mesh_faces`` (None: none).
    """
    from hmr_ros.transport.mesh_faces import mesh_faces_message

    if compressed not in (None, "jpeg", "png"):
        raise ValueError(f"compressed must be jpeg or png, not {compressed!r}")
    topics = dict(SAMPLE_TOPICS)
    if compressed:
        topics["image"] = COMPRESSED_IMAGE_TOPIC
    if faces_body is None:
        topics.pop("faces")
    count = 0
    with BagWriter(out, storage=storage) as bag:
        for key, (topic, type_name) in topics.items():
            bag.add_topic(topic, type_name,
                          QOS_TRANSIENT_LOCAL if key == "faces" else QOS_DEFAULT)
        if faces_body is not None:
            faces_header = _header(_EPOCH_NS)
            faces_header.frame_id = ""  # as in sample.make_sample_bag
            bag.write(topics["faces"][0], _EPOCH_NS, mesh_faces_message(
                faces_body.name, faces_body.faces, faces_body.part, faces_header))
        seen: set = set()
        for frame in frames:
            stamp = frame.stamp_ns
            header = _header(stamp)
            h, w = frame.image.shape[:2]
            image = (rgb_to_compressed(frame.image, header, compressed) if compressed
                     else rgb_to_image(frame.image, header))
            bag.write(topics["image"][0], stamp, image)
            bag.write(topics["camera_info"][0], stamp,
                      camera_info_message(frame.K, w, h, header))
            n = len(frame.ids)
            dets, humans, vis = [], [], []
            for k in range(n):
                pid = frame.ids[k]
                det = _detection(frame, k, header)
                det.id = f"gt{pid}"
                dets.append(det)
                human = _human(frame, k, frame.bodies[k], header, new=pid not in seen)
                human.body_id = f"gt{pid}"
                humans.append(human)
                seen.add(pid)
                if len(frame.visibility[k]):
                    vis.append(types.make("hmr_ros/msg/BodyPartVisibility", header=header,
                                          body_id=f"gt{pid}", visibility=np.asarray(
                                              frame.visibility[k], np.float32)))
            bag.write(topics["detections"][0], stamp, types.make(
                "vision_msgs/msg/Detection2DArray", header=header, detections=dets))
            bag.write(topics["ground_truth"][0], stamp, types.make(
                "hmr_ros/msg/HumanMeshArray", header=header, humans=humans, visibility=vis))
            count += 1
            if progress:
                progress(count, total or count)
    return count


def _smpl_body(gender: str) -> SimpleNamespace:
    name = {"m": "SMPL_MALE", "f": "SMPL_FEMALE"}.get(str(gender)[:1].lower(), "SMPL_NEUTRAL")
    return SimpleNamespace(name=name, num_vertices=SMPL_NUM_VERTICES)


# -- 3DPW --------------------------------------------------------------------------------------------

def _3dpw_frames(seq: Any, read: Callable[[Path], np.ndarray]) -> Iterator[ConvertFrame]:
    frames = sorted({int(f) for _, f in seq.items})
    people_of: Dict[int, List[int]] = {f: [] for f in frames}
    for person, frame in seq.items:
        people_of[int(frame)].append(int(person))
    K = seq.intrinsics
    t0 = int(seq.frame_ids[frames[0]]) if frames else 0
    for frame in frames:
        image = read(seq.image_path(frame))
        h, w = image.shape[:2]
        people = []
        for person in sorted(people_of[frame]):
            rel, joints = seq.camera_frame(person, frame)
            z = joints[:, 2:3]
            in_front = z[:, 0] > 1e-3
            px = (joints @ K.T)[:, :2] / np.where(np.abs(z) > 1e-6, z, 1e-6)
            pts = px[in_front] if in_front.any() else px
            lo, hi = pts.min(0), pts.max(0)
            c, half = (lo + hi) / 2, float((hi - lo).max() * seq.bbox_expand) / 2
            box = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
            p = _gt_person(rel, seq.betas[person], joints[0] - SMPL_REST_PELVIS, joints, px,
                           box, w, h)
            gender = seq.genders[person] if person < len(seq.genders) else "n"
            p.update(ids=person, bodies=_smpl_body(gender))
            people.append(p)
        stamp = _EPOCH_NS + int(round((int(seq.frame_ids[frame]) - t0) / _3DPW_FPS * 1e9))
        yield _frame(stamp, image, K, people)


def convert_3dpw(pkl: Any, images: Any, out: Any, *, storage: str = "sqlite3",
                 compressed: Optional[str] = None, frame_step: int = 1,
                 valid_only: bool = True,
                 progress: Optional[Callable[[int, int], None]] = None) -> int:
    """A 3DPW sequence file plus its images -> bag; returns the number of frames written."""
    from hmr_ros.data.formats.geometry import read_image
    from hmr_ros.data.formats.threedpw import ThreeDPWSequence

    seq = ThreeDPWSequence(pkl, images, valid_only=valid_only, frame_step=frame_step)
    total = len({int(f) for _, f in seq.items})
    return write_frames(out, _3dpw_frames(seq, read_image), storage=storage,
                        compressed=compressed, total=total, progress=progress)


# -- SPIN / PARE npz ---------------------------------------------------------------------------------

def spin_intrinsics(width: int, height: int, focal: Optional[float] = None) -> np.ndarray:
    """K (ROS pixels) for an image without intrinsics: ``focal`` (default: the diagonal)."""
    f = float(focal) if focal else float(np.hypot(width, height))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0, 0, 1.0]])


def _spin_frames(ds: Any, groups: List[List[int]], fps: float, focal: Optional[float],
                 read: Callable[[Path], np.ndarray]) -> Iterator[ConvertFrame]:
    from hmr_ros.body.posing import axis_angle_to_matrix

    for n, entries in enumerate(groups):
        image = read(ds.img_dir / ds.imgname[entries[0]])
        h, w = image.shape[:2]
        people = []
        for i in entries:
            smpl = ds.pose is not None and ds.has_smpl[i] > 0
            rel = (axis_angle_to_matrix(ds.pose[i].reshape(24, 3)) if smpl
                   else np.broadcast_to(np.eye(3), (24, 3, 3)))
            betas = ds.betas[i] if smpl else np.zeros(10)
            joints = None
            if ds.S is not None and np.all(ds.S[i, :, 3] > 0):
                joints = ds.S[i, :, :3]
            kp = ds.part[i, :, :2] if np.all(ds.part[i, :, 2] > 0) else None
            c, half = ds.center[i], ds.scale[i] * 100.0
            box = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
            p = _gt_person(rel, betas, np.zeros(3), joints, kp, box, w, h)
            p.update(ids=i, bodies=_smpl_body(ds.gender[i]))
            people.append(p)
        stamp = _EPOCH_NS + int(round(n / float(fps) * 1e9))
        yield _frame(stamp, image, spin_intrinsics(w, h, focal), people)


def convert_spin(npz: Any, images: Any, out: Any, *, storage: str = "sqlite3",
                 compressed: Optional[str] = None, fps: float = 30.0,
                 focal: Optional[float] = None, keypoint_layout: str = "spin24",
                 progress: Optional[Callable[[int, int], None]] = None) -> int:
    """A SPIN-format ``.npz`` plus its images -> bag (one frame per distinct ``imgname``)."""
    from hmr_ros.data.formats.geometry import read_image
    from hmr_ros.data.formats.spin_npz import SpinNpzDataset

    if fps <= 0:
        raise ValueError(f"--fps must be > 0, got {fps}")
    ds = SpinNpzDataset(npz, images, keypoint_layout=keypoint_layout)
    order: Dict[str, List[int]] = {}
    for i, name in enumerate(ds.imgname):
        order.setdefault(name, []).append(i)
    groups = list(order.values())
    return write_frames(out, _spin_frames(ds, groups, fps, focal, read_image), storage=storage,
                        compressed=compressed, total=len(groups), progress=progress)


# -- synthetic -------------------------------------------------------------------------------------

def _synthetic_frames(gen: Any, num: int, fps: float) -> Iterator[ConvertFrame]:
    body = SimpleNamespace(name=gen.body.name, num_vertices=gen.body.num_vertices)
    for i in range(num):
        s = gen.sample(i)
        size = s["image"].shape[0]
        people = []
        for k in np.flatnonzero(s["people_valid"]):
            box = np.clip(np.asarray(s["people_bbox"][k], np.float64), 0.0, size)
            people.append({
                "rotmats": s["people_rel_rotmats"][k], "betas": s["people_betas"][k],
                "transl": s["people_transl"][k], "joints": s["people_joints"][k],
                "keypoints_2d": s["people_keypoints2d"][k], "boxes": box,
                "vertices": s["people_vertices"][k], "visibility": s["people_visibility"][k],
                # independent scenes: a person is never the same one twice
                "ids": f"{i}_{k}", "bodies": body})
        stamp = _EPOCH_NS + int(round(i / float(fps) * 1e9))
        yield _frame(stamp, s["image"], ros_intrinsics(s["K"]), people)


def convert_synthetic(out: Any, num: int, *, storage: str = "sqlite3",
                      compressed: Optional[str] = None, size: int = 224, seed: int = 0,
                      fps: float = 30.0,
                      progress: Optional[Callable[[int, int], None]] = None) -> int:
    """``num`` samples of the synthetic generator ``(SynthConfig(size=size), seed)`` -> bag."""
    from hmr_ros.data.synthetic import SynthConfig, SyntheticGenerator

    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if fps <= 0:
        raise ValueError(f"--fps must be > 0, got {fps}")
    gen = SyntheticGenerator(SynthConfig(size=size), seed=seed, with_vertices=True)
    return write_frames(out, _synthetic_frames(gen, int(num), fps), storage=storage,
                        compressed=compressed, faces_body=gen.body, total=int(num),
                        progress=progress)


# -- command line ----------------------------------------------------------------------------------

def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="new bag folder (must not exist)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3",
                        help="rosbag2 storage (default sqlite3)")
    parser.add_argument("--compressed", choices=("jpeg", "png"), default=None,
                        help="CompressedImage on /camera/image_raw/compressed instead of rgb8")


def add_3dpw_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sequence", help="3DPW sequence file (sequenceFiles/<split>/<name>.pkl)")
    parser.add_argument("--images", required=True,
                        help="imageFiles folder (or the sequence's own image folder)")
    _common_arguments(parser)
    parser.add_argument("--frame-step", type=int, default=1, help="keep every n-th frame")
    parser.add_argument("--all-frames", action="store_true",
                        help="also people/frames without campose_valid")


def add_spin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("npz", help="SPIN/PARE-format annotation .npz")
    parser.add_argument("--images", required=True, help="folder the imgname paths are under")
    _common_arguments(parser)
    parser.add_argument("--fps", type=float, default=30.0, help="stamps 1/fps apart (default 30)")
    parser.add_argument("--focal", type=float, default=None,
                        help="focal length in pixels (default: the image diagonal)")
    parser.add_argument("--keypoint-layout", choices=("spin24", "smpl24"), default="spin24",
                        help="order of part/S in the file (default spin24)")


def add_synthetic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num", type=int, required=True, help="number of samples (frames)")
    _common_arguments(parser)
    parser.add_argument("--size", type=int, default=224, help="square image side (default 224)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=30.0, help="stamps 1/fps apart (default 30)")


def _report(out: Any, frames: int) -> int:
    from .reader import BagReader

    with BagReader(out) as bag:
        for t in bag.topics():
            print(f"{t.topic}: {t.count} x {t.type_name}")
    print(f"wrote {out} ({frames} frames)")
    return 0


def run_3dpw(args: argparse.Namespace) -> int:
    n = convert_3dpw(args.sequence, args.images, args.out, storage=args.storage,
                     compressed=args.compressed, frame_step=args.frame_step,
                     valid_only=not args.all_frames)
    return _report(args.out, n)


def run_spin(args: argparse.Namespace) -> int:
    n = convert_spin(args.npz, args.images, args.out, storage=args.storage,
                     compressed=args.compressed, fps=args.fps, focal=args.focal,
                     keypoint_layout=args.keypoint_layout)
    return _report(args.out, n)


def run_synthetic(args: argparse.Namespace) -> int:
    n = convert_synthetic(args.out, args.num, storage=args.storage, compressed=args.compressed,
                          size=args.size, seed=args.seed, fps=args.fps)
    return _report(args.out, n)
