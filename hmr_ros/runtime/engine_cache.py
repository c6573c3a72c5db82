"""TensorRT engines on disk: keyed by everything that makes an engine valid, reused, never
rebuilt silently on every start.

An engine is only valid for the exact ONNX graph, TensorRT version, GPU model, precision and
optimisation profile it was built with. :class:`EngineKey` holds those, and its
:meth:`~EngineKey.digest` (sha256 of canonical JSON) names the engine file. Next to each
``<digest>.engine`` a ``<digest>.json`` records the key, a label (``vishmr/stage_a``), the
engine's own sha256 and size, and when it was built; the cache treats engines as opaque bytes, so
everything here except :func:`build_engine` runs and is tested without TensorRT.

Policy (:func:`obtain_engine`):

* the key matches an intact entry → reuse it (log ``reusing engine …``);
* no entry, a *stale* one (same graph or same label, but another TensorRT version, GPU,
  precision or profile — e.g. a cache directory copied from another machine), or a *corrupt* one
  (metadata unreadable, hash mismatch, truncated file, or TensorRT refuses to deserialize it) →
  build, store and log one line saying why (``rebuild='auto'``), or raise :class:`EngineError`
  naming what differs (``rebuild='never'``: deployments that must not spend minutes building on
  the robot; build ahead of time with ``hmr-ros build-engine``);
* ``rebuild='always'`` builds regardless.

Stale entries are reported, not deleted: a cache directory may be shared by machines with
different GPUs (an NFS home), and their engines are valid there. A per-key file lock makes
concurrent starts wait for one build instead of racing two.

A TensorRT *timing cache* per (TensorRT version, GPU) lives in the same directory, so building a
second precision/profile or a re-exported graph reuses the kernel timings of the first build.

Precision. TensorRT 10.x: ``fp16`` sets ``BuilderFlag.FP16`` on the FP32 graph (weak typing).
TensorRT 11 removed weak typing: the network is strongly typed, so ``fp16`` first converts the
graph to FP16 with FP32 inputs/outputs (NVIDIA ModelOpt AutoCast, else onnxconverter-common) and
builds that. ``fp32`` clears TF32 so results stay comparable to ONNX Runtime at ~1e-4.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import EngineError

log = logging.getLogger("hmr_ros.runtime")

KEY_VERSION = 1  # bump when the key's canonical form changes (invalidates every cache)
PRECISIONS = ("fp16", "fp32")
REBUILD_POLICIES = ("auto", "never", "always")
ENGINE_SUFFIX = ".engine"
META_SUFFIX = ".json"
DEFAULT_OPT_BATCH = 1  # the single-person frame; pass opt_batch for crowds

TENSORRT_HINT = ("tensorrt is not installed: pip install tensorrt (needs an NVIDIA GPU and "
                 "driver); or use the onnxruntime backend (--backend onnxruntime)")

Shape = Tuple[int, ...]
ProfileEntry = Tuple[str, Shape, Shape, Shape]  # (input name, min, opt, max)


# --- the key ---------------------------------------------------------------------------------

def _cc(value) -> str:
    if isinstance(value, (tuple, list)):
        return ".".join(str(int(v)) for v in value)
    return str(value)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on. ``profile``: per input ``(name, min_shape,
    opt_shape, max_shape)``, stored sorted by name; ``compute_capability`` as ``"9.0"``."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: Tuple[ProfileEntry, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        object.__setattr__(self, "compute_capability", _cc(self.compute_capability))
        object.__setattr__(self, "tensorrt_version", str(self.tensorrt_version))
        entries = []
        for entry in self.profile:
            name, lo, opt, hi = entry
            lo, opt, hi = (tuple(int(d) for d in s) for s in (lo, opt, hi))
            if not (len(lo) == len(opt) == len(hi)) or any(
                    not a <= b <= c for a, b, c in zip(lo, opt, hi)):
                raise EngineError(f"profile for '{name}' needs min <= opt <= max per axis, got "
                                  f"{list(lo)} / {list(opt)} / {list(hi)}")
            entries.append((str(name), lo, opt, hi))
        names = [e[0] for e in entries]
        if len(set(names)) != len(names):
            raise EngineError(f"profile lists an input twice: {names}")
        object.__setattr__(self, "profile", tuple(sorted(entries)))

    # canonical form
    def to_dict(self) -> dict:
        return {"key_version": KEY_VERSION, "onnx_sha256": self.onnx_sha256,
                "tensorrt_version": self.tensorrt_version, "gpu_name": self.gpu_name,
                "compute_capability": self.compute_capability, "precision": self.precision,
                "profile": [{"name": n, "min": list(a), "opt": list(b), "max": list(c)}
                            for n, a, b, c in self.profile]}

    @classmethod
    def from_dict(cls, raw: dict) -> "EngineKey":
        if raw.get("key_version") != KEY_VERSION:
            raise ValueError(f"key_version {raw.get('key_version')} is not {KEY_VERSION}")
        return cls(onnx_sha256=raw["onnx_sha256"], tensorrt_version=raw["tensorrt_version"],
                   gpu_name=raw["gpu_name"], compute_capability=raw["compute_capability"],
                   precision=raw["precision"],
                   profile=tuple((p["name"], p["min"], p["opt"], p["max"])
                                 for p in raw["profile"]))

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True)

    def digest(self) -> str:
        """sha256 hex of :meth:`canonical_json`: the same on every machine and process."""
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()

    def summary(self) -> str:
        batches = sorted({(lo[0], hi[0]) for _, lo, _, hi in self.profile if lo})
        span = ", ".join(f"batch {a}..{b}" for a, b in batches) or "static shapes"
        return (f"{self.precision}, {span}, TensorRT {self.tensorrt_version}, {self.gpu_name} "
                f"(sm {self.compute_capability})")

    def changes_from(self, old: "EngineKey") -> List[str]:
        """What differs going from ``old`` (a cached engine's key) to this key, one reason per
        difference, e.g. ``"TensorRT 10.0 → 10.3"``; empty when the keys are equal."""
        reasons = []
        if old.onnx_sha256 != self.onnx_sha256:
            reasons.append(f"ONNX graph {old.onnx_sha256[:12]}… → {self.onnx_sha256[:12]}… "
                           "(re-exported)")
        if old.tensorrt_version != self.tensorrt_version:
            reasons.append(f"TensorRT {old.tensorrt_version} → {self.tensorrt_version}")
        if old.gpu_name != self.gpu_name:
            reasons.append(f"GPU {old.gpu_name} → {self.gpu_name}")
        if old.compute_capability != self.compute_capability:
            reasons.append(f"compute capability {old.compute_capability} → "
                           f"{self.compute_capability}")
        if old.precision != self.precision:
            reasons.append(f"precision {old.precision} → {self.precision}")
        reasons.extend(_profile_changes(old.profile, self.profile))
        return reasons


def _profile_changes(old: Sequence[ProfileEntry], new: Sequence[ProfileEntry]) -> List[str]:
    before = {e[0]: e[1:] for e in old}
    after = {e[0]: e[1:] for e in new}
    reasons = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            reasons.append(f"profile input '{name}' removed")
        elif name not in before:
            reasons.append(f"profile input '{name}' added")
        else:
            for which, a, b in zip(("min", "opt", "max"), before[name], after[name]):
                if a == b:
                    continue
                if len(a) == len(b) and a[1:] == b[1:]:
                    reasons.append(f"profile {name}: {which} batch {a[0]} → {b[0]}")
                else:
                    reasons.append(f"profile {name}: {which} shape {list(a)} → {list(b)}")
    return reasons


def make_profile(inputs: Iterable, max_batch: int, opt_batch: Optional[int] = None,
                 min_batch: int = 1) -> Tuple[ProfileEntry, ...]:
    """The optimisation profile of a stage from its manifest input specs: the ``"batch"`` axis
    spans ``min_batch..max_batch`` (optimised for ``opt_batch``), every other axis is fixed."""
    opt_batch = min(DEFAULT_OPT_BATCH, max_batch) if opt_batch is None else opt_batch
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise EngineError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, "
                          f"{opt_batch}, {max_batch}")
    entries = []
    for spec in inputs:
        name = spec.name if hasattr(spec, "name") else spec[0]
        shape = spec.shape if hasattr(spec, "shape") else spec[1]
        dims = []
        for d in shape:
            if d == "batch":
                dims.append(None)
            elif isinstance(d, int):
                dims.append(d)
            else:
                raise EngineError(f"input '{name}' has dynamic axis {d!r}: only 'batch' can be "
                                  "covered by the engine profile")

        def fill(b):
            return tuple(b if d is None else d for d in dims)

        entries.append((name, fill(min_batch), fill(opt_batch), fill(max_batch)))
    return tuple(entries)


def make_key(onnx_sha256: str, inputs: Iterable, *, precision: str, max_batch: int,
             tensorrt_version: str, gpu_name: str, compute_capability,
             opt_batch: Optional[int] = None) -> EngineKey:
    return EngineKey(onnx_sha256=onnx_sha256, tensorrt_version=tensorrt_version,
                     gpu_name=gpu_name, compute_capability=compute_capability,
                     precision=precision,
                     profile=make_profile(inputs, max_batch, opt_batch))


# --- the cache -------------------------------------------------------------------------------

class EntryStatus(NamedTuple):
    status: str  # "ok" | "missing" | "corrupt"
    path: Optional[Path]
    reason: str = ""


class StaleEngine(NamedTuple):
    path: Path
    key: Optional[EngineKey]
    label: str
    reasons: Tuple[str, ...]


def default_cache_dir() -> Path:
    """``$HMR_ROS_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/hmr_ros/engines`` (``~/.cache/…``)."""
    env = os.environ.get("HMR_ROS_ENGINE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmr_ros" / "engines"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class EngineCache:
    """A directory of ``<digest>.engine`` + ``<digest>.json`` pairs and timing caches."""

    def __init__(self, cache_dir: Union[str, Path, None] = None):
        self.directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"EngineCache({str(self.directory)!r})"

    def engine_path(self, key: EngineKey) -> Path:
        return self.directory / f"{key.digest()}{ENGINE_SUFFIX}"

    def metadata_path(self, key: EngineKey) -> Path:
        return self.directory / f"{key.digest()}{META_SUFFIX}"

    def timing_cache_path(self, tensorrt_version: str, gpu_name: str,
                          compute_capability) -> Path:
        """One timing cache per (TensorRT version, GPU): timings do not transfer across either."""
        return self.directory / (f"timing-trt{_slug(tensorrt_version)}-{_slug(gpu_name)}-"
                                 f"sm{_cc(compute_capability).replace('.', '')}.cache")

    # reads
    def check(self, key: EngineKey) -> EntryStatus:
        """Whether an intact engine for ``key`` is on disk, and why not."""
        engine, meta = self.engine_path(key), self.metadata_path(key)
        if not meta.exists():
            if engine.exists():
                return EntryStatus("corrupt", engine, "it has no metadata file "
                                   f"{meta.name} (an interrupted build?)")
            return EntryStatus("missing", None)
        try:
            raw = json.loads(meta.read_text())
            stored = EngineKey.from_dict(raw["key"])
            size, digest = int(raw["engine_bytes"]), str(raw["engine_sha256"])
        except (OSError, ValueError, KeyError, TypeError, EngineError) as exc:
            return EntryStatus("corrupt", meta, f"metadata {meta.name} is unreadable "
                               f"({type(exc).__name__}: {exc})")
        if stored != key:
            return EntryStatus("corrupt", meta, f"metadata {meta.name} describes another "
                               "engine: " + "; ".join(key.changes_from(stored)))
        if not engine.exists():
            return EntryStatus("corrupt", meta, f"engine file {engine.name} is missing")
        actual = engine.stat().st_size
        if actual != size:
            return EntryStatus("corrupt", engine, f"engine file has {actual} bytes, metadata "
                               f"says {size} (truncated or replaced)")
        if _sha256_file(engine) != digest:
            return EntryStatus("corrupt", engine, "engine file's sha256 does not match its "
                               "metadata (modified or damaged)")
        return EntryStatus("ok", engine)

    def lookup(self, key: EngineKey) -> Optional[Path]:
        """The engine file for ``key`` when present and intact; None otherwise."""
        status = self.check(key)
        return status.path if status.status == "ok" else None

    def entries(self) -> List[Tuple[Path, Optional[EngineKey], dict]]:
        """``(metadata path, key or None when unreadable, raw metadata)`` of every entry."""
        out = []
        if not self.directory.is_dir():
            return out
        for meta in sorted(self.directory.glob(f"*{META_SUFFIX}")):
            try:
                raw = json.loads(meta.read_text())
                out.append((meta, EngineKey.from_dict(raw["key"]), raw))
            except (OSError, ValueError, KeyError, TypeError, EngineError) as exc:
                log.debug("engine cache: unreadable metadata %s: %s", meta, exc)
                out.append((meta, None, {}))
        return out

    def find_stale(self, key: EngineKey, label: Optional[str] = None) -> List[StaleEngine]:
        """Entries for the same ONNX graph (``key.onnx_sha256``) — or, with ``label``, for the
        same stage of an earlier export — that ``key`` cannot use, with one reason per
        difference (``"GPU NVIDIA A100 → NVIDIA H200"``)."""
        want = key.digest()
        stale = []
        for meta, other, raw in self.entries():
            if other is None or other.digest() == want:
                continue
            same_label = label is not None and raw.get("label") == label
            if other.onnx_sha256 == key.onnx_sha256 or same_label:
                stale.append(StaleEngine(meta.with_suffix(ENGINE_SUFFIX), other,
                                         str(raw.get("label", "")),
                                         tuple(key.changes_from(other))))
        return stale

    # writes
    def store(self, key: EngineKey, engine_bytes: bytes, label: str = "",
              extra: Optional[dict] = None) -> Path:
        """Writes the engine, then its metadata (both atomically: a crash leaves no entry that
        :meth:`check` calls intact). Returns the engine path."""
        data = bytes(engine_bytes)
        if not data:
            raise EngineError(f"refusing to cache an empty engine for {label or key.digest()}")
        self.directory.mkdir(parents=True, exist_ok=True)
        engine = self.engine_path(key)
        _atomic_write(engine, data)
        meta = {"format": 1, "label": label, "digest": key.digest(), "key": key.to_dict(),
                "engine_file": engine.name, "engine_bytes": len(data),
                "engine_sha256": hashlib.sha256(data).hexdigest(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
        _atomic_write(self.metadata_path(key), (json.dumps(meta, indent=2) + "\n").encode())
        return engine

    def remove(self, key: EngineKey) -> None:
        for path in (self.metadata_path(key), self.engine_path(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.contextmanager
    def lock(self, key: EngineKey):
        """Exclusive per-key lock across processes (``flock``; a no-op where unavailable)."""
        try:
            import fcntl
        except ImportError:  # not POSIX
            yield
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / ".locks" / f"{key.digest()}.lock"
        path.parent.mkdir(exist_ok=True)
        with open(path, "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process building engine %s", path.stem[:12])
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the policy ------------------------------------------------------------------------------

class Obtained(NamedTuple):
    engine: object  # what ``deserialize`` returned, or the bytes without one
    path: Path
    built: bool


def obtain_engine(cache: EngineCache, key: EngineKey, build: Callable[[], bytes], *,
                  deserialize: Optional[Callable[[bytes], object]] = None,
                  rebuild: str = "auto", label: str = "") -> Obtained:
    """Reuse, build or refuse an engine for ``key`` under the ``rebuild`` policy (module doc).

    ``build()`` returns serialized engine bytes; ``deserialize(bytes)`` returns an engine, or
    None / raises when the bytes are not loadable (TensorRT's runtime returns None), which counts
    as a corrupt entry.
    """
    if rebuild not in REBUILD_POLICIES:
        raise EngineError(f"rebuild must be one of {', '.join(REBUILD_POLICIES)}, got "
                          f"{rebuild!r}")
    label = label or key.digest()[:12]

    def load(data: bytes):
        if deserialize is None:
            return data, ""
        try:
            engine = deserialize(data)
        except Exception as exc:  # TensorRT raises on some corruptions, returns None on others
            return None, f"{type(exc).__name__}: {exc}"
        return engine, ("" if engine is not None else "TensorRT could not deserialize it")

    with cache.lock(key):
        stale: List[StaleEngine] = []
        if rebuild == "always":
            reason, level = "rebuild='always'", logging.INFO
        else:
            status = cache.check(key)
            if status.status == "ok":
                engine, why = load(status.path.read_bytes())
                if engine is not None:
                    log.info("reusing engine %s for %s (%s)", status.path, label, key.summary())
                    return Obtained(engine, status.path, False)
                reason = f"cached engine {status.path} is corrupt: {why}"
                level = logging.WARNING
            elif status.status == "corrupt":
                reason = f"cached engine {status.path} is corrupt: {status.reason}"
                level = logging.WARNING
            else:
                stale = cache.find_stale(key, label=label)
                if stale:
                    reason = "cached engines do not match this machine/model: " + "; ".join(
                        f"{s.path.name[:12]}… ({', '.join(s.reasons)})" for s in stale)
                    level = logging.WARNING
                else:
                    reason = f"no engine cached in {cache.directory}"
                    level = logging.INFO
            if rebuild == "never":
                max_batch = max((hi[0] for _, _, _, hi in key.profile if hi), default=1)
                raise EngineError(
                    f"TensorRT engine for {label} ({key.summary()}): {reason}; rebuild='never' "
                    "forbids building here. Build it ahead of time on this machine: hmr-ros "
                    f"build-engine --model-dir DIR --precision {key.precision} --max-batch "
                    f"{max_batch} --cache-dir {cache.directory}, or allow rebuild='auto'")
        log.log(level, "building TensorRT engine for %s (%s): %s", label, key.summary(), reason)
        t0 = time.perf_counter()
        data = bytes(build())
        path = cache.store(key, data, label=label)
        engine, why = load(data)
        if engine is None:
            cache.remove(key)
            raise EngineError(f"the engine just built for {label} does not deserialize ({why}): "
                              "TensorRT installation mismatch between builder and runtime?")
        log.info("built engine %s for %s in %.1f s (%d MiB)", path, label,
                 time.perf_counter() - t0, len(data) >> 20)
        if stale:
            log.info("stale engines kept (other machines may use them): %s",
                     ", ".join(str(s.path) for s in stale))
        return Obtained(engine, path, True)


# --- TensorRT --------------------------------------------------------------------------------

def import_tensorrt():
    """The ``tensorrt`` module, or :class:`EngineError` with how to install it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(f"{TENSORRT_HINT} ({exc})") from exc
    return trt


_TRT_LOGGER = None


def trt_logger(trt=None):
    """The process's one ``trt.Logger`` (WARNING): TensorRT warns when builders and runtimes
    are given different loggers."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        trt = trt or import_tensorrt()
        _TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
    return _TRT_LOGGER


def tensorrt_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def tensorrt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError as exc:
        raise EngineError(f"cannot read the TensorRT version {version!r}") from exc


def machine_key(onnx_sha256: str, inputs: Iterable, *, precision: str, max_batch: int,
                opt_batch: Optional[int] = None, device: int = 0) -> EngineKey:
    """The key for this machine: installed TensorRT, GPU ``device``."""
    from .cuda_context import device_info

    trt = import_tensorrt()
    gpu, cc = device_info(device)
    return make_key(onnx_sha256, inputs, precision=precision, max_batch=max_batch,
                    opt_batch=opt_batch, tensorrt_version=trt.__version__, gpu_name=gpu,
                    compute_capability=cc)


def convert_onnx_fp16(src: Union[str, Path], dst: Union[str, Path]) -> Path:
    """FP16 copy of an FP32 graph keeping FP32 inputs/outputs, for strongly typed builds
    (TensorRT 11). NVIDIA ModelOpt AutoCast (the documented path), else onnxconverter-common."""
    import onnx

    src, dst = Path(src), Path(dst)
    try:
        from modelopt.onnx import autocast
    except ImportError:
        autocast = None
    if autocast is not None:
        model = autocast.convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16",
                                                    keep_io_types=True)
    else:
        try:
            from onnxconverter_common import float16
        except ImportError as exc:
            raise EngineError(
                "TensorRT 11 builds FP16 engines from an FP16 graph (strong typing) and neither "
                "converter is installed: pip install nvidia-modelopt[onnx] (or "
                "onnxconverter-common); or build with --precision fp32") from exc
        model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def build_engine(onnx_path: Union[str, Path], key: EngineKey, *,
                 timing_cache: Union[str, Path, None] = None,
                 workspace_bytes: Optional[int] = None, verbose: bool = False) -> bytes:
    """Serialized engine for ``onnx_path`` as described by ``key`` (TensorRT 10.x or 11.x).

    Needs the CUDA context of the target GPU current (``with PrimaryContext(device):``).
    ``timing_cache`` is read if present and written back after the build.
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if trt.__version__ != key.tensorrt_version:
        raise EngineError(f"key is for TensorRT {key.tensorrt_version}, installed is "
                          f"{trt.__version__}")
    logger = trt_logger(trt)
    if verbose:
        logger.min_severity = trt.Logger.VERBOSE
    try:
        return _build(trt, logger, onnx_path, key, timing_cache, workspace_bytes)
    finally:
        logger.min_severity = trt.Logger.WARNING


def _build(trt, logger, onnx_path: Path, key: EngineKey, timing_cache, workspace_bytes) -> bytes:
    strongly_typed = tensorrt_major(trt.__version__) >= 11
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:  # required (and the default) in 11.x; the flag is accepted there
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is not None:
            flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory(prefix="hmr_ros_trt_") as tmp:
        source = onnx_path
        if strongly_typed and key.precision == "fp16":
            source = convert_onnx_fp16(onnx_path, Path(tmp) / "fp16.onnx")
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"{onnx_path}: TensorRT {trt.__version__}'s ONNX parser failed: "
                              f"{errors or 'no details'}")
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if not strongly_typed:
        if key.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
    elif key.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)

    profile = builder.create_optimization_profile()
    by_name = {name: (lo, opt, hi) for name, lo, opt, hi in key.profile}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name not in by_name:
            raise EngineError(f"{onnx_path}: graph input '{tensor.name}' has no profile entry "
                              f"(profile covers {sorted(by_name)})")
        lo, opt, hi = by_name.pop(tensor.name)
        if len(tuple(tensor.shape)) != len(lo):
            raise EngineError(f"{onnx_path}: input '{tensor.name}' has rank "
                              f"{len(tuple(tensor.shape))}, profile {list(lo)}")
        profile.set_shape(tensor.name, lo, opt, hi)
    if by_name:
        raise EngineError(f"{onnx_path}: profile names inputs the graph lacks: {sorted(by_name)}")
    config.add_optimization_profile(profile)

    timing_path = Path(timing_cache) if timing_cache is not None else None
    blob = b""
    if timing_path is not None and timing_path.is_file():
        blob = timing_path.read_bytes()
    try:
        cache = config.create_timing_cache(blob)
    except Exception as exc:  # a damaged file: TensorRT raises or returns None
        log.debug("timing cache %s: %s", timing_path, exc)
        cache = None
    if cache is None and blob:
        log.warning("timing cache %s is unreadable; starting a new one", timing_path)
        cache = config.create_timing_cache(b"")
    if cache is not None:
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} failed to build the engine "
                          "(see the TensorRT log above; rerun with verbose=True)")
    if timing_path is not None and cache is not None:
        try:
            timing_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(timing_path, bytes(config.get_timing_cache().serialize()))
        except OSError as exc:
            log.warning("could not save timing cache %s: %s", timing_path, exc)
    return bytes(serialized)


