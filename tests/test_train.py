"""Training: tiny CPU runs (checkpoint, scalars, exact resume), config errors, loss grouping."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hmr_ros.body import procedural_body
from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models import VisHMR, VisHMRConfig, VisHMRLoss, weak_perspective_project
from hmr_ros.models.checkpoint import CheckpointError, load_checkpoint
from hmr_ros.train import (ConfigError, Trainer, compute_loss, lr_factor, parse_config,
                           read_scalars, register_dataset_type, resize_iuv, train_main)
from hmr_ros.train.data import BuildContext, WeightedMixtureSampler, adapt_synthetic

CROP = 64
TINY_MODEL = dict(backbone="resnet18", crop_size=CROP, uv_size=16, num_hypotheses=2,
                  deconv_channels=16, attn_dim=16, attn_heads=2, attn_layers=1, flow_blocks=1,
                  flow_hidden=32, head_hidden=32)
ROOT = Path(__file__).resolve().parents[1]


class FakeSynthetic:
    """In-memory stand-in for a synthetic dataset: LBS ground truth, full-res IUV, uint8 image."""

    def __init__(self, size: int, seed: int = 0, no_iuv_every: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.rel = ops.axis_angle_to_matrix(torch.randn(size, 24, 3, generator=gen) * 0.3)
        self.betas = torch.randn(size, 10, generator=gen) * 0.5
        body = procedural_body().to_torch()
        with torch.no_grad():
            _, self.joints = ops.lbs(self.betas, self.rel, body.v_template, body.shapedirs,
                                     body.posedirs, body.J_regressor,
                                     [int(p) for p in procedural_body().parents],
                                     body.lbs_weights)
        cam = torch.tensor([0.9, 0.0, 0.1]).expand(size, 3)
        self.kp = weak_perspective_project(self.joints, cam)
        self.images = torch.randint(0, 256, (size, CROP, CROP, 3), generator=gen,
                                    dtype=torch.uint8)
        yy, xx = torch.meshgrid(torch.arange(float(CROP)), torch.arange(float(CROP)),
                                indexing="ij")
        fg = (((xx - 31.5) ** 2 + (yy - 31.5) ** 2) < 20.0 ** 2).float()
        self.iuv = torch.cat([fg[None].expand(size, 1, CROP, CROP),
                              torch.rand(size, 2, CROP, CROP, generator=gen) * fg], 1)
        self.vis = torch.rand(size, 24, generator=gen)
        self.no_iuv_every = no_iuv_every

    def __len__(self):
        return len(self.rel)

    def __getitem__(self, i):
        out = {"image": self.images[i].numpy(), "iuv": self.iuv[i], "rel_rotmats": self.rel[i],
               "betas": self.betas[i], "joints3d": self.joints[i], "keypoints2d": self.kp[i],
               "visibility": self.vis[i]}
        if self.no_iuv_every and i % self.no_iuv_every == 0:
            out["iuv"] = None
        return out


register_dataset_type(
    "fake", lambda p, ctx: FakeSynthetic(int(p["size"]), int(p.get("seed", 0)),
                                         int(p.get("no_iuv_every", 0))),
    adapt_synthetic, required=("size",), optional=("seed", "no_iuv_every"))


def _config(**over):
    cfg = {
        "seed": 0, "device": "cpu", "model": dict(TINY_MODEL),
        "data": {"batch_size": 2, "num_workers": 0,
                 "train": [{"type": "fake", "size": 6, "no_iuv_every": 3}],
                 "val": [{"type": "fake", "size": 3, "seed": 5}]},
        "optimizer": {"lr": "1e-3"},  # YAML 1.1 reads 1e-3 as a string: accepted
        "schedule": {"total_steps": 10, "warmup_steps": 2},
        "val": {"every": 0, "max_batches": 1, "modes": ["visible", "ks_matched"]},
        "log": {"every": 1, "progress": False},
        "checkpoint": {"every": 0, "keep_last": 2},
    }
    for key, value in over.items():
        cfg[key] = value
    return cfg


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_two_steps_write_checkpoint_scalars_and_resume_exactly(tmp_path):
    cfg = parse_config(_config())
    # an uninterrupted 3-step run
    straight = Trainer(cfg, tmp_path / "straight", max_steps=3)
    straight.train()
    # 2 steps, then resume to 3
    first = Trainer(cfg, tmp_path / "run", max_steps=2)
    metrics = first.train()
    ckpt_path = tmp_path / "run" / "last.pt"
    assert ckpt_path.is_file() and (tmp_path / "run" / "checkpoints").is_dir()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert {"ks_matched/mpjpe", "ks_matched/pa_mpjpe", "ks_matched/pve", "visible/mpjpe",
            "vis_acc"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    # scalars: JSONL always, TensorBoard event files when installed
    records = read_scalars(tmp_path / "run" / "scalars.jsonl")
    steps = [r["step"] for r in records if "train/total" in r]
    assert steps == [1, 2]
    assert {"train/lr", "train/iuv_part", "train/nll", "train/joints3d"} <= set(records[0])
    assert any("val/ks_matched/pa_mpjpe" in r for r in records)
    pytest.importorskip("tensorboard")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))

    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["step"] == 2
    resumed = Trainer(cfg, tmp_path / "run", resume=str(ckpt_path), max_steps=3)
    assert resumed.step == 2 and resumed.scheduler.last_epoch == 2
    saved, loaded = ckpt["optimizer"], resumed.optimizer.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    assert saved["state"].keys() == loaded["state"].keys()
    for idx, state in saved["state"].items():
        for name, value in state.items():
            assert torch.equal(value, loaded["state"][idx][name]), (idx, name)
    at_two = _weights(resumed.model)
    resumed.train()
    assert resumed.step == 3
    assert not all(torch.equal(at_two[k], v) for k, v in _weights(resumed.model).items())
    a, b = _weights(straight.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=1e-5), k
    steps = [r["step"] for r in read_scalars(tmp_path / "run" / "scalars.jsonl")
             if "train/total" in r]
    assert steps == [1, 2, 3]


def test_train_main_cli_and_checkpoint_loads_for_export(tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    cfg = _config()
    cfg["data"].pop("val")
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert train_main(["--config", str(cfg_path), "--out", str(out), "--max-steps", "1"]) == 0
    model = load_checkpoint(out / "last.pt")  # what `hmr-ros export` reads
    assert isinstance(model, VisHMR) and model.config.crop_size == CROP
    assert train_main(["--config", str(cfg_path), "--out", str(out), "--max-steps", "2",
                       "--resume", str(out / "last.pt")]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    # errors are reported, not raised
    assert train_main(["--config", str(tmp_path / "missing.yaml")]) == 1


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(optimiser={}), "unknown key 'optimiser'"),
    (lambda c: c["optimizer"].update(lrr=1), "unknown key 'optimizer.lrr'"),
    (lambda c: c["model"].update(backbon="resnet18"), "unknown key 'model.backbon'"),
    (lambda c: c["data"]["train"][0].update(paht="x"), r"unknown key 'data.train\[0\].paht'"),
    (lambda c: c["data"]["train"][0].update(type="nope"), "unknown dataset type 'nope'"),
    (lambda c: c["data"]["train"][0].pop("size"), r"missing key\(s\) \['size'\]"),
    (lambda c: c["model"].update(crop_size=100), "'model': crop_size must be"),
    (lambda c: c["optimizer"].update(lr="fast"), "'optimizer.lr' must be a number"),
    (lambda c: c["log"].update(tensorboard="yes"), "'log.tensorboard' must be true or false"),
    (lambda c: c["val"].update(modes=["best"]), "'val.modes'"),
    (lambda c: c.pop("data"), "missing section 'data'"),
    (lambda c: c.update(teacher_forcing=1.5), r"'teacher_forcing' must be in \[0, 1\]"),
    (lambda c: c.update(teacher_forcing_end=-0.1), r"'teacher_forcing_end' must be in \[0, 1\]"),
    (lambda c: c.update(teacher_forcing_steps=0), "'teacher_forcing_steps' must be >= 1"),
    (lambda c: c["augment"].update(flip_prob=3) if "augment" in c else c.update(
        augment={"flip_prob": 3}), "augment.flip_prob"),
])
def test_config_errors_name_the_key(mutate, message):
    cfg = copy.deepcopy(_config())
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        parse_config(cfg)


def test_shipped_configs_parse_and_round_trip():
    for name in ("vishmr_light.yaml", "vishmr_r50.yaml"):
        data = yaml.safe_load((ROOT / "configs" / name).read_text())
        cfg = parse_config(data)
        assert parse_config(cfg.to_dict()) == cfg
    light = parse_config(yaml.safe_load((ROOT / "configs" / "vishmr_light.yaml").read_text()))
    assert light.model.backbone == "resnet18" and light.model.num_hypotheses == 4
    VisHMR(light.model, procedural_body())  # the light network builds


def test_compute_loss_matches_plain_loss_and_groups_mixed_labels():
    torch.manual_seed(0)
    cfg = VisHMRConfig(**TINY_MODEL)
    model = VisHMR(cfg, procedural_body())
    ctx = BuildContext(CROP, cfg.feature_size, None, train=False)
    data = FakeSynthetic(4)
    samples = [adapt_synthetic(data[i], ctx, np.random.default_rng(0)) for i in range(4)]
    batch = torch.utils.data.default_collate(samples)
    from hmr_ros.train import TeacherForcedVisHMR

    net = TeacherForcedVisHMR(model)
    z = model.default_z(4, generator=torch.Generator().manual_seed(0))
    out = net(batch["image"], z, batch["iuv"], batch["has_iuv"], batch["rel_rotmats"])
    loss_fn = VisHMRLoss()
    # homogeneous labels: identical to VisHMRLoss on the whole batch
    plain = loss_fn(out, {k: batch[k] for k in ("iuv", "rel_rotmats", "betas", "visibility",
                                                 "joints3d", "keypoints2d",
                                                 "keypoints2d_conf")})
    ours = compute_loss(loss_fn, out, batch)
    for k in plain:
        assert torch.allclose(plain[k], ours[k], atol=1e-6), k
    # same forward as VisHMR.forward with full teacher forcing
    ref = model(batch["image"], z=z, gt_iuv=batch["iuv"], gt_rel_rotmats=batch["rel_rotmats"])
    assert torch.allclose(ref["joints"], out["joints"], atol=1e-6)
    # two samples without IUV: the IUV terms come from the other two only, at half weight
    mixed = dict(batch, has_iuv=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    mixed_terms = compute_loss(loss_fn, out, mixed)
    half = loss_fn({k: v[:2] for k, v in out.items()},
                   {"iuv": batch["iuv"][:2], "keypoints2d": batch["keypoints2d"][:2]})
    assert torch.allclose(mixed_terms["iuv_part"], 0.5 * half["iuv_part"], atol=1e-6)
    assert torch.allclose(mixed_terms["exp_pose"], plain["exp_pose"], atol=1e-6)
    # partial 3D joints: masked term, unlabelled joints ignored
    partial_batch = dict(batch, joints3d_conf=torch.ones(4, 24))
    partial_batch["joints3d_conf"][:, 5] = 0
    wild = batch["joints3d"].clone()
    wild[:, 5] += 100.0
    partial_batch["joints3d"] = wild
    t = compute_loss(loss_fn, out, partial_batch)
    assert t["joints3d"] < 10 and torch.isfinite(t["total"])


def test_teacher_forcing_zero_warps_the_predicted_iuv_like_inference():
    torch.manual_seed(0)
    cfg = VisHMRConfig(**TINY_MODEL)
    model = VisHMR(cfg, procedural_body()).eval()
    ctx = BuildContext(CROP, cfg.feature_size, None, train=False)
    data = FakeSynthetic(3)
    batch = torch.utils.data.default_collate(
        [adapt_synthetic(data[i], ctx, np.random.default_rng(0)) for i in range(3)])
    from hmr_ros.train import TeacherForcedVisHMR

    z = model.default_z(3, generator=torch.Generator().manual_seed(0))
    args = (batch["image"], z, batch["iuv"], batch["has_iuv"], batch["rel_rotmats"])
    with torch.no_grad():
        free = TeacherForcedVisHMR(model, teacher_forcing=0.0)(*args)
        forced = TeacherForcedVisHMR(model, teacher_forcing=1.0)(*args)
        deployed = model(batch["image"], z=z)  # no GT IUV: what inference does
    assert torch.allclose(free["uv_features"], deployed["uv_features"], atol=1e-6)
    assert not torch.allclose(forced["uv_features"], deployed["uv_features"], atol=1e-3)


def test_teacher_forcing_anneals_linearly_and_the_trainer_applies_it(tmp_path):
    cfg = parse_config(_config(teacher_forcing=0.8, teacher_forcing_end=0.2,
                               teacher_forcing_steps=4))
    assert [cfg.teacher_forcing_at(s) for s in (0, 2, 4, 9)] == pytest.approx([0.8, 0.5, 0.2, 0.2])
    assert parse_config(_config(teacher_forcing=0.3)).teacher_forcing_at(7) == 0.3  # constant
    by_schedule = parse_config(_config(teacher_forcing_end=0.0))  # span = total_steps (10)
    assert by_schedule.teacher_forcing_at(5) == pytest.approx(0.5)
    trainer = Trainer(cfg, tmp_path / "run", max_steps=3)
    trainer.train()
    assert trainer.net.teacher_forcing == pytest.approx(0.8 - 0.15 * 2)  # set before step 2
    logged = [v for _, v in read_scalars(tmp_path / "run" / "scalars.jsonl",
                                         "train/teacher_forcing")]
    assert logged == pytest.approx([0.8, 0.65, 0.5])  # the share each step used


def test_init_starts_a_new_run_from_weights_only(tmp_path):
    cfg = parse_config(_config())
    first = Trainer(cfg, tmp_path / "a", max_steps=2)
    first.train()
    trained = _weights(first.model)
    second = Trainer(cfg, tmp_path / "b", init=str(tmp_path / "a" / "last.pt"))
    assert second.step == 0 and second.scheduler.last_epoch == 0
    assert not second.optimizer.state  # fresh optimiser
    assert all(torch.equal(trained[k], v) for k, v in _weights(second.model).items())
    with pytest.raises(ValueError, match="not both"):
        Trainer(cfg, tmp_path / "c", resume=str(tmp_path / "a" / "last.pt"),
                init=str(tmp_path / "a" / "last.pt"))
    # a replaced head: its old tensors are dropped, the new ones keep their initialisation
    ckpt = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    ckpt["state_dict"]["iuv_head.old_out.weight"] = ckpt["state_dict"].pop(
        "iuv_head.classifier.weight")
    torch.save(ckpt, tmp_path / "renamed.pt")
    with pytest.warns(UserWarning, match=r"1 start fresh \['iuv_head.classifier.weight'\]; 1 "
                                         r"not used \['iuv_head.old_out.weight'\]"):
        partial = Trainer(cfg, tmp_path / "e", init=str(tmp_path / "renamed.pt"))
    assert torch.equal(partial.model.state_dict()["backbone.conv1.weight"],
                       trained["backbone.conv1.weight"])
    other = _config()
    other["model"] = dict(TINY_MODEL, attn_dim=8)
    with pytest.raises(CheckpointError, match="attn_dim"):
        Trainer(parse_config(other), tmp_path / "d", init=str(tmp_path / "a" / "last.pt"))


def test_init_grows_the_iuv_head_and_keeps_what_it_learned(tmp_path):
    cfg = parse_config(_config())  # num_deconv 3: IUV at stride 4
    first = Trainer(cfg, tmp_path / "a", max_steps=1)
    first.train()
    grown_cfg = _config()
    grown_cfg["model"] = dict(TINY_MODEL, num_deconv=4)
    grown = Trainer(parse_config(grown_cfg), tmp_path / "b", init=str(tmp_path / "a" / "last.pt"))
    images = torch.stack([first.train_set[i]["image"] for i in range(3)])
    old, new = first.model.eval(), grown.model.eval()
    with torch.no_grad():
        f_old, iuv_old, _ = old.stage_a(images)
        f_new, iuv_new, _ = new.stage_a(images)
    assert f_new.shape[-1] == 2 * f_old.shape[-1]
    # the new block starts as bilinear upsampling: equal to it away from the zero-padded border
    up = torch.nn.functional.interpolate(f_old, scale_factor=2, mode="bilinear",
                                         align_corners=False)
    torch.testing.assert_close(f_new[..., 1:-1, 1:-1], up[..., 1:-1, 1:-1], atol=1e-4, rtol=1e-4)
    # shrinking is refused
    with pytest.raises(CheckpointError, match="can add"):
        Trainer(cfg, tmp_path / "c", init=str(grown.save(tmp_path / "grown.pt")))


def test_resize_iuv_keeps_uv_defined_on_foreground():
    iuv = torch.zeros(3, 16, 16)
    iuv[0, 4:12, 4:12] = 1.0
    iuv[1, 4:12, 4:12] = torch.linspace(0.1, 0.9, 8)[None, :]
    iuv[2, 4:12, 4:12] = 0.5
    small = resize_iuv(iuv, 4)
    assert small.shape == (3, 4, 4)
    fg = small[0] > 0.5
    assert fg.sum() == 4 and torch.all(small[1][fg] > 0) and torch.all(small[2][fg] == 0.5)
    assert torch.all(small[1:, ~fg] == 0)
    assert torch.equal(resize_iuv(iuv, 16), iuv)


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert lr_factor(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_factor(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, 0.1) == pytest.approx(0.55)
    assert lr_factor(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert lr_factor(50, 4, 20, 0.1) == pytest.approx(0.1)


def test_weighted_mixture_sampler_proportions_and_shards():
    sizes, weights = [10, 1000], [3.0, 1.0]
    s = WeightedMixtureSampler(sizes, weights, epoch_size=4000, seed=1)
    idx = np.array(list(s))
    assert abs((idx < 10).mean() - 0.75) < 0.03  # 75 % from the small dataset (cycled)
    s.set_epoch(1)
    assert not np.array_equal(idx, np.array(list(s)))
    shards = [list(WeightedMixtureSampler(sizes, weights, 101, num_replicas=2, rank=r, seed=1))
              for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 51
    whole = list(WeightedMixtureSampler(sizes, weights, 101, seed=1))
    assert sorted(shards[0][:50] + shards[1][:50]) == sorted(whole[:100])


def test_mixed_real_and_synthetic_training_step(tmp_path):
    """A weighted mixture of a SPIN-format file (partial labels, 15-joint mapping) and
    synthetic-like data trains through the grouped loss."""
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    n = 4
    for i in range(n):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"),
                    rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    part = np.concatenate([rng.uniform(40, 100, (n, 24, 2)), np.ones((n, 24, 1))], -1)
    np.savez(tmp_path / "spin.npz", imgname=np.array([f"{i}.png" for i in range(n)]),
             center=np.tile([80.0, 60.0], (n, 1)), scale=np.full(n, 0.5), part=part,
             S=np.concatenate([rng.normal(0, 0.3, (n, 24, 3)), np.ones((n, 24, 1))], -1))
    cfg = _config(data={
        "batch_size": 4, "num_workers": 0, "epoch_size": 8,
        "train": [{"type": "fake", "size": 4, "weight": 1.0},
                  {"type": "spin_npz", "weight": 1.0, "npz": str(tmp_path / "spin.npz"),
                   "img_dir": str(tmp_path / "img")}]})
    trainer = Trainer(parse_config(cfg), tmp_path / "out", max_steps=1)
    batch = next(iter(trainer.loader))
    assert batch["has_iuv"].sum() < 4 or batch["has_smpl"].sum() < 4  # really mixed (seeded)
    values = trainer.train_step(batch)
    assert np.isfinite(values["total"]) and values["joints3d"] > 0


def test_synthetic_stream_one_step(tmp_path):
    """The real synthetic generator through its dataset type (skipped if not available)."""
    synth = pytest.importorskip("hmr_ros.data.synthetic")
    if not (hasattr(synth, "SyntheticGenerator") or hasattr(synth, "SyntheticStream")):
        pytest.skip("no synthetic dataset yet")
    cfg = _config(data={"batch_size": 2, "num_workers": 0, "train": [
        {"type": "synthetic_stream", "seed": 0, "size": 8, "synth": {"size": CROP}}]})
    trainer = Trainer(parse_config(cfg), tmp_path / "out", max_steps=1)
    batch = next(iter(trainer.loader))
    assert batch["iuv"].shape == (2, 3, CROP // 4, CROP // 4) and batch["has_iuv"].all()
    assert batch["image"].shape == (2, 3, CROP, CROP)
    assert np.isfinite(trainer.train_step(batch)["total"])
