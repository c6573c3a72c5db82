"""InstanceHMR trainer: a tiny run trains, checkpoints, resumes and exports."""

from __future__ import annotations

import json

import pytest
import yaml

from hmr_ros.train.config import ConfigError
from hmr_ros.train.instancehmr import (is_instancehmr_config, load_instancehmr_checkpoint,
                                       load_instancehmr_config, main, parse_instancehmr_config)

CONFIG = {
    "model": {"name": "instancehmr", "backbone": "tiny", "input_size": 64, "tiny_channels": 8,
              "head_channels": 16, "instance_channels": 16, "param_channels": 16},
    "data": {"seed": 1, "batch_size": 2, "num_workers": 0, "synth": {"size": 64, "p_multi": 1.0,
                                                                    "visibility_size": 64}},
    "schedule": {"total_steps": 2, "warmup_steps": 1},
    "log": {"every": 1, "tensorboard": False, "progress": False},
    "checkpoint": {"every": 1, "keep_last": 1},
}


def test_the_light_config_parses():
    cfg = load_instancehmr_config("configs/instancehmr_light.yaml")
    assert cfg.model.backbone == "tiny" and cfg.model.input_size == 256
    assert cfg.loss.pa_joints3d == 360.0 and cfg.data.synth.size == 256
    assert is_instancehmr_config("configs/instancehmr_light.yaml")
    assert not is_instancehmr_config("configs/ochmr_light.yaml")
    with pytest.raises(ConfigError, match="unknown key 'model.depth'"):
        parse_instancehmr_config({"model": {"name": "instancehmr", "depth": 3}})


def test_two_steps_then_resume_and_export(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out), "--max-steps", "1"]) == 0
    records = [json.loads(line) for line in (out / "scalars.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 1 and records[-1]["train/pull"] > 0
    assert main(["--config", str(config), "--out", str(out), "--resume",
                 str(out / "last.pt")]) == 0
    records = [json.loads(line) for line in (out / "scalars.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt"]
    model, cfg = load_instancehmr_checkpoint(out / "last.pt")
    assert cfg.input_size == 64 and not model.training
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["model"] == "instancehmr"
    assert {"maps", "decode"} <= set(manifest["stages"])
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 1
