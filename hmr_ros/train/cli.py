"""``hmr-ros train``: command-line front end of ``Trainer`` (light to import: torch is loaded
only when the command runs, so ``hmr-ros --help`` stays fast)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["add_arguments", "run", "train_main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hmr-ros train`` (for the CLI's command table)."""
    parser.add_argument("--config", required=True,
                        help="training config (YAML; schema in hmr_ros/train/config.py, "
                             "examples in configs/)")
    parser.add_argument("--resume", default=None,
                        help="checkpoint to resume (weights, optimiser, schedule, step, data "
                             "position), e.g. OUT/last.pt")
    parser.add_argument("--init", default=None,
                        help="start a new run from this checkpoint's weights (fine-tuning: "
                             "fresh optimiser, schedule and step); the config may add IUV "
                             "deconvolutions (model.num_deconv), which start as upsampling")
    parser.add_argument("--out", default=None,
                        help="output directory (default: runs/<config name>)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps in total (default: "
                             "schedule.total_steps; the LR schedule itself is unchanged)")
    parser.add_argument("--device", default=None,
                        help="override the config's device (auto | cpu | cuda | cuda:N)")


def run(args: argparse.Namespace) -> int:
    """Run ``hmr-ros train`` from parsed arguments; returns the exit status."""
    from .config import load_config
    from .dpmesh import dpmesh_model_name
    from .instancehmr import is_instancehmr_config
    from .param_regressor import param_model_name

    if is_instancehmr_config(args.config):  # model.name: instancehmr (whole images)
        from .instancehmr import run_instancehmr_training

        return run_instancehmr_training(args)
    if dpmesh_model_name(args.config):  # model.name: dpmesh (crops + keypoints)
        from .dpmesh import run_dpmesh_training

        return run_dpmesh_training(args)
    if param_model_name(args.config) is not None:  # model.name: ochmr | imphmr
        from .param_regressor import run_param_training

        return run_param_training(args)
    from .trainer import Trainer

    config = load_config(args.config)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    trainer = Trainer(config, out, resume=args.resume, max_steps=args.max_steps,
                      device=args.device, init=args.init)
    try:
        metrics = trainer.train()
        if trainer.is_main:
            shown = {k: round(v, 2) for k, v in metrics.items() if "vis_acc/" not in k}
            print(f"trained to step {trainer.step}; checkpoint {Path(out) / 'last.pt'}"
                  + (f"; val {shown}" if shown else ""))
    finally:
        from .distributed import end_processes

        end_processes(trainer.processes)
    return 0


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    """``hmr-ros train --config CFG [--resume CKPT] [--out DIR] [--max-steps N]``; errors in
    the config, data or checkpoint are printed (exit status 1), not raised."""
    from hmr_ros.models.checkpoint import CheckpointError

    parser = argparse.ArgumentParser(prog="hmr-ros train", description="train VisHMR from a "
                                     "YAML config")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (CheckpointError, ValueError, OSError, ImportError, KeyError,
            NotImplementedError) as exc:
        print(f"hmr-ros train: error: {exc}", file=sys.stderr)
        return 1
