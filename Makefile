# hmr_ros: `make test` sets up a virtual environment and runs the test suite.
# CPU-only PyTorch: torch==2.13.0 is installed first, pinned, so nothing pulls CUDA wheels.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.hmr_ros-installed

.PHONY: test demo demo-images eval-footage install build bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Reinstall when the build inputs change (setup.py, kernels).
$(STAMP): $(PY) setup.py $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h')
	$(PIP) install torch==2.13.0
	$(PIP) install "pybind11>=2.12" "setuptools>=68" wheel
	$(PIP) install --no-build-isolation -e ".[test,train]"
	# the person detector: MediaPipe 0.10.14's BlazePose, downloaded and converted to ONNX
	# (cached under ~/.cache/hmr_ros; parity with TFLite checked before it is written)
	$(VENV)/bin/hmr-ros detector fetch
	touch $(STAMP)

install: $(STAMP)

build: $(STAMP)
	$(PY) setup.py build_ext --inplace

test: $(STAMP)
	$(PY) -m pytest -q

# The main job on the embedded default, as a real ROS 2 system on loopback (built-in transport,
# separate processes): `hmr-ros play` of the sample bag (generated on first use: people walking
# past a pillar, with ground truth) -> `hmr-ros node` (bundled light VisHMR) -> `hmr-ros record`;
# then an overlay video and frames in / processed / dropped, persons, FPS, latency p50/p95 and
# MPJPE / PA-MPJPE / PVE against the ground truth. Writes out/demo/.
demo: $(STAMP)
	$(PY) -m hmr_ros.apps.demo_ros --out out/demo

# The image-file tool on the shipped sample images (overlays, meshes, JSON in out/demo_images).
demo-images: $(STAMP)
	$(PY) -m hmr_ros.cli infer models/samples --out out/demo_images \
		--boxes models/samples/boxes.json --gt models/samples/gt.npz

# The bundled model on real footage (OpenCV's vtest.avi and three stills, fetched from Debian's
# opencv-doc into ~/.cache/hmr_ros/footage, never committed): PCK against the keypoint model,
# front/back, silhouette IoU, jitter and FPS against constant-pose baselines; out/eval_video.
eval-footage: $(STAMP)
	$(VENV)/bin/hmr-ros footage fetch
	$(VENV)/bin/hmr-ros eval-video --model-dir models/vishmr_kp_light --frames 300 --threads 2

bench: $(STAMP)
	$(PY) benchmarks/bench_kernels.py
	$(PY) benchmarks/bench_vishmr_ort.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_detect_pipeline.py
	$(PY) benchmarks/bench_transport.py

clean:
	rm -rf build *.egg-info hmr_ros/_C*.so
