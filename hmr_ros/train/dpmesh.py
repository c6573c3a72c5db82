"""Training DPMesh (paper 004) on our data: ``python -m hmr_ros.train.dpmesh --config
configs/dpmesh_tiny.yaml --out runs/dpmesh_tiny``.

Everything but the model, its inputs and its loss is the parameter-regressor trainer's
(``param_regressor.ParamTrainer``: data mixture, samplers, AdamW + warmup/cosine schedule,
``scalars.jsonl``, ``last.pt`` / ``best.pt`` / ``checkpoints/step_*.pt``, bit-exact resume,
MPJPE / PA-MPJPE / PVE validation). What differs:

* **Inputs**: the crop in [-1, 1] (DPMesh's normalisation: mean = std = 0.5; the data pipeline
  hands ImageNet-normalised crops, converted back here) and COCO-17 keypoints in our layout:
  the detector-like ``kp_input`` the pipeline draws through ``data.synthetic.keypoint_noise``
  (``keypoints: detector``), or the renders' clean points (``keypoints: clean``: visible or
  occluded points at confidence 1, the NKR teacher's view). The model adds its own jitter and
  dropped joints while training (``model.keypoint_jitter`` / ``keypoint_drop``).
* **Loss**: ``DPMeshLoss`` (eqs. 6-8; ``loss`` section = ``DPMeshLossWeights``), plus NKR
  when ``teacher`` names a checkpoint of this trainer (a run with ``keypoints: clean``): the
  frozen teacher sees the clean keypoints, the student the detector's, and the student's fused
  features are pulled to the teacher's (eq. 5).
* **Config**: ``model: {name: dpmesh, size: tiny|full, ...DPMeshConfig fields}``; top-level
  ``keypoints`` and ``teacher``; the rest is the parameter-regressor schema (``distributed``
  included).
* **Distributed**: ``torchrun --nproc_per_node=8 -m hmr_ros.train --config
  configs/dpmesh_tiny.yaml``, as the parameter regressors (``param_regressor``: DDP around the
  training forward, sharded samplers, ``data.batch_size`` per process, rank 0 writes). The
  frozen teacher runs beside the DDP-wrapped student on every rank, unwrapped; the keypoint
  noise is keyed by (seed, step, rank). (``python -m hmr_ros.train.dpmesh`` works under
  torchrun too.)
* ``--export DIR`` writes the two graphs (``export_dpmesh``) from the final weights.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from hmr_ros.data.formats.augment import AugmentConfig
from hmr_ros.models.checkpoint import CheckpointError
from hmr_ros.models.dpmesh import DPMesh, DPMeshConfig, DPMeshLoss, DPMeshLossWeights

from .config import (ConfigError, DataConfig, DistributedConfig, LogConfig, OptimizerConfig,
                     ScheduleConfig, _coerce, _dataclass, _no_unknown, _parse_data,
                     check_run_basics, read_yaml_config)
from .data import _MEAN, _STD, _image_side
from .distributed import check_settings, end_processes
from .param_regressor import (BodyLBS, ParamCheckpointConfig, ParamTrainer,
                              ParamValConfig, _plain, _read_param_checkpoint)

__all__ = ["DPMeshTrainConfig", "DPMeshTrainer", "KEYPOINT_SOURCES", "dpmesh_model_name",
           "load_dpmesh_train_config", "load_dpmesh_training_checkpoint", "main",
           "parse_dpmesh_config", "run_dpmesh_training"]

MODEL_NAME = "dpmesh"
KEYPOINT_SOURCES = ("detector", "clean")


@dataclass(frozen=True)
class DPMeshTrainConfig:
    model: DPMeshConfig
    data: DataConfig
    loss: DPMeshLossWeights = field(default_factory=DPMeshLossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    val: ParamValConfig = field(default_factory=ParamValConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: ParamCheckpointConfig = field(default_factory=ParamCheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    keypoints: str = "detector"  #: detector | clean (module docs)
    teacher: Optional[str] = None  #: NKR teacher: a checkpoint of this trainer, or None
    seed: int = 0
    body: str = "procedural"
    device: str = "auto"
    model_name: str = MODEL_NAME  # what ParamTrainer's loop and checkpoints read

    def to_dict(self) -> dict:
        """Plain dict that ``parse_dpmesh_config`` turns back into this config."""
        out: Dict[str, Any] = {"model": {"name": MODEL_NAME, **_plain(asdict(self.model))}}
        for name in ("loss", "augment", "optimizer", "schedule", "val", "log", "checkpoint",
                     "distributed"):
            out[name] = _plain(asdict(getattr(self, name)))
        data = _plain(asdict(self.data))
        data["train"] = [s.to_dict() for s in self.data.train]
        data["val"] = [s.to_dict() for s in self.data.val]
        out["data"] = data
        out.update(keypoints=self.keypoints, teacher=self.teacher, seed=self.seed,
                   body=self.body, device=self.device)
        return out


_SECTIONS = {"loss": DPMeshLossWeights, "augment": AugmentConfig, "optimizer": OptimizerConfig,
             "schedule": ScheduleConfig, "val": ParamValConfig, "log": LogConfig,
             "checkpoint": ParamCheckpointConfig, "distributed": DistributedConfig}


def _model_config(section: Mapping[str, Any]) -> DPMeshConfig:
    """``{name, size, ...fields}`` -> DPMeshConfig: the size's defaults, then the fields."""
    rest = {k: v for k, v in section.items() if k != "name"}
    size = str(rest.pop("size", "tiny"))
    if size not in ("tiny", "full"):
        raise ConfigError(f"'model.size' must be tiny or full, got {size!r}")
    _no_unknown(rest, {f.name for f in fields(DPMeshConfig)}, "model")
    hints = typing.get_type_hints(DPMeshConfig)
    kwargs = {k: _coerce(v, hints[k], f"model.{k}") for k, v in rest.items()}
    try:
        return DPMeshConfig.from_size(size, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"'model': {exc}") from None


