"""``hmr-ros train``: the VisHMR training loop (single process, or multi-GPU with torchrun).

One ``Trainer`` owns the model, optimiser (AdamW), schedule (linear warmup + cosine), data
(weighted mixture, ``data.py``), losses (``VisHMRLoss``), validation (``hmr_ros.eval.metrics``,
per merge mode), checkpoints (``hmr_ros.models.checkpoint.save_checkpoint`` + optimiser /
scheduler / step / data position / best metric) and logging (tqdm, TensorBoard, JSONL).

**Distributed.** ``torchrun --nproc_per_node=N -m hmr_ros.train --config ...`` (or ``hmr-ros
train`` under torchrun): when ``WORLD_SIZE`` > 1 the process group is initialised from the
torchrun environment (NCCL with CUDA, else gloo), each rank drives ``cuda:LOCAL_RANK``, the model
is wrapped in ``DistributedDataParallel`` and the samplers shard the data (``distributed.py``,
shared with the other trainers). ``data.batch_size`` is per process. Rank 0 alone logs,
validates and writes checkpoints.

**Partial labels.** A batch may mix datasets with different labels (IUV or not, SMPL or not,
...). ``VisHMRLoss`` leaves out terms whose target is absent *for the whole batch*, so the batch
is split by label signature, the loss evaluated per group on the group's rows, and the groups
combined weighted by their share of the batch (a term is thus the usual masked batch mean).
Teacher forcing is per sample too (``TeacherForcedVisHMR``): GT IUV drives the warp where a
sample has it, the predicted IUV elsewhere. 3D joints with per-joint confidence (SPIN files map
only 15 joints onto SMPL) use the same root-relative L1 as the loss, masked (``masked_joints3d``).

**Resume** restores weights, optimiser, scheduler, step, epoch and the position in the epoch,
and the samplers derive every sample's augmentation from its position, so an interrupted and
resumed run follows the same trajectory as an uninterrupted one (bit-exact on CPU with
``num_workers`` = 0; see the tests).
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch import Tensor, nn

from hmr_ros.eval.metrics import MeshMetrics
from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models.checkpoint import FORMAT, CheckpointError, save_checkpoint
from hmr_ros.models.losses import VisHMRLoss
from hmr_ros.models.vishmr import VisHMR

from .config import TrainConfig
from .data import BuildContext, build_mixture, train_sampler, val_sampler
from .distributed import barrier, start_processes, wrap_ddp
from .scalars import ScalarLogger

__all__ = ["TeacherForcedVisHMR", "Trainer", "compute_loss", "lr_factor", "masked_joints3d"]


# --------------------------------------------------------------------------------------------
# Model forward and loss for training
# --------------------------------------------------------------------------------------------


class TeacherForcedVisHMR(nn.Module):
    """``VisHMR.forward`` with teacher forcing chosen per sample (``has_iuv``), always returning
    ``gt_pose_loglik`` -- the module DDP wraps, so every trained parameter is reached through
    one ``forward`` call."""

    def __init__(self, model: VisHMR, teacher_forcing: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.teacher_forcing = float(teacher_forcing)

    def forward(self, images: Tensor, z: Tensor, gt_iuv: Tensor, has_iuv: Tensor,
                gt_rel_rotmats: Tensor, keypoints: Optional[Tensor] = None) -> Dict[str, Tensor]:
        m = self.model
        features, iuv, pooled, raw_iuv = m.stage_a_train(images)
        forced = has_iuv > 0
        if self.teacher_forcing < 1.0:  # the rest warp through the predicted IUV, as deployed
            forced = forced & (torch.rand(has_iuv.shape, device=has_iuv.device)
                               < self.teacher_forcing)
        use_gt = forced.reshape(-1, 1, 1, 1)
        warp_iuv = torch.where(use_gt, gt_iuv.to(iuv.dtype), iuv.detach())
        uv_features = ops.iuv_warp(features, warp_iuv, m.config.uv_size, m.config.fg_threshold)
        out_b = m.stage_b(uv_features, pooled, z, keypoints)
        out = {"features": features, "iuv": iuv, "pooled": pooled, "uv_features": uv_features,
               "z": z, **raw_iuv, **out_b, **m.merge(out_b, "ks_matched")}
        out["gt_pose_loglik"] = m.pose_log_prob(gt_rel_rotmats, pooled, keypoints)
        return out


def masked_joints3d(pred: Tensor, gt: Tensor, conf: Tensor, root: int = 0) -> Tensor:
    """Root-relative L1 of 3D joints over labelled joints (``conf`` > 0, root labelled too);
    same normalisation as ``VisHMRLoss``'s ``joints3d`` (mean per coordinate)."""
    mask = (conf > 0).to(pred.dtype) * (conf[:, root:root + 1] > 0).to(pred.dtype)  # B x J
    err = ((pred - pred[:, root:root + 1]) - (gt - gt[:, root:root + 1])).abs()
    return (err * mask[..., None]).sum() / (3 * mask.sum()).clamp_min(1.0)


