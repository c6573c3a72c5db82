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
    text = markdown_table(result)
    assert "KS-matched (VisHMR)" in text and "12 validation persons" in text


def test_cli_writes_json(setup, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", "--model-dir", str(setup / "model"), "--data",
                     str(setup / "val"), "--limit", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["count"]["all"] == 4
    assert "| mode | MPJPE" in capsys.readouterr().out
