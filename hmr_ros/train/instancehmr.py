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
epoch); without it samples ``0, 1, 2, ...`` of ``(data.synth, data.seed)`` are generated on the
fly (what ``SyntheticStream`` yields). The checkpoint records the data position (samples
consumed), so ``--resume`` continues with the next unseen batch. Outputs: ``OUT/config.yaml``,
``OUT/scalars.jsonl`` (+ TensorBoard), ``OUT/checkpoints/step_*.pt``, ``OUT/last.pt``,
``OUT/export/``.

**Distributed** (``distributed.py``, as the other trainers): ``torchrun --nproc_per_node=8 -m
hmr_ros.train --config configs/instancehmr_light.yaml`` (or ``-m hmr_ros.train.instancehmr``)
runs one process per GPU (``cuda:LOCAL_RANK``; NCCL, or gloo on CPU) with the model, and the
loss that uses its projection heads, in one DDP-wrapped forward. ``data.batch_size`` is per
process: each step takes the next ``N`` x ``batch_size`` positions of the data order and rank
``r`` the ``r``-th ``batch_size`` of them, so the ranks draw different samples, together the
ones a single process with an ``N`` times larger batch would, and a resume continues exactly
whatever ``N``. Rank 0 alone logs, writes checkpoints and exports. Config section
``distributed: {backend: auto, find_unused_parameters: true, sync_batchnorm: false}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from hmr_ros.data.synthetic.config import SynthConfig
from hmr_ros.models.checkpoint import CheckpointError
from hmr_ros.models.instancehmr import (InstanceHMR, InstanceHMRConfig, InstanceHMRLoss,
                                        InstanceHMRLossWeights, build_targets)

from .config import (ConfigError, DistributedConfig, LogConfig, OptimizerConfig,
                     ScheduleConfig, _coerce, _dataclass, _no_unknown, check_run_basics,
                     read_yaml_config)
from .distributed import (TrainingForward, barrier, check_settings, end_processes,
                          start_processes, wrap_ddp)
from .param_regressor import BodyLBS
from .scalars import ScalarLogger
from .trainer import _progress, _write_yaml, lr_factor, read_checkpoint, write_checkpoint

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
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
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
             "checkpoint": InstanceHMRCheckpointConfig, "distributed": DistributedConfig}


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
    check_run_basics(cfg)
    check_settings(cfg.distributed)
    return cfg


def load_instancehmr_config(path) -> InstanceHMRTrainConfig:
    return read_yaml_config(path, parse_instancehmr_config)


class _RankOrder(Sampler):
    """Endless dataset indices of one rank. The run's data order is ``0, 1, 2, ...``
    (``size`` None: generated samples) or a seeded permutation of the ``size`` samples per
    epoch (shards); from position ``start`` on, each step takes the next ``world`` x
    ``batch_size`` positions and rank ``rank`` the ``rank``-th ``batch_size`` of them."""

    def __init__(self, size: Optional[int], seed: int, start: int, batch_size: int,
                 world: int = 1, rank: int = 0) -> None:
        self.size, self.seed, self.start = size, seed, start
        self.batch_size, self.world, self.rank = batch_size, world, rank

    def __iter__(self) -> Iterator[int]:
        first = self.start + self.rank * self.batch_size
        epoch, order = -1, None
        while True:
            for position in range(first, first + self.batch_size):
                if self.size is None:
                    yield position
                    continue
                wanted, offset = divmod(position, self.size)
                if wanted != epoch:
                    gen = torch.Generator().manual_seed(self.seed * 1_000_003 + wanted)
                    epoch, order = wanted, torch.randperm(self.size, generator=gen).tolist()
                yield order[offset]
            first += self.world * self.batch_size


class _GeneratedSamples(Dataset):
    """Sample ``i`` of the synthetic dataset ``(config, seed)``, generated when asked for:
    ``SyntheticStream``'s samples with random access, so ranks can take their share of the
    order. The generator is built in each process (DataLoader workers included)."""

    def __init__(self, config: SynthConfig, seed: int) -> None:
        self.config, self.seed = config, int(seed)
        self._generator = None

    def __getstate__(self):
        return {**self.__dict__, "_generator": None}

    def __getitem__(self, index: int) -> Dict[str, Tensor]:
        from hmr_ros.data.synthetic.dataset import to_tensors
        from hmr_ros.data.synthetic.generator import SyntheticGenerator

        if self._generator is None:
            self._generator = SyntheticGenerator(self.config, self.seed)
        return to_tensors(self._generator.sample(int(index)), "float", aliases=False)


