"""Training data: the sample contract, one adapter per dataset type, weighted mixtures, samplers.

**Sample contract.** Whatever a dataset returns, its adapter turns it into exactly these keys
(torch tensors; ``L`` = crop size, ``h = L / 4`` = the model's feature/IUV resolution), so that
samples from different datasets collate into one batch:

=================  ============  ==========================================================
image              3 x L x L     RGB normalised with ``IMAGE_MEAN / IMAGE_STD``
iuv                3 x h x h     GT IUV at the *feature* resolution (zeros if absent)
has_iuv            ()            1 if ``iuv`` is a label
rel_rotmats        24 x 3 x 3    relative rotations, root = camera-frame global orientation
betas              10
has_smpl           ()            1 if ``rel_rotmats`` and ``betas`` are labels
joints3d           24 x 3        camera frame, metres (the loss root-aligns them)
joints3d_conf      24            0 = unlabelled joint
keypoints2d        24 x 2        crop-normalised [-1, 1]
keypoints2d_conf   24            0 = unlabelled keypoint
kp_input           17 x 3        detector-like COCO-17 input of the keypoint-conditioned
                                 variant: crop-normalised x, y and a confidence (all zeros
                                 = no keypoints); synthetic: the clean points through
                                 ``data.synthetic.keypoint_noise``
visibility         24            GT ω of paper eq. 1 (zeros if absent)
has_visibility     ()            1 if ``visibility`` is a label
dataset            () int64      index of the source dataset in ``data.train`` / ``data.val``
=================  ============  ==========================================================

**IUV resolution.** Renders come at the image size; the loss and the teacher-forced warp need
IUV at ``L / 4``. ``resize_iuv`` resamples U, V with *nearest* (centre) sampling -- averaging
(U, V) across a part boundary would land in another chart of the atlas -- and I by *area*
averaging, masked to the pixels whose nearest-sampled (U, V) is foreground, so every pixel the
loss treats as foreground (I > 0.5) carries a real (U, V).

**Dataset types** (``register_dataset_type`` adds more): ``synthetic_stream`` and
``synthetic_shards`` (``hmr_ros.data.synthetic``; IUV, visibility, SMPL, joints, keypoints;
photometric augmentation only, see ``data.formats.augment``), ``spin_npz`` and ``3dpw``
(``hmr_ros.data.formats``; geometric + photometric augmentation + occluders in the crop warp).

**Sampling.** Every sampler yields keys ``(index, seed)``: the seed fixes that sample's
augmentation, so runs are reproducible and a resumed run sees exactly the samples and draws it
would have seen. One dataset: ``torch.utils.data.DistributedSampler`` (shuffled, sharded over
ranks). Several: ``WeightedMixtureSampler`` draws the source dataset of each sample with
probability ∝ weight (a dataset's own samples in shuffled order, without repeats until it is
exhausted), then shards over ranks.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, DistributedSampler, IterableDataset, Sampler

from hmr_ros.data.formats.augment import AugmentConfig, sample_params
from hmr_ros.models.backbones import IMAGE_MEAN, IMAGE_STD

__all__ = [
    "BuildContext", "CONTRACT_KEYS", "DatasetType", "MixtureDataset", "TrainSampler",
    "WeightedMixtureSampler", "adapt_real", "adapt_synthetic", "build_mixture", "complete_sample",
    "dataset_type", "register_dataset_type", "resize_iuv",
]

CONTRACT_KEYS = ("image", "iuv", "has_iuv", "rel_rotmats", "betas", "has_smpl", "joints3d",
                 "joints3d_conf", "keypoints2d", "keypoints2d_conf", "kp_input", "visibility",
                 "has_visibility", "dataset")


@dataclass(frozen=True)
class BuildContext:
    """What a dataset builder / adapter needs to know about the run."""

    crop_size: int
    feature_size: int
    augment: Optional[AugmentConfig]  #: None for validation
    seed: int = 0
    train: bool = True


@dataclass(frozen=True)
class DatasetType:
    """``build(params, ctx)`` -> a dataset; ``adapt(raw, ctx, rng)`` -> contract sample.

    ``seeded_keys``: the dataset accepts ``(index, seed)`` keys (and augments itself with that
    seed); otherwise it gets ``index`` and the adapter does the augmentation with ``rng``.
    """

    build: Callable[[Dict[str, Any], BuildContext], Any]
    adapt: Callable[[Dict[str, Any], BuildContext, np.random.Generator], Dict[str, Any]]
    required: Tuple[str, ...] = ()
    optional: Tuple[str, ...] = ()
    seeded_keys: bool = False


_TYPES: Dict[str, DatasetType] = {}


def register_dataset_type(name: str, build, adapt=None, required: Sequence[str] = (),
                          optional: Sequence[str] = (), seeded_keys: bool = False) -> None:
    """Make ``type: <name>`` usable in configs (``adapt`` defaults to ``complete_sample``)."""
    _TYPES[name] = DatasetType(build, adapt or (lambda raw, ctx, rng: complete_sample(raw, ctx)),
                               tuple(required), tuple(optional), seeded_keys)


def dataset_type(name: str) -> DatasetType:
    if name not in _TYPES:
        raise KeyError(f"unknown dataset type {name!r} (known: {', '.join(sorted(_TYPES))})")
    return _TYPES[name]


# --------------------------------------------------------------------------------------------
# Contract
# --------------------------------------------------------------------------------------------


def _tensor(x, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def resize_iuv(iuv: torch.Tensor, size: int) -> torch.Tensor:
    """3 x H x W IUV -> 3 x size x size (nearest U, V; area I masked by nearest fg; see docs)."""
    if iuv.shape[-2:] == (size, size):
        return iuv
    x = iuv[None].float()
    near = F.interpolate(x, size=(size, size), mode="nearest-exact")[0]
    area = F.interpolate(x[:, :1], size=(size, size), mode="area")[0]
    fg = (near[:1] > 0.5).to(area.dtype)
    return torch.cat([area * fg, near[1:] * fg], dim=0)


def _points_with_conf(sample, key: str, dim: int):
    """(24 x dim points, 24 confidences) of ``sample[key]``: confidence 1 where the sample gives
    none, and zeros for both when the sample has no such points."""
    if sample.get(key) is None:
        return torch.zeros(24, dim), torch.zeros(24)
    conf = sample.get(f"{key}_conf")
    return (_tensor(sample[key]).reshape(24, dim),
            torch.ones(24) if conf is None else _tensor(conf).reshape(24))


def complete_sample(sample: Dict[str, Any], ctx: BuildContext,
                    dataset_index: int = 0) -> Dict[str, torch.Tensor]:
    """Any subset of the contract's labels -> the full contract (zeros + flags for the rest)."""
    L, h = ctx.crop_size, ctx.feature_size
    image = _tensor(sample["image"])
    if image.shape != (3, L, L):
        raise ValueError(f"image must be 3 x {L} x {L} after the adapter, got "
                         f"{tuple(image.shape)}")
    out: Dict[str, torch.Tensor] = {"image": image}
    if sample.get("iuv") is not None and float(sample.get("has_iuv", 1)) > 0:
        out["iuv"], out["has_iuv"] = resize_iuv(_tensor(sample["iuv"]), h), torch.tensor(1.0)
    else:
        out["iuv"], out["has_iuv"] = torch.zeros(3, h, h), torch.tensor(0.0)
    has_smpl = sample.get("rel_rotmats") is not None and float(sample.get("has_smpl", 1)) > 0
    out["rel_rotmats"] = (_tensor(sample["rel_rotmats"]).reshape(24, 3, 3) if has_smpl
                          else torch.eye(3).expand(24, 3, 3).clone())
    out["betas"] = (_tensor(sample["betas"]).reshape(10) if has_smpl and
                    sample.get("betas") is not None else torch.zeros(10))
    out["has_smpl"] = torch.tensor(float(has_smpl))
    out["joints3d"], out["joints3d_conf"] = _points_with_conf(sample, "joints3d", 3)
    out["keypoints2d"], out["keypoints2d_conf"] = _points_with_conf(sample, "keypoints2d", 2)
    out["kp_input"] = (_tensor(sample["kp_input"]).reshape(17, 3)
                       if sample.get("kp_input") is not None else torch.zeros(17, 3))
    has_vis = sample.get("visibility") is not None and float(sample.get("has_visibility", 1)) > 0
    out["visibility"] = _tensor(sample["visibility"]).reshape(24) if has_vis else torch.zeros(24)
    out["has_visibility"] = torch.tensor(float(has_vis))
    out["dataset"] = torch.tensor(int(dataset_index), dtype=torch.int64)
    return out


