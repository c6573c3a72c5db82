"""Training InstanceHMR (paper 002) on synthetic whole images; export at the end.

    python -m hmr_ros.train.instancehmr --config configs/instancehmr_light.yaml \\
        --out runs/instancehmr_light [--resume runs/instancehmr_light/last.pt] [--max-steps N]

The model is bottom-up, so it needs whole images with every person labelled, not person crops:
the synthetic samples are exactly that (``hmr_ros.data.synthetic``: the square render is the
frame, ``people_*`` label up to four people). ``build_targets`` turns a collated batch into the
network input and the targets of eq. 5 (``InstanceHMRLoss``).

**Config** (YAML, unknown keys are errors)::

    model: {name: instancehmr, ...InstanceHMRConfig fields}
    loss: {...InstanceHMRLossWeights fields}           # eq. 5's λ by default
    data: {shards: null, synth: {...SynthConfig}, seed: 0, batch_size: 8, num_workers: 0}
    optimizer / schedule / log: as for VisHMR (hmr_ros/train/config.py)
    checkpoint: {every: 200, keep_last: 2}
    export: true                                       # OUT/export: maps.onnx + decode.onnx
    seed: 0, body: procedural, device: auto

``data.shards``: a directory written by ``hmr-ros synth --out`` (read in a seeded order per
epoch); without it samples are generated on the fly (``SyntheticStream``) from ``data.synth``.
Either way the data position is a function of the step, so ``--resume`` continues with the next
unseen batch. Outputs: ``OUT/config.yaml``, ``OUT/scalars.jsonl`` (+ TensorBoard),
``OUT/checkpoints/step_*.pt``, ``OUT/last.pt``, ``OUT/export/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from hmr_ros.data.synthetic.config import SynthConfig
from hmr_ros.models.checkpoint import CheckpointError
from hmr_ros.models.instancehmr import (InstanceHMR, InstanceHMRConfig, InstanceHMRLoss,
                                        InstanceHMRLossWeights, build_targets)

from .config import (ConfigError, LogConfig, OptimizerConfig, ScheduleConfig, _coerce,
                     _dataclass, _no_unknown)
from .param_regressor import BodyLBS
from .scalars import ScalarLogger
from .trainer import _progress, _write_yaml, lr_factor

__all__ = ["INSTANCEHMR_FORMAT", "InstanceHMRCheckpointConfig", "InstanceHMRDataConfig",
           "InstanceHMRTrainConfig", "InstanceHMRTrainer", "is_instancehmr_config",
           "load_instancehmr_checkpoint", "load_instancehmr_config", "main",
           "parse_instancehmr_config", "run_instancehmr_training"]

INSTANCEHMR_FORMAT = "hmr_ros.instancehmr/1"
MODEL_NAME = "instancehmr"


@dataclass(frozen=True)
class InstanceHMRDataConfig:
    shards: Optional[str] = None  #: synthetic shard directory; None: generate on the fly
    synth: SynthConfig = field(default_factory=SynthConfig)  #: on-the-fly generator's config
    seed: int = 0  #: generator seed (stream) / order seed (shards)
    batch_size: int = 8
    num_workers: int = 0


@dataclass(frozen=True)
class InstanceHMRCheckpointConfig:
    every: int = 200
    keep_last: int = 2


@dataclass(frozen=True)
class InstanceHMRTrainConfig:
    model: InstanceHMRConfig
    loss: InstanceHMRLossWeights = field(default_factory=InstanceHMRLossWeights)
    data: InstanceHMRDataConfig = field(default_factory=InstanceHMRDataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: InstanceHMRCheckpointConfig = field(default_factory=InstanceHMRCheckpointConfig)
    export: bool = True
    seed: int = 0
    body: str = "procedural"
    device: str = "auto"

    def to_dict(self) -> dict:
        """Plain dict that ``parse_instancehmr_config`` turns back into this config."""
        out = _plain(asdict(self))
        out["model"] = {"name": MODEL_NAME, **out["model"]}
        return out


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_SECTIONS = {"loss": InstanceHMRLossWeights, "optimizer": OptimizerConfig,
             "schedule": ScheduleConfig, "log": LogConfig,
             "checkpoint": InstanceHMRCheckpointConfig}


def is_instancehmr_config(path) -> bool:
    """Whether a YAML training config names ``model.name: instancehmr`` (for ``hmr-ros train``
    to pick this trainer)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    model = data.get("model") if isinstance(data, Mapping) else None
    return isinstance(model, Mapping) and model.get("name") == MODEL_NAME


