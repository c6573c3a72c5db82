"""Rendering a sampled ``Scene`` into pixels and per-pixel labels (one z-buffered pass).

All people and occluders are concatenated into one mesh and drawn with
``hmr_ros.kernels.rasterize`` (face id, perspective-correct barycentrics and depth per pixel
centre); a face -> object map then turns face ids into person / occluder labels. From the
barycentrics: body pixels get their part and atlas (U, V) (``surface.BodySurface``), every
pixel gets an interpolated normal for Lambert shading and an albedo from the looks.

Labels (H x W):
* ``part_seg`` int16: part id 0-23 of the *main* person's visible pixels, -1 background,
  -2 another person, -3 occluder;
* ``person_seg`` int8: person index (0 = main, 1.. others, as in the GT arrays), -1 background,
  -2 occluder;
* ``iuv`` 3 x H x W float32: I = 1 on the main person's visible pixels, U, V there; 0 elsewhere;
* ``depth`` float32: camera z of the nearest surface, 0 on background;
* ``part_all`` int16 (not stored in samples): part id of *any* person's visible pixels, -1
  elsewhere (for the keypoint visibility test, ``coco17.keypoint_states``).

Realism (scene fields set by ``scene._add_realism``): painted heads and photo prints change the
albedo, a photo crop replaces the procedural background, and the finished image goes through
the camera: 3 x 3 blur, motion blur, the lower source resolution (area-downscaled by
``source_scale``), pixel noise and JPEG there, then bilinear back up to the crop size (as the
runtime's crop resize does). Labels stay at the crop's full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from hmr_ros import kernels as K
from hmr_ros.body import BodyModel

from .appearance import background, head_albedo, pattern
from .coco17 import HEAD_PART, HeadPoints, head_angles
from .primitives import vertex_normals
from .scene import Scene
from .surface import BodySurface
from .visibility import iuv_visibility

__all__ = ["RenderContext", "render_scene", "BACKGROUND", "OTHER_PERSON", "OCCLUDER",
           "SEG_BACKGROUND", "SEG_OCCLUDER"]

BACKGROUND, OTHER_PERSON, OCCLUDER = -1, -2, -3  #: part_seg labels below 0
SEG_BACKGROUND, SEG_OCCLUDER = -1, -2  #: person_seg labels below 0


@dataclass(frozen=True, eq=False)
class RenderContext:
    """What rendering needs from the body, prepared once: LBS kernel, atlas geometry, part map."""

    body: BodyModel
    lbs: K.LbsModel
    surface: BodySurface
    atlas_part_map: np.ndarray
    faces32: np.ndarray
    head: HeadPoints = None  # type: ignore[assignment]
    #: 24 x 2 metres spanned by each chart's (u, v): around the part, along it (rest template)
    chart_metres: np.ndarray = None  # type: ignore[assignment]

    @classmethod
    def from_body(cls, body: BodyModel, atlas_size: int = 64) -> "RenderContext":
        return cls(body, K.LbsModel.from_body(body), BodySurface.from_body(body),
                   np.asarray(body.atlas_part_map(atlas_size), np.int32),
                   np.ascontiguousarray(body.faces, np.int32), HeadPoints.from_body(body),
                   _chart_metres(body))


def _chart_metres(body: BodyModel) -> np.ndarray:
    """Circumference (2 pi x median radius) and length of each part's tube in the rest pose."""
    from hmr_ros.body.skeleton import bone_axes, cross_section_frames

    v = np.asarray(body.v_template, np.float64)
    joints = body.rest_joints
    frames = cross_section_frames(bone_axes(joints))
    out = np.full((24, 2), 0.1)
    for i in range(24):
        sel = body.part == i
        if not np.any(sel):
            continue
        rel = (v[sel] - joints[i]) @ frames[i].T
        out[i] = (2 * np.pi * max(float(np.median(np.hypot(rel[:, 0], rel[:, 1]))), 1e-3),
                  max(float(np.ptp(rel[:, 2])), 1e-3))
    return out


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised kernel of a straight motion of ``length`` pixels at ``angle`` (radians),
    anti-aliased (bilinear splats of points along the segment)."""
    half = 0.5 * max(float(length), 1.0)
    r = int(np.ceil(half)) + 1
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    t = np.linspace(-half, half, max(int(4 * length), 8))
    x, y = r + t * np.cos(angle), r + t * np.sin(angle)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                      (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), w.astype(np.float32))
    return k / k.sum()


def _camera(img: np.ndarray, scene: Scene) -> np.ndarray:
    """The finished float image through blur, resolution, noise and JPEG -> uint8."""
    size = scene.size
    if scene.blur:
        img = _blur3(img)
    if scene.motion_blur is not None:
        import cv2

        img = cv2.filter2D(np.ascontiguousarray(img, np.float32), -1,
                           _motion_kernel(*scene.motion_blur), borderType=cv2.BORDER_REFLECT)
    small = size
    if scene.source_scale < 1.0:
        import cv2

        small = max(8, int(round(size * scene.source_scale)))
        if small < size:
            img = cv2.resize(np.ascontiguousarray(img, np.float32), (small, small),
                             interpolation=cv2.INTER_AREA)
        else:
            small = size
    if scene.noise_sigma > 0:
        noise = np.random.default_rng(scene.noise_seed).standard_normal(img.shape, np.float32)
        img = img + noise * np.float32(scene.noise_sigma / 255.0)
    image = np.round(np.clip(img, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    if scene.jpeg_quality > 0:
        import cv2

        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]),
                               [int(cv2.IMWRITE_JPEG_QUALITY), int(scene.jpeg_quality)])
        if ok:
            image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    if small != size:
        import cv2

        up = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        image = np.round(np.clip(up, 0.0, 255.0)).astype(np.uint8)
    return image


def _photo_background(scene: Scene, photos) -> np.ndarray:
    import cv2

    k, x0, y0, side, flip, gr, gg, gb, defocus = scene.background_photo
    img = photos.crop(int(k), x0, y0, side, scene.size, bool(flip))
    img = img * np.array([gr, gg, gb], np.float32)
    if defocus > 0:
        img = cv2.GaussianBlur(img, (0, 0), float(defocus))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _blur3(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge replication (H x W x C)."""
    p = np.pad(img, ((1, 1), (0, 0), (0, 0)), mode="edge")
    img = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    p = np.pad(img, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]


