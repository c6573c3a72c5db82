"""Finding people and their 2D keypoints in camera frames: BlazePose (MediaPipe 0.10.14,
Apache-2.0) converted to ONNX, decoded for many people, tracked between frames.

- :mod:`.convert`: regenerate the model directory from the public wheel (``hmr-ros detector
  fetch``), with parity checked against the TFLite interpreter and a provenance record;
- :mod:`.tflite_graph`: the TFLite-graph-to-PyTorch rebuild that conversion uses;
- :mod:`.decode`: anchors, weighted suppression, regions, landmark decoding (MediaPipe's numbers);
- :mod:`.estimator`: :class:`PoseKeypointDetector`, what the pipeline and the node use.
"""

from .convert import default_model_dir
from .estimator import DetectorParams, PersonKeypoints, PoseKeypointDetector

__all__ = ["DetectorParams", "PersonKeypoints", "PoseKeypointDetector", "default_model_dir"]
