"""A synthetic video: people walking past a static camera, crossing each other and a pillar.

Made for sample bags and replay tests (``hmr-ros bag make-sample``): several procedural bodies
walk across the image at different depths, with a simple gait (hips, knees and arms swinging
with the walking phase), on a ground plane 1.3 m below the camera; one static pillar stands in
front of them. People pass behind each other and behind the pillar, so occlusion comes and goes
over time. Every frame carries the ground truth of every person (pose, shape, translation,
vertices, joints, box, per-part visibility of paper eq. 1), deterministic by seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List

import numpy as np

from hmr_ros.body import JOINT_NAMES, NUM_JOINTS

from . import appearance as A
from .camera import intrinsics, project
from .config import MAX_PEOPLE
from .poses import PRESETS, euler_to_matrix, global_orientation
from .primitives import box_mesh
from .render import RenderContext, render_scene
from .scene import Occluder, Person, Scene

__all__ = ["SequenceFrame", "WalkingSequence"]

_CAMERA_HEIGHT = 1.3  #: metres above the ground (camera y points down: ground at y = +1.3)
_J = {n: i for i, n in enumerate(JOINT_NAMES)}


@dataclass(frozen=True)
class SequenceFrame:
    """One rendered frame; per-person arrays have one row per person (in walker order)."""

    index: int
    time_s: float
    image: np.ndarray        # (H, W, 3) uint8 RGB
    K: np.ndarray            # (3, 3) float64
    betas: np.ndarray        # (P, 10)
    rotmats: np.ndarray      # (P, 24, 3, 3) relative, root in the camera frame
    transl: np.ndarray       # (P, 3)
    vertices: np.ndarray     # (P, V, 3) camera frame
    joints: np.ndarray       # (P, 24, 3) camera frame
    keypoints_2d: np.ndarray  # (P, 24, 2) pixels
    boxes: np.ndarray        # (P, 4) x0, y0, x1, y1 pixels, clipped to the image
    in_view: np.ndarray      # (P,) bool: some of the body projects into the image
    visibility: np.ndarray   # (P, 24) eq. 1


@dataclass(frozen=True)
class _Walker:
    betas: np.ndarray
    look: A.PersonLook
    depth: float
    x0: float
    speed: float       # m/s along x (sign = direction)
    cadence: float     # strides per second
    phase: float


class WalkingSequence:
    """``for frame in WalkingSequence(seconds=10, fps=30, people=3): ...``"""

    def __init__(self, seconds: float = 10.0, fps: float = 30.0, people: int = 3,
                 size: int = 320, fov_deg: float = 60.0, seed: int = 0,
                 body=None, pillar: bool = True) -> None:
        from hmr_ros.body import procedural_body

        if not 1 <= people <= MAX_PEOPLE:
            raise ValueError(f"people must be in [1, {MAX_PEOPLE}], got {people}")
        if seconds <= 0 or fps <= 0:
            raise ValueError(f"seconds and fps must be > 0, got {seconds}, {fps}")
        self.seconds, self.fps, self.size = float(seconds), float(fps), int(size)
        self.num_frames = int(round(self.seconds * self.fps))
        self.K = intrinsics(self.size, fov_deg)
        self.body = body if body is not None else procedural_body()
        self.ctx = RenderContext.from_body(self.body)
        rng = np.random.default_rng(seed)
        half_fov = np.tan(0.5 * np.deg2rad(fov_deg))
        self.walkers: List[_Walker] = []
        depths = np.linspace(3.2, 6.0, people) + rng.uniform(-0.2, 0.2, people)
        for k in range(people):
            depth = float(depths[k])
            span = depth * half_fov  # half the visible width at that depth
            direction = 1.0 if k % 2 == 0 else -1.0
            # cross the whole view (and a bit more) during the sequence
            speed = direction * 2.4 * span / self.seconds * rng.uniform(0.9, 1.1)
            self.walkers.append(_Walker(
                betas=np.clip(rng.normal(0, 0.8, 10), -2, 2), look=A.sample_person_look(rng),
                depth=depth, x0=-direction * 1.2 * span, speed=speed,
                cadence=rng.uniform(0.8, 1.0), phase=rng.uniform(0, 2 * np.pi)))
        self.occluders = ()
        if pillar:
            mesh = box_mesh([0.12, 0.9, 0.12]).transformed(
                np.eye(3), np.array([0.25, _CAMERA_HEIGHT - 0.9, 2.4]))
            self.occluders = (Occluder(mesh, A.sample_occluder_look(rng), "bar"),)
        self.lighting = A.sample_lighting(rng)
        self.background_seed = int(rng.integers(2 ** 31))
        self.noise_seed = int(rng.integers(2 ** 31))

    def __len__(self) -> int:
        return self.num_frames

    def _pose(self, walker: _Walker, t: float) -> np.ndarray:
        """24 x 3 x 3 relative rotations: the standing preset plus a walking gait."""
        phi = 2 * np.pi * walker.cadence * t + walker.phase
        deg = PRESETS["stand"].copy()
        s = np.sin(phi)
        deg[_J["left_hip"], 0] += -25 * s
        deg[_J["right_hip"], 0] += 25 * s
        deg[_J["left_knee"], 0] += 30 * max(0.0, np.sin(phi + 1.2)) + 5
        deg[_J["right_knee"], 0] += 30 * max(0.0, np.sin(phi + 1.2 + np.pi)) + 5
        deg[_J["left_shoulder"], 1] += -20 * -s   # arms swing opposite to the legs
        deg[_J["right_shoulder"], 1] += 20 * -s
        rot = euler_to_matrix(np.deg2rad(deg))
        yaw = 90.0 if walker.speed > 0 else -90.0  # facing the walking direction
        rot[0] = global_orientation(yaw, 0.0, 0.0)
        return rot

    def frame(self, index: int) -> SequenceFrame:
        t = index / self.fps
        betas = np.stack([w.betas for w in self.walkers]).astype(np.float32)
        rotmats = np.stack([self._pose(w, t) for w in self.walkers]).astype(np.float32)
        verts0, _ = self.ctx.lbs(betas, rotmats)
        verts0 = np.asarray(verts0, np.float64)
        transl = np.zeros((len(self.walkers), 3))
        for k, w in enumerate(self.walkers):
            transl[k, 0] = w.x0 + w.speed * t
            transl[k, 1] = _CAMERA_HEIGHT - verts0[k, :, 1].max()  # feet on the ground
            transl[k, 2] = w.depth
        people = tuple(Person(betas[k], rotmats[k], transl[k], w.look)
                       for k, w in enumerate(self.walkers))
        scene = Scene(size=self.size, K=self.K, people=people, occluders=self.occluders,
                      lighting=self.lighting, background_seed=self.background_seed,
                      noise_seed=self.noise_seed + index, noise_sigma=2.0)
        out = render_scene(scene, self.ctx)
        vertices, joints = out["vertices"], out["joints"]
        kp = project(joints.reshape(-1, 3), self.K).reshape(joints.shape[0], NUM_JOINTS, 2)
        pv = project(vertices.reshape(-1, 3), self.K).reshape(vertices.shape[0], -1, 2)
        lo, hi = pv.min(1), pv.max(1)
        in_view = (hi[:, 0] > 0) & (lo[:, 0] < self.size) & (hi[:, 1] > 0) & (lo[:, 1] < self.size)
        boxes = np.clip(np.concatenate([lo, hi], 1), 0, self.size)
        return SequenceFrame(index, t, out["image"], self.K.copy(), betas, rotmats,
                             transl.astype(np.float32), vertices, joints,
                             kp.astype(np.float32), boxes.astype(np.float32), in_view,
                             out["visibility"].astype(np.float32))

    def __iter__(self) -> Iterator[SequenceFrame]:
        for i in range(self.num_frames):
            yield self.frame(i)

