"""Sampling one synthetic scene: people, camera, occluders, looks (no pixels yet).

A ``Scene`` holds everything random about one image, drawn from a NumPy ``Generator``; rendering
it (``render.render_scene``) is then a pure function. Scenes are built in the camera frame
(OpenCV: x right, y down, z forward, metres) with the camera at the origin, and the image is
the person-centred crop itself -- as if a detector had boxed the main person with ~1.2x context:

* main person: random shape and pose, upright, any yaw; depth chosen so that the larger side of
  its projected box fills ``config.fill`` of the image, centred with a small jitter; sometimes
  pushed partly out of the image (truncation);
* other people (probability ``p_multi``): 1-3 bodies standing on the same ground height, in
  front of or behind the main person, laterally offset so their boxes overlap the main one;
* occluders (probability ``p_occ``): 1-3 boxes, bars or blobs on the camera ray of a random main
  person joint, 35-85 % of the way to it, sized relative to the main person's box;
* realism (``SynthConfig.realism``), drawn last from a generator of its own (so a config with
  realism off draws exactly what it drew before these options existed): painted heads, photo
  backgrounds and prints (with a ``PhotoBank``), and the camera: lower source resolution
  (``source_scale``), motion blur, JPEG quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Tuple

import numpy as np

from hmr_ros.body import NUM_BETAS

from . import appearance as A
from .camera import intrinsics, project
from .config import MAX_PEOPLE, SynthConfig
from .poses import euler_to_matrix, global_orientation, sample_body_pose
from .primitives import Mesh, blob_mesh, box_mesh

__all__ = ["Person", "Occluder", "Scene", "sample_scene", "frame_person", "Lbs"]

#: ``lbs(betas (B, 10) float32, rotmats (B, 24, 3, 3) float32) -> (vertices, joints)`` without
#: translation, e.g. ``hmr_ros.kernels.LbsModel.from_body(body)``
Lbs = Callable[[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]

_MIN_DEPTH = 0.15  #: metres: nothing is placed closer to the camera than this


@dataclass(frozen=True, eq=False)
class Person:
    """One body: LBS(betas, rotmats) + transl are its camera-frame vertices.

    rotmats: 24 x 3 x 3 relative rotations, the root being the global orientation in the camera
    frame (it contains the y-up -> y-down turn, ``poses.CAMERA_FROM_BODY``).
    """

    betas: np.ndarray
    rotmats: np.ndarray
    transl: np.ndarray
    look: A.PersonLook
    pose_name: str = ""
    yaw_deg: float = 0.0


@dataclass(frozen=True, eq=False)
class Occluder:
    """A mesh in the camera frame with its look; kind in {"box", "bar", "blob"}."""

    mesh: Mesh
    look: A.OccluderLook
    kind: str


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything random about one image. people[0] is the main person."""

    size: int
    K: np.ndarray
    people: Tuple[Person, ...]
    occluders: Tuple[Occluder, ...] = ()
    lighting: A.Lighting = field(default_factory=lambda: A.Lighting(
        np.array([0.0, -0.5, -1.0]) / np.sqrt(1.25), 0.4, 0.8, np.ones(3)))
    background_seed: int = 0
    noise_seed: int = 0
    noise_sigma: float = 0.0
    blur: bool = False
    truncation: str = ""  #: "", or the border the main person was pushed across
    #: (photo, x0, y0, side, flip, gain r, g, b, defocus sigma in pixels) or None (procedural)
    background_photo: Optional[np.ndarray] = None
    motion_blur: Optional[np.ndarray] = None  #: (length in pixels, angle in radians) or None
    source_scale: float = 1.0  #: < 1: seen by a camera with this fraction of the resolution
    jpeg_quality: int = 0  #: > 0: JPEG re-encoded at this quality (at the source resolution)

    def with_occluders(self, occluders) -> "Scene":
        return replace(self, occluders=tuple(occluders))


