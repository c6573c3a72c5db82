"""Synthetic data on disk and in torch: shards, determinism of files, datasets, preview, CLI."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from hmr_ros.data.synthetic import SynthConfig, SyntheticGenerator, write_dataset
from hmr_ros.data.synthetic.cli import synth_main
from hmr_ros.data.synthetic.dataset import SyntheticShards, SyntheticStream
from hmr_ros.data.synthetic.png import PNG_SIGNATURE, read_png, write_png
from hmr_ros.data.synthetic.preview import contact_sheet, write_preview
from hmr_ros.data.synthetic.shards import load_npz, open_npz_mmap, save_npz

CFG = SynthConfig(size=40, p_multi=0.5, p_occ=0.7, visibility_size=64)
SEED = 5


@pytest.fixture(scope="module")
def gen():
    return SyntheticGenerator(CFG, seed=SEED)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 5, CFG, seed=SEED, shard_size=3, progress=False)
    return root


def test_layout_and_metadata(written):
    names = sorted(p.name for p in written.iterdir())
    assert names == ["dataset.json", "shard_00000.npz", "shard_00001.npz"]
    meta = json.loads((written / "dataset.json").read_text())
    assert meta["num_samples"] == 5 and meta["seed"] == SEED
    assert [s["count"] for s in meta["shards"]] == [3, 2]
    assert SynthConfig.from_dict(meta["config"]) == CFG
    shard = load_npz(written / "shard_00000.npz")  # plain np.load reads the shards
    for key, spec in meta["arrays"].items():
        assert shard[key].shape == (3, *spec["shape"]) and shard[key].dtype == spec["dtype"]


def test_round_trip_through_shards(written, gen):
    ds = SyntheticShards(written, image_format="uint8", aliases=False)
    assert len(ds) == 5
    for i in range(5):
        expected = gen.sample(i)
        item = ds[i]
        assert set(item) == set(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(item[key].numpy(), value, err_msg=f"{i} {key}")
    with pytest.raises(IndexError):
        ds[5]


def test_training_view_and_recomputed_vertices(written):
    ds = SyntheticShards(written, with_vertices=True)
    item = ds[1]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 40, 40)
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    torch.testing.assert_close(item["rel_rotmats"], item["people_rel_rotmats"][0])
    torch.testing.assert_close(item["keypoints2d"], item["people_keypoints2d_norm"][0])
    torch.testing.assert_close(item["joints3d"], item["people_joints"][0])
    ref = SyntheticGenerator(CFG, seed=SEED, with_vertices=True).sample(1)["people_vertices"]
    np.testing.assert_allclose(item["people_vertices"].numpy(), ref, atol=1e-5)


def test_same_seed_same_bytes_any_workers(written, tmp_path):
    write_dataset(tmp_path / "again", 5, CFG, seed=SEED, shard_size=3, progress=False)
    write_dataset(tmp_path / "parallel", 5, CFG, seed=SEED, shard_size=3, workers=2,
                  progress=False)
    for name in ("dataset.json", "shard_00000.npz", "shard_00001.npz"):
        ref = (written / name).read_bytes()
        assert (tmp_path / "again" / name).read_bytes() == ref, name
        assert (tmp_path / "parallel" / name).read_bytes() == ref, name
    write_dataset(tmp_path / "other", 5, CFG, seed=SEED + 1, shard_size=3, progress=False)
    assert (tmp_path / "other" / "shard_00000.npz").read_bytes() != \
        (written / "shard_00000.npz").read_bytes()


def test_compressed_shards_read_back(written, tmp_path):
    write_dataset(tmp_path, 5, CFG, seed=SEED, shard_size=3, compress=True, progress=False)
    assert (tmp_path / "shard_00000.npz").stat().st_size < \
        (written / "shard_00000.npz").stat().st_size
    a, b = SyntheticShards(tmp_path, aliases=False), SyntheticShards(written, aliases=False)
    for i in (0, 4, 2):
        for key, value in b[i].items():
            assert torch.equal(a[i][key], value), key


def test_npz_mmap_matches_np_load(tmp_path):
    arrays = {"a": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "b": np.array(True),
              "c": np.zeros((0, 3), np.int16), "d": np.arange(5, dtype=np.int8)}
    save_npz(tmp_path / "x.npz", arrays)
    mm = open_npz_mmap(tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz") as ref:
        for key in arrays:
            np.testing.assert_array_equal(mm[key], ref[key])
            assert mm[key].dtype == ref[key].dtype
    save_npz(tmp_path / "z.npz", arrays, compress=True)
    with pytest.raises(ValueError):
        open_npz_mmap(tmp_path / "z.npz")


def test_stream_matches_shards_and_splits_workers(written):
    shards = SyntheticShards(written)
    stream = list(SyntheticStream(CFG, seed=SEED, num=3))
    assert len(stream) == 3
    for i, item in enumerate(stream):
        for key, value in shards[i].items():
            assert torch.equal(item[key], value), key
    loader = torch.utils.data.DataLoader(SyntheticStream(CFG, seed=SEED, num=5), batch_size=None,
                                         num_workers=2)
    got = sorted(float(item["image"].sum()) for item in loader)
    assert got == pytest.approx(sorted(float(shards[i]["image"].sum()) for i in range(5)))


def test_png_writer_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for shape in ((7, 5, 3), (4, 9), (3, 3, 4)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        path = write_png(tmp_path / "x.png", img)
        np.testing.assert_array_equal(read_png(path), img)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # corrupt a data byte: the CRC check catches it
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ValueError):
        read_png(tmp_path / "bad.png")


def test_preview_is_a_valid_png(tmp_path, gen):
    samples = [gen.sample(i) for i in range(3)]
    path = write_preview(tmp_path / "sheet.png", samples)
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and raw[12:16] == b"IHDR"
    img = read_png(path)
    np.testing.assert_array_equal(img, contact_sheet(samples))
    tile = 40 * 4  # 40 px crops are scaled 4x to reach 160
    assert img.shape == (3 * tile + 4 * 4, 6 * tile + 7 * 4, 3)  # six tiles per sample
    assert zlib.crc32(img.tobytes()) != 0 and img.std() > 10  # not a blank sheet


def test_cli(tmp_path, capsys):
    png = tmp_path / "p.png"
    assert synth_main(["--preview", str(png), "--num", "2", "--size", "32"]) == 0
    assert read_png(png).shape[2] == 3
    out = tmp_path / "ds"
    assert synth_main(["--out", str(out), "--num", "3", "--size", "32", "--shard-size", "2",
                       "--quiet", "--p-occ", "1"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["num_samples"] == 3 and meta["config"]["p_occ"] == 1.0
    assert len(SyntheticShards(out)) == 3
    assert synth_main(["--num", "3"]) == 1  # neither --out nor --preview
    assert "error" in capsys.readouterr().err
