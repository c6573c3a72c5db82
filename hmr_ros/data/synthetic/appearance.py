"""Colours, textures, backgrounds and lighting of the synthetic images.

The regressor must not learn "the person is the smooth skin-coloured thing": bodies get
per-part-group clothing colours (skin, top, bottom, shoes; sleeves and shorts vary) with
stripes/checks in the body's own chart coordinates (so textures follow the limbs), occluders get
textures of their own, and backgrounds are procedural clutter (gradients, value noise, stripes,
checkers, colour blobs). Shading is Lambert with one random directional light plus ambient.

Everything random is drawn here into small records (``PersonLook``, ``OccluderLook``,
``Lighting``) or derived from a stored seed (background, pixel noise), so rendering a sampled
scene is a pure function.

Realism (``SynthConfig.head_features``, ``photos``): a ``HeadLook`` paints the head part in the
rest template's angular coordinates around the head centroid (``coco17.FACE_POINTS_DEG``):
skin face with darker eye sockets, irises, brows and lips on the front, hair above a hairline
that runs from the forehead over the ears down to the nape (short or long, sometimes bald or a
hat), so front and back of the head differ as they do on people. Photo prints are per-part
rows ``(photo, x0, y0, pixels per metre, mix)`` of ``PersonLook.photo`` sampled in each
chart's metric coordinates (``RenderContext.chart_metres``); occluders get one row too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmr_ros.body import NUM_JOINTS

__all__ = [
    "PersonLook",
    "OccluderLook",
    "Lighting",
    "sample_person_look",
    "sample_occluder_look",
    "sample_lighting",
    "pattern",
    "background",
    "hsv_to_rgb",
    "HeadLook",
    "sample_head_look",
    "head_albedo",
    "sample_photo_print",
    "TOP_PARTS",
    "BOTTOM_PARTS",
]

# part groups (SMPL part ids)
_HEAD = [12, 15]
_HANDS = [20, 21, 22, 23]
_FOREARMS = [18, 19]
_TOP = [3, 6, 9, 13, 14, 16, 17]
_THIGHS_PELVIS = [0, 1, 2]
_SHINS = [4, 5]
_SHOES = [7, 8, 10, 11]

SOLID, STRIPES_V, STRIPES_U, CHECKER = 0, 1, 2, 3
TOP_PARTS = tuple(_TOP + _FOREARMS)
BOTTOM_PARTS = tuple(_THIGHS_PELVIS + _SHINS)


def hsv_to_rgb(h, s, v) -> np.ndarray:
    """HSV in [0, 1] (arrays broadcast) -> (..., 3) RGB in [0, 1]."""
    h, s, v = np.broadcast_arrays(np.asarray(h, float), np.asarray(s, float), np.asarray(v, float))
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


@dataclass(frozen=True)
class HeadLook:
    """Colours (3 each, [0, 1]) and shape of the painted head. ``hairline``: elevation in
    degrees of the hair's lower edge at |azimuth| 0, 60, 100, 140, 180 (90 = bald);
    ``hat``: elevation of a hat's brim (90 = no hat)."""

    skin: np.ndarray
    hair: np.ndarray
    brows: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    hat_colour: np.ndarray
    hairline: np.ndarray
    hat: float = 90.0
    ripple: float = 0.0  #: phase of the hairline's wave


@dataclass(frozen=True)
class PersonLook:
    """albedo 24 x 3 in [0, 1]; pattern 24 x 4 rows (kind, frequency, phase, contrast);
    head: painted face and hair (None: the head is plain ``albedo``); photo: 24 x 5 rows
    (photo index or -1, x0, y0, pixels per metre, mix) of photo prints (None: none)."""

    albedo: np.ndarray
    pattern: np.ndarray
    head: "HeadLook | None" = None
    photo: "np.ndarray | None" = None