def _posed(lbs: Lbs, betas: np.ndarray, rotmats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    v, j = lbs(np.asarray(betas, np.float32)[None], np.asarray(rotmats, np.float32)[None])
    return np.asarray(v[0], np.float64), np.asarray(j[0], np.float64)


def frame_person(vertices: np.ndarray, K: np.ndarray, centre_px, extent_px: float,
                 iterations: int = 5) -> np.ndarray:
    """Translation that puts the larger side of the body's projected box at ``extent_px``
    pixels, centred at ``centre_px``. vertices: V x 3 posed, untranslated (camera axes).

    Fixed-point iteration on depth (projected size ~ 1/depth) and lateral shift; converges to
    well under a pixel in a few steps for bodies of normal proportions.
    """
    f = float(K[0, 0])
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    zc = 0.5 * (lo[2] + hi[2])
    depth = f * max(hi[0] - lo[0], hi[1] - lo[1]) / extent_px
    t = np.array([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, depth - zc])
    target = np.asarray(centre_px, np.float64)
    for _ in range(iterations):
        t[2] = max(t[2], _MIN_DEPTH - lo[2] + 0.3)
        p = project(v + t, K)
        plo, phi = p.min(0), p.max(0)
        size_now = max(phi[0] - plo[0], phi[1] - plo[1])
        depth = (t[2] + zc) * size_now / extent_px
        t[:2] += (target - 0.5 * (plo + phi)) * (t[2] + zc) / f
        t[2] = depth - zc
    return t


def _sample_person_params(rng: np.random.Generator, cfg: SynthConfig):
    betas = np.clip(rng.normal(0.0, 1.0, NUM_BETAS), -cfg.beta_clip, cfg.beta_clip)
    rotmats, name = sample_body_pose(rng, cfg.p_preset)
    yaw = rng.uniform(-180.0, 180.0)
    pitch = rng.uniform(-cfg.max_pitch_deg, cfg.max_pitch_deg)
    roll = rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg)
    rotmats = rotmats.copy()
    rotmats[0] = global_orientation(yaw, pitch, roll)
    return betas, rotmats, name, yaw


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _sample_occluder(rng: np.random.Generator, cfg: SynthConfig, K: np.ndarray,
                     joints: np.ndarray, box_h_px: float) -> Occluder:
    f = float(K[0, 0])
    target = joints[int(rng.integers(len(joints)))]
    centre = rng.uniform(0.35, 0.85) * target
    scale = rng.uniform(*cfg.occluder_size) * box_h_px * centre[2] / f  # metres
    centre[:2] += rng.normal(0.0, 0.25 * scale, 2)
    kind = str(rng.choice(["box", "bar", "blob"], p=[0.35, 0.35, 0.3]))
    if kind == "box":
        mesh = box_mesh(0.5 * scale * rng.uniform(0.4, 1.0, 3))
        rot = _random_rotation(rng)
    elif kind == "bar":
        length, thick = scale * rng.uniform(3.0, 8.0), scale * rng.uniform(0.12, 0.3)
        mesh = box_mesh([0.5 * length, 0.5 * thick, 0.5 * thick * rng.uniform(0.5, 2.0)])
        angle = rng.choice([0.0, 90.0, rng.uniform(20.0, 70.0) * rng.choice([-1, 1])],
                           p=[0.4, 0.4, 0.2])
        tilt = rng.normal(0.0, 8.0, 2)
        rot = euler_to_matrix(np.deg2rad([tilt[0], tilt[1], angle + rng.normal(0, 5)]))
    else:
        bumps = np.concatenate([rng.uniform(0.0, 0.12, (3, 1)),
                                rng.normal(0.0, 1.0, (3, 3)) * rng.uniform(1.0, 3.0, (3, 1)),
                                rng.uniform(0.0, 2 * np.pi, (3, 1))], axis=1)
        mesh = blob_mesh(0.5 * scale * rng.uniform(0.5, 1.0, 3), bumps)
        rot = _random_rotation(rng)
    mesh = mesh.transformed(rot, np.zeros(3))
    near = mesh.vertices[:, 2].min() + centre[2]
    if near < _MIN_DEPTH:  # slide away from the camera along the ray
        centre = centre * (1.0 + (_MIN_DEPTH - near) / centre[2])
    return Occluder(mesh.transformed(np.eye(3), centre), A.sample_occluder_look(rng), kind)


def _garment_parts(look: A.PersonLook, parts) -> list:
    """The parts of a garment group that wear it (a pattern row is set only on clothed parts:
    short sleeves and shorts leave forearms and shins bare)."""
    return [k for k in parts if look.pattern[k, 1] > 0]


def _add_realism(rng: np.random.Generator, cfg: SynthConfig, scene: Scene, box_h: float,
                 photos=None) -> Scene:
    """Heads, photo prints and backgrounds, camera degradations (module docs)."""
    n_photos = len(photos) if photos is not None else 0
    people = []
    for p in scene.people:
        look = p.look
        head = A.sample_head_look(rng, look.albedo[12]) if cfg.head_features else None
        prints = None
        if n_photos:
            rows = np.full((24, 5), -1.0)
            for group in (A.TOP_PARTS, A.BOTTOM_PARTS):
                if rng.random() < cfg.p_photo_clothing:
                    rows[_garment_parts(look, group)] = A.sample_photo_print(rng, n_photos)
            prints = rows if np.any(rows[:, 0] >= 0) else None
        people.append(replace(p, look=replace(look, head=head, photo=prints)))
    occluders = []
    for o in scene.occluders:
        if n_photos and rng.random() < cfg.p_photo_occluder:
            o = replace(o, look=replace(o.look, photo=A.sample_photo_print(
                rng, n_photos, scale=(300.0, 1500.0))))
        occluders.append(o)
    background = None
    size = scene.size
    if n_photos and rng.random() < cfg.p_photo_background:
        k = int(rng.integers(n_photos))
        h, w = (float(x) for x in photos.sizes[k])
        side = rng.uniform(0.4, 1.0) * min(h, w)
        defocus = rng.uniform(0.3, 1.5) * size / 224 if rng.random() < 0.3 else 0.0
        background = np.array([k, rng.uniform(0, w - side), rng.uniform(0, h - side), side,
                               float(rng.random() < 0.5), *(rng.uniform(0.7, 1.15) *
                                                            rng.normal(1.0, 0.05, 3)), defocus])
    scale = 1.0
    if rng.random() < cfg.p_lowres:
        lo, hi = np.log(cfg.person_px[0]), np.log(cfg.person_px[1])
        scale = float(min(1.0, np.exp(rng.uniform(lo, hi)) / max(box_h, 1.0)))
    blur = None
    if rng.random() < cfg.p_motion_blur:
        blur = np.array([rng.uniform(*cfg.motion_blur) * size, rng.uniform(0, np.pi)])
    quality = 0
    if rng.random() < cfg.p_jpeg:
        quality = int(rng.integers(int(cfg.jpeg_quality[0]), int(cfg.jpeg_quality[1]) + 1))
    return replace(scene, people=tuple(people), occluders=tuple(occluders),
                   background_photo=background, motion_blur=blur, source_scale=scale,
                   jpeg_quality=quality)


