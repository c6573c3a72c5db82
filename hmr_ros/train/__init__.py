"""Training: ``hmr-ros train --config configs/vishmr_light.yaml`` (``train_main``).

* ``config``: the YAML schema (``TrainConfig``, ``load_config``; unknown keys are errors);
* ``data``: the per-sample contract, one adapter per dataset type, weighted mixtures and
  resumable, sharded samplers;
* ``trainer``: ``Trainer`` (loop, validation per merge mode, checkpoints, DDP under torchrun);
* ``scalars``: TensorBoard + JSONL scalar logs;
* ``cli``: ``add_arguments`` / ``run`` / ``train_main`` (importing it does not import torch).

Flip/rotation/colour/occluder augmentation lives with the loaders (``hmr_ros.data.formats``),
because geometric augmentation happens inside the crop warp.

Names are loaded on first use, so ``from hmr_ros.train.cli import add_arguments`` stays light.
"""

from importlib import import_module

_EXPORTS = {
    "add_arguments": "cli", "run": "cli", "train_main": "cli",
    "ConfigError": "config", "DatasetSpec": "config", "TrainConfig": "config",
    "load_config": "config", "parse_config": "config",
    "BuildContext": "data", "CONTRACT_KEYS": "data", "complete_sample": "data",
    "register_dataset_type": "data", "resize_iuv": "data",
    "ScalarLogger": "scalars", "read_scalars": "scalars",
    "TeacherForcedVisHMR": "trainer", "Trainer": "trainer", "compute_loss": "trainer",
    "lr_factor": "trainer", "masked_joints3d": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