def parse_instancehmr_config(data: Mapping[str, Any]) -> InstanceHMRTrainConfig:
    """Strict parse: unknown keys are errors naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError("config: expected a mapping at the top level")
    _no_unknown(data, {"model", "data", "export", "seed", "body", "device", *_SECTIONS}, "")
    model = data.get("model")
    if not isinstance(model, Mapping) or model.get("name") != MODEL_NAME:
        raise ConfigError(f"'model' must be a mapping with name: {MODEL_NAME}")
    kwargs: Dict[str, Any] = {"model": _dataclass(
        InstanceHMRConfig, {k: v for k, v in model.items() if k != "name"}, "model")}
    if data.get("data") is not None:
        section = data["data"]
        if not isinstance(section, Mapping):
            raise ConfigError("'data' must be a mapping")
        synth = _dataclass(SynthConfig, section.get("synth") or {}, "data.synth")
        rest = _dataclass(InstanceHMRDataConfig,
                          {k: v for k, v in section.items() if k != "synth"}, "data")
        kwargs["data"] = replace(rest, synth=synth)
    for key, cls in _SECTIONS.items():
        if data.get(key) is not None:
            kwargs[key] = _dataclass(cls, data[key], key)
    for key, kind in (("export", bool), ("seed", int), ("body", str), ("device", str)):
        if key in data:
            kwargs[key] = _coerce(data[key], kind, key)
    cfg = InstanceHMRTrainConfig(**kwargs)
    s = cfg.schedule
    if s.total_steps < 1 or not 0 <= s.warmup_steps <= s.total_steps:
        raise ConfigError("'schedule': need total_steps >= 1 and 0 <= warmup_steps <= total_steps")
    if cfg.data.batch_size < 1 or cfg.optimizer.lr <= 0 or cfg.log.every < 1:
        raise ConfigError("need data.batch_size >= 1, optimizer.lr > 0 and log.every >= 1")
    return cfg


def load_instancehmr_config(path) -> InstanceHMRTrainConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return parse_instancehmr_config(yaml.safe_load(path.read_text()) or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


class _EpochOrder(Sampler):
    """Endless indices of ``size`` samples: a seeded permutation per epoch, from ``start``."""

    def __init__(self, size: int, seed: int, start: int) -> None:
        self.size, self.seed, self.start = size, seed, start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.size)
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            yield from torch.randperm(self.size, generator=gen)[offset:].tolist()
            epoch, offset = epoch + 1, 0


class InstanceHMRTrainer:
    """Optimises eq. 5 with AdamW and a warmup + cosine schedule (module docs)."""

    def __init__(self, config: InstanceHMRTrainConfig, out_dir, resume: Optional[str] = None,
                 max_steps: Optional[int] = None, device: Optional[str] = None) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        wanted = device or config.device
        if wanted == "auto":
            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(wanted)
        torch.manual_seed(config.seed)
        self.model = InstanceHMR(config.model).to(self.device)
        self.loss = InstanceHMRLoss(BodyLBS(config.body), config.loss).to(self.device)
        o, s = config.optimizer, config.schedule
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr,
                                           weight_decay=o.weight_decay, betas=tuple(o.betas),
                                           eps=o.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, s.warmup_steps, s.total_steps,
                                                   s.min_lr_ratio))
        self.max_steps = int(max_steps if max_steps is not None else s.total_steps)
        self.step = 0
        if resume:
            self.load(resume)
        _write_yaml(self.out_dir / "config.yaml", config.to_dict())

    # -- data ------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        """Batches from the current step on (the data position is step x batch size)."""
        d = self.config.data
        start = self.step * d.batch_size
        if d.shards:
            from hmr_ros.data.synthetic.dataset import SyntheticShards

            dataset = SyntheticShards(d.shards, aliases=False)
            return DataLoader(dataset, batch_size=d.batch_size, num_workers=d.num_workers,
                              sampler=_EpochOrder(len(dataset), d.seed, start))
        from hmr_ros.data.synthetic.dataset import SyntheticStream

        stream = SyntheticStream(d.synth, seed=d.seed, start=start, aliases=False)
        return DataLoader(stream, batch_size=d.batch_size, num_workers=d.num_workers)

    # -- checkpoints -----------------------------------------------------------------------

    def save(self, path) -> Path:
        """Atomic write of a resumable checkpoint (``load_instancehmr_checkpoint`` reads it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"format": INSTANCEHMR_FORMAT, "config": _plain(asdict(self.config.model)),
                    "body": self.config.body, "state_dict": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "step": self.step,
                    "train_config": self.config.to_dict(), "torch_rng": torch.get_rng_state()},
                   tmp)
        os.replace(tmp, path)
        return path

    def load(self, path) -> None:
        """Resume: weights, optimiser, schedule, step (hence the data position)."""
        ckpt = _read_checkpoint(Path(path), self.device)
        mine = _plain(asdict(self.config.model))
        diff = {k: (v, ckpt["config"].get(k)) for k, v in mine.items()
                if ckpt["config"].get(k) != v}
        if diff:
            raise CheckpointError(f"{path}: model config differs from the training config "
                                  f"(field: (config, checkpoint)) {diff}")
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())

    def _checkpoint(self) -> None:
        ckpt_dir = self.out_dir / "checkpoints"
        step_path = self.save(ckpt_dir / f"step_{self.step:08d}.pt")
        tmp = self.out_dir / "last.pt.tmp"
        shutil.copyfile(step_path, tmp)
        os.replace(tmp, self.out_dir / "last.pt")
        keep = self.config.checkpoint.keep_last
        for p in sorted(ckpt_dir.glob("step_*.pt"))[:-keep] if keep > 0 else []:
            p.unlink()

    # -- training --------------------------------------------------------------------------

    def train_step(self, batch: Dict[str, Tensor]) -> Dict[str, float]:
        self.model.train()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        targets = build_targets(batch, self.config.model)
        images = targets.pop("images")
        terms = self.loss(self.model(images), targets, projectors=self.model)
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
        """Run to ``max_steps``, checkpoint, export (``config.export``); returns the mean
        loss terms of the last logging window."""
        cfg = self.config
        logger = ScalarLogger(self.out_dir, tensorboard=cfg.log.tensorboard)
        bar = _progress(self.max_steps, self.step, cfg.log.progress)
        sums: Dict[str, float] = {}
        count, last = 0, {}
        try:
            batches = iter(self._loader()) if self.step < self.max_steps else iter(())
            while self.step < self.max_steps:
                values = self.train_step(next(batches))
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{values['total']:.3g}")
                if self.step % cfg.log.every == 0 or self.step == self.max_steps:
                    last = {f"train/{k}": v / count for k, v in sums.items()}
                    last["train/lr"] = self.scheduler.get_last_lr()[0]
                    logger.log(self.step, last)
                    sums, count = {}, 0
                if cfg.checkpoint.every > 0 and self.step % cfg.checkpoint.every == 0:
                    self._checkpoint()
            self._checkpoint()
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        if cfg.export:
            self.export(self.out_dir / "export")
        return last

    def export(self, out_dir):
        """The trained model as ``maps.onnx`` + ``decode.onnx`` (``export_instancehmr``)."""
        from hmr_ros.body import load_body_model
        from hmr_ros.export.instancehmr_export import export_instancehmr

        model = InstanceHMR(self.config.model)
        model.load_state_dict({k: v.cpu() for k, v in self.model.state_dict().items()})
        return export_instancehmr(model, out_dir, body=load_body_model(self.config.body))


