"""The DPMesh trainer: a 2-step run from the command line on generated renders (checkpoint,
scalars, exact resume, export at the end), the teacher/NKR path, clean keypoints of a sample,
and the shipped config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("diffusers")

from hmr_ros.train.config import ConfigError  # noqa: E402
from hmr_ros.train.dpmesh import (DPMeshTrainer, clean_keypoints, dpmesh_model_name,  # noqa: E402
                                  load_dpmesh_train_config, load_dpmesh_training_checkpoint,
                                  main, parse_dpmesh_config)
from hmr_ros.train.scalars import read_scalars  # noqa: E402

CROP = 64
SYNTH = {"size": CROP, "p_multi": 1.0}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny networks run fastest on one thread; with two, OpenMP's waiting threads spin
    against whatever else runs on a small shared machine and a step takes ~20x longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(**over) -> dict:
    cfg = {
        "seed": 0, "device": "cpu",
        "model": {"name": "dpmesh", "size": "tiny", "crop_size": CROP},
        "data": {"batch_size": 2, "num_workers": 0,
                 "train": [{"type": "synthetic_stream", "size": 4, "seed": 1, "synth": SYNTH}],
                 "val": [{"type": "synthetic_stream", "size": 2, "seed": 2, "synth": SYNTH}]},
        "optimizer": {"lr": 1.0e-3},
        "schedule": {"total_steps": 2, "warmup_steps": 0},
        "val": {"every": 0, "max_batches": 0},
        "log": {"every": 1, "tensorboard": False, "progress": False},
        "checkpoint": {"every": 1, "keep_last": 2},
    }
    cfg.update(over)
    return cfg


def _write(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_two_steps_checkpoint_resume_and_export(tmp_path):
    cfg_path = _write(tmp_path / "dpmesh.yaml", _config())
    assert dpmesh_model_name(cfg_path) == "dpmesh"
    out = tmp_path / "run"
    assert main(["--config", cfg_path, "--out", str(out), "--export",
                 str(tmp_path / "export")]) == 0
    records = read_scalars(out / "scalars.jsonl")
    assert {"train/keypoints2d", "train/joints3d", "train/smpl", "train/total"} <= set(records[0])
    assert "train/nkr" not in records[0]  # no teacher
    assert any("val/pa_mpjpe" in r for r in records)
    assert (tmp_path / "export" / "unet.onnx").is_file()
    assert (tmp_path / "export" / "regressor.onnx").is_file()
    # interrupted after step 1 and resumed: the same weights as the straight run
    part = tmp_path / "part"
    assert main(["--config", cfg_path, "--out", str(part), "--max-steps", "1"]) == 0
    assert main(["--config", cfg_path, "--out", str(part), "--resume",
                 str(part / "last.pt")]) == 0
    a = torch.load(out / "last.pt", weights_only=True)
    b = torch.load(part / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 2 and a["model"] == "dpmesh"
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    model, config = load_dpmesh_training_checkpoint(out / "last.pt")
    assert config.size == "tiny" and config.crop_size == CROP


def test_teacher_adds_the_nkr_term(tmp_path):
    cfg = _config(keypoints="clean", schedule={"total_steps": 1, "warmup_steps": 0})
    teacher_dir = tmp_path / "teacher"
    DPMeshTrainer(parse_dpmesh_config(cfg), teacher_dir).train()
    student = DPMeshTrainer(parse_dpmesh_config(_config(teacher=str(teacher_dir / "last.pt"))),
                            tmp_path / "student")
    batch = next(iter(student.loader))
    values = student.train_step(batch)
    assert values["nkr"] > 0 and np.isfinite(values["total"])
    # the crops reach the model in [-1, 1]
    images = student.images(batch)
    assert images.min() >= -1.0 - 1e-5 and images.max() <= 1.0 + 1e-5


def test_clean_keypoints_of_a_sample():
    raw = {"image": np.zeros((64, 64, 3), np.uint8),
           "people_coco17": np.tile([[[32.0, 16.0]]], (1, 17, 1)),
           "people_coco17_vis": np.array([[2] * 15 + [1, 0]])}
    kp = clean_keypoints(raw)
    assert kp.shape == (17, 3)
    np.testing.assert_allclose(kp[0], [0.0, -0.5, 1.0])
    assert kp[15, 2] == 1.0 and kp[16, 2] == 0.0  # occluded kept, outside dropped
    assert clean_keypoints({"image": raw["image"]}).sum() == 0


def test_shipped_config_parses_and_errors_name_the_key(tmp_path):
    cfg = load_dpmesh_train_config(Path(__file__).parents[1] / "configs" / "dpmesh_tiny.yaml")
    assert cfg.model.size == "tiny" and cfg.loss.nkr == 0.1
    assert parse_dpmesh_config(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="model.*unet_channels"):
        parse_dpmesh_config(_config(model={"name": "dpmesh", "unet_channels": 3}))
    with pytest.raises(ConfigError, match="keypoints"):
        parse_dpmesh_config(_config(keypoints="gt"))
