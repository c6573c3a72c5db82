"""The SMPL-parameter regressor trainer (OCHMR now, ImpHMR when its module exists): context maps
of a sample, a tiny real run through ``hmr-ros train`` (checkpoint, scalars, exact resume),
the loss falling on a fixed batch, and checkpoints that rebuild the same model."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import yaml

from hmr_ros.models.checkpoint import CheckpointError
from hmr_ros.models.ochmr import OCHMR
from hmr_ros.train import train_main
from hmr_ros.train.param_regressor import (ParamTrainer, context_maps, load_param_checkpoint,
                                           param_model_name, parse_param_config)
from hmr_ros.train.scalars import read_scalars

CROP = 64
#: real renders from the synthetic generator, small and with other people in every render
SYNTH = {"size": CROP, "p_multi": 1.0}


def _config(**over) -> dict:
    cfg = {
        "seed": 0, "device": "cpu",
        "model": {"name": "ochmr", "backbone": "resnet18", "pretrained_backbone": None,
                  "crop_size": CROP, "conorm_latent": 8, "regressor_hidden": 64,
                  "regressor_dropout": 0.0, "centre_map_size": 16},
        "data": {"batch_size": 2, "num_workers": 0,
                 "train": [{"type": "synthetic_stream", "size": 6, "seed": 1, "synth": SYNTH}],
                 "val": [{"type": "synthetic_stream", "size": 3, "seed": 2, "synth": SYNTH}]},
        "optimizer": {"lr": 1.0e-3},
        "schedule": {"total_steps": 3, "warmup_steps": 0},
        "val": {"every": 2, "max_batches": 0},
        "log": {"every": 1, "tensorboard": False, "progress": False},
        "checkpoint": {"every": 2, "keep_last": 2},
    }
    cfg.update(over)
    return cfg


def _write(path, cfg) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_context_maps_centre_on_the_main_person_and_everyone_valid():
    raw = {"image": np.zeros((64, 64, 3), np.uint8),
           "people_bbox": np.array([[8, 8, 24, 40], [40, 20, 56, 60], [0, 0, 0, 0]], np.float32),
           "people_valid": np.array([True, True, False])}
    local, glob = context_maps(raw, 16, 0.04)
    # main box centre (16, 24) of a 64 px render -> map cell (4, 6) at 16 cells
    assert np.unravel_index(local.argmax(), local.shape) in {(5, 3), (5, 4), (6, 3), (6, 4)}
    assert local[10, 12] < 1e-3 < glob[10, 12]  # the other person's centre (48, 40)
    assert np.allclose(np.maximum(local, glob), glob)  # global contains local
    raw["people_valid"] = np.array([True, False, False])
    assert np.allclose(*context_maps(raw, 16, 0.04))  # alone: global = local
    crop_only = context_maps({"image": np.zeros((3, 64, 64), np.float32)}, 16, 0.04)
    assert np.allclose(crop_only[0], crop_only[1])  # centred on the crop:
    assert np.isclose(crop_only[0, 7:9, 7:9].min(), crop_only[0].max())


def test_cli_tiny_run_checkpoints_logs_and_resumes_exactly(tmp_path):
    cfg_path = _write(tmp_path / "ochmr_tiny.yaml", _config())
    assert param_model_name(cfg_path) == "ochmr"
    assert train_main(["--config", cfg_path, "--out", str(tmp_path / "full")]) == 0
    full = tmp_path / "full"
    assert (full / "last.pt").is_file() and (full / "best.pt").is_file()
    assert (full / "config.yaml").is_file()
    records = read_scalars(full / "scalars.jsonl")
    val = [r for r in records if "val/mpjpe" in r]
    assert [r["step"] for r in val] == [2, 3] and all(r["val/pa_mpjpe"] > 0 for r in val)
    assert {"train/rotmats", "train/joints3d", "train/keypoints2d"} <= set(records[0])
    # interrupted at step 2, resumed from its checkpoint: the same weights as the full run
    part = tmp_path / "part"
    assert train_main(["--config", cfg_path, "--out", str(part), "--max-steps", "2"]) == 0
    assert train_main(["--config", cfg_path, "--out", str(part), "--resume",
                       str(part / "last.pt")]) == 0
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(part / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 3 and a["model"] == "ochmr"
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # rebuilt from the checkpoint alone: same outputs as the trainer's model
    model, config = load_param_checkpoint(full / "last.pt")
    assert isinstance(model, OCHMR) and config.crop_size == CROP
    trained = OCHMR(config)
    trained.load_state_dict(a["state_dict"])
    trained.eval()
    images, context = torch.randn(2, 3, CROP, CROP), torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        got, want = model(images, context), trained(images, context)
    for key in ("rotmats", "betas", "cam"):
        assert torch.equal(got[key], want[key])
    with pytest.raises(CheckpointError):
        load_param_checkpoint(tmp_path / "missing.pt")


def test_ochmr_loss_terms_fall_on_a_fixed_batch(tmp_path):
    cfg = _config(schedule={"total_steps": 1000, "warmup_steps": 0})  # constant-ish LR
    trainer = ParamTrainer(parse_param_config(cfg), tmp_path)
    batch = next(iter(trainer.loader))
    assert batch["context"].shape == (2, 2, 16, 16)
    first = trainer.train_step(batch)
    for _ in range(25):
        last = trainer.train_step(batch)
    trainer.logger.close()
    assert last["total"] < 0.5 * first["total"], (first, last)
    for term in ("rotmats", "joints3d", "keypoints2d"):
        assert last[term] < first[term], (term, first[term], last[term])


def test_shipped_configs_parse_and_round_trip():
    from hmr_ros.train.param_regressor import load_param_config

    for name, model in (("ochmr_light", "ochmr"), ("imphmr_light", "imphmr")):
        cfg = load_param_config(f"configs/{name}.yaml")
        assert cfg.model_name == model and param_model_name(f"configs/{name}.yaml") == model
        assert parse_param_config(cfg.to_dict()) == cfg
    assert param_model_name("configs/vishmr_kp_light.yaml") is None  # VisHMR keeps its trainer


def test_config_errors_name_the_key(tmp_path):
    bad = _config()
    bad["model"]["conorm_stage"] = [2]
    with pytest.raises(ValueError, match="conorm_stage"):
        parse_param_config(bad)
    bad = _config()
    bad["model"]["name"] = "vishmr"
    with pytest.raises(ValueError, match="model.name"):
        parse_param_config(bad)


TINY_IMPHMR = {"name": "imphmr", "backbone": "resnet18", "pretrained_backbone": None,
               "crop_size": CROP, "field_channels": 4, "field_depth": 4, "field_size": 4,
               "render_size": 4, "ray_samples": 4, "renderer_channels": 16,
               "regressor_hidden": 64, "regressor_dropout": 0.0}


def test_imphmr_trains_with_its_own_loss_and_its_checkpoint_rebuilds(tmp_path):
    cfg = _config(model=TINY_IMPHMR, schedule={"total_steps": 1000, "warmup_steps": 0})
    trainer = ParamTrainer(parse_param_config(cfg), tmp_path)
    batch = next(iter(trainer.loader))
    first = trainer.train_step(batch)
    assert {"reg_pose", "imag_pose", "cons_pose", "reg_silhouette"} <= set(first)
    for _ in range(12):
        last = trainer.train_step(batch)
    trainer.logger.close()
    assert last["total"] < 0.5 * first["total"], (first, last)
    # (reg_pose is not monotone this early: the joints fit first, flipping rotations on the way)
    for term in ("reg_joints3d", "reg_keypoints2d", "reg_silhouette", "imag_joints3d"):
        assert last[term] < first[term], (term, first[term], last[term])
    assert set(trainer.validate()) == {"mpjpe", "pa_mpjpe", "pve"}
    model, _ = load_param_checkpoint(trainer.save(tmp_path / "imp.pt"))
    trainer.model.eval()
    with torch.no_grad():
        images = batch["image"]
        assert torch.equal(model(images)["rotmats"], trainer.model(images)["rotmats"])