@dataclass(frozen=True)
class OccluderLook:
    """Two colours and a pattern (kind, frequency per metre, phase, contrast) choosing between
    them (occluders use the pattern as a mask: contrast is not used); photo: one print row
    (photo, x0, y0, pixels per metre, mix) or None."""

    colour_a: np.ndarray
    colour_b: np.ndarray
    pattern: np.ndarray
    photo: "np.ndarray | None" = None


@dataclass(frozen=True)
class Lighting:
    """direction: unit vector from the surface towards the light (camera frame);
    ambient + diffuse scale the albedo; tint multiplies the light colour."""

    direction: np.ndarray
    ambient: float
    diffuse: float
    tint: np.ndarray


def _clothing_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.35:  # greys, blacks, whites: common in real clothing
        return np.full(3, rng.uniform(0.08, 0.9)) * rng.uniform(0.95, 1.05, 3)
    return hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.2, 0.95))


def _clothing_pattern(rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice([SOLID, STRIPES_V, STRIPES_U, CHECKER], p=[0.55, 0.2, 0.1, 0.15])
    return np.array([kind, rng.integers(2, 9), rng.random(), rng.uniform(0.2, 0.6)], float)


def sample_person_look(rng: np.random.Generator) -> PersonLook:
    """Skin tone, top, bottom and shoe colours/patterns; sleeves and trouser length vary."""
    t = rng.random()
    skin = (1 - t) * np.array([0.96, 0.80, 0.69]) + t * np.array([0.32, 0.20, 0.13])
    skin = np.clip(skin * rng.uniform(0.92, 1.08, 3), 0, 1)
    top, bottom = _clothing_colour(rng), _clothing_colour(rng)
    shoes = np.clip(_clothing_colour(rng) * 0.6, 0, 1)
    top_pat, bottom_pat = _clothing_pattern(rng), _clothing_pattern(rng)
    albedo = np.zeros((NUM_JOINTS, 3))
    pat = np.zeros((NUM_JOINTS, 4))
    albedo[_HEAD + _HANDS] = skin
    long_sleeves, shorts = rng.random() < 0.55, rng.random() < 0.25
    albedo[_TOP], pat[_TOP] = top, top_pat
    albedo[_FOREARMS] = top if long_sleeves else skin
    if long_sleeves:
        pat[_FOREARMS] = top_pat
    albedo[_THIGHS_PELVIS], pat[_THIGHS_PELVIS] = bottom, bottom_pat
    albedo[_SHINS] = skin if shorts else bottom
    if not shorts:
        pat[_SHINS] = bottom_pat
    albedo[_SHOES] = shoes
    if rng.random() < 0.5:  # hair: darker head
        albedo[15] = hsv_to_rgb(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.8),
                                rng.uniform(0.05, 0.6))
    albedo = np.clip(albedo * rng.normal(1.0, 0.04, (NUM_JOINTS, 1)), 0.0, 1.0)
    return PersonLook(albedo, pat)


def sample_occluder_look(rng: np.random.Generator) -> OccluderLook:
    a = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.15, 0.95))
    b = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.15, 0.95))
    kind = rng.choice([SOLID, STRIPES_V, STRIPES_U, CHECKER], p=[0.5, 0.2, 0.15, 0.15])
    return OccluderLook(a, b, np.array([kind, rng.uniform(4, 25), rng.random(),
                                        rng.uniform(0.3, 1.0)]))


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Light from the camera's side of the scene, usually from above."""
    d = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.3), -rng.uniform(0.3, 1.0)])
    ambient = rng.uniform(0.25, 0.55)
    tint = np.clip(rng.normal(1.0, 0.05, 3), 0.85, 1.15)
    return Lighting(d / np.linalg.norm(d), ambient, rng.uniform(0.6, 0.9), tint)


