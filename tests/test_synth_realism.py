"""Synthetic data for real cameras: COCO-17 keypoints with visibility, painted heads, photos,
camera degradations, format /1 compatibility, photo fetching (no network, no real photos)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hmr_ros.body.keypoints import COCO17_NAMES
from hmr_ros.data.synthetic import (
    Occluder, Person, Scene, SynthConfig, SyntheticGenerator, intrinsics, project,
    write_dataset,
)
from hmr_ros.data.synthetic import appearance as A
from hmr_ros.data.synthetic.coco17 import (
    BODY_JOINT_INDEX, FACE_POINTS_DEG, HEAD_PART, NOT_IN_IMAGE, OCCLUDED, VISIBLE, head_angles,
)
from hmr_ros.data.synthetic.config import LEGACY
from hmr_ros.data.synthetic.dataset import SyntheticShards
from hmr_ros.data.synthetic.photos import (
    PhotoBank, Source, collect, licence_of, open_photo_bank, parse_debian_copyright,
)
from hmr_ros.data.synthetic.poses import PRESETS, euler_to_matrix, global_orientation
from hmr_ros.data.synthetic.primitives import box_mesh
from hmr_ros.data.synthetic.scene import frame_person
from hmr_ros.data.synthetic.shards import load_npz, save_npz

#: realism off, so scenes built by hand render plainly
PLAIN = dict(photos="none", p_lowres=0.0, p_jpeg=0.0, p_motion_blur=0.0)
NOSE, LEYE, REYE, LEAR, REAR = range(5)


@pytest.fixture(scope="module")
def gen():
    return SyntheticGenerator(SynthConfig(size=128, **PLAIN), seed=0)


def _scene(gen, yaw=0.0, preset="a_pose", size=None, head=True, fill=0.8):
    size = size or gen.config.size
    rot = euler_to_matrix(np.deg2rad(PRESETS[preset]))
    rot[0] = global_orientation(yaw, 0.0, 0.0)
    K = intrinsics(size, 50.0)
    verts, _ = gen.ctx.lbs(np.zeros((1, 10), np.float32), rot[None].astype(np.float32))
    t = frame_person(np.asarray(verts[0], np.float64), K, (size / 2, size / 2), fill * size)
    rng = np.random.default_rng(0)
    look = A.sample_person_look(rng)
    if head:
        look = dataclasses.replace(look, head=A.sample_head_look(rng, look.albedo[12]))
    return Scene(size, K, (Person(np.zeros(10), rot, t, look),))


# ------------------------------------------------------------------------------------------
# COCO-17 keypoints
# ------------------------------------------------------------------------------------------


def test_frontal_person_keypoints(gen):
    s = gen.render(_scene(gen, yaw=0.0))
    kp, vis = s["people_coco17"][0], s["people_coco17_vis"][0]
    assert np.all(vis == VISIBLE), dict(zip(COCO17_NAMES, vis))
    assert s["people_face_front"][0] > 0.95
    # body points are the projected SMPL joints; hips are moved outwards and down
    joints2d = s["people_keypoints2d"][0]
    body = [k for k in range(5, 17) if k not in (11, 12)]
    np.testing.assert_allclose(kp[body], joints2d[BODY_JOINT_INDEX[[k - 5 for k in body]]],
                               atol=1e-3)
    assert kp[11, 0] - kp[12, 0] > joints2d[1, 0] - joints2d[2, 0] > 0
    assert kp[11, 1] > joints2d[1, 1] and kp[12, 1] > joints2d[2, 1]
    # facing the camera: the person's left is on the image's right
    for left in (1, 3, 5, 7, 9, 11, 13, 15):
        assert kp[left, 0] > kp[left + 1, 0], COCO17_NAMES[left]
    # face: eyes above the nose and either side of it, ears outside the eyes, all on the head
    assert kp[REYE, 0] < kp[NOSE, 0] < kp[LEYE, 0]
    assert kp[LEYE, 1] < kp[NOSE, 1] and kp[REYE, 1] < kp[NOSE, 1]
    assert kp[REAR, 0] < kp[REYE, 0] and kp[LEYE, 0] < kp[LEAR, 0]
    assert kp[NOSE, 1] < kp[5, 1]  # above the shoulders
    eye_gap = np.linalg.norm(s["people_coco17_3d"][0, LEYE] - s["people_coco17_3d"][0, REYE])
    assert 0.05 < eye_gap < 0.08  # metres
    # consistency of the stored forms
    np.testing.assert_allclose(kp, project(s["people_coco17_3d"][0], s["K"]), atol=1e-3)
    np.testing.assert_allclose(s["people_coco17_norm"][0], (kp - 64.0) / 64.0, atol=1e-5)


def test_face_points_follow_the_view(gen):
    back = gen.render(_scene(gen, yaw=180.0))
    vis = back["people_coco17_vis"][0]
    assert list(vis[:3]) == [OCCLUDED] * 3 and list(vis[3:5]) == [VISIBLE] * 2
    assert back["people_face_front"][0] < -0.85  # not -1: the head is above the optical axis
    # seen from behind, the person's left is on the image's left
    assert back["people_coco17"][0, 9, 0] < back["people_coco17"][0, 10, 0]
    # yaw +90: facing the image's right, the left side away from the camera
    side = gen.render(_scene(gen, yaw=90.0))
    vis = side["people_coco17_vis"][0]
    assert vis[NOSE] == VISIBLE and vis[REYE] == VISIBLE and vis[REAR] == VISIBLE
    assert vis[LEYE] == OCCLUDED and vis[LEAR] == OCCLUDED
    assert vis[5] == OCCLUDED  # the far (left) shoulder is behind the chest
    assert abs(side["people_face_front"][0]) < 0.2


def test_occluders_and_image_border_set_states(gen):
    scene = _scene(gen)
    depth = scene.people[0].transl[2]
    look = A.sample_occluder_look(np.random.default_rng(1))
    low = box_mesh([1.0, 0.6, 0.01]).transformed(np.eye(3), [0.0, 0.75, 0.6 * depth])
    s = gen.render(scene.with_occluders([Occluder(low, look, "box")]))
    vis = s["people_coco17_vis"][0]
    assert np.all(vis[[13, 14, 15, 16]] == OCCLUDED) and np.all(vis[:7] == VISIBLE)
    # shift the person half out of the image: points outside are NOT_IN_IMAGE, exactly
    p = scene.people[0]
    moved = dataclasses.replace(scene, people=(dataclasses.replace(
        p, transl=p.transl + np.array([0.5, 0.0, 0.0]) * p.transl[2]),))
    s = gen.render(moved)
    kp, vis = s["people_coco17"][0], s["people_coco17_vis"][0]
    outside = (kp < 0).any(1) | (kp >= 128).any(1)
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(vis == NOT_IN_IMAGE, outside)


def test_generated_samples_keypoint_contract():
    cfg = SynthConfig(size=64, p_multi=0.8, p_occ=0.8, p_truncate=0.3, **PLAIN)
    g = SyntheticGenerator(cfg, seed=4)
    seen_states = set()
    for i in range(6):
        s = g.sample(i)
        n = int(s["num_people"])
        assert s["people_coco17_vis"].dtype == np.int8
        assert not s["people_coco17"][n:].any() and not s["people_coco17_vis"][n:].any()
        for p in range(n):
            vis = s["people_coco17_vis"][p]
            seen_states |= set(vis.tolist())
            for k in np.flatnonzero(vis == VISIBLE):  # the person shows near a visible point
                c, r = np.floor(s["people_coco17"][p, k]).astype(int)
                win = s["person_seg"][max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
                assert (win == p).any()
    assert seen_states == {NOT_IN_IMAGE, OCCLUDED, VISIBLE}


def test_face_points_sit_on_the_head_surface(gen):
    head, body = gen.ctx.head, gen.body
    assert np.all(body.part[body.faces[head.faces]] == HEAD_PART)
    rest = head.rest_points(body)
    az, el = head_angles(rest, head.centre)
    names = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    np.testing.assert_allclose(np.stack([az, el], 1),
                               [FACE_POINTS_DEG[n] for n in names], atol=0.5)
    assert rest[0, 2] > rest[3, 2] and rest[3, 0] > 0 > rest[4, 0]  # nose ahead, ears at sides


# ------------------------------------------------------------------------------------------
# Realism: heads, camera, photos
# ------------------------------------------------------------------------------------------


def test_painted_head_front_differs_from_back(gen):
    def head_pixels(yaw):
        s = gen.render(_scene(gen, yaw=yaw, size=256, fill=0.95))
        return s["image"][s["part_seg"] == HEAD_PART].astype(float)

    look = _scene(gen).people[0].look.head
    front, back = head_pixels(0.0), head_pixels(180.0)
    hair = np.asarray(look.hair) * 255

    def hair_share(px):  # colour close to the (shaded) hair colour: direction in RGB
        cos = px @ hair / (np.linalg.norm(px, axis=1) * np.linalg.norm(hair) + 1e-9)
        return np.mean((cos > 0.995) & (px.sum(1) < 1.6 * hair.sum() + 30))

    assert hair_share(back) > hair_share(front) + 0.2
    assert front.std(0).mean() > 5  # features: not one flat colour


def test_camera_effects_keep_labels(gen):
    scene = _scene(gen)
    clean = gen.render(scene)
    rough = gen.render(dataclasses.replace(scene, source_scale=0.4, jpeg_quality=30,
                                           motion_blur=np.array([6.0, 0.3])))
    for key in ("iuv", "part_seg", "person_seg", "depth", "people_coco17",
                "people_coco17_vis", "people_visibility"):
        np.testing.assert_array_equal(clean[key], rough[key], err_msg=key)
    diff = np.abs(clean["image"].astype(int) - rough["image"].astype(int))
    assert diff.mean() > 2
    # lower resolution removes fine detail: less high-frequency energy
    def hf(img):
        g = img.astype(float).mean(2)
        return np.abs(np.diff(g, axis=1)).mean()

    assert hf(rough["image"]) < hf(clean["image"])


def test_legacy_config_draws_what_format_1_drew():
    old = {k: v for k, v in SynthConfig(size=48).to_dict().items() if k not in LEGACY}
    legacy = SynthConfig.from_dict(old, missing="legacy")
    assert not legacy.realism and SynthConfig.from_dict(old).realism
    g = SyntheticGenerator(legacy, seed=2)
    scene = g.scene(0)
    assert scene.people[0].look.head is None and scene.background_photo is None
    assert scene.source_scale == 1.0 and scene.jpeg_quality == 0 and scene.motion_blur is None
    # realism draws come last, from their own generator: the geometry is the same either way
    new = SyntheticGenerator(dataclasses.replace(legacy, head_features=True, p_jpeg=1.0),
                             seed=2).scene(0)
    np.testing.assert_array_equal(new.people[0].rotmats, scene.people[0].rotmats)
    np.testing.assert_array_equal(new.K, scene.K)
    assert new.jpeg_quality > 0 and new.people[0].look.head is not None


def _photo_like(rng, h, w):
    """A small photo-like image: smooth colour field plus texture and an edge."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * 0.3 + 0.5 + 0.2 * yy for c in rng.uniform(0, 6, 3)], -1)
    base += rng.normal(0, 0.05, (h, w, 3))
    base[:, w // 2:] *= 0.6
    return np.clip(base * 255, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate([(90, 140), (120, 80), (100, 100)]):
        cv2.imwrite(str(root / "images" / f"p{k}.png"), _photo_like(rng, h, w)[:, :, ::-1])
    return root


def test_photo_bank_build_reopen_and_crop(photo_dir):
    bank = open_photo_bank(str(photo_dir))
    assert len(bank) == 3 and bank.names == ("p0.png", "p1.png", "p2.png")
    assert list(bank.sizes[0]) == [90, 140]
    again = open_photo_bank(str(photo_dir))  # memory-mapped from the bank file now
    assert again.digest == bank.digest and isinstance(again.images, np.memmap)
    crop = bank.crop(0, 10, 5, 60, 30)
    assert crop.shape == (30, 30, 3) and 0 <= crop.min() and crop.max() <= 1
    full = bank.photo(0)
    np.testing.assert_allclose(crop.mean((0, 1)), full[5:65, 10:70].mean((0, 1)), atol=0.02)
    assert open_photo_bank("none") is None
    with pytest.raises(ValueError):
        open_photo_bank(str(photo_dir / "missing"))


def test_generator_uses_photos_deterministically(photo_dir, tmp_path):
    cfg = SynthConfig(size=48, photos=str(photo_dir), p_photo_background=1.0,
                      p_photo_clothing=1.0, p_photo_occluder=1.0, p_occ=1.0)
    a, b = SyntheticGenerator(cfg, seed=1), SyntheticGenerator(cfg, seed=1)
    for i in range(3):
        sa, sb = a.sample(i), b.sample(i)
        for key in sa:
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    scene = a.scene(0)
    assert scene.background_photo is not None
    assert any(p.look.photo is not None for p in scene.people)
    assert all(o.look.photo is not None for o in scene.occluders)
    # without the photos the background is procedural and nothing needs a bank
    plain = SyntheticGenerator(dataclasses.replace(cfg, photos="none"), seed=1).scene(0)
    assert plain.background_photo is None and plain.people[0].look.photo is None
    path = write_dataset(tmp_path / "ds", 2, cfg, seed=1, progress=False)
    meta = json.loads(path.read_text())
    assert meta["format"] == "hmr_ros.synthetic/2"
    assert meta["photos"] == {"count": 3, "digest": a.photo_digest}


def test_format_1_shards_get_keypoints_on_reading(tmp_path):
    old = {k: v for k, v in SynthConfig(size=48, p_multi=0.7, p_occ=0.5).to_dict().items()
           if k not in LEGACY}
    cfg = SynthConfig.from_dict(old, missing="legacy")
    root = tmp_path / "v1"
    write_dataset(root, 4, cfg, seed=3, shard_size=4, progress=False)
    shard = load_npz(root / "shard_00000.npz")
    fresh = {k: v for k, v in shard.items() if k.startswith(("people_coco17", "people_face"))}
    save_npz(root / "shard_00000.npz",
             {k: v for k, v in shard.items() if k not in fresh})  # as format /1 wrote it
    meta = json.loads((root / "dataset.json").read_text())
    meta["format"], meta["config"] = "hmr_ros.synthetic/1", old
    meta.pop("photos")
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = SyntheticShards(root, image_format="uint8", aliases=False)
    assert ds.config == cfg
    for i in range(4):
        item = ds.arrays(i)
        for key in ("people_coco17", "people_coco17_3d", "people_coco17_norm",
                    "people_face_front"):
            np.testing.assert_allclose(item[key], fresh[key][i], atol=1e-4, err_msg=key)
        # the main person's parts were stored: its states are exactly the generator's
        np.testing.assert_array_equal(item["people_coco17_vis"][0],
                                      fresh["people_coco17_vis"][i, 0])
        assert np.mean(item["people_coco17_vis"] == fresh["people_coco17_vis"][i]) > 0.9


# ------------------------------------------------------------------------------------------
# Fetching photos (no network: a fake unpacked package)
# ------------------------------------------------------------------------------------------

_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: nature/Leaf.jpg
       nature/Tree.jpg
Copyright: 2008, A Photographer <a@example.org>
           2009, Another
License: CC-BY-SA-4.0

Files: nature/Secret.jpg
Copyright: 2008, Nobody
License: Proprietary

License: GPL-2+
 This program is free software.
"""


def test_copyright_parsing_and_licence_lookup():
    stanzas = parse_debian_copyright(_COPYRIGHT)
    assert len(stanzas) == 3 and stanzas[1]["files"] == ["nature/Leaf.jpg", "nature/Tree.jpg"]
    assert licence_of("nature/Tree.jpg", stanzas) == (
        "CC-BY-SA-4.0", "2008, A Photographer <a@example.org>\n2009, Another")
    assert licence_of("other/x.jpg", stanzas)[0] == "GPL-2+"  # the last matching stanza wins


def test_collect_copies_photos_with_their_licences(tmp_path):
    import cv2

    root = tmp_path / "pkg"
    pics = root / "usr/share/backgrounds/demo/nature"
    pics.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("Leaf.jpg", "Tree.jpg", "Person.jpg"):
        cv2.imwrite(str(pics / name), _photo_like(rng, 40, 60))
    src = Source("demo-backgrounds", ("usr/share/backgrounds/demo/nature/*.jpg",),
                 exclude=("Person*",), source_root=("usr/share/backgrounds/demo/", ""))
    dest = tmp_path / "cache"
    entries = collect(root, src, "1.0", dest, _COPYRIGHT)
    assert [e["file"] for e in entries] == ["images/demo-backgrounds__Leaf.jpg",
                                            "images/demo-backgrounds__Tree.jpg"]
    assert {e["licence"] for e in entries} == {"CC-BY-SA-4.0"}
    assert all(e["version"] == "1.0" and len(e["sha256"]) == 64 for e in entries)
    assert len(PhotoBank.build(dest)) == 2
    cv2.imwrite(str(pics / "Secret.jpg"), _photo_like(rng, 40, 60))
    with pytest.raises(ValueError, match="licence"):
        collect(root, src, "1.0", tmp_path / "cache2", _COPYRIGHT)
