"""Torch datasets over synthetic samples: shards on disk (``SyntheticShards``) or generated on
the fly (``SyntheticStream``). Both yield the same dict of tensors for the same ``(seed, i)``.

Each item holds every array of ``generator`` (as tensors; ``image`` as float 3 x H x W in
[0, 1] unless ``image_format="uint8"`` keeps H x W x 3 uint8) plus, with ``aliases=True``, the
main person's targets under the names ``hmr_ros.models.losses.VisHMRLoss`` reads:

=================  ===================================  ========================================
rel_rotmats        people_rel_rotmats[0]                24 x 3 x 3
betas              people_betas[0]                      10
visibility         people_visibility[0]                 24
joints3d           people_joints[0]                     24 x 3 camera frame (loss: root-relative)
keypoints2d        people_keypoints2d_norm[0]           24 x 2 **crop-normalised** [-1, 1]
cam_crop, transl   people_cam_crop[0], people_transl[0]
=================  ===================================  ========================================

(The loss' ``iuv`` target is at the IUV head's resolution, crop / 4: downsample ``iuv`` with
nearest sampling at pixel centres in the training code.)

Shards of format ``hmr_ros.synthetic/1`` (written before COCO-17) are read too: their config
is rebuilt with the realism options off (``SynthConfig.from_dict(missing="legacy")``) and the
``people_coco17*`` / ``people_face_front`` arrays are computed on reading from the stored pose,
shape, camera, depth and labels (``fill_coco17``; other people's visibility then skips the part
test, since their part labels were not stored).
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .config import SynthConfig
from .generator import SyntheticGenerator
from .shards import load_npz, open_npz_mmap
from .writer import FORMAT_V1, READABLE_FORMATS

__all__ = ["SyntheticShards", "SyntheticStream", "to_tensors", "fill_coco17"]

_ALIASES = {
    "rel_rotmats": "people_rel_rotmats",
    "betas": "people_betas",
    "visibility": "people_visibility",
    "joints3d": "people_joints",
    "keypoints2d": "people_keypoints2d_norm",
    "cam_crop": "people_cam_crop",
    "transl": "people_transl",
}


def to_tensors(sample: Dict[str, np.ndarray], image_format: str = "float",
               aliases: bool = True) -> Dict[str, torch.Tensor]:
    """NumPy sample dict -> dict of tensors (copies, so memory maps are released)."""
    if image_format not in ("float", "uint8"):
        raise ValueError(f"image_format must be 'float' or 'uint8', got {image_format!r}")
    out = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in sample.items()}
    if image_format == "float":
        out["image"] = out["image"].permute(2, 0, 1).contiguous().float().div_(255.0)
    if aliases:
        for alias, name in _ALIASES.items():
            out[alias] = out[name][0]
    return out


class SyntheticShards(Dataset):
    """Random access to a directory written by ``write_dataset`` / ``hmr-ros synth --out``.

    Stored shards are memory-mapped (a sample reads only its own bytes); compressed shards are
    decompressed whole and the last ``cache_shards`` are kept (iterate roughly in order or use
    a shard-aware sampler for them). File handles are opened lazily in each process, so the
    dataset can be handed to DataLoader workers. ``with_vertices=True`` adds
    ``people_vertices`` (recomputed with LBS + transl when the shards do not store them).
    """

    def __init__(self, root: Union[str, Path], image_format: str = "float",
                 aliases: bool = True, with_vertices: bool = False,
                 cache_shards: int = 2) -> None:
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: not a synthetic dataset directory")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{meta_path}: format {self.meta.get('format')!r}, expected one "
                             f"of {READABLE_FORMATS}")
        legacy = self.meta["format"] == FORMAT_V1
        self.config = SynthConfig.from_dict(self.meta["config"],
                                            missing="legacy" if legacy else "default")
        self.files = [self.root / s["file"] for s in self.meta["shards"]]
        self.starts = [int(s["first_index"]) for s in self.meta["shards"]]
        self.counts = [int(s["count"]) for s in self.meta["shards"]]
        self.image_format, self.aliases = image_format, aliases
        self.with_vertices, self.cache_shards = with_vertices, max(1, int(cache_shards))
        self._open: "OrderedDict[int, Dict[str, np.ndarray]]" = OrderedDict()
        self._lbs = None
        self._body = None

    def __len__(self) -> int:
        return int(self.meta["num_samples"])

    def __getstate__(self):  # workers reopen their own memory maps
        state = dict(self.__dict__)
        state["_open"], state["_lbs"], state["_body"] = OrderedDict(), None, None
        return state

    def _shard(self, k: int) -> Dict[str, np.ndarray]:
        if k in self._open:
            self._open.move_to_end(k)
            return self._open[k]
        arrays = load_npz(self.files[k]) if self.meta["compressed"] else \
            open_npz_mmap(self.files[k])
        self._open[k] = arrays
        limit = self.cache_shards if self.meta["compressed"] else 64
        while len(self._open) > limit:
            self._open.popitem(last=False)
        return arrays

    def arrays(self, index: int) -> Dict[str, np.ndarray]:
        """Sample ``index`` as NumPy arrays (views into the shard: copy before writing)."""
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        k = bisect.bisect_right(self.starts, index) - 1
        shard = self._shard(k)
        sample = {name: arr[index - self.starts[k]] for name, arr in shard.items()}
        if "people_coco17" not in sample:
            self._posed_model()
            sample = fill_coco17(sample, self._lbs, self._body)
        if self.with_vertices and "people_vertices" not in sample:
            sample["people_vertices"] = self._vertices(sample)
        return sample

    def _posed_model(self):
        if self._lbs is None:
            from hmr_ros import kernels as K
            from hmr_ros.body import procedural_body

            from .coco17 import HeadPoints

            body = procedural_body()
            self._lbs = K.LbsModel.from_body(body)
            self._body = (body, HeadPoints.from_body(body))
        return self._lbs

    def _vertices(self, sample: Dict[str, np.ndarray]) -> np.ndarray:
        verts, _ = _posed(sample, self._posed_model())
        return np.where(np.asarray(sample["people_valid"])[:, None, None], verts, 0.0).astype(
            np.float32)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return to_tensors(self.arrays(index), self.image_format, self.aliases)


def _posed(sample: Dict[str, np.ndarray], lbs):
    verts, joints = lbs(np.ascontiguousarray(sample["people_betas"], np.float32),
                        np.ascontiguousarray(sample["people_rel_rotmats"], np.float32))
    t = np.asarray(sample["people_transl"])[:, None]
    return np.asarray(verts) + t, np.asarray(joints) + t


def fill_coco17(sample: Dict[str, np.ndarray], lbs, body) -> Dict[str, np.ndarray]:
    """A copy of a format-/1 sample with the COCO-17 arrays computed from its pose, shape,
    translation, K, depth and labels. body: (BodyModel, coco17.HeadPoints)."""
    from .coco17 import UNKNOWN_PART, coco17_arrays

    model, head = body
    out = dict(sample)
    valid = np.asarray(sample["people_valid"], bool)
    P = len(valid)
    spec = {"people_coco17": ((17, 2), np.float32), "people_coco17_norm": ((17, 2), np.float32),
            "people_coco17_3d": ((17, 3), np.float32), "people_coco17_vis": ((17,), np.int8),
            "people_face_front": ((), np.float32)}
    for key, (shape, dtype) in spec.items():
        out[key] = np.zeros((P,) + shape, dtype)
    n = int(valid.sum())
    if n == 0:
        return out
    verts, joints = _posed(sample, lbs)
    part_seg = np.asarray(sample["part_seg"])
    person_seg = np.asarray(sample["person_seg"])
    part_all = np.where(part_seg >= 0, part_seg, np.where(person_seg >= 1, UNKNOWN_PART, -1))
    coco = coco17_arrays(joints[valid], verts[valid],
                         np.asarray(sample["people_rel_rotmats"])[valid, 0], head, model.faces,
                         np.asarray(sample["K"], np.float64), part_seg.shape[0],
                         np.asarray(sample["depth"]), person_seg, part_all)
    for key, value in coco.items():
        out[key][valid] = value
    return out


class SyntheticStream(IterableDataset):
    """Samples ``start, start+1, ...`` of ``(config, seed)`` generated on the fly (``num`` of
    them, or forever when ``num`` is None). DataLoader workers take interleaved indices, so the
    union of what they yield is the same set of samples whatever the number of workers."""

    def __init__(self, config: Optional[SynthConfig] = None, seed: int = 0,
                 num: Optional[int] = None, start: int = 0, image_format: str = "float",
                 aliases: bool = True, with_vertices: bool = False) -> None:
        super().__init__()
        self.config = config or SynthConfig()
        self.seed, self.num, self.start = int(seed), num, int(start)
        self.image_format, self.aliases = image_format, aliases
        self.with_vertices = with_vertices
        self._gen: Optional[SyntheticGenerator] = None

    def __len__(self) -> int:
        if self.num is None:
            raise TypeError("an endless SyntheticStream (num=None) has no length")
        return int(self.num)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_gen"] = None
        return state

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        if self._gen is None:
            self._gen = SyntheticGenerator(self.config, self.seed,
                                           with_vertices=self.with_vertices)
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        i = self.start + worker
        stop = None if self.num is None else self.start + int(self.num)
        while stop is None or i < stop:
            yield to_tensors(self._gen.sample(i), self.image_format, self.aliases)
            i += workers