def pattern(coords: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Texture factor in [1 - contrast, 1] per point: coords N x 2, params N x 4
    (kind, frequency, phase, contrast); kind 0 = solid, 1/2 = stripes along the second/first
    coordinate, 3 = checker."""
    kind, freq, phase, contrast = params.T
    a = np.sin(2 * np.pi * (freq * coords[:, 0] + phase))
    b = np.sin(2 * np.pi * (freq * coords[:, 1] + phase))
    on = np.where(kind == STRIPES_V, b > 0,
                  np.where(kind == STRIPES_U, a > 0, np.where(kind == CHECKER, a * b > 0, False)))
    return 1.0 - contrast * on


def _bilinear_upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """g x g x C grid -> size x size x C, bilinear, corners aligned."""
    g = grid.shape[0]
    x = np.linspace(0, g - 1, size)
    i0 = np.minimum(np.floor(x).astype(int), g - 2)
    w = (x - i0)[:, None]
    rows = grid[i0] * (1 - w[..., None]) + grid[i0 + 1] * w[..., None]  # size x g x C
    return rows[:, i0] * (1 - w[None, :, :]) + rows[:, i0 + 1] * w[None, :, :]


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A size x size x 3 float32 procedural background in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    c0, c1 = (hsv_to_rgb(rng.random(), rng.uniform(0, 0.7), rng.uniform(0.1, 1.0)).astype(
        np.float32) for _ in range(2))
    if rng.random() < 0.5:  # linear gradient
        ang = rng.uniform(0, 2 * np.pi)
        t = np.float32(np.cos(ang)) * xx + np.float32(np.sin(ang)) * yy
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        img = c0 + (c1 - c0) * t[..., None]
    else:  # value noise
        g = int(rng.integers(3, 10))
        noise = _bilinear_upsample(rng.random((g, g, 1)), size).astype(np.float32)
        img = c0 + (c1 - c0) * noise
    if rng.random() < 0.4:  # stripes or checker overlay
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(0.04, 0.25)
        u = (np.cos(ang) * xx + np.sin(ang) * yy) / period
        v = (-np.sin(ang) * xx + np.cos(ang) * yy) / period
        mask = (np.floor(u) % 2 == 0) if rng.random() < 0.5 else \
            ((np.floor(u) + np.floor(v)) % 2 == 0)
        c2 = hsv_to_rgb(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.1, 1.0)).astype(
            np.float32)
        alpha = np.float32(rng.uniform(0.2, 0.8))
        img = np.where(mask[..., None], (1 - alpha) * img + alpha * c2, img)
    for _ in range(int(rng.integers(0, 5))):  # soft colour blobs
        cx, cy, r = (np.float32(x) for x in (rng.random(), rng.random(),
                                             rng.uniform(0.05, 0.3)))
        # separable Gaussian: an outer product instead of a full-image exp
        gx = np.exp(-((xx[0] - cx) ** 2) / (2 * r * r))
        gy = np.exp(-((yy[:, 0] - cy) ** 2) / (2 * r * r))
        w = (np.float32(0.8) * gy[:, None] * gx[None, :])[..., None]
        c = hsv_to_rgb(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)).astype(
            np.float32)
        img = img * (1 - w) + w * c
    return np.clip(img, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Realism: painted heads and photo prints
# --------------------------------------------------------------------------------------------

_HAIR_KNOTS = np.array([0.0, 60.0, 100.0, 140.0, 180.0])  #: |azimuth| of HeadLook.hairline


def _hair_colour(rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(4, p=[0.6, 0.2, 0.12, 0.08])  # dark, brown/blond, grey, red
    if kind == 0:
        return hsv_to_rgb(rng.uniform(0.02, 0.1), rng.uniform(0.2, 0.6), rng.uniform(0.04, 0.2))
    if kind == 1:
        return hsv_to_rgb(rng.uniform(0.06, 0.12), rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.8))
    if kind == 2:
        return np.full(3, rng.uniform(0.45, 0.85))
    return hsv_to_rgb(rng.uniform(0.01, 0.05), rng.uniform(0.55, 0.85), rng.uniform(0.35, 0.7))


def sample_head_look(rng: np.random.Generator, skin: np.ndarray) -> HeadLook:
    """Hair colour and style, brows, irises, lips and sometimes a hat, for a skin colour."""
    hair = _hair_colour(rng)
    front = rng.uniform(22.0, 38.0)  # forehead hairline
    style = rng.random()
    if style < 0.55:  # short: above the ears, nape at the back
        side, back = rng.uniform(2.0, 16.0), rng.uniform(-40.0, -22.0)
    elif style < 0.9:  # long: over the ears, down the back of the head
        side, back = rng.uniform(-40.0, -12.0), rng.uniform(-65.0, -45.0)
    else:  # receding / very short
        side, back = rng.uniform(15.0, 30.0), rng.uniform(-30.0, -5.0)
    hairline = np.array([front, front - rng.uniform(0, 8), side, 0.5 * (side + back), back])
    if rng.random() < 0.06:  # bald
        hairline = np.full(5, 90.0)
    hat = rng.uniform(12.0, 30.0) if rng.random() < 0.1 else 90.0
    skin = np.asarray(skin, float)
    return HeadLook(
        skin=skin, hair=hair,
        brows=np.clip(np.minimum(hair, skin * 0.5) * rng.uniform(0.6, 1.0), 0, 1),
        iris=hsv_to_rgb(rng.uniform(0.05, 0.6), rng.uniform(0.2, 0.7), rng.uniform(0.08, 0.35)),
        lips=np.clip(skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.8, 1.0), 0, 1),
        hat_colour=_clothing_colour(rng), hairline=hairline, hat=hat,
        ripple=rng.uniform(0, 2 * np.pi))


def _ellipse(az, el, c_az, c_el, r_az, r_el) -> np.ndarray:
    return ((az - c_az) / r_az) ** 2 + ((el - c_el) / r_el) ** 2 < 1.0


def head_albedo(look: HeadLook, az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Albedo (N x 3) of head points at (azimuth, elevation) degrees (``coco17.head_angles``):
    face features at the ``coco17.FACE_POINTS_DEG`` places, hair above the hairline."""
    from .coco17 import FACE_POINTS_DEG

    az, el = np.asarray(az, float), np.asarray(el, float)
    out = np.broadcast_to(look.skin, az.shape + (3,)).copy()
    for name in ("left_eye", "right_eye"):
        a, e = FACE_POINTS_DEG[name]
        out[_ellipse(az, el, a, e, 11.0, 6.0)] *= 0.62  # eye socket shadow
        out[_ellipse(az, el, a, e, 8.0, 3.2)] = (0.82, 0.8, 0.76)  # white
        out[_ellipse(az, el, a, e, 4.0, 3.4)] = look.iris
        brow = (np.abs(el - e - 11.0) < 2.6) & (np.abs(az - a) < 12.0)
        out[brow] = look.brows
    n_az, n_el = FACE_POINTS_DEG["nose"]
    out[_ellipse(az, el, n_az, n_el - 2.0, 7.0, 3.0)] *= 0.8  # under the nose
    out[_ellipse(az, el, n_az, n_el - 15.0, 14.0, 4.0)] = look.lips
    for name in ("left_ear", "right_ear"):
        a, e = FACE_POINTS_DEG[name]
        out[_ellipse(az, el, a, e, 9.0, 15.0)] *= 0.88
    line = np.interp(np.abs(az), _HAIR_KNOTS, look.hairline) + \
        2.0 * np.sin(np.radians(az) * 5.0 + look.ripple)
    out[el > line] = look.hair
    out[el > look.hat] = look.hat_colour
    return out


def sample_photo_print(rng: np.random.Generator, num_photos: int,
                       scale=(80.0, 300.0)) -> np.ndarray:
    """One print row (photo index, x0, y0, pixels per metre, mix)."""
    return np.array([rng.integers(num_photos), rng.uniform(0, 512), rng.uniform(0, 512),
                     rng.uniform(*scale), rng.uniform(0.6, 1.0)])