def adapt_real(raw: Dict[str, Any], ctx: BuildContext, rng) -> Dict[str, torch.Tensor]:
    """SpinNpzDataset / ThreeDPW samples are already crops with contract-named labels."""
    return complete_sample(raw, ctx)


_MEAN = torch.tensor(IMAGE_MEAN)[:, None, None]
_STD = torch.tensor(IMAGE_STD)[:, None, None]


def _first(raw: Dict[str, Any], key: str, people_key: str):
    if raw.get(key) is not None:
        return raw[key]
    if raw.get(people_key) is not None:
        return np.asarray(raw[people_key])[0]  # row 0 = the main person
    return None


def adapt_synthetic(raw: Dict[str, Any], ctx: BuildContext,
                    rng: np.random.Generator) -> Dict[str, torch.Tensor]:
    """A synthetic sample -> contract. Accepts the contract's names or the generator's raw
    ``people_*`` arrays (main person = row 0); ``image`` uint8 (H x W x 3 or 3 x H x W, RGB) or
    float in [0, 1] (3 x H x W, ``SyntheticShards``' default ``image_format="float"``); IUV at
    any resolution (resized, see module docs).
    Training adds colour jitter only (IUV/visibility forbid geometric changes)."""
    img = raw["image"]
    t = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img))
    if t.ndim == 3 and t.shape[-1] == 3 and t.shape[0] != 3:
        t = t.permute(2, 0, 1)
    unit = t.float() / 255.0 if not t.is_floating_point() else t.float()
    if ctx.train and ctx.augment is not None and ctx.augment.enabled:
        gains = torch.tensor(sample_params(ctx.augment, rng).gains, dtype=torch.float32)
        unit = (unit * gains[:, None, None]).clamp(0, 1)
    if unit.shape[-1] != ctx.crop_size or unit.shape[-2] != ctx.crop_size:
        unit = F.interpolate(unit[None], size=(ctx.crop_size,) * 2, mode="bilinear",
                             align_corners=False, antialias=True)[0]
    sample = {
        "image": (unit - _MEAN) / _STD,
        "iuv": raw.get("iuv"),
        "rel_rotmats": _first(raw, "rel_rotmats", "people_rel_rotmats"),
        "betas": _first(raw, "betas", "people_betas"),
        "joints3d": _first(raw, "joints3d", "people_joints"),
        "keypoints2d": _first(raw, "keypoints2d", "people_keypoints2d_norm"),
        "keypoints2d_conf": raw.get("keypoints2d_conf"),
        "visibility": _first(raw, "visibility", "people_visibility"),
        "kp_input": synthetic_keypoint_input(raw, _image_side(img), rng),
    }
    return complete_sample(sample, ctx)