def _read_checkpoint(path: Path, map_location) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != INSTANCEHMR_FORMAT:
        raise CheckpointError(f"{path} is not an hmr_ros InstanceHMR checkpoint")
    return ckpt


def load_instancehmr_checkpoint(path, map_location="cpu"):
    """(model in eval mode, its config) of a checkpoint written by ``InstanceHMRTrainer``."""
    ckpt = _read_checkpoint(Path(path), map_location)
    config = InstanceHMRConfig(**ckpt["config"])
    model = InstanceHMR(config)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), config


def run_instancehmr_training(args: argparse.Namespace) -> int:
    """``hmr-ros train`` for a config whose ``model.name`` is instancehmr (args: config, out,
    resume, max_steps, device)."""
    if getattr(args, "init", None):
        raise ValueError("--init is for VisHMR fine-tuning; InstanceHMR resumes with --resume "
                         "or imports released weights with hmr-ros import-checkpoint")
    config = load_instancehmr_config(args.config)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    trainer = InstanceHMRTrainer(config, out, resume=args.resume, max_steps=args.max_steps,
                                 device=args.device)
    metrics = trainer.train()
    shown = {k.split("/", 1)[1]: round(v, 4) for k, v in metrics.items()}
    print(f"trained to step {trainer.step}; checkpoint {Path(out) / 'last.pt'}"
          + (f"; export {Path(out) / 'export'}" if config.export else "")
          + (f"; last losses {shown}" if shown else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hmr_ros.train.instancehmr",
                                     description="train InstanceHMR on synthetic whole images")
    parser.add_argument("--config", required=True, help="YAML (e.g. configs/instancehmr_light"
                                                        ".yaml; schema in the module docs)")
    parser.add_argument("--out", default=None, help="output directory (default runs/<config>)")
    parser.add_argument("--resume", default=None, help="checkpoint to resume, e.g. OUT/last.pt")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps (default schedule.total_steps)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    try:
        return run_instancehmr_training(args)
    except (CheckpointError, ValueError, OSError, KeyError) as exc:
        print(f"instancehmr training: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
