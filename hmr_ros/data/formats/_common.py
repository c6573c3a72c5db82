"""Shared helpers of the real-dataset loaders: sample keys, tensors, RNG per sample."""

from __future__ import annotations

from typing import Dict, Tuple, Union

import numpy as np

__all__ = ["normalise_image", "split_key", "to_tensors"]


def split_key(key: Union[int, Tuple[int, int]], base_seed: int) -> Tuple[int, np.random.Generator]:
    """``dataset[i]`` or ``dataset[(i, seed)]`` -> (index, the sample's augmentation RNG).

    The trainer's samplers pass ``(index, seed)`` so that augmentation is reproducible (and a
    resumed run sees the same draws); a plain index draws from ``(base_seed, index)`` and a fresh
    entropy source, as usual for ad-hoc use.
    """
    if isinstance(key, (tuple, list)):
        index, seed = int(key[0]), int(key[1])
        return index, np.random.default_rng([base_seed, seed])
    return int(key), np.random.default_rng()


def normalise_image(crop: np.ndarray):
    """L x L x 3 uint8 RGB -> 3 x L x L float32 torch tensor, ``(x/255 - MEAN) / STD``."""
    import torch

    from hmr_ros.models.backbones import IMAGE_MEAN, IMAGE_STD

    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


def to_tensors(sample: Dict[str, object]) -> Dict[str, object]:
    """NumPy float arrays / scalars -> float32 tensors; strings and ints stay as they are."""
    import torch

    out: Dict[str, object] = {}
    for key, value in sample.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            out[key] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
        elif isinstance(value, (float, np.floating)):
            out[key] = torch.tensor(float(value), dtype=torch.float32)
        else:
            out[key] = value
    return out