def _label_pixels(face_id, bary, face_obj, num_people: int, ctx: RenderContext) -> dict:
    """Foreground pixels of a raster pass with their object, and for body pixels the part and
    chart coordinates (``who`` = person index of each body pixel)."""
    nf = ctx.body.num_faces
    pix = np.flatnonzero(face_id >= 0)
    fid = face_id.ravel()[pix]
    b = bary.reshape(-1, 3)[pix].astype(np.float64)
    obj = face_obj[fid]
    on_body = obj < num_people
    body_face = fid[on_body] % nf
    local = ctx.surface.pixel_local(body_face, b[on_body])
    part = ctx.surface.face_part[body_face]
    return {"pix": pix, "fid": fid, "bary": b, "obj": obj, "on_body": on_body,
            "local": local, "part": part, "who": obj[on_body],
            "uv": ctx.surface.local_to_atlas(local, part)}


def _person_iuv(px: dict, num_people: int, size: int) -> np.ndarray:
    """P x 3 x size x size IUV of every person's visible pixels (I in {0, 1})."""
    iuv = np.zeros((num_people, 3, size * size), np.float32)
    body_pix = px["pix"][px["on_body"]]
    who, uv = px["who"], px["uv"]
    iuv[who, 0, body_pix] = 1.0
    iuv[who, 1, body_pix] = uv[:, 0]
    iuv[who, 2, body_pix] = uv[:, 1]
    return iuv.reshape(num_people, 3, size, size)