#: The detector's errors as measured on synthetic renders (benchmarks/measure_keypoint_noise.py
#: on data/synthkp_val, 200 renders, GT boxes): error / box size median 0.064 for visible and
#: 0.067 for occluded points (p90 0.24), confidence 0.86 visible / 0.89 occluded (BlazePose's
#: visibility barely reflects occlusion), arm swaps 8% and leg swaps 12% of people, face
#: confidence 0.99 even when the head faces away. Part of that is BlazePose meeting renders (a
#: domain gap of its own) and 128 px crops; on camera images it is more precise. The training
#: noise sits between the model's defaults and these numbers.
def training_keypoint_noise():
    from hmr_ros.data.synthetic.keypoint_noise import KeypointNoiseParams

    return KeypointNoiseParams(sigma=0.03, p_outlier=0.06, outlier_sigma=0.15,
                               p_swap_arms=0.05, p_swap_legs=0.08, p_mirror=0.02,
                               conf_occluded=(4.0, 2.0), conf_face_hidden=(2.0, 3.0))


#: share of samples whose keypoint input is empty (confidence 0 everywhere): the model must
#: also work when no detector ran
P_NO_KEYPOINTS = 0.05


def _image_side(img) -> int:
    shape = tuple(img.shape)
    return int(shape[1] if len(shape) == 3 and shape[0] == 3 else shape[0])


def synthetic_keypoint_input(raw: Dict[str, Any], size: int, rng: np.random.Generator,
                             p_empty: float = P_NO_KEYPOINTS) -> Optional[np.ndarray]:
    """(17, 3) detector-like keypoints of the main person (crop-normalised x, y, confidence)
    from the render's clean COCO-17 points and their visibility, through the keypoint noise
    model; None when the sample has no COCO-17 points (older shards)."""
    if raw.get("people_coco17") is None or raw.get("people_coco17_vis") is None:
        return None
    from hmr_ros.data.synthetic.keypoint_noise import simulate_detections

    box = np.asarray(raw["people_bbox"], np.float64)[0]
    det, conf = simulate_detections(
        np.asarray(raw["people_coco17"])[0], np.asarray(raw["people_coco17_vis"])[0],
        float(max(box[2] - box[0], box[3] - box[1], 1.0)), rng, training_keypoint_noise(),
        face_front=(np.asarray(raw["people_face_front"])[0]
                    if raw.get("people_face_front") is not None else None),
        box=box, image_size=float(size))
    out = np.zeros((17, 3), np.float32)
    if rng.random() >= p_empty:
        out[:, :2] = (det - 0.5 * size) / (0.5 * size)
        out[:, 2] = conf
    return out


