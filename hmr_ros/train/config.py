"""Training configuration: one YAML file, parsed strictly into frozen dataclasses.

Schema (every section optional except ``data.train``; defaults in the dataclasses below)::

    seed: 0                      # seeds init, sampling, augmentation and latents
    body: procedural             # 'procedural' or the path of an SMPL .npz/.pkl (LBS, atlas)
    teacher_forcing: 1.0         # share of samples warped through GT IUV (1.0 = the paper)
    teacher_forcing_end: null    # if set: linear anneal to this share ...
    teacher_forcing_steps: null  # ... at this step (default schedule.total_steps)
    device: auto                 # auto (cuda if available) | cpu | cuda | cuda:1
    model: {...}                 # hmr_ros.models.VisHMRConfig fields
    loss: {...}                  # hmr_ros.models.LossWeights fields
    augment: {...}               # hmr_ros.data.formats.AugmentConfig fields
    data:
      batch_size: 32             # per process (global batch = batch_size x world size)
      num_workers: 4
      epoch_size: null           # samples per epoch of a weighted mixture (default: Σ sizes)
      train:                     # one or more datasets, mixed by weight
        - {type: synthetic_stream, weight: 1.0, seed: 0, size: 100000}
        - {type: synthetic_shards, weight: 1.0, path: data/synth}
        - {type: spin_npz, weight: 0.5, npz: coco_2014_train.npz, img_dir: coco,
           keypoint_layout: spin24, bbox_rescale: 1.0}
        - {type: 3dpw, weight: 0.5, path: 3DPW/sequenceFiles/train, image_dir: 3DPW/imageFiles,
           bbox_expand: 1.3, frame_step: 1, valid_only: true}
      val: [...]                 # same entries (weights ignored); empty = no validation
    optimizer: {lr: 1.0e-4, weight_decay: 1.0e-4, betas: [0.9, 0.999], eps: 1.0e-8,
                grad_clip: 1.0}  # AdamW; no weight decay on biases and norm layers
    schedule: {total_steps: 100000, warmup_steps: 1000, min_lr_ratio: 0.01}  # linear warmup
                                 # then cosine to min_lr_ratio * lr
    val: {every: 2000, max_batches: 50, batch_size: null,
          modes: [visible, global, ks_highest, ks_matched]}
    log: {every: 20, tensorboard: true, progress: true}
    checkpoint: {every: 2000, keep_last: 3, best_metric: pa_mpjpe, best_mode: ks_matched}
    distributed: {backend: auto, find_unused_parameters: true, sync_batchnorm: false}

Unknown keys are errors that name the key and list the valid ones (a typo must never silently
fall back to a default). YAML 1.1 reads ``1e-4`` as a string: numeric strings are accepted for
numeric fields.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from hmr_ros.data.formats.augment import AugmentConfig
from hmr_ros.models.losses import LossWeights
from hmr_ros.models.vishmr import MERGE_MODES, VisHMRConfig

__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "DatasetSpec", "DistributedConfig",
    "LogConfig", "OptimizerConfig", "ScheduleConfig", "TrainConfig", "ValConfig", "load_config",
    "parse_config",
]

METRICS = ("mpjpe", "pa_mpjpe", "pve")


class ConfigError(ValueError):
    """A training config is malformed; the message names the offending key."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset entry: its ``type``, mixture ``weight`` and type-specific ``params``."""

    type: str
    weight: float = 1.0
    params: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": self.type, "weight": self.weight, **self.params}


@dataclass(frozen=True)
class DataConfig:
    train: Tuple[DatasetSpec, ...] = ()
    val: Tuple[DatasetSpec, ...] = ()
    batch_size: int = 32
    num_workers: int = 4
    epoch_size: Optional[int] = None


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0  #: max global gradient norm; 0 = off


@dataclass(frozen=True)
class ScheduleConfig:
    total_steps: int = 100_000  #: length of the cosine (and default stop)
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.01


@dataclass(frozen=True)
class ValConfig:
    every: int = 2000  #: steps between validations (0 = only at the end)
    max_batches: int = 50  #: 0 = the whole val set
    batch_size: Optional[int] = None  #: default: data.batch_size
    modes: Tuple[str, ...] = MERGE_MODES


@dataclass(frozen=True)
class LogConfig:
    every: int = 20
    tensorboard: bool = True
    progress: bool = True


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 2000
    keep_last: int = 3
    best_metric: str = "pa_mpjpe"  #: lower is better
    best_mode: str = "ks_matched"