class InstanceHMRTrainer:
    """Optimises eq. 5 with AdamW and a warmup + cosine schedule (module docs)."""

    def __init__(self, config: InstanceHMRTrainConfig, out_dir, resume: Optional[str] = None,
                 max_steps: Optional[int] = None, device: Optional[str] = None) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.processes = start_processes(device or config.device, config.distributed.backend)
        self.world, self.rank = self.processes.world, self.processes.rank
        self.distributed, self.is_main = self.processes.distributed, self.processes.is_main
        self.device = self.processes.device
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        self.model = InstanceHMR(config.model).to(self.device)
        self.loss = InstanceHMRLoss(BodyLBS(config.body), config.loss).to(self.device)
        self.net = wrap_ddp(TrainingForward(self.model, self._loss_terms), self.processes,
                            config.distributed)
        o, s = config.optimizer, config.schedule
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr,
                                           weight_decay=o.weight_decay, betas=tuple(o.betas),
                                           eps=o.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, s.warmup_steps, s.total_steps,
                                                   s.min_lr_ratio))
        self.max_steps = int(max_steps if max_steps is not None else s.total_steps)
        #: samples of the data order consumed by all ranks together (where the next step starts)
        self.step, self.data_position = 0, 0
        if resume:
            self.load(resume)
        if self.is_main:
            _write_yaml(self.out_dir / "config.yaml", config.to_dict())

    # -- data ------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        """This rank's batches from the current data position on (``_RankOrder``)."""
        d = self.config.data
        if d.shards:
            from hmr_ros.data.synthetic.dataset import SyntheticShards

            dataset = SyntheticShards(d.shards, aliases=False)
            size: Optional[int] = len(dataset)
        else:
            dataset, size = _GeneratedSamples(d.synth, d.seed), None
        order = _RankOrder(size, d.seed, self.data_position, d.batch_size, self.world, self.rank)
        return DataLoader(dataset, batch_size=d.batch_size, num_workers=d.num_workers,
                          sampler=order, pin_memory=self.device.type == "cuda")

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
                    "data_position": self.data_position,
                    "train_config": self.config.to_dict(), "torch_rng": torch.get_rng_state()},
                   tmp)
        os.replace(tmp, path)
        return path

    def load(self, path) -> None:
        """Resume: weights, optimiser, schedule, step and data position (checkpoints without
        one come from single-process runs: step x batch size)."""
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
        self.data_position = int(ckpt.get("data_position",
                                          self.step * self.config.data.batch_size))
        torch.set_rng_state(ckpt["torch_rng"].cpu())

    def _checkpoint(self) -> None:
        """Rank 0 writes ``checkpoints/step_*.pt`` and ``last.pt``; every rank waits for it."""
        if self.is_main:
            write_checkpoint(self.out_dir, self.step, self.save,
                             self.config.checkpoint.keep_last)
        barrier(self.processes)


    # -- training --------------------------------------------------------------------------

    def _loss_terms(self, model: InstanceHMR, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Eq. 5 on a batch; ``self.net`` runs it (the loss uses the model's projection heads,
        so under DDP it belongs inside the wrapped forward)."""
        targets = build_targets(batch, self.config.model)
        images = targets.pop("images")
        return self.loss(model(images), targets, projectors=model)

    def train_step(self, batch: Dict[str, Tensor]) -> Dict[str, float]:
        self.net.train()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        terms = self.net(batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        clip = self.config.optimizer.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.data_position += self.config.data.batch_size * self.world
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["grad_norm"] = float(norm)
        return values

    def train(self) -> Dict[str, float]:
        """Run to ``max_steps``, checkpoint, export (``config.export``); returns the mean
        loss terms of the last logging window (this rank's batches)."""
        cfg = self.config
        logger = (ScalarLogger(self.out_dir, tensorboard=cfg.log.tensorboard)
                  if self.is_main else None)
        bar = _progress(self.max_steps, self.step, self.is_main and cfg.log.progress)
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
                    if logger is not None:
                        logger.log(self.step, last)
                    sums, count = {}, 0
                if cfg.checkpoint.every > 0 and self.step % cfg.checkpoint.every == 0:
                    self._checkpoint()
            self._checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
        if cfg.export and self.is_main:
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
    return read_checkpoint(path, map_location, INSTANCEHMR_FORMAT, "InstanceHMR")


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
    try:
        metrics = trainer.train()
    finally:
        end_processes(trainer.processes)
    if not trainer.is_main:
        return 0
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
