"""``hmr-ros train`` for the SMPL-parameter regressors (OCHMR, ImpHMR): one crop -> rotations,
β and a weak-perspective camera, trained SPIN-style on the same data pipeline as VisHMR.

What is shared with ``trainer.py`` (imported, not copied): the dataset types, mixture, samplers
and augmentation of ``data.py`` (``adapt_synthetic`` & co.), the learning-rate schedule
(``lr_factor``), the masked root-relative joint loss (``masked_joints3d``), the scalar log
(``scalars.jsonl`` + TensorBoard), the output layout (``OUT/config.yaml``, ``OUT/last.pt``,
``OUT/best.pt``, ``OUT/checkpoints/step_*.pt``, atomic writes) and bit-exact resume (weights,
optimiser, schedule, step, epoch, position in the epoch; the samplers key every sample's
augmentation by its position).

**Distributed** (as ``Trainer``, through ``distributed.py``): ``torchrun --nproc_per_node=8 -m
hmr_ros.train --config configs/ochmr_light.yaml`` runs one process per GPU (``cuda:LOCAL_RANK``;
NCCL, or gloo on CPU). The module that DDP wraps is the whole training forward
(``training_outputs``: OCHMR's call, or ImpHMR's two views from one feature field), so every
trained parameter gets averaged gradients; checkpoints hold the bare model. The samplers shard
the data over the ranks (each draws different samples) and ``data.batch_size`` is per process
(the effective batch is ``N`` times larger: scale ``optimizer.lr`` as needed). ImpHMR's random
directions are keyed by (seed, step, rank). Rank 0 alone logs, validates and writes files;
resuming on another number of processes restarts the current epoch's data order (with a
warning).

**Config** (YAML): the VisHMR schema's ``data``, ``augment``, ``optimizer``, ``schedule``,
``log`` sections unchanged, plus::

    model: {name: ochmr, ...OCHMRConfig fields}     # or name: imphmr, ...ImpHMRConfig fields
    loss: {rotmats: 1.0, betas: 0.01, joints3d: 5.0, keypoints2d: 5.0, betas_prior: 1.0e-4}
    val: {every: 400, max_batches: 8, batch_size: null}
    checkpoint: {every: 200, keep_last: 2, best_metric: pa_mpjpe}
    distributed: {backend: auto, find_unused_parameters: true, sync_batchnorm: false}

**OCHMR context per sample** (``context_maps``): the render *is* the crop during training (see
``hmr_ros.eval.ablation``), so the crop box is the whole render, ``(0, 0, W, H)`` in the
renders' pixel frame (the frame their ``keypoints2d_norm`` = ``(x - W/2) / (W/2)`` uses). The
local map is centred on the main person's box (``people_bbox`` row 0), the global map on all
valid people of the render (``people_valid``). Samples without ``people_bbox`` (real crops,
which are centred on their person) get the whole crop as the person's box and global = local.
Centres come from boxes only, which is what the pipeline always has.

**Losses** (``ParamLoss``; masked per sample by the labels it has): ``rotmats`` mean squared
error of the 24 parent-relative rotation matrices (SPIN); ``betas`` squared error; ``joints3d``
root-relative L1 of the LBS joints of the predicted parameters (the torch twin of the body
model, ``kernels.torch_ops.lbs``, as VisHMR's loss) against the render's 3D joints;
``keypoints2d`` L1 of their weak-perspective projection against the render's 2D joints
(crop-normalised [-1, 1]), confidence-weighted; ``betas_prior`` ``|β|²``. ImpHMR trains with
its own ``ImpHMRLoss`` instead (its ``loss`` section is ``ImpHMRLossWeights``): canonical
regression, imagination from a random direction φ and consistency, the feature field computed
once for both views; the renders' weak-perspective camera (``cam_crop``) is its camera target.
Validation runs the canonical view (φ = 0), as deployed.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from hmr_ros.data.formats.augment import AugmentConfig
from hmr_ros.eval.metrics import MeshMetrics
from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models.camera import weak_perspective_project
from hmr_ros.models.checkpoint import CheckpointError
from hmr_ros.runtime.context import centre_maps

from .config import (ConfigError, DataConfig, DistributedConfig, LogConfig, OptimizerConfig,
                     ScheduleConfig, _coerce, _dataclass, _no_unknown, _parse_data,
                     check_run_basics, read_yaml_config)
from .data import BuildContext, build_mixture, train_sampler, val_sampler
from .distributed import (TrainingForward, barrier, check_settings, end_processes,
                          start_processes, wrap_ddp)
from .scalars import ScalarLogger
from .trainer import (_progress, _write_yaml, lr_factor, masked_joints3d, read_checkpoint,
                      write_checkpoint)

__all__ = ["PARAM_FORMAT", "PARAM_MODELS", "ParamCheckpointConfig", "ParamLoss",
           "ParamLossWeights", "ParamTrainConfig", "ParamTrainer", "ParamValConfig",
           "context_maps", "load_param_checkpoint", "load_param_config", "param_model_name",
           "parse_param_config", "run_param_training"]

#: checkpoint tag, so a VisHMR checkpoint is never mistaken for one of these
PARAM_FORMAT = "hmr_ros.param_regressor/1"
PARAM_MODELS = ("ochmr", "imphmr")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def _imphmr_module():
    """ImpHMR's module, imported when a config asks for it."""
    from hmr_ros.models import imphmr

    return imphmr