# --- ahead-of-time builder (``hmr-ros build-engine``) ----------------------------------------

def build_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True,
                        help="exported model directory (manifest.json + stage graphs)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch (persons)")
    parser.add_argument("--opt-batch", type=int, default=None,
                        help=f"batch the kernels are tuned for (default {DEFAULT_OPT_BATCH})")
    parser.add_argument("--cache-dir", default=None,
                        help="engine cache (default $HMR_ROS_ENGINE_CACHE, else "
                             "~/.cache/hmr_ros/engines)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--stage", action="append", default=None,
                        help="build only this stage (repeatable; default: all)")
    parser.add_argument("--rebuild", choices=("auto", "always"), default="auto",
                        help="auto: reuse a matching engine; always: build anew")
    parser.add_argument("--workspace-gib", type=float, default=None,
                        help="builder workspace limit in GiB (default: TensorRT's)")


def build_engine_main(argv: Optional[Sequence[str]] = None) -> int:
    """``hmr-ros build-engine``: build (or confirm) the engines of every stage now, so the node
    starts without building. Exit status 0 on success, 1 on any error (printed to stderr)."""
    parser = argparse.ArgumentParser(
        prog="hmr-ros build-engine",
        description="Build the TensorRT engines of an exported model ahead of time.")
    build_engine_arguments(parser)
    return run_build_engine(parser.parse_args(argv))


