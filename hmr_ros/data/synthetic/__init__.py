"""Synthetic occlusion training data for VisHMR, rendered from the package's procedural body.

No licensed data: bodies are ``hmr_ros.body.procedural_body`` posed with plausible random poses,
framed like person-detector crops, partly hidden by other people, boxes, bars and blobs, and
rendered with per-pixel IUV, part labels, depth and the per-part visibility of paper eq. 1.

Modules, one job each: ``config`` (the knobs), ``poses`` (joint limits, presets), ``camera``
(intrinsics, crop camera), ``primitives`` (occluder meshes), ``appearance`` (colours, textures,
painted heads, backgrounds, light), ``scene`` (sampling a scene), ``surface`` (per-face atlas
geometry), ``render`` (pixels and labels, camera degradations), ``visibility`` (eq. 1),
``coco17`` (COCO-17 keypoints and their visibility), ``keypoint_noise`` (detector-like
keypoints from clean ones), ``photos`` (photo backgrounds and prints: fetching, bank),
``generator`` (sample ``index`` of a seeded dataset), ``shards`` (deterministic npz), ``writer``
(``hmr-ros synth``), ``dataset`` (torch datasets), ``png`` and ``preview`` (contact sheet),
``cli``.

Torch is only imported by ``dataset`` (``SyntheticShards``, ``SyntheticStream`` are loaded on
first use).
"""

from .camera import intrinsics, project, transl_to_crop_cam
from .config import MAX_PEOPLE, SynthConfig
from .generator import SyntheticGenerator, sample_arrays_spec
from .render import RenderContext, render_scene
from .scene import Occluder, Person, Scene, sample_scene

__all__ = [
    "MAX_PEOPLE",
    "Occluder",
    "Person",
    "RenderContext",
    "Scene",
    "SynthConfig",
    "SyntheticGenerator",
    "SyntheticShards",
    "SyntheticStream",
    "intrinsics",
    "project",
    "render_scene",
    "sample_arrays_spec",
    "sample_scene",
    "transl_to_crop_cam",
    "write_dataset",
    "write_preview",
]


def __getattr__(name):  # lazy: torch and the writer only when asked for
    if name in ("SyntheticShards", "SyntheticStream"):
        from . import dataset

        return getattr(dataset, name)
    if name == "write_dataset":
        from .writer import write_dataset

        return write_dataset
    if name == "write_preview":
        from .preview import write_preview

        return write_preview
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