# --------------------------------------------------------------------------------------------
# Built-in dataset types
# --------------------------------------------------------------------------------------------


def _synthetic_attr(name: str):
    try:
        import hmr_ros.data.synthetic as synth

        return getattr(synth, name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"this dataset type needs hmr_ros.data.synthetic.{name}, which is not "
                          f"available here ({exc})") from exc


def _call(cls, where: str, *args, **kwargs):
    """Construct, turning a signature mismatch into a clear message."""
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc} (signature {inspect.signature(cls)})") from None
    except ValueError:  # no signature available
        pass
    return cls(*args, **kwargs)


class _GeneratorDataset(Dataset):
    """Map-style view of ``SyntheticGenerator``: ``len`` = ``size``, item ``i`` = sample ``i``."""

    def __init__(self, generator, size: int) -> None:
        self.generator, self.size = generator, int(size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        return self.generator.sample(int(index))


def _build_synthetic_stream(params: Dict[str, Any], ctx: BuildContext):
    """Samples ``0 .. size-1`` of the synthetic dataset ``(synth config, seed)``, generated on
    the fly. ``SyntheticStream`` is iterable-style; the trainer needs random access (to mix,
    shard and resume), which ``SyntheticGenerator`` gives: sample ``i`` is the same arrays
    either way (it draws from its own ``rng([seed, i])``)."""
    kwargs = {}
    if params.get("synth"):
        kwargs["config"] = _synthetic_attr("SynthConfig").from_dict(dict(params["synth"]))
    gen = _call(_synthetic_attr("SyntheticGenerator"), "synthetic_stream",
                seed=int(params.get("seed", 0)), **kwargs)
    return _GeneratorDataset(gen, int(params["size"]))


def _build_synthetic_shards(params: Dict[str, Any], ctx: BuildContext):
    return _call(_synthetic_attr("SyntheticShards"), "synthetic_shards", params["path"],
                 image_format="uint8")


def _build_spin(params: Dict[str, Any], ctx: BuildContext):
    from hmr_ros.data.formats import SpinNpzDataset

    extra = {k: params[k] for k in ("keypoint_layout", "bbox_rescale") if k in params}
    return SpinNpzDataset(params["npz"], params["img_dir"], ctx.crop_size,
                          augment=ctx.augment if ctx.train else None, seed=ctx.seed, **extra)


def _build_3dpw(params: Dict[str, Any], ctx: BuildContext):
    from hmr_ros.data.formats import ThreeDPWDataset

    extra = {k: params[k] for k in ("valid_only", "bbox_expand", "frame_step") if k in params}
    return ThreeDPWDataset(params["path"], params["image_dir"], crop_size=ctx.crop_size,
                           augment=ctx.augment if ctx.train else None, seed=ctx.seed, **extra)


register_dataset_type("synthetic_stream", _build_synthetic_stream, adapt_synthetic,
                      required=("size",), optional=("seed", "synth"))
register_dataset_type("synthetic_shards", _build_synthetic_shards, adapt_synthetic,
                      required=("path",))
register_dataset_type("spin_npz", _build_spin, adapt_real, required=("npz", "img_dir"),
                      optional=("keypoint_layout", "bbox_rescale"), seeded_keys=True)
register_dataset_type("3dpw", _build_3dpw, adapt_real, required=("path", "image_dir"),
                      optional=("valid_only", "bbox_expand", "frame_step"), seeded_keys=True)


# --------------------------------------------------------------------------------------------
# Mixture dataset and samplers
# --------------------------------------------------------------------------------------------


class MixtureDataset(Dataset):
    """Concatenation of adapted datasets, addressed by ``(global index, seed)`` keys."""

    def __init__(self, datasets: List[Any], kinds: List[DatasetType], ctx: BuildContext) -> None:
        for i, ds in enumerate(datasets):
            if isinstance(ds, IterableDataset) or not hasattr(ds, "__len__"):
                raise ValueError(f"dataset {i} is iterable-style; the trainer needs map-style "
                                 f"datasets (len + [index]) to mix, shard and resume them")
        self.datasets, self.kinds, self.ctx = list(datasets), list(kinds), ctx
        self.sizes = [len(d) for d in self.datasets]
        empty = [i for i, n in enumerate(self.sizes) if n == 0]
        if empty:
            raise ValueError(f"dataset(s) {empty} are empty")
        self.offsets = np.cumsum([0] + self.sizes)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key) -> Dict[str, torch.Tensor]:
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), 0
        d = int(np.searchsorted(self.offsets, index, side="right") - 1)
        local, kind = index - int(self.offsets[d]), self.kinds[d]
        raw = self.datasets[d][(local, seed) if kind.seeded_keys else local]
        sample = kind.adapt(raw, self.ctx, np.random.default_rng([self.ctx.seed, d, seed]))
        sample["dataset"] = torch.tensor(d, dtype=torch.int64)
        return sample