def model_classes(name: str):
    """(model class, config class) of a parameter regressor."""
    if name == "ochmr":
        from hmr_ros.models.ochmr import OCHMR, OCHMRConfig

        return OCHMR, OCHMRConfig
    if name == "imphmr":
        module = _imphmr_module()
        return module.ImpHMR, module.ImpHMRConfig
    raise ConfigError(f"'model.name' must be one of {list(PARAM_MODELS)}, got {name!r}")


def _loss_weights_class(name: str):
    if name == "imphmr":
        return _imphmr_module().ImpHMRLossWeights
    return ParamLossWeights


def build_model(name: str, config) -> nn.Module:
    cls, _ = model_classes(name)
    return cls(config)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamLossWeights:
    """λ of each term (0 disables it)."""

    rotmats: float = 1.0
    betas: float = 0.01
    joints3d: float = 5.0
    keypoints2d: float = 5.0
    betas_prior: float = 1e-4


@dataclass(frozen=True)
class ParamValConfig:
    every: int = 400  #: steps between validations (0 = only at the end)
    max_batches: int = 8  #: 0 = the whole val set
    batch_size: Optional[int] = None  #: default: data.batch_size


@dataclass(frozen=True)
class ParamCheckpointConfig:
    every: int = 200
    keep_last: int = 2
    best_metric: str = "pa_mpjpe"  #: mpjpe | pa_mpjpe | pve (val, lower is better)