def run_build_engine(args: argparse.Namespace) -> int:
    """The command behind ``build_engine_main``, for the package CLI table."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = build_engines(args.model_dir, precision=args.precision,
                                max_batch=args.max_batch, opt_batch=args.opt_batch,
                                cache_dir=args.cache_dir, device=args.device,
                                stages=args.stage, rebuild=args.rebuild,
                                workspace_bytes=(int(args.workspace_gib * (1 << 30))
                                                 if args.workspace_gib else None))
    except EngineError as exc:
        print(f"hmr-ros build-engine: error: {exc}", file=sys.stderr)
        return 1
    for stage, obtained in results.items():
        print(f"{stage}: {'built' if obtained.built else 'up to date'} {obtained.path}")
    return 0


def build_engines(model_dir: Union[str, Path], *, precision: str = "fp16", max_batch: int = 8,
                  opt_batch: Optional[int] = None, cache_dir=None, device: int = 0,
                  stages: Optional[Sequence[str]] = None, rebuild: str = "auto",
                  workspace_bytes: Optional[int] = None) -> dict:
    """Engines for the stages of ``model_dir`` on this machine: ``{stage: Obtained}`` (each
    engine is deserialized once to prove it loads, then released: ``Obtained.engine`` is None)."""
    from hmr_ros.export.errors import ExportError
    from hmr_ros.export.manifest import Manifest

    from .cuda_context import PrimaryContext, gpu_count

    import_tensorrt()  # TensorRT and a GPU first: on a CPU machine that is the answer
    if gpu_count() == 0:
        raise EngineError("no CUDA GPU is visible: TensorRT engines are built on the GPU that "
                          "will run them (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    try:
        manifest = Manifest.load(model_dir)
    except ExportError as exc:
        raise EngineError(str(exc)) from exc
    names = list(stages) if stages else list(manifest.stages)
    unknown = [s for s in names if s not in manifest.stages]
    if unknown:
        raise EngineError(f"{model_dir}: no stage {unknown} (has {sorted(manifest.stages)})")
    trt = import_tensorrt()
    cache = EngineCache(cache_dir)
    ctx = PrimaryContext(device)
    results = {}
    try:
        with ctx:
            runtime = trt.Runtime(trt_logger(trt))
            for name in names:
                spec = manifest.stages[name]
                key = machine_key(spec.sha256, spec.inputs, precision=precision,
                                  max_batch=max_batch, opt_batch=opt_batch, device=device)
                onnx_path = manifest.stage_path(model_dir, name)
                timing = cache.timing_cache_path(key.tensorrt_version, key.gpu_name,
                                                 key.compute_capability)
                obtained = obtain_engine(
                    cache, key, lambda p=onnx_path, k=key, t=timing: build_engine(
                        p, k, timing_cache=t, workspace_bytes=workspace_bytes),
                    deserialize=runtime.deserialize_cuda_engine,  # proves it loads here
                    rebuild=rebuild, label=f"{manifest.model}/{name}")
                results[name] = obtained._replace(engine=None)  # free it inside the context
                del obtained
            del runtime
    finally:
        ctx.close()
    return results