class WeightedMixtureSampler(Sampler):
    """Indices into a ``MixtureDataset`` with dataset probabilities ∝ ``weights``, sharded.

    Per epoch (``set_epoch``), ``epoch_size`` draws: the source of each draw is multinomial in
    the weights, and each source's samples come in a fresh shuffled order (cycled if drawn more
    often than it has samples). The stream is padded to a multiple of ``num_replicas`` and rank
    ``r`` takes every ``num_replicas``-th element from ``r``, like ``DistributedSampler``.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], epoch_size: int,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        self.sizes, self.weights = list(sizes), torch.tensor(list(weights), dtype=torch.float64)
        self.epoch_size, self.num_replicas, self.rank = int(epoch_size), num_replicas, rank
        self.seed, self.epoch = int(seed), 0
        self.num_samples = math.ceil(self.epoch_size / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        source = torch.multinomial(self.weights, self.epoch_size, replacement=True, generator=g)
        offsets = np.cumsum([0] + self.sizes)
        out = torch.empty(self.epoch_size, dtype=torch.int64)
        for d, n in enumerate(self.sizes):
            where = (source == d).nonzero()[:, 0]
            if len(where) == 0:
                continue
            reps = math.ceil(len(where) / n)
            order = torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])
            out[where] = order[: len(where)] + int(offsets[d])
        total = self.num_samples * self.num_replicas
        out = torch.cat([out, out[: total - len(out)]]) if total > len(out) else out
        return iter(out[self.rank:total:self.num_replicas].tolist())


class TrainSampler(Sampler):
    """Wraps an index sampler: yields ``(index, seed)`` keys, can start mid-epoch (resume).

    The seed of the sample at position ``p`` of epoch ``e`` on rank ``r`` is
    ``(e · 2^16 + r) · 2^32 + p``: unique per draw and independent of workers and restarts.
    """

    def __init__(self, inner: Sampler, rank: int = 0) -> None:
        self.inner, self.rank, self.epoch, self.start = inner, int(rank), 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.inner.set_epoch(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of the current epoch (one epoch only)."""
        self.start = int(start)

    def __len__(self) -> int:
        return max(len(self.inner) - self.start, 0)

    def __iter__(self):
        base = (self.epoch * 2**16 + self.rank) * 2**32
        start, self.start = self.start, 0
        for pos, index in enumerate(self.inner):
            if pos >= start:
                yield (int(index), base + pos)


class _SequentialKeys(Sampler):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return ((i, 0) for i in range(self.n))


def build_mixture(specs, ctx: BuildContext) -> MixtureDataset:
    """Build and adapt the datasets of ``data.train`` / ``data.val`` entries."""
    datasets, kinds = [], []
    for i, spec in enumerate(specs):
        kind = dataset_type(spec.type)
        try:
            datasets.append(kind.build(dict(spec.params), ctx))
        except (OSError, KeyError, ValueError, ImportError) as exc:
            raise type(exc)(f"dataset {i} ({spec.type}): {exc}") from exc
        kinds.append(kind)
    return MixtureDataset(datasets, kinds, ctx)


def train_sampler(mixture: MixtureDataset, weights: Sequence[float], epoch_size: Optional[int],
                  num_replicas: int, rank: int, seed: int) -> TrainSampler:
    if len(mixture.sizes) == 1 and epoch_size is None:
        inner = DistributedSampler(mixture, num_replicas=num_replicas, rank=rank, shuffle=True,
                                   seed=seed, drop_last=False)
    else:
        inner = WeightedMixtureSampler(mixture.sizes, weights, epoch_size or len(mixture),
                                       num_replicas, rank, seed)
    return TrainSampler(inner, rank)


def val_sampler(mixture: MixtureDataset) -> Sampler:
    return _SequentialKeys(len(mixture))
