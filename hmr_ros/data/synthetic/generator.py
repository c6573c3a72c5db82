"""``SyntheticGenerator``: sample ``index`` of the dataset ``(config, seed)`` as NumPy arrays.

Each sample draws from its own ``np.random.default_rng([seed, index])``, so a sample does not
depend on which worker made it, in which order, or how many came before: shards written in
parallel, the on-the-fly stream and a single-process run give identical arrays.

Per-sample arrays (``P = MAX_PEOPLE = 4`` rows per person, main person first, unused rows zero
with identity rotations and ``people_valid = False``); all coordinates in the OpenCV camera frame
(x right, y down, z forward, metres) of the crop, pixels with centres at (col + .5, row + .5):

==========================  =====================  ============================================
image                       H x W x 3 uint8        RGB
iuv                         3 x H x W float32      main person: I in {0,1}, atlas U, V (0 off)
part_seg                    H x W int16            main-person part id; -1 bg, -2 other person,
                                                   -3 occluder
person_seg                  H x W int8             person index; -1 background, -2 occluder
depth                       H x W float32          camera z of the nearest surface, 0 on bg
K                           3 x 3 float32          intrinsics of the crop
num_people, num_occluders   int64                  counts; truncated: bool (main person cut)
people_valid                P bool
people_rel_rotmats          P x 24 x 3 x 3 f32     relative rotations, root = global
                                                   orientation in the camera frame
people_betas                P x 10 f32
people_transl               P x 3 f32              LBS(betas, rotmats) + transl = camera frame
people_joints               P x 24 x 3 f32         camera frame
people_keypoints2d          P x 24 x 2 f32         pixels (K applied to people_joints)
people_keypoints2d_norm     P x 24 x 2 f32         crop-normalised [-1, 1] (crop = image)
people_bbox                 P x 4 f32              x0, y0, x1, y1 pixels of all projected
                                                   vertices (amodal, may leave the image)
people_visibility           P x 24 f32             eq. 1 on the person's visible pixels
people_cam_crop             P x 3 f32              weak perspective (s, tx, ty), camera.py
people_coco17               P x 17 x 2 f32         COCO-17 keypoints (``hmr_ros.body.keypoints``
                                                   order), pixels, same convention as
                                                   people_keypoints2d (``coco17`` module docs)
people_coco17_norm          P x 17 x 2 f32         the same, crop-normalised [-1, 1]
people_coco17_3d            P x 17 x 3 f32         the same points in the camera frame
people_coco17_vis           P x 17 int8            0 outside the image, 1 in it but occluded
                                                   (other people, occluders, own body), 2 seen
people_face_front           P f32                  cos(head forward, direction to the camera);
                                                   > 0: the face is turned towards the camera
people_vertices             P x V x 3 f32          only with ``with_vertices=True``
==========================  =====================  ============================================

``photos``: the generator opens the ``SynthConfig.photos`` bank once (``photos.open_photo_bank``;
``photo_digest`` names the photos used, None without).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from hmr_ros.body import BodyModel, NUM_BETAS, NUM_JOINTS, procedural_body

from hmr_ros.body.keypoints import NUM_COCO17

from .camera import pixels_to_crop_normalised, project, transl_to_crop_cam
from .coco17 import coco17_arrays
from .config import MAX_PEOPLE, SynthConfig
from .render import RenderContext, render_scene
from .scene import Scene, sample_scene

__all__ = ["SyntheticGenerator", "sample_arrays_spec"]


def sample_arrays_spec(size: int, num_vertices: Optional[int] = None) -> Dict[str, tuple]:
    """name -> (shape, dtype name) of one sample's arrays (``people_vertices`` iff given V)."""
    P, J = MAX_PEOPLE, NUM_JOINTS
    spec = {
        "image": ((size, size, 3), "uint8"),
        "iuv": ((3, size, size), "float32"),
        "part_seg": ((size, size), "int16"),
        "person_seg": ((size, size), "int8"),
        "depth": ((size, size), "float32"),
        "K": ((3, 3), "float32"),
        "num_people": ((), "int64"),
        "num_occluders": ((), "int64"),
        "truncated": ((), "bool"),
        "people_valid": ((P,), "bool"),
        "people_rel_rotmats": ((P, J, 3, 3), "float32"),
        "people_betas": ((P, NUM_BETAS), "float32"),
        "people_transl": ((P, 3), "float32"),
        "people_joints": ((P, J, 3), "float32"),
        "people_keypoints2d": ((P, J, 2), "float32"),
        "people_keypoints2d_norm": ((P, J, 2), "float32"),
        "people_bbox": ((P, 4), "float32"),
        "people_visibility": ((P, J), "float32"),
        "people_cam_crop": ((P, 3), "float32"),
        "people_coco17": ((P, NUM_COCO17, 2), "float32"),
        "people_coco17_norm": ((P, NUM_COCO17, 2), "float32"),
        "people_coco17_3d": ((P, NUM_COCO17, 3), "float32"),
        "people_coco17_vis": ((P, NUM_COCO17), "int8"),
        "people_face_front": ((P,), "float32"),
    }
    if num_vertices is not None:
        spec["people_vertices"] = ((P, int(num_vertices), 3), "float32")
    return spec