def sample_scene(rng: np.random.Generator, cfg: SynthConfig, lbs: Lbs,
                 force_occluders: Optional[bool] = None,
                 force_multi: Optional[bool] = None, photos=None) -> Scene:
    """Draw one scene (see the module docs). ``force_*`` override the probabilities;
    ``photos``: a ``photos.PhotoBank`` for photo backgrounds and prints (None: procedural)."""
    size = int(cfg.size)
    fov = rng.uniform(*cfg.fov_deg)
    K = intrinsics(size, fov, tuple(rng.uniform(-1, 1, 2) * cfg.principal_jitter * size))
    # 1. Main person, framed like a detector crop
    betas, rotmats, name, yaw = _sample_person_params(rng, cfg)
    verts, joints = _posed(lbs, betas, rotmats)
    extent = rng.uniform(*cfg.fill) * size
    centre = 0.5 * size + rng.uniform(-1, 1, 2) * cfg.centre_jitter * size
    transl = frame_person(verts, K, centre, extent)
    truncation = ""
    if rng.random() < cfg.p_truncate:
        p = project(verts + transl, K)
        lo, hi = p.min(0), p.max(0)
        side = str(rng.choice(["bottom", "left", "right", "top"], p=[0.4, 0.2, 0.2, 0.2]))
        frac = rng.uniform(*cfg.truncate)
        shift = np.zeros(2)
        if side == "bottom":
            shift[1] = size + frac * (hi[1] - lo[1]) - hi[1]
        elif side == "top":
            shift[1] = -frac * (hi[1] - lo[1]) - lo[1]
        elif side == "right":
            shift[0] = size + frac * (hi[0] - lo[0]) - hi[0]
        else:
            shift[0] = -frac * (hi[0] - lo[0]) - lo[0]
        transl = frame_person(verts, K, 0.5 * (lo + hi) + shift, max(hi - lo))
        truncation = side
    people = [Person(betas, rotmats, transl, A.sample_person_look(rng), name, yaw)]
    p = project(verts + transl, K)
    box_lo, box_hi = p.min(0), p.max(0)
    box_h = float(box_hi[1] - box_lo[1])
    main_depth = float(transl[2] + np.median(verts[:, 2]))
    feet_y = float((verts[:, 1] + transl[1]).max())
    # 2. Other people around the main one
    multi = rng.random() < cfg.p_multi if force_multi is None else force_multi
    n_other = int(rng.integers(1, MAX_PEOPLE)) if multi else 0
    for _ in range(n_other):
        b, r, n, y = _sample_person_params(rng, cfg)
        v, _ = _posed(lbs, b, r)
        depth = max(main_depth * rng.uniform(0.7, 1.8), 1.0)
        lo, hi = v.min(0), v.max(0)
        u = 0.5 * (box_lo[0] + box_hi[0]) + rng.choice([-1, 1]) * rng.uniform(0.1, 0.5) * box_h
        t = np.array([(u - K[0, 2]) * depth / K[0, 0] - 0.5 * (lo[0] + hi[0]),
                      feet_y + rng.normal(0.0, 0.03) - hi[1],
                      depth - 0.5 * (lo[2] + hi[2])])
        people.append(Person(b, r, t, A.sample_person_look(rng), n, y))
    # 3. Occluders in front of the main person
    occluders = []
    occ = rng.random() < cfg.p_occ if force_occluders is None else force_occluders
    if occ:
        for _ in range(int(rng.integers(1, cfg.max_occluders + 1))):
            occluders.append(_sample_occluder(rng, cfg, K, joints + transl, box_h))
    scene = Scene(
        size=size, K=K, people=tuple(people), occluders=tuple(occluders),
        lighting=A.sample_lighting(rng), background_seed=int(rng.integers(2 ** 31)),
        noise_seed=int(rng.integers(2 ** 31)), noise_sigma=float(rng.uniform(*cfg.noise_sigma)),
        blur=bool(rng.random() < cfg.p_blur), truncation=truncation,
    )
    if cfg.realism:  # last, from its own generator: the draws above stay as they were
        realism_rng = np.random.default_rng(int(rng.integers(2 ** 63)))
        scene = _add_realism(realism_rng, cfg, scene, box_h, photos)
    return scene