def parse_dpmesh_config(data: Mapping[str, Any]) -> DPMeshTrainConfig:
    """Strict parse (unknown keys are errors naming the key)."""
    if not isinstance(data, Mapping):
        raise ConfigError("config: expected a mapping at the top level")
    _no_unknown(data, {"model", "data", "keypoints", "teacher", "seed", "body", "device",
                       *_SECTIONS}, "")
    model = data.get("model")
    if not isinstance(model, Mapping) or model.get("name") != MODEL_NAME:
        raise ConfigError("'model' must be a mapping with name: dpmesh")
    if "data" not in data:
        raise ConfigError("config: missing section 'data' (at least data.train)")
    kwargs: Dict[str, Any] = {"model": _model_config(model), "data": _parse_data(data["data"])}
    for key, cls in _SECTIONS.items():
        if data.get(key) is not None:
            kwargs[key] = _dataclass(cls, data[key], key)
    for key, kind in (("keypoints", str), ("seed", int), ("body", str), ("device", str)):
        if key in data:
            kwargs[key] = _coerce(data[key], kind, key)
    if data.get("teacher") is not None:
        kwargs["teacher"] = _coerce(data["teacher"], str, "teacher")
    cfg = DPMeshTrainConfig(**kwargs)
    if cfg.keypoints not in KEYPOINT_SOURCES:
        raise ConfigError(f"'keypoints' must be one of {list(KEYPOINT_SOURCES)}, got "
                          f"{cfg.keypoints!r}")
    check_run_basics(cfg)
    check_settings(cfg.distributed)
    return cfg


def load_dpmesh_train_config(path) -> DPMeshTrainConfig:
    return read_yaml_config(path, parse_dpmesh_config)