class SyntheticGenerator:
    """Deterministic synthetic samples: ``gen[index]`` or ``gen.sample(index)``.

    body: the body to render (default: the procedural body, seed 0 -- the bundled model's).
    photos: a ``photos.PhotoBank`` to use instead of the one ``config.photos`` names.
    """

    def __init__(self, config: Optional[SynthConfig] = None, seed: int = 0,
                 body: Optional[BodyModel] = None, with_vertices: bool = False,
                 photos=None) -> None:
        self.config = config or SynthConfig()
        self.seed = int(seed)
        self.body = body if body is not None else procedural_body()
        self.with_vertices = bool(with_vertices)
        self.ctx = RenderContext.from_body(self.body, self.config.atlas_size)
        if photos is None:
            from .photos import open_photo_bank

            photos = open_photo_bank(self.config.photos)
        self.photos = photos

    @property
    def photo_digest(self) -> Optional[str]:
        return self.photos.digest if self.photos is not None else None

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` (independent of every other sample)."""
        return np.random.default_rng([self.seed, int(index)])

    def scene(self, index: int, **force) -> Scene:
        """Sample ``index``'s scene; ``force_occluders`` / ``force_multi`` override chance."""
        return sample_scene(self.rng(index), self.config, self.ctx.lbs, photos=self.photos,
                            **force)

    def render(self, scene: Scene) -> Dict[str, np.ndarray]:
        """All arrays of one sample (module docs) from a scene."""
        out = render_scene(scene, self.ctx, self.config.visibility_size or None, self.photos)
        n = len(scene.people)
        if n > MAX_PEOPLE:
            raise ValueError(f"a scene holds at most {MAX_PEOPLE} people, got {n}")
        size, K = scene.size, np.asarray(scene.K, np.float64)
        centre = (0.5 * size, 0.5 * size)
        spec = sample_arrays_spec(size, self.body.num_vertices if self.with_vertices else None)
        s = {k: np.zeros(shape, dtype) for k, (shape, dtype) in spec.items()
             if k.startswith("people_")}
        s["people_rel_rotmats"][:] = np.eye(3, dtype=np.float32)
        s["people_valid"][:n] = True
        s["people_rel_rotmats"][:n] = np.stack([p.rotmats for p in scene.people])
        s["people_betas"][:n] = np.stack([p.betas for p in scene.people])
        transl = np.stack([p.transl for p in scene.people]).astype(np.float32)
        s["people_transl"][:n] = transl
        joints = out["joints"]
        s["people_joints"][:n] = joints
        kp = project(joints, K)
        s["people_keypoints2d"][:n] = kp
        s["people_keypoints2d_norm"][:n] = pixels_to_crop_normalised(kp, centre, size)
        pv = project(out["vertices"], K)  # P x V x 2
        s["people_bbox"][:n] = np.concatenate([pv.min(1), pv.max(1)], axis=1)
        s["people_visibility"][:n] = out["visibility"]
        s["people_cam_crop"][:n] = transl_to_crop_cam(transl, K, centre, size)
        roots = np.stack([p.rotmats[0] for p in scene.people])
        coco = coco17_arrays(joints, out["vertices"], roots, self.ctx.head, self.body.faces, K,
                             size, out["depth"], out["person_seg"], out["part_all"])
        for key, value in coco.items():
            s[key][:n] = value
        if self.with_vertices:
            s["people_vertices"][:n] = out["vertices"]
        sample = {
            "image": out["image"], "iuv": out["iuv"], "part_seg": out["part_seg"],
            "person_seg": out["person_seg"], "depth": out["depth"],
            "K": K.astype(np.float32),
            "num_people": np.array(n, np.int64),
            "num_occluders": np.array(len(scene.occluders), np.int64),
            "truncated": np.array(bool(scene.truncation)),
            **s,
        }
        return sample

    def sample(self, index: int) -> Dict[str, np.ndarray]:
        return self.render(self.scene(index))

    __getitem__ = sample
