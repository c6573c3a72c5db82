"""`hmr-ros evaluate`: table 2 layout from the deployed path on a small synthetic set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hmr_ros import cli
from hmr_ros.body import procedural_body
from hmr_ros.data.synthetic import SynthConfig, write_dataset
from hmr_ros.eval.ablation import MODES, evaluate, markdown_table
from hmr_ros.export import export_vishmr
from tiny_vishmr import tiny_vishmr



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    export_vishmr(tiny_vishmr(), root / "model")
    write_dataset(root / "val", 12, SynthConfig(size=64, p_occ=0.8), seed=3, shard_size=6,
                  with_vertices=True, progress=False)
    return root


def test_table_has_every_mode_and_split(setup):
    result = evaluate(setup / "model", setup / "val", procedural_body(), batch=5,
                      progress=False)
    assert result["count"]["all"] == 12
    for mode in MODES:
        for k in ("mpjpe", "pa_mpjpe", "pve"):
            v = result["all"][mode][k]
            assert np.isfinite(v) and v > 0
        assert result["all"][mode]["pa_mpjpe"] <= result["all"][mode]["mpjpe"] + 1e-6
    assert 0.0 <= result["visibility"]["accuracy"] <= 1.0
    assert 0.0 <= result["visibility_from_iuv"]["accuracy"] <= 1.0
    assert 0.0 <= result["iuv"]["foreground"] <= 1.0 and len(result["iuv"]["per_part_recall"]) == 24
    text = markdown_table(result)
    assert "KS-matched (VisHMR)" in text and "12 validation persons" in text
    assert "IUV head: fg/bg" in text


def test_iuv_labels_of_the_ground_truth_itself_are_all_right(setup):
    import torch

    from hmr_ros.data.synthetic import SyntheticShards
    from hmr_ros.eval.ablation import _iuv_labels
    from hmr_ros.eval.metrics import iuv_part_accuracy

    data = SyntheticShards(setup / "val", image_format="uint8")
    gts = [np.asarray(data.arrays(i)["iuv"], np.float32) for i in range(4)]
    # the GT resampled by torch's pixel-centre nearest ("nearest-exact", as the training
    # targets), at a non-integer ratio (64 -> 24): the labels must agree everywhere
    pred = torch.nn.functional.interpolate(torch.from_numpy(np.stack(gts)), size=(24, 24),
                                           mode="nearest-exact").numpy()
    p, g = _iuv_labels(pred, gts)
    r = iuv_part_accuracy(p, g)
    assert g.shape == (4, 24, 24) and (g > 0).sum() > 20
    assert r["part"] == 1.0 and r["foreground"] == 1.0
    shifted = np.roll(pred, 1, axis=-1)  # off by one pixel: no longer all right
    assert iuv_part_accuracy(*_iuv_labels(shifted, gts))["part"] < 1.0


def test_cli_writes_json(setup, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", "--model-dir", str(setup / "model"), "--data",
                     str(setup / "val"), "--limit", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["count"]["all"] == 4
    assert "| mode | MPJPE" in capsys.readouterr().out


# --- crops: the runtime's crop path (issue 12 §3.2) ---------------------------------------------

class _CropSpy:
    """The runner, recording the crops ``FramePipeline`` hands it."""

    def __init__(self, runner):
        self._runner, self.crops = runner, []

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def __call__(self, crops, *args, **kwargs):
        self.crops.append(np.array(crops, copy=True))
        return self._runner(crops, *args, **kwargs)


def _samples(setup, n=4):
    from hmr_ros.data.synthetic import SyntheticShards

    data = SyntheticShards(setup / "val", image_format="uint8")
    return [data.arrays(i) for i in range(n)]


@pytest.mark.parametrize("box, context", [("render", None), ("person", None), ("person", 1.5)])
def test_evaluation_crops_are_crop_batch_at_the_pipelines_geometry(setup, box, context):
    from hmr_ros.eval.ablation import crop_context, evaluation_crops
    from hmr_ros.runtime import Box, PipelineParams, select_boxes, whole_frame
    from hmr_ros.runtime.crop import crop_batch, square_geometry

    samples = _samples(setup)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    crops, geoms = evaluation_crops(samples, 24, np.float32(mean), np.float32(std), box, context)
    ctx = crop_context(box, context)
    assert ctx == {"render": 1.0, "person": PipelineParams().context}[box] if context is None \
        else ctx == context
    assert crops.shape == (4, 3, 24, 24) and crops.dtype == np.float32
    for s, crop, geo in zip(samples, crops, geoms):
        h, w = s["image"].shape[:2]
        if box == "render":
            chosen = whole_frame(w, h)
        else:  # the amodal GT box, clipped as the pipeline clips a detection
            chosen = select_boxes([Box(*map(float, s["people_bbox"][0]))], w, h)[0]
            assert 0 <= chosen.x0 < chosen.x1 <= w and 0 <= chosen.y0 < chosen.y1 <= h
        expected = square_geometry(chosen, 24, ctx)
        assert geo == expected
        np.testing.assert_array_equal(crop, crop_batch(s["image"], [expected], mean, std)[0])
    if box == "render":  # context 1: the render itself, resampled 64 -> 24 by the kernel
        assert geoms[0].size == 64 and (geoms[0].cx, geoms[0].cy) == (32, 32)


@pytest.mark.parametrize("box", ["render", "person"])
def test_evaluation_crops_are_the_pixels_the_frame_pipeline_feeds_the_model(setup, box):
    from hmr_ros.eval.ablation import crop_context, evaluation_crops
    from hmr_ros.runtime import Box, FramePipeline, OrtVisHMR, PipelineParams

    body = procedural_body()
    spy = _CropSpy(OrtVisHMR(setup / "model", body))
    prep = spy.manifest.preprocessing
    pipe = FramePipeline(spy, PipelineParams(track=False, context=crop_context(box)))
    samples = _samples(setup, 3)
    crops, _ = evaluation_crops(samples, int(prep["crop_size"]),
                                np.asarray(prep["mean"], np.float32),
                                np.asarray(prep["std"], np.float32), box)
    for s, crop in zip(samples, crops):
        boxes = None if box == "render" else [Box(*map(float, s["people_bbox"][0]))]
        result = pipe.process(s["image"], s["K"], boxes)
        assert result.skipped is None and len(result.persons) == 1
        np.testing.assert_array_equal(spy.crops[-1][0], crop)


def test_iuv_labels_follow_the_crop_geometry(setup):
    from hmr_ros.body.uv_atlas import atlas_part_labels
    from hmr_ros.eval.ablation import _iuv_labels
    from hmr_ros.runtime.crop import CropGeometry

    gts = [np.asarray(s["iuv"], np.float32) for s in _samples(setup, 2)]  # 3 x 64 x 64
    pred = np.zeros((2, 3, 16, 16), np.float32)
    whole = [CropGeometry(32.0, 32.0, 64.0, 24)] * 2
    _, g_none = _iuv_labels(pred, gts)
    _, g_whole = _iuv_labels(pred, gts, geometries=whole)
    np.testing.assert_array_equal(g_none, g_whole)  # the whole render: as before
    # the top-left quarter of the render, at 16 x 16: each label pixel is 2 x 2 render pixels
    _, g_quarter = _iuv_labels(pred, gts, geometries=[CropGeometry(16.0, 16.0, 32.0, 24)] * 2)
    full = atlas_part_labels(np.stack(gts))
    np.testing.assert_array_equal(g_quarter, full[:, 1:32:2, 1:32:2])
    # a crop reaching past the render: background (0) out there
    _, g_out = _iuv_labels(pred, gts, geometries=[CropGeometry(0.0, 0.0, 64.0, 24)] * 2)
    assert (g_out[:, :8] == 0).all() and (g_out[:, :, :8] == 0).all()
    np.testing.assert_array_equal(g_out[:, 8:, 8:], full[:, 2:32:4, 2:32:4])


def test_person_box_evaluation_reports_its_crop(setup):
    result = evaluate(setup / "model", setup / "val", procedural_body(), batch=6, limit=6,
                      progress=False, box="person")
    assert result["crop"] == {"box": "person", "context": 1.2}
    assert np.isfinite(result["all"]["ks_matched"]["mpjpe"])
    assert "box person, context 1.2" in markdown_table(result)
    with pytest.raises(ValueError, match="context"):
        evaluate(setup / "model", setup / "val", procedural_body(), limit=1, context=0.5,
                 progress=False)