def render_scene(scene: Scene, ctx: RenderContext, visibility_size: Optional[int] = None,
                 photos=None) -> Dict[str, np.ndarray]:
    """Pixels, labels and per-person GT of a scene.

    Returns image (H, W, 3) uint8, iuv (3, H, W) float32, part_seg (H, W) int16, person_seg
    (H, W) int8, depth (H, W) float32, and per person (P rows, main first): vertices (P, V, 3),
    joints (P, 24, 3) (camera frame), visibility (P, 24).

    ``visibility_size``: side of the image on which eq. 1 is evaluated (default: the image
    itself). Texels are only covered by pixels, so on small crops a thin part cannot reach its
    true coverage; a fixed visibility resolution makes ω independent of the crop size.
    ``photos``: the ``photos.PhotoBank`` the scene's photo rows index (needed iff it has any).
    """
    size = scene.size
    num_people = len(scene.people)
    betas = np.stack([p.betas for p in scene.people]).astype(np.float32)
    rotmats = np.stack([p.rotmats for p in scene.people]).astype(np.float32)
    transl = np.stack([p.transl for p in scene.people]).astype(np.float32)
    verts, joints = ctx.lbs(betas, rotmats)
    verts = np.asarray(verts) + transl[:, None]
    joints = np.asarray(joints) + transl[:, None]
    # 1. One mesh: people first, then occluders; face -> object map
    nv, nf = ctx.body.num_vertices, ctx.body.num_faces
    meshes_v = [verts.reshape(-1, 3)]
    meshes_f = [(ctx.faces32[None] + (np.arange(num_people) * nv)[:, None, None]).reshape(-1, 3)]
    normals = [vertex_normals(v, ctx.body.faces) for v in verts]
    texcoords = [np.zeros((num_people * nv, 2))]
    face_obj = [np.repeat(np.arange(num_people), nf)]
    offset = num_people * nv
    for k, occ in enumerate(scene.occluders):
        meshes_v.append(occ.mesh.vertices.astype(np.float32))
        meshes_f.append(occ.mesh.faces.astype(np.int32) + offset)
        normals.append(occ.mesh.normals)
        texcoords.append(occ.mesh.texcoords)
        face_obj.append(np.full(len(occ.mesh.faces), num_people + k))
        offset += len(occ.mesh.vertices)
    all_v = np.ascontiguousarray(np.concatenate(meshes_v), np.float32)
    all_f = np.ascontiguousarray(np.concatenate(meshes_f), np.int32)
    all_n = np.concatenate(normals)
    all_t = np.concatenate(texcoords)
    face_obj = np.concatenate(face_obj)
    face_id, bary, depth = K.rasterize(all_v, all_f, np.asarray(scene.K, np.float32),
                                        size, size)
    face_id, bary, depth = np.asarray(face_id), np.asarray(bary), np.asarray(depth)
    # 2. Per visible pixel: object, part, atlas coordinates
    px = _label_pixels(face_id, bary, face_obj, num_people, ctx)
    pix, fid, b, obj, on_body = px["pix"], px["fid"], px["bary"], px["obj"], px["on_body"]
    local, part, who = px["local"], px["part"], px["who"]
    person_seg = np.full(size * size, SEG_BACKGROUND, np.int8)
    person_seg[pix] = np.where(on_body, obj, SEG_OCCLUDER)
    part_seg = np.full(size * size, BACKGROUND, np.int16)
    part_seg[pix] = np.where(on_body, OTHER_PERSON, OCCLUDER)
    main = who == 0
    part_seg[pix[on_body][main]] = part[main]
    part_all = np.full(size * size, -1, np.int16)
    part_all[pix[on_body]] = part
    iuv_all = _person_iuv(px, num_people, size)
    # eq. 1 on an IUV rendered at visibility_size (same camera, scaled pixel grid)
    vis_size = int(visibility_size or size)
    if vis_size != size:
        k_vis = np.asarray(scene.K, np.float64).copy()
        k_vis[:2] *= vis_size / size
        vf, vb, _ = K.rasterize(all_v, all_f, k_vis.astype(np.float32), vis_size, vis_size)
        vpx = _label_pixels(np.asarray(vf), np.asarray(vb), face_obj, num_people, ctx)
        visibility = iuv_visibility(_person_iuv(vpx, num_people, vis_size), ctx.atlas_part_map)
    else:
        visibility = iuv_visibility(iuv_all, ctx.atlas_part_map)
    # 3. Shading: interpolated normals facing the camera, Lambert + ambient
    corners = all_f[fid]  # N x 3
    n = np.einsum("nk,nkc->nc", b, all_n[corners])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    col, row = pix % size, pix // size
    kinv = np.linalg.inv(np.asarray(scene.K, np.float64))
    ray = np.stack([col + 0.5, row + 0.5, np.ones_like(col, dtype=np.float64)], 1) @ kinv.T
    n *= np.where(np.sum(n * ray, axis=1) > 0, -1.0, 1.0)[:, None]
    light = scene.lighting
    shade = light.ambient + light.diffuse * np.maximum(n @ light.direction, 0.0)
    albedo = np.empty((len(pix), 3))
    albedo_tab = np.stack([p.look.albedo for p in scene.people])  # P x 24 x 3
    pattern_tab = np.stack([p.look.pattern for p in scene.people])  # P x 24 x 4
    albedo[on_body] = albedo_tab[who, part] * pattern(local, pattern_tab[who, part])[:, None]
    _realistic_bodies(scene, ctx, photos, albedo, on_body, fid[on_body] % ctx.body.num_faces,
                      b[on_body], who, part, local)
    if scene.occluders:
        k = obj[~on_body] - num_people
        tex = np.einsum("nk,nkc->nc", b[~on_body], all_t[corners[~on_body]])
        pat = np.stack([o.look.pattern for o in scene.occluders])[k].copy()
        pat[:, 3] = 1.0  # full contrast: the pattern picks colour a or b
        w = 1.0 - pattern(tex, pat)[:, None]  # 1 where the pattern is "on"
        ca = np.stack([o.look.colour_a for o in scene.occluders])[k]
        cb = np.stack([o.look.colour_b for o in scene.occluders])[k]
        albedo[~on_body] = ca * (1 - w) + cb * w
        prints = [o.look.photo for o in scene.occluders]
        if any(p is not None for p in prints):
            _need(photos)
            rows = np.stack([np.full(5, -1.0) if p is None else p for p in prints])[k]
            sel = rows[:, 0] >= 0
            if np.any(sel):
                r = rows[sel]
                colour = photos.lookup(r[:, 0], r[:, 1] + tex[sel, 0] * r[:, 3],
                                       r[:, 2] + tex[sel, 1] * r[:, 3])
                occ_albedo = albedo[~on_body]
                occ_albedo[sel] = (1 - r[:, 4:5]) * occ_albedo[sel] + r[:, 4:5] * colour
                albedo[~on_body] = occ_albedo
    if scene.background_photo is not None:
        _need(photos)
        img = _photo_background(scene, photos).reshape(-1, 3)
    else:
        img = background(np.random.default_rng(scene.background_seed), size).reshape(-1, 3)
    img[pix] = albedo * shade[:, None] * light.tint  # float32 image from here on
    image = _camera(img.reshape(size, size, 3), scene)
    return {
        "image": image,
        "iuv": np.ascontiguousarray(iuv_all[0]),
        "part_seg": part_seg.reshape(size, size),
        "person_seg": person_seg.reshape(size, size),
        "depth": depth.astype(np.float32).reshape(size, size),
        "vertices": verts.astype(np.float32),
        "joints": joints.astype(np.float32),
        "visibility": visibility,
        "part_all": part_all.reshape(size, size),
    }