@dataclass(frozen=True)
class ParamTrainConfig:
    model_name: str
    model: Any  #: OCHMRConfig / ImpHMRConfig
    data: DataConfig
    #: ParamLossWeights (OCHMR) or hmr_ros.models.imphmr.ImpHMRLossWeights (ImpHMR)
    loss: Any = field(default_factory=ParamLossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    val: ParamValConfig = field(default_factory=ParamValConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: ParamCheckpointConfig = field(default_factory=ParamCheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    body: str = "procedural"
    device: str = "auto"

    def to_dict(self) -> dict:
        """Plain dict that ``parse_param_config`` turns back into this config."""
        out: Dict[str, Any] = {"model": {"name": self.model_name, **_plain(asdict(self.model))}}
        for name in ("loss", "augment", "optimizer", "schedule", "val", "log", "checkpoint",
                     "distributed"):
            out[name] = _plain(asdict(getattr(self, name)))
        data = _plain(asdict(self.data))
        data["train"] = [s.to_dict() for s in self.data.train]
        data["val"] = [s.to_dict() for s in self.data.val]
        out["data"] = data
        out.update(seed=self.seed, body=self.body, device=self.device)
        return out


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_SECTIONS = {"loss": ParamLossWeights, "augment": AugmentConfig, "optimizer": OptimizerConfig,
             "schedule": ScheduleConfig, "val": ParamValConfig, "log": LogConfig,
             "checkpoint": ParamCheckpointConfig, "distributed": DistributedConfig}


def param_model_name(path) -> Optional[str]:
    """``model.name`` of a YAML training config if it names a parameter regressor, else None
    (VisHMR configs have no ``model.name``): how ``hmr-ros train`` picks its trainer."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # load_config reports it with its own message
    model = data.get("model") if isinstance(data, Mapping) else None
    name = model.get("name") if isinstance(model, Mapping) else None
    return name if name in PARAM_MODELS else None


def load_param_config(path) -> ParamTrainConfig:
    return read_yaml_config(path, parse_param_config)


def parse_param_config(data: Mapping[str, Any]) -> ParamTrainConfig:
    """Strict parse (unknown keys are errors naming the key), like ``config.parse_config``."""
    if not isinstance(data, Mapping):
        raise ConfigError("config: expected a mapping at the top level")
    _no_unknown(data, {"model", "data", "seed", "body", "device", *_SECTIONS}, "")
    model = data.get("model")
    if not isinstance(model, Mapping) or "name" not in model:
        raise ConfigError(f"'model' must be a mapping with a 'name' ({' | '.join(PARAM_MODELS)})")
    name = str(model["name"])
    _, config_cls = model_classes(name)
    model_cfg = _dataclass(config_cls, {k: v for k, v in model.items() if k != "name"}, "model")
    if "data" not in data:
        raise ConfigError("config: missing section 'data' (at least data.train)")
    kwargs: Dict[str, Any] = {"model_name": name, "model": model_cfg,
                              "data": _parse_data(data["data"])}
    sections = dict(_SECTIONS, loss=_loss_weights_class(name))
    for key, cls in sections.items():
        if data.get(key) is not None:
            kwargs[key] = _dataclass(cls, data[key], key)
    for key, kind in (("seed", int), ("body", str), ("device", str)):
        if key in data:
            kwargs[key] = _coerce(data[key], kind, key)
    kwargs.setdefault("loss", _loss_weights_class(name)())
    cfg = ParamTrainConfig(**kwargs)
    check_run_basics(cfg)
    if cfg.checkpoint.best_metric not in ("mpjpe", "pa_mpjpe", "pve"):
        raise ConfigError(f"'checkpoint.best_metric' must be mpjpe, pa_mpjpe or pve, got "
                          f"{cfg.checkpoint.best_metric!r}")
    check_settings(cfg.distributed)
    return cfg


# --------------------------------------------------------------------------------------------
# OCHMR context of a training sample
# --------------------------------------------------------------------------------------------


def _render_side(image) -> Tuple[int, int]:
    shape = tuple(image.shape)
    if len(shape) == 3 and shape[0] == 3 and shape[-1] != 3:
        return int(shape[2]), int(shape[1])  # 3 x H x W
    return int(shape[1]), int(shape[0])  # H x W x 3


def context_maps(raw: Mapping[str, Any], size: int, sigma: float) -> np.ndarray:
    """2 x size x size (local, global centre map) of a raw sample's main person, the whole
    render being the crop (module docs)."""
    width, height = _render_side(raw["image"])
    crop = np.array([0.0, 0.0, width, height])
    boxes = raw.get("people_bbox")
    if boxes is None:
        people = crop[None]
    else:
        people = np.asarray(boxes, np.float64).reshape(-1, 4)
        valid = (people[:, 2] > people[:, 0]) & (people[:, 3] > people[:, 1])
        if raw.get("people_valid") is not None:
            valid &= np.asarray(raw["people_valid"]).astype(bool).reshape(-1)
        valid[0] = True  # row 0 is the main person, the sample's subject
        people = people[valid]
    maps = centre_maps(people, np.repeat(crop[None], len(people), 0), size, sigma=sigma)
    return maps[0]


def _gt_camera(raw: Mapping[str, Any]) -> Optional[Tensor]:
    """The render's weak-perspective camera (s, tx, ty) of the main person, if it has one."""
    cam = raw.get("cam_crop")
    if cam is None and raw.get("people_cam_crop") is not None:
        cam = np.asarray(raw["people_cam_crop"])[0]
    return None if cam is None else torch.as_tensor(np.asarray(cam), dtype=torch.float32)


def _adapt_with_context(adapt, size: int, sigma: float, raw, ctx, rng):
    sample = adapt(raw, ctx, rng)
    sample["context"] = torch.from_numpy(context_maps(raw, size, sigma))
    cam = _gt_camera(raw)
    sample["cam"] = cam.reshape(3) if cam is not None else torch.zeros(3)
    sample["has_cam"] = torch.tensor(float(cam is not None))
    return sample


def add_context(mixture, size: int, sigma: float):
    """Make a ``MixtureDataset`` also return ``context`` and the GT camera ``cam`` (+
    ``has_cam``), which ImpHMR's loss needs (its adapters wrapped, picklable)."""
    mixture.kinds = [replace(k, adapt=partial(_adapt_with_context, k.adapt, size, sigma))
                     for k in mixture.kinds]
    return mixture


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


class BodyLBS(nn.Module):
    """The body model's torch LBS (``torch_ops.lbs``), its arrays as non-persistent buffers."""

    def __init__(self, body_name: str) -> None:
        super().__init__()
        from hmr_ros.body import load_body_model
        from hmr_ros.body.constants import PARENTS

        self.body = load_body_model(body_name).to_torch()
        for name, buf in list(self.body.named_buffers(recurse=False)):
            self.body.register_buffer(name, buf, persistent=False)
        self.parents = [int(p) for p in PARENTS]

    def forward(self, betas: Tensor, rel_rotmats: Tensor) -> Tuple[Tensor, Tensor]:
        b = self.body
        return ops.lbs(betas, rel_rotmats, b.v_template, b.shapedirs, b.posedirs,
                       b.J_regressor, self.parents, b.lbs_weights)


class ParamLoss(nn.Module):
    """SPIN-style terms (module docs); returns every term and the weighted ``total``."""

    def __init__(self, weights: ParamLossWeights, body: BodyLBS) -> None:
        super().__init__()
        self.weights, self.body = weights, body

    def forward(self, out: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        w = self.weights
        smpl = (batch["has_smpl"] > 0).to(out["betas"].dtype)
        n_smpl = smpl.sum().clamp_min(1.0)
        rot_err = ((out["rotmats"] - batch["rel_rotmats"]) ** 2).flatten(1).mean(1)
        beta_err = ((out["betas"] - batch["betas"]) ** 2).mean(1)
        _, joints = self.body(out["betas"], out["rotmats"])
        proj = weak_perspective_project(joints, out["cam"])
        kp_conf = batch["keypoints2d_conf"]
        kp_err = (proj - batch["keypoints2d"]).abs() * kp_conf[..., None]
        terms = {
            "rotmats": (rot_err * smpl).sum() / n_smpl,
            "betas": (beta_err * smpl).sum() / n_smpl,
            "joints3d": masked_joints3d(joints, batch["joints3d"], batch["joints3d_conf"]),
            "keypoints2d": kp_err.sum() / (2 * (kp_conf > 0).sum()).clamp_min(1),
            "betas_prior": (out["betas"] ** 2).mean(),
        }
        terms["total"] = sum(getattr(w, k) * v for k, v in terms.items())
        terms["joints"] = joints  # for callers; not a loss term
        return terms


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


class ParamTrainer:
    """Build everything from a ``ParamTrainConfig``; ``train()`` runs to ``max_steps``
    (default ``schedule.total_steps``; stopping early leaves the schedule unchanged).

    Subclasses (``DPMeshTrainer``) build their own model and loss between ``_start`` and
    ``_assemble``, and override ``with_sample_extras`` / ``training_outputs`` / ``losses``.
    """

    def __init__(self, config: ParamTrainConfig, out_dir, resume: Optional[str] = None,
                 max_steps: Optional[int] = None, device: Optional[str] = None) -> None:
        self._start(config, out_dir, max_steps, device)
        self.model = build_model(config.model_name, config.model).to(self.device)
        self.body = BodyLBS(config.body).to(self.device)
        if config.model_name == "imphmr":
            self.loss_fn: nn.Module = _imphmr_module().ImpHMRLoss(
                config.loss, config.body).to(self.device)
        else:
            self.loss_fn = ParamLoss(config.loss, self.body).to(self.device)
        self._assemble(resume)

    def _start(self, config, out_dir, max_steps: Optional[int], device: Optional[str]) -> None:
        """Config, processes (torchrun: ``distributed.py``), device and the seed."""
        self.config, self.out_dir = config, Path(out_dir)
        self.max_steps = int(max_steps if max_steps is not None else config.schedule.total_steps)
        self.processes = start_processes(device or config.device, config.distributed.backend)
        self.world, self.rank = self.processes.world, self.processes.rank
        self.distributed, self.is_main = self.processes.distributed, self.processes.is_main
        self.device = self.processes.device
        torch.manual_seed(config.seed)

    def _assemble(self, resume: Optional[str]) -> None:
        """With ``self.model`` built: the DDP-wrapped training forward, optimiser, schedule,
        data (sharded over the ranks), state, resume and (rank 0) the scalar log."""
        config = self.config
        self.net = wrap_ddp(TrainingForward(self.model, self.training_outputs), self.processes,
                            config.distributed)
        o = config.optimizer
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}],
                                           lr=o.lr, betas=o.betas, eps=o.eps)
        s = config.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(lr_factor, warmup=s.warmup_steps, total=s.total_steps,
                                    min_ratio=s.min_lr_ratio))
        crop = config.model.crop_size
        self.train_ctx = BuildContext(crop, crop // 4, config.augment, config.seed, train=True)
        self.val_ctx = BuildContext(crop, crop // 4, None, config.seed, train=False)
        self.train_set = self.with_sample_extras(build_mixture(config.data.train,
                                                               self.train_ctx))
        self.sampler = train_sampler(self.train_set, [d.weight for d in config.data.train],
                                     config.data.epoch_size, self.world, self.rank, config.seed)
        self.loader = self._loader(self.train_set, self.sampler, config.data.batch_size, True)
        self.val_set = (self.with_sample_extras(build_mixture(config.data.val, self.val_ctx))
                        if config.data.val and self.is_main else None)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_metric, self.best_step = float("inf"), -1
        if resume:
            self.load(resume)
        self.logger = (ScalarLogger(self.out_dir, config.log.tensorboard)
                       if self.is_main else None)

    def with_sample_extras(self, mixture):
        """The mixture's samples with what the model needs besides the crop (here the context
        maps and the GT camera, ``add_context``)."""
        size, sigma = self._context_size()
        return add_context(mixture, size, sigma)

    def _context_size(self) -> Tuple[int, float]:
        m = self.config.model
        return (int(getattr(m, "centre_map_size", 4)), float(getattr(m, "centre_sigma", 0.04)))

    def _loader(self, dataset, sampler, batch_size: int, drop_last: bool):
        workers = self.config.data.num_workers
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
            drop_last=drop_last, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0)

    # -- model call ------------------------------------------------------------------------

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """The bare model's outputs, as validated (ImpHMR: the canonical view, φ = None)."""
        if self.config.model_name == "imphmr":
            return self.model(batch["image"])
        return self.training_outputs(self.model, batch)

    def training_outputs(self, model: nn.Module, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """What the loss needs of ``model`` for a batch; ``self.net`` runs it (so under DDP
        every trained parameter is reached inside the wrapper's ``forward``)."""
        if self.config.model_name == "imphmr":
            return self._imphmr_views(model, batch)
        return model(batch["image"], batch["context"])

    def step_generator(self) -> torch.Generator:
        """This step's random draws (ImpHMR's directions φ, DPMesh's keypoint noise), keyed by
        (seed, step, rank): a resumed run draws what the uninterrupted one did, each rank draws
        its own, and rank 0 what a single process does."""
        return torch.Generator().manual_seed(
            self.config.seed * 1_000_003 + self.step + self.rank * 2**48)

    def losses(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        if self.config.model_name == "imphmr":
            return self._imphmr_losses(batch)
        terms = self.loss_fn(self.net(batch), batch)
        terms.pop("joints")
        return terms

    def _imphmr_views(self, m: nn.Module, batch: Dict[str, Tensor]) -> Dict[str, Any]:
        """ImpHMR's canonical view and the view from a random direction φ
        (``step_generator``), the feature field computed once for both."""
        module = _imphmr_module()
        phi = module.sample_view_directions(batch["image"].shape[0],
                                            generator=self.step_generator()).to(self.device)
        field_ = m.field(batch["image"])

        def render(samples: Tensor) -> Dict[str, Tensor]:
            features, silhouette = m.composite(samples)
            out = m.regressor(m.renderer(features).mean(dim=(2, 3)))
            return {**out, "silhouette": silhouette, "features": features}

        return {"canonical": render(m.sample_canonical(field_)),
                "view": render(m.sample_view(field_, phi)), "phi": phi}

    def _imphmr_losses(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """ImpHMR's own loss (``ImpHMRLoss``: canonical regression, imagination from a random
        direction φ, consistency)."""
        if not bool((batch["has_cam"] > 0).all() and (batch["has_smpl"] > 0).all()):
            raise ValueError("ImpHMR's loss needs SMPL and camera labels on every sample "
                             "(synthetic data); this batch lacks some")
        views = self.net(batch)
        targets = {"rotmats": batch["rel_rotmats"], "betas": batch["betas"],
                   "cam": batch["cam"], "keypoints2d": batch["keypoints2d"]}
        return self.loss_fn(views["canonical"], targets, view=views["view"], phi=views["phi"])

    # -- checkpoints -----------------------------------------------------------------------

    def save(self, path) -> Path:
        """Atomic write of a resumable checkpoint; ``load_param_checkpoint`` rebuilds its model."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"format": PARAM_FORMAT, "model": self.config.model_name,
                    "config": _plain(asdict(self.config.model)), "body": self.config.body,
                    "state_dict": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "step": self.step,
                    "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                    "world_size": self.world,
                    "best_metric": self.best_metric, "best_step": self.best_step,
                    "train_config": self.config.to_dict(), "torch_rng": torch.get_rng_state()},
                   tmp)
        os.replace(tmp, path)
        return path

    def load(self, path) -> None:
        """Resume: weights, optimiser, schedule, step and data position."""
        ckpt = _read_param_checkpoint(Path(path), self.device)
        if ckpt["model"] != self.config.model_name:
            raise CheckpointError(f"{path} holds a {ckpt['model']} model, the config trains "
                                  f"{self.config.model_name}")
        mine = _plain(asdict(self.config.model))
        diff = {k: (v, ckpt["config"].get(k)) for k, v in mine.items()
                if k != "pretrained_backbone" and ckpt["config"].get(k) != v}
        if diff:
            raise CheckpointError(f"{path}: model config differs from the training config "
                                  f"(field: (config, checkpoint)) {diff}")
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        if int(ckpt.get("world_size", self.world)) != self.world:
            warnings.warn(f"resuming a {ckpt['world_size']}-process run on {self.world}: the "
                          "data order of the current epoch restarts", stacklevel=2)
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.best_metric = float(ckpt.get("best_metric", float("inf")))
        self.best_step = int(ckpt.get("best_step", -1))
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"].cpu())

    def _checkpoint(self) -> None:
        """Rank 0 writes ``checkpoints/step_*.pt`` and ``last.pt``; every rank waits for it."""
        if self.is_main:
            write_checkpoint(self.out_dir, self.step, self.save,
                             self.config.checkpoint.keep_last)
        barrier(self.processes)


    # -- training --------------------------------------------------------------------------

    def train_step(self, batch: Dict[str, Tensor]) -> Dict[str, float]:
        self.net.train()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()
                 if isinstance(v, Tensor)}
        terms = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        clip = self.config.optimizer.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["grad_norm"] = float(norm)
        return values

    def train(self) -> Dict[str, float]:
        """Run to ``max_steps``; returns the last validation metrics (empty without val)."""
        cfg = self.config
        if self.step >= self.max_steps:
            if self.is_main:
                print(f"already at step {self.step} >= max steps {self.max_steps}: nothing to do")
            return {}
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _write_yaml(self.out_dir / "config.yaml", cfg.to_dict())
        bar = _progress(self.max_steps, self.step, self.is_main and cfg.log.progress)
        sums: Dict[str, float] = {}
        count, tic, metrics = 0, time.perf_counter(), {}
        try:
            while self.step < self.max_steps:
                self.sampler.set_epoch(self.epoch)
                self.sampler.set_start(self.batch_in_epoch * cfg.data.batch_size)
                got_batch = False
                for batch in self.loader:
                    got_batch = True
                    values = self.train_step(batch)
                    self.batch_in_epoch += 1
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()
                                         if k in ("total", "rotmats", "joints3d", "keypoints2d")})
                    if self.step % cfg.log.every == 0 or self.step == self.max_steps:
                        self._log_train(sums, count, time.perf_counter() - tic)
                        sums, count, tic = {}, 0, time.perf_counter()
                    last = self.step >= self.max_steps
                    if cfg.val.every and self.step % cfg.val.every == 0 and not last:
                        metrics = self._validate_and_track()
                    if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0 and not last:
                        self._checkpoint()
                    if last:
                        break
                else:
                    if not got_batch and self.batch_in_epoch == 0:
                        raise ValueError(
                            f"the training set yields no batch of {cfg.data.batch_size} per "
                            f"process ({len(self.train_set)} samples, {self.world} processes)")
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            if cfg.data.val:  # the same decision on every rank (they meet in a barrier)
                metrics = self._validate_and_track()
            self._checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if self.logger is not None:
                self.logger.close()
        return metrics

    def _log_train(self, sums: Dict[str, float], count: int, seconds: float) -> None:
        if self.logger is None or count == 0:
            return
        scalars = {f"train/{k}": v / count for k, v in sums.items()}
        scalars["train/lr"] = self.optimizer.param_groups[0]["lr"]
        scalars["train/samples_per_s"] = count * self.config.data.batch_size * self.world / max(
            seconds, 1e-9)
        self.logger.log(self.step, scalars)

    def _validate_and_track(self) -> Dict[str, float]:
        """Rank 0 validates (and writes ``best.pt``); every rank waits for it."""
        metrics = self._validate_main() if self.val_set is not None else {}
        barrier(self.processes)
        return metrics

    def _validate_main(self) -> Dict[str, float]:
        tic = time.perf_counter()
        metrics = self.validate()
        self.logger.log(self.step, {f"val/{k}": v for k, v in metrics.items()})
        if self.config.log.progress:
            shown = ", ".join(f"{k} {v:.1f}" for k, v in metrics.items())
            print(f"\nstep {self.step}: val {shown} ({time.perf_counter() - tic:.0f} s)",
                  flush=True)
        key = self.config.checkpoint.best_metric
        if key in metrics and metrics[key] < self.best_metric:
            self.best_metric, self.best_step = metrics[key], self.step
            self.save(self.out_dir / "best.pt")
        return metrics

    @torch.no_grad()
    def validate(self, max_batches: Optional[int] = None) -> Dict[str, float]:
        """MPJPE / PA-MPJPE (mm) of the LBS joints of the regressed parameters against the
        dataset's 3D joints (where labelled, else LBS of the GT parameters), and PVE against
        the GT mesh where the sample has SMPL labels."""
        cfg = self.config
        limit = cfg.val.max_batches if max_batches is None else max_batches
        loader = self._loader(self.val_set, val_sampler(self.val_set),
                              cfg.val.batch_size or cfg.data.batch_size, False)
        was_training = self.model.training
        self.model.eval()
        acc = MeshMetrics()
        try:
            for i, batch in enumerate(loader):
                if limit and i >= limit:
                    break
                batch = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, Tensor)}
                out = self.forward(batch)
                verts, joints = self.body(out["betas"], out["rotmats"])
                gt_verts, gt_lbs_joints = self.body(batch["betas"], batch["rel_rotmats"])
                has_smpl = batch["has_smpl"] > 0
                conf = batch["joints3d_conf"] > 0
                labelled = conf.any(1, keepdim=True)
                gt_joints = torch.where(labelled[..., None], batch["joints3d"], gt_lbs_joints)
                mask = torch.where(labelled, conf, has_smpl[:, None].expand_as(conf))
                acc.update(pred_joints=joints, gt_joints=gt_joints, joint_mask=mask,
                           pred_vertices=verts, gt_vertices=gt_verts,
                           gt_vertex_joints=gt_lbs_joints, vertex_mask=has_smpl)
        finally:
            self.model.train(was_training)
        return acc.compute()


# --------------------------------------------------------------------------------------------
# Checkpoint loading and the command line
# --------------------------------------------------------------------------------------------


def _read_param_checkpoint(path: Path, map_location) -> dict:
    return read_checkpoint(path, map_location, PARAM_FORMAT, "parameter-regressor")


def load_param_checkpoint(path, map_location="cpu"):
    """(model in eval mode, its config) of a checkpoint written by ``ParamTrainer``; the
    backbone is not re-downloaded/re-read (the checkpoint holds every weight)."""
    ckpt = _read_param_checkpoint(Path(path), map_location)
    _, config_cls = model_classes(ckpt["model"])
    names = {f.name for f in fields(config_cls)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in ckpt["config"].items()
              if k in names}
    if "pretrained_backbone" in names:
        kwargs["pretrained_backbone"] = None
    config = config_cls(**kwargs)
    model = build_model(ckpt["model"], config)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), config


def run_param_training(args: argparse.Namespace) -> int:
    """``hmr-ros train`` for a config whose ``model.name`` is ochmr / imphmr."""
    if getattr(args, "init", None):
        raise ValueError("--init is for VisHMR fine-tuning; parameter regressors resume with "
                         "--resume")
    config = load_param_config(args.config)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    trainer = ParamTrainer(config, out, resume=args.resume, max_steps=args.max_steps,
                           device=args.device)
    try:
        metrics = trainer.train()
        if trainer.is_main:
            shown = {k: round(v, 2) for k, v in metrics.items()}
            print(f"trained to step {trainer.step}; checkpoint {Path(out) / 'last.pt'}"
                  + (f"; val {shown}" if shown else ""))
    finally:
        end_processes(trainer.processes)
    return 0