def compute_loss(loss_fn: VisHMRLoss, outputs: Dict[str, Tensor],
                 batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """All loss terms of a (possibly mixed-label) batch, ``total`` included (module docs)."""
    size = batch["image"].shape[0]
    conf = batch["joints3d_conf"] > 0
    full, partial_j = conf.all(1), conf.any(1) & ~conf.all(1)
    sig = torch.stack([batch["has_iuv"] > 0, batch["has_smpl"] > 0,
                       batch["has_visibility"] > 0, full, partial_j], 1)
    terms: Dict[str, Tensor] = {}
    for key in torch.unique(sig, dim=0):
        rows = (sig == key).all(1).nonzero()[:, 0]
        has_iuv, has_smpl, has_vis, has_full, has_partial = key.tolist()
        out_g = {k: v[rows] for k, v in outputs.items()}
        tgt = {"keypoints2d": batch["keypoints2d"][rows],
               "keypoints2d_conf": batch["keypoints2d_conf"][rows]}
        if has_iuv:
            tgt["iuv"] = batch["iuv"][rows]
        if has_smpl:
            tgt["rel_rotmats"], tgt["betas"] = batch["rel_rotmats"][rows], batch["betas"][rows]
        if has_vis:
            tgt["visibility"] = batch["visibility"][rows]
        if has_full:
            tgt["joints3d"] = batch["joints3d"][rows]
        group = loss_fn(out_g, tgt)
        if has_partial:
            group["joints3d"] = masked_joints3d(out_g["joints"], batch["joints3d"][rows],
                                                batch["joints3d_conf"][rows])
            group["total"] = group["total"] + loss_fn.weights.joints3d * group["joints3d"]
        share = len(rows) / size
        for name, value in group.items():
            terms[name] = terms[name] + share * value if name in terms else share * value
    return terms


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at
    ``total`` (constant after)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------



def read_checkpoint(path, map_location, fmt: str, what: str) -> dict:
    """The dict of an hmr_ros training checkpoint whose ``format`` is ``fmt`` (``what`` names
    it in the error): a missing, unreadable or foreign file is a `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise CheckpointError(f"{path} is not an hmr_ros {what} checkpoint")
    return ckpt


def write_checkpoint(out_dir: Path, step: int, save, keep_last: int) -> Path:
    """``save(path)`` writes ``OUT/checkpoints/step_N.pt``; it becomes ``OUT/last.pt`` too (by
    an atomic rename, so a reader never sees half a file), and only the newest ``keep_last``
    step files stay (0 keeps them all). Shared by every trainer."""
    ckpt_dir = Path(out_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    step_path = save(ckpt_dir / f"step_{step:08d}.pt")
    tmp = Path(out_dir) / "last.pt.tmp"
    shutil.copyfile(step_path, tmp)
    os.replace(tmp, Path(out_dir) / "last.pt")
    for p in sorted(ckpt_dir.glob("step_*.pt"))[:-keep_last] if keep_last > 0 else []:
        p.unlink()
    return step_path

class Trainer:
    """Build everything from a ``TrainConfig``; ``train()`` runs to ``max_steps``.

    ``max_steps`` (default ``schedule.total_steps``) stops early without changing the schedule,
    so ``--max-steps`` runs resume into the same learning-rate curve.
    """

    def __init__(self, config: TrainConfig, out_dir, resume: Optional[str] = None,
                 max_steps: Optional[int] = None, device: Optional[str] = None,
                 init: Optional[str] = None) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.max_steps = int(max_steps if max_steps is not None else config.schedule.total_steps)
        # 1. Processes and device
        self.processes = start_processes(device or config.device, config.distributed.backend)
        self.world, self.rank = self.processes.world, self.processes.rank
        self.distributed, self.is_main = self.processes.distributed, self.processes.is_main
        self.device = self.processes.device
        torch.manual_seed(config.seed)
        # 2. Model, loss, optimiser, schedule
        from hmr_ros.body import load_body_model

        self.model = VisHMR(config.model, load_body_model(config.body)).to(self.device)
        self.net: nn.Module = wrap_ddp(TeacherForcedVisHMR(self.model, config.teacher_forcing),
                                       self.processes, config.distributed)
        self.loss_fn = VisHMRLoss(config.loss, fg_threshold=config.model.fg_threshold)
        self.optimizer = self._optimizer()
        s = config.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(lr_factor, warmup=s.warmup_steps, total=s.total_steps,
                                    min_ratio=s.min_lr_ratio))
        # 3. Data
        cfg_m = config.model
        self.train_ctx = BuildContext(cfg_m.crop_size, cfg_m.feature_size, config.augment,
                                      config.seed, train=True)
        self.val_ctx = BuildContext(cfg_m.crop_size, cfg_m.feature_size, None, config.seed,
                                    train=False)
        if config.body != "procedural" and any(s.type.startswith("synthetic")
                                               for s in config.data.train):
            warnings.warn("synthetic data is rendered with the procedural body's UV atlas; "
                          f"training body {config.body!r} makes its IUV targets inconsistent",
                          stacklevel=2)
        self.train_set = build_mixture(config.data.train, self.train_ctx)
        self.sampler = train_sampler(self.train_set, [d.weight for d in config.data.train],
                                     config.data.epoch_size, self.world, self.rank, config.seed)
        self.loader = self._loader(self.train_set, self.sampler, config.data.batch_size,
                                   drop_last=True)
        self.val_set = (build_mixture(config.data.val, self.val_ctx)
                        if config.data.val and self.is_main else None)
        # 4. State
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_metric, self.best_step = float("inf"), -1
        if resume and init:
            raise ValueError("give either resume (continue a run) or init (start a new run "
                             "from a checkpoint's weights), not both")
        if resume:
            self.load(resume)
        elif init:
            self.load_weights(init)
        self.logger = (ScalarLogger(self.out_dir, config.log.tensorboard)
                       if self.is_main else None)

    # -- construction helpers ----------------------------------------------------------------

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW; biases and norm scales (1-D parameters) get no weight decay."""
        o = self.config.optimizer
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        return torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}],
                                 lr=o.lr, betas=o.betas, eps=o.eps)

    def _loader(self, dataset, sampler, batch_size: int, drop_last: bool):
        workers = self.config.data.num_workers
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
            drop_last=drop_last, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0)

    # -- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything besides the weights that a resume needs (``**extra`` of the checkpoint)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.world,
            "best_metric": self.best_metric, "best_step": self.best_step,
            "train_config": self.config.to_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, path) -> Path:
        """Atomic write (temp file + rename) of a resumable checkpoint."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        save_checkpoint(tmp, self.model, body_name=self.config.body, **self.state())
        os.replace(tmp, path)
        return path

    def _read_checkpoint(self, path: Path, ignore) -> dict:
        """A checkpoint of this package whose network sizes match the config (but ``ignore``)."""
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an hmr_ros VisHMR checkpoint")
        diff = {k: (v, ckpt["config"].get(k)) for k, v in self.config.model.to_dict().items()
                if k not in ignore and ckpt["config"].get(k) != v}
        if diff:
            raise CheckpointError(f"{path}: model config differs from the training config "
                                  f"(field: (config, checkpoint)) {diff}")
        return ckpt

    def load(self, path) -> None:
        """Resume from a checkpoint written by ``save``: weights, optimiser, schedule, position."""
        path = Path(path)
        ckpt = self._read_checkpoint(path, ignore=())
        self.model.load_state_dict(ckpt["state_dict"])
        if "optimizer" not in ckpt or "step" not in ckpt:
            raise CheckpointError(f"{path} holds weights only (no optimiser state/step): it "
                                  "cannot be resumed; start a new run from its weights instead")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt.get("epoch", 0))
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        if int(ckpt.get("world_size", self.world)) != self.world:
            warnings.warn(f"resuming a {ckpt['world_size']}-process run on {self.world}: the "
                          "data order of the current epoch restarts", stacklevel=2)
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.best_metric = float(ckpt.get("best_metric", float("inf")))
        self.best_step = int(ckpt.get("best_step", -1))
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"].cpu())

    def load_weights(self, path) -> None:
        """Start this run from a checkpoint's weights only (fine-tuning): the optimiser,
        schedule and step start fresh. The network sizes must match the config, except that the
        config may add IUV deconvolutions (``_grow_iuv_head``); tensors whose name or shape
        changed (a replaced head) keep their initialisation, with a warning."""
        path = Path(path)
        ckpt = self._read_checkpoint(path, ignore=("pretrained_backbone", "num_deconv"))
        trained_deconv = int(ckpt["config"].get("num_deconv", self.config.model.num_deconv))
        if trained_deconv > self.config.model.num_deconv:
            raise CheckpointError(f"{path}: its IUV head has {trained_deconv} deconvolutions, "
                                  f"the config {self.config.model.num_deconv}; --init can add "
                                  "deconvolutions (finer IUV), not remove them")
        own = self.model.state_dict()
        fitting = {k: v for k, v in ckpt["state_dict"].items()
                   if k in own and own[k].shape == v.shape}
        if not fitting:
            raise CheckpointError(f"{path}: none of its weights fit this network")
        self.model.load_state_dict(fitting, strict=False)
        fresh = sorted(set(own) - set(fitting))
        if trained_deconv < self.config.model.num_deconv:
            self._grow_iuv_head(trained_deconv)
            n = self.model.iuv_head.LAYERS_PER_BLOCK
            grown = tuple(f"iuv_head.deconv.{i}." for i in range(
                n * trained_deconv, n * self.config.model.num_deconv))
            fresh = [k for k in fresh if not k.startswith(grown)]
        dropped = sorted(set(ckpt["state_dict"]) - set(fitting))
        if fresh or dropped:  # e.g. a head that changed: it starts from its initialisation
            warnings.warn(f"--init {path}: {len(fitting)} tensors loaded; {len(fresh)} start "
                          f"fresh {fresh[:8]}; {len(dropped)} not used {dropped[:8]}",
                          stacklevel=2)

    def _grow_iuv_head(self, trained_deconv: int, samples: int = 64) -> None:
        """The IUV head gained deconvolutions over the checkpoint's: start them as bilinear
        upsampling, calibrated on ``samples`` training crops (``IUVHead.grow``)."""
        # spread over the mixture, each with its own augmentation draw ((index, seed) keys)
        picks = np.linspace(0, len(self.train_set) - 1, min(samples, len(self.train_set)))
        images = torch.stack([self.train_set[(int(i), k)]["image"] for k, i in enumerate(picks)])
        training = self.model.training
        self.model.eval()
        with torch.no_grad():
            layer4 = self.model.backbone(images.to(self.device))
        self.model.iuv_head.grow(trained_deconv, layer4)
        self.model.train(training)
        if self.distributed:  # DDP wrapped the model before: make every rank hold rank 0's
            import torch.distributed as dist

            for t in [*self.model.iuv_head.deconv.parameters(),
                      *self.model.iuv_head.deconv.buffers()]:
                dist.broadcast(t.data, src=0)
        if self.is_main:
            print(f"--init: IUV head grown from {trained_deconv} to "
                  f"{self.config.model.num_deconv} deconvolutions (stride "
                  f"{self.config.model.feature_stride}), the new ones start as upsampling")

    def _checkpoint(self) -> None:
        write_checkpoint(self.out_dir, self.step, self.save, self.config.checkpoint.keep_last)

    # -- training ----------------------------------------------------------------------------

    def _latents(self, batch_size: int) -> Tensor:
        g = torch.Generator().manual_seed(
            (self.config.seed * 1_000_003 + self.step) * 1024 + self.rank)
        return self.model.default_z(batch_size, generator=g).to(self.device)

    def train_step(self, batch: Dict[str, Tensor]) -> Dict[str, float]:
        """One optimiser step on a collated batch; returns the loss terms as floats."""
        self.net.train()
        forced = self.net.module if hasattr(self.net, "module") else self.net  # DDP wraps it
        forced.teacher_forcing = self.config.teacher_forcing_at(self.step)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()
                 if isinstance(v, Tensor)}
        out = self.net(batch["image"], self._latents(batch["image"].shape[0]), batch["iuv"],
                       batch["has_iuv"], batch["rel_rotmats"], batch.get("kp_input"))
        terms = compute_loss(self.loss_fn, out, batch)
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
        values["teacher_forcing"] = forced.teacher_forcing
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
                                         if k in ("total", "iuv_part", "abs_pose", "exp_pose",
                                                  "joints3d", "keypoints2d", "visibility")})
                    if self.step % cfg.log.every == 0 or self.step == self.max_steps:
                        self._log_train(sums, count, time.perf_counter() - tic)
                        sums, count, tic = {}, 0, time.perf_counter()
                    last = self.step >= self.max_steps
                    if cfg.val.every and self.step % cfg.val.every == 0 and not last:
                        metrics = self._validate_and_track()
                    if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0 and not last:
                        self._save_main()
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
            self._save_main()
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

    def _save_main(self) -> None:
        if self.is_main:
            self._checkpoint()
        self._barrier()

    def _barrier(self) -> None:
        barrier(self.processes)

    def _validate_and_track(self) -> Dict[str, float]:
        metrics: Dict[str, float] = {}
        if self.is_main and self.val_set is not None:
            metrics = self.validate()
            self.logger.log(self.step, {f"val/{k}": v for k, v in metrics.items()})
            key = f"{self.config.checkpoint.best_mode}/{self.config.checkpoint.best_metric}"
            if key in metrics and metrics[key] < self.best_metric:
                self.best_metric, self.best_step = metrics[key], self.step
                self.save(self.out_dir / "best.pt")
        self._barrier()
        return metrics

    # -- validation --------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self, max_batches: Optional[int] = None) -> Dict[str, float]:
        """MPJPE / PA-MPJPE / PVE per merge mode (``<mode>/<metric>``, mm) and visibility
        accuracy (``vis_acc``, ``vis_acc/<part>``) on the val set.

        The inference path: the warp uses the *predicted* IUV; stages A and B run once per batch
        and ``merge`` once per mode (what ``model(images, mode=m)`` does, without recomputing the
        network); latents come from a fixed-seed generator so evaluations are comparable. GT
        joints are the dataset's 3D joints where labelled (masked by confidence), else LBS of
        the GT SMPL parameters with the training body; PVE needs GT SMPL (``has_smpl``).
        """
        cfg = self.config
        if self.val_set is None:
            return {}
        limit = cfg.val.max_batches if max_batches is None else max_batches
        loader = self._loader(self.val_set, val_sampler(self.val_set),
                              cfg.val.batch_size or cfg.data.batch_size, drop_last=False)
        model = self.model
        was_training = model.training
        model.eval()
        per_mode = {mode: MeshMetrics() for mode in cfg.val.modes}
        vis = MeshMetrics()
        g = torch.Generator().manual_seed(cfg.seed)
        try:
            for i, batch in enumerate(loader):
                if limit and i >= limit:
                    break
                batch = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, Tensor)}
                images = batch["image"]
                features, iuv, pooled = model.stage_a(images)
                uvf = ops.iuv_warp(features, iuv, model.config.uv_size, model.config.fg_threshold)
                z = model.default_z(images.shape[0], generator=g).to(self.device)
                out_b = model.stage_b(uvf, pooled, z, batch.get("kp_input"))
                has_smpl = batch["has_smpl"] > 0
                gt_verts, gt_lbs_joints = model.lbs(batch["betas"], batch["rel_rotmats"])
                conf = batch["joints3d_conf"] > 0
                labelled = conf.any(1, keepdim=True)
                gt_joints = torch.where(labelled[..., None], batch["joints3d"], gt_lbs_joints)
                joint_mask = torch.where(labelled, conf, has_smpl[:, None].expand_as(conf))
                for mode, acc in per_mode.items():
                    res = model.merge(out_b, mode)
                    acc.update(pred_joints=res["joints"], gt_joints=gt_joints,
                               joint_mask=joint_mask, pred_vertices=res["vertices"],
                               gt_vertices=gt_verts, gt_vertex_joints=gt_lbs_joints,
                               vertex_mask=has_smpl)
                vis.update(pred_omega=out_b["omega"], gt_omega=batch["visibility"],
                           omega_mask=batch["has_visibility"])
        finally:
            model.train(was_training)
        metrics = {f"{mode}/{k}": v for mode, acc in per_mode.items()
                   for k, v in acc.compute().items()}
        metrics.update(vis.compute())
        return metrics


# --------------------------------------------------------------------------------------------
# Helpers and command line
# --------------------------------------------------------------------------------------------


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True)


def _write_yaml(path: Path, data: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