def _need(photos) -> None:
    if photos is None:
        raise ValueError("the scene uses photos but render_scene got no PhotoBank")


def _realistic_bodies(scene: Scene, ctx: RenderContext, photos, albedo: np.ndarray,
                      on_body: np.ndarray, face: np.ndarray, bary: np.ndarray, who: np.ndarray,
                      part: np.ndarray, local: np.ndarray) -> None:
    """Photo prints and painted heads on the body pixels' albedo (in place)."""
    body_albedo = None
    for k, person in enumerate(scene.people):
        look = person.look
        if look.photo is None and look.head is None:
            continue
        if body_albedo is None:
            body_albedo = albedo[on_body]
        mine = who == k
        if look.photo is not None:
            _need(photos)
            rows = look.photo[part]
            sel = mine & (rows[:, 0] >= 0)
            if np.any(sel):
                r = rows[sel]
                metres = local[sel] * ctx.chart_metres[part[sel]]
                colour = photos.lookup(r[:, 0], r[:, 1] + metres[:, 0] * r[:, 3],
                                       r[:, 2] + metres[:, 1] * r[:, 3])
                body_albedo[sel] = (1 - r[:, 4:5]) * body_albedo[sel] + r[:, 4:5] * colour
        if look.head is not None:
            sel = mine & (part == HEAD_PART)
            if np.any(sel):
                corners = ctx.body.v_template[ctx.body.faces[face[sel]]]  # N x 3 x 3
                rest = np.einsum("nk,nkc->nc", bary[sel], corners.astype(np.float64))
                az, el = head_angles(rest, ctx.head.centre)
                body_albedo[sel] = head_albedo(look.head, az, el)
    if body_albedo is not None:
        albedo[on_body] = body_albedo