def dpmesh_model_name(path) -> Optional[str]:
    """``"dpmesh"`` when a YAML training config's ``model.name`` is dpmesh, else None: how
    ``hmr-ros train`` can pick this trainer."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    model = data.get("model") if isinstance(data, Mapping) else None
    return MODEL_NAME if isinstance(model, Mapping) and model.get("name") == MODEL_NAME else None


# --------------------------------------------------------------------------------------------
# Clean keypoints of a sample (the teacher's input)
# --------------------------------------------------------------------------------------------


def clean_keypoints(raw: Mapping[str, Any]) -> np.ndarray:
    """(17, 3) COCO-17 points of the main person in our layout, confidence 1 where the render
    has them (visible or occluded), 0 outside the image or without COCO-17 labels. Normalised
    like ``data.synthetic_keypoint_input``."""
    out = np.zeros((17, 3), np.float32)
    if raw.get("people_coco17") is None or raw.get("people_coco17_vis") is None:
        return out
    size = _image_side(raw["image"])
    points = np.asarray(raw["people_coco17"], np.float32)[0, :, :2]
    vis = np.asarray(raw["people_coco17_vis"])[0]
    out[:, :2] = np.clip((points - 0.5 * size) / (0.5 * size), -1.0, 1.0)
    out[:, 2] = (vis > 0).astype(np.float32)
    return out


def _adapt_with_clean(adapt, raw, ctx, rng):
    sample = adapt(raw, ctx, rng)
    sample["kp_clean"] = torch.from_numpy(clean_keypoints(raw))
    return sample


def _add_clean_keypoints(mixture):
    mixture.kinds = [replace(k, adapt=partial(_adapt_with_clean, k.adapt)) for k in mixture.kinds]
    return mixture


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


def load_dpmesh_training_checkpoint(path, map_location="cpu"):
    """(model in eval mode, its DPMeshConfig) of a checkpoint written by `DPMeshTrainer`."""
    ckpt = _read_param_checkpoint(Path(path), map_location)
    if ckpt.get("model") != MODEL_NAME:
        raise CheckpointError(f"{path} holds a {ckpt.get('model')} model, not dpmesh")
    names = {f.name for f in fields(DPMeshConfig)}
    config = DPMeshConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                             for k, v in ckpt["config"].items() if k in names})
    model = DPMesh(config)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), config


class DPMeshTrainer(ParamTrainer):
    """``ParamTrainer`` with DPMesh's model, inputs and loss (module docs)."""

    def __init__(self, config: DPMeshTrainConfig, out_dir, resume: Optional[str] = None,
                 max_steps: Optional[int] = None, device: Optional[str] = None) -> None:
        self._start(config, out_dir, max_steps, device)
        self.model = DPMesh(config.model).to(self.device)
        self.body = BodyLBS(config.body).to(self.device)
        self.loss_fn = DPMeshLoss(self.body, config.loss).to(self.device)
        self.teacher = None
        if config.teacher:
            self.teacher, teacher_cfg = load_dpmesh_training_checkpoint(config.teacher,
                                                                        self.device)
            if teacher_cfg.fused_channels != config.model.fused_channels or (
                    teacher_cfg.fused_size != config.model.fused_size):
                raise CheckpointError(f"{config.teacher}: the teacher's fused features differ "
                                      f"in shape from the student's")
            self.teacher.requires_grad_(False)  # frozen, and outside the DDP-wrapped forward
        self._assemble(resume)

    def with_sample_extras(self, mixture):
        """The samples' clean keypoints (``kp_clean``: the teacher's input, or the student's
        with ``keypoints: clean``)."""
        return _add_clean_keypoints(mixture)

    @staticmethod
    def images(batch: Dict[str, Tensor]) -> Tensor:
        """The pipeline's ImageNet-normalised crops -> DPMesh's [-1, 1]."""
        image = batch["image"]
        unit = image * _STD.to(image) + _MEAN.to(image)
        return unit * 2.0 - 1.0

    def keypoints(self, batch: Dict[str, Tensor]) -> Tensor:
        return batch["kp_clean"] if self.config.keypoints == "clean" else batch["kp_input"]

    def training_outputs(self, model, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """The training noise on the keypoints comes from ``step_generator`` (keyed by seed,
        step and rank), so a resumed run draws what the uninterrupted one did."""
        return model(self.images(batch), self.keypoints(batch), generator=self.step_generator())

    def losses(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        out = self.net(batch)
        teacher_features = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_features = self.teacher(self.images(batch), batch["kp_clean"])["fused"]
        targets = {"keypoints2d": batch["keypoints2d"],
                   "keypoints2d_conf": batch["keypoints2d_conf"],
                   "joints3d": batch["joints3d"], "joints3d_conf": batch["joints3d_conf"],
                   "rel_rotmats": batch["rel_rotmats"], "betas": batch["betas"],
                   "has_smpl": batch["has_smpl"]}
        return self.loss_fn(out, targets, teacher_features=teacher_features)


def run_dpmesh_training(args: argparse.Namespace) -> int:
    """``hmr-ros train`` for a config whose ``model.name`` is dpmesh."""
    if getattr(args, "init", None):
        raise ValueError("--init is for VisHMR fine-tuning; DPMesh resumes with --resume")
    config = load_dpmesh_train_config(args.config)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    trainer = DPMeshTrainer(config, out, resume=args.resume, max_steps=args.max_steps,
                            device=args.device)
    try:
        metrics = trainer.train()
    finally:
        end_processes(trainer.processes)
    if not trainer.is_main:
        return 0
    shown = {k: round(v, 2) for k, v in metrics.items()}
    print(f"trained to step {trainer.step}; checkpoint {Path(out) / 'last.pt'}"
          + (f"; val {shown}" if shown else ""))
    export_dir = getattr(args, "export", None)
    if export_dir:
        from hmr_ros.body import load_body_model
        from hmr_ros.export.dpmesh_export import export_dpmesh

        model = trainer.model.to("cpu").eval()
        export_dpmesh(model, export_dir, body=load_body_model(config.body))
        print(f"exported {export_dir}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .cli import add_arguments

    parser = argparse.ArgumentParser(prog="python -m hmr_ros.train.dpmesh",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--export", default=None,
                        help="after training, export unet.onnx + regressor.onnx here")
    return run_dpmesh_training(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
