"""Checkpoints of hmr_ros models: configuration + learned weights + which body they were
trained with, so ``hmr-ros export`` and the runtime rebuild exactly the trained network."""

from __future__ import annotations

from pathlib import Path
from typing import Union

FORMAT = "hmr_ros.vishmr/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, not an hmr_ros checkpoint, or does not fit the network."""


def save_checkpoint(path: Union[str, Path], model, body_name: str = "procedural",
                    **extra) -> Path:
    """Writes ``model``'s config and weights; ``body_name`` is what ``load_body_model`` takes
    (``procedural`` or the path of the user's SMPL file). ``extra`` (step, optimiser state,
    metrics) is stored alongside."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "config": model.config.to_dict(), "body": str(body_name),
                "state_dict": model.state_dict(), **extra}, path)
    return path


def load_checkpoint(path: Union[str, Path], body=None, map_location="cpu"):
    """Rebuilds the VisHMR of a checkpoint. ``body`` overrides the stored body name (a
    ``BodyModel``); it must have the vertex count the model was trained with."""
    import torch

    from hmr_ros.body import load_body_model

    from .vishmr import VisHMR, VisHMRConfig

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an hmr_ros VisHMR checkpoint (expected format "
                              f"{FORMAT!r}, got {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    try:
        # the weights come from the checkpoint: never fetch the backbone's pretrained ones again
        config = VisHMRConfig(**{**ckpt["config"], "pretrained_backbone": None})
    except TypeError as exc:
        raise CheckpointError(f"{path}: config does not match this hmr_ros ({exc})") from exc
    if body is None:
        body = load_body_model(ckpt.get("body", "procedural"))
    model = VisHMR(config, body)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the network (missing "
                              f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]})")
    model.body_name = ckpt.get("body", "procedural")
    return model.eval()
