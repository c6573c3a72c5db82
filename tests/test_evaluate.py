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