@dataclass(frozen=True)
class DistributedConfig:
    backend: str = "auto"  #: auto = nccl with CUDA, gloo otherwise
    #: partial labels (no IUV in a batch, ...) leave some heads without gradient: DDP must know
    find_unused_parameters: bool = True
    sync_batchnorm: bool = False


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig
    model: VisHMRConfig = field(default_factory=VisHMRConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    val: ValConfig = field(default_factory=ValConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    body: str = "procedural"
    device: str = "auto"
    #: probability that a sample with GT IUV warps its features through it (the paper's
    #: teacher forcing) instead of through the IUV head's own prediction, as at inference
    teacher_forcing: float = 1.0
    #: if set, the share goes linearly from ``teacher_forcing`` at step 0 to this value at
    #: ``teacher_forcing_steps`` (default: schedule.total_steps) and stays there: the visible
    #: branch learns on clean correspondences first, then on the IUV it will get at inference
    teacher_forcing_end: Optional[float] = None
    teacher_forcing_steps: Optional[int] = None

    def teacher_forcing_at(self, step: int) -> float:
        """The teacher-forcing share at optimiser step ``step``."""
        if self.teacher_forcing_end is None:
            return self.teacher_forcing
        span = self.teacher_forcing_steps or self.schedule.total_steps
        t = min(max(step / max(span, 1), 0.0), 1.0)
        return self.teacher_forcing + t * (self.teacher_forcing_end - self.teacher_forcing)

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON-able) that ``parse_config`` turns back into this config."""
        out = _plain(asdict(self))
        out["data"]["train"] = [s.to_dict() for s in self.data.train]
        out["data"]["val"] = [s.to_dict() for s in self.data.val]
        return out


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_SECTIONS = {
    "model": VisHMRConfig, "loss": LossWeights, "augment": AugmentConfig,
    "optimizer": OptimizerConfig, "schedule": ScheduleConfig, "val": ValConfig,
    "log": LogConfig, "checkpoint": CheckpointConfig, "distributed": DistributedConfig,
}


def load_config(path: Union[str, Path]) -> TrainConfig:
    """Read and validate a YAML training config."""
    return read_yaml_config(path, parse_config)


def read_yaml_config(path: Union[str, Path], parse):
    """``parse(data)`` of the YAML file ``path``: every trainer's loader, errors naming the
    file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return parse(data or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def check_run_basics(cfg) -> None:
    """The checks every trainer's config shares (schedule, batch size, learning rate, log
    period): for the configs of ``param_regressor``, ``dpmesh`` and ``instancehmr``."""
    s = cfg.schedule
    if s.total_steps < 1 or not 0 <= s.warmup_steps <= s.total_steps:
        raise ConfigError("'schedule': need total_steps >= 1 and 0 <= warmup_steps <= total_steps")
    if cfg.data.batch_size < 1 or cfg.optimizer.lr <= 0 or cfg.log.every < 1:
        raise ConfigError("need data.batch_size >= 1, optimizer.lr > 0 and log.every >= 1")


def parse_config(data: Mapping[str, Any]) -> TrainConfig:
    """Validate a config dict (as from YAML) into a ``TrainConfig``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got "
                          f"{type(data).__name__}")
    top = {f.name for f in fields(TrainConfig)}
    _no_unknown(data, top, "")
    if "data" not in data:
        raise ConfigError("config: missing section 'data' (at least data.train)")
    kwargs: Dict[str, Any] = {"data": _parse_data(data["data"])}
    for name, cls in _SECTIONS.items():
        if name in data and data[name] is not None:
            kwargs[name] = _dataclass(cls, data[name], name)
    for name, kind in (("seed", int), ("body", str), ("device", str),
                       ("teacher_forcing", float), ("teacher_forcing_end", Optional[float]),
                       ("teacher_forcing_steps", Optional[int])):
        if name in data:
            kwargs[name] = _coerce(data[name], kind, name)
    cfg = TrainConfig(**kwargs)
    _check(cfg)
    return cfg


def _no_unknown(section: Mapping[str, Any], valid, where: str) -> None:
    for key in section:
        if key not in valid:
            name = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"unknown key '{name}' (valid keys{' of ' + where if where else ''}:"
                              f" {', '.join(sorted(valid))})")


def _dataclass(cls, section, where: str):
    if not isinstance(section, Mapping):
        raise ConfigError(f"'{where}' must be a mapping, got {type(section).__name__}")
    flds = {f.name: f for f in fields(cls) if f.init}
    _no_unknown(section, flds, where)
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in section.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"'{where}': {exc}") from None


def _coerce(value, kind, where: str):
    """Check/convert one value to its annotated type (int, float, bool, str, tuples, Optional)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"'{where}' must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{where}' must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"'{where}' must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"'{where}' must be a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise ConfigError(f"'{where}' must be a number, got {value!r}")
        if kind is int:
            if float(value) != int(value):
                raise ConfigError(f"'{where}' must be an integer, got {value!r}")
            return int(value)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{where}' must be a string, got {value!r}")
        return value
    return value


def _parse_data(section) -> DataConfig:
    from .data import dataset_type  # the registry of dataset types

    if not isinstance(section, Mapping):
        raise ConfigError(f"'data' must be a mapping, got {type(section).__name__}")
    valid = {f.name for f in fields(DataConfig)}
    _no_unknown(section, valid, "data")
    kwargs: Dict[str, Any] = {}
    for name in ("train", "val"):
        entries = section.get(name) or []
        if not isinstance(entries, list):
            raise ConfigError(f"'data.{name}' must be a list of datasets")
        specs: List[DatasetSpec] = []
        for i, entry in enumerate(entries):
            where = f"data.{name}[{i}]"
            if not isinstance(entry, Mapping) or "type" not in entry:
                raise ConfigError(f"'{where}' must be a mapping with a 'type'")
            try:
                kind = dataset_type(entry["type"])
            except KeyError as exc:
                raise ConfigError(f"'{where}.type': {exc.args[0]}") from None
            params = {k: v for k, v in entry.items() if k not in ("type", "weight")}
            _no_unknown(params, set(kind.required) | set(kind.optional), where)
            missing = [k for k in kind.required if k not in params]
            if missing:
                raise ConfigError(f"'{where}' ({entry['type']}): missing key(s) {missing}")
            weight = _coerce(entry.get("weight", 1.0), float, f"{where}.weight")
            if weight <= 0:
                raise ConfigError(f"'{where}.weight' must be > 0, got {weight}")
            specs.append(DatasetSpec(str(entry["type"]), weight, dict(params)))
        kwargs[name] = tuple(specs)
    if not kwargs["train"]:
        raise ConfigError("'data.train' must list at least one dataset")
    for name in ("batch_size", "num_workers"):
        if name in section:
            kwargs[name] = _coerce(section[name], int, f"data.{name}")
    if section.get("epoch_size") is not None:
        kwargs["epoch_size"] = _coerce(section["epoch_size"], int, "data.epoch_size")
    return DataConfig(**kwargs)


def _check(cfg: TrainConfig) -> None:
    """Cross-field checks with messages naming the key."""
    for name in ("teacher_forcing", "teacher_forcing_end"):
        value = getattr(cfg, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"'{name}' must be in [0, 1], got {value}")
    if cfg.teacher_forcing_steps is not None and cfg.teacher_forcing_steps < 1:
        raise ConfigError(f"'teacher_forcing_steps' must be >= 1, got "
                          f"{cfg.teacher_forcing_steps}")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"'data.batch_size' must be >= 1, got {cfg.data.batch_size}")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"'data.num_workers' must be >= 0, got {cfg.data.num_workers}")
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"'optimizer.lr' must be > 0, got {cfg.optimizer.lr}")
    s = cfg.schedule
    if s.total_steps < 1 or not 0 <= s.warmup_steps <= s.total_steps:
        raise ConfigError(f"'schedule': need total_steps >= 1 and 0 <= warmup_steps <= "
                          f"total_steps, got {s.total_steps} and {s.warmup_steps}")
    if not 0 <= s.min_lr_ratio <= 1:
        raise ConfigError(f"'schedule.min_lr_ratio' must be in [0, 1], got {s.min_lr_ratio}")
    bad = [m for m in cfg.val.modes if m not in MERGE_MODES]
    if bad or not cfg.val.modes:
        raise ConfigError(f"'val.modes' must be a non-empty subset of {list(MERGE_MODES)}, got "
                          f"{list(cfg.val.modes)}")
    if cfg.checkpoint.best_metric not in METRICS:
        raise ConfigError(f"'checkpoint.best_metric' must be one of {list(METRICS)}, got "
                          f"{cfg.checkpoint.best_metric!r}")
    if cfg.checkpoint.best_mode not in cfg.val.modes:
        raise ConfigError(f"'checkpoint.best_mode' ({cfg.checkpoint.best_mode!r}) must be one "
                          f"of val.modes {list(cfg.val.modes)}")
    for name in ("every",):
        for sec in ("val", "log", "checkpoint"):
            if getattr(getattr(cfg, sec), name) < 0:
                raise ConfigError(f"'{sec}.{name}' must be >= 0")
    if cfg.log.every < 1:
        raise ConfigError(f"'log.every' must be >= 1, got {cfg.log.every}")
    if cfg.distributed.backend not in ("auto", "nccl", "gloo"):
        raise ConfigError(f"'distributed.backend' must be auto, nccl or gloo, got "
                          f"{cfg.distributed.backend!r}")

