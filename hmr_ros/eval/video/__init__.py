"""``hmr-ros eval-video``: the deployed path on real footage, scored against constant poses.

There is no 3D ground truth in real footage, so every number is relative: the model is scored
on the same people in the same run as **baselines** that keep everything the model predicted
except the articulation -- the same global orientation, shape and translation, with the 23
parent-relative joint rotations replaced by a constant pose:

- ``apose``: the rest pose with both arms turned 45 degrees down about the body's forward axis
  at the shoulder joints (upper arms 45 degrees below horizontal, in the frontal plane);
- ``tpose``: the rest pose itself (arms horizontal, legs straight);
- ``always_facing`` (front/back only): every person faces the camera.

Metrics (the footage and the runner are in :mod:`.run`, the definitions in :mod:`.metrics`):

- **PCK@0.2**: over the 12 COCO-17 body keypoints (shoulders, elbows, wrists, hips, knees,
  ankles) the keypoint model gives with confidence >= 0.5, the fraction whose projected mesh
  joint lies within 0.2 x torso size of it; torso size = distance from the mid-shoulder to the
  mid-hip of the detected keypoints (a person whose four torso points are not all confident is
  not counted). Mesh joints are the SMPL-layout joints mapped by name (``SMPL_FOR_COCO``); SMPL's
  hip joints sit higher and nearer the midline than COCO's hip points, uncorrected.
- **front/back agreement**: among people whose face landmarks settle the question
  (``PersonKeypoints.facing_camera()`` not None), the share whose mesh faces the camera as the
  landmarks say: the mesh faces the camera when its forward axis (body +z through the global
  orientation, camera frame) points towards the camera centre from the pelvis. A second
  reference, the keypoint model's own left/right (``shoulder_facing``: the person's left
  shoulder on the image right of the torso's up direction, shoulders not in profile), is
  reported beside it.
- **silhouette IoU**: the mesh's triangles rasterised with the frame's intrinsics vs a person
  mask inside the person's box grown by 10 %: on the static-camera video, background
  subtraction against the median of 100 frames (max RGB difference > 30, opened, closed, holes
  filled; only people whose grown box touches no other person's), and, on the video and the
  stills, BlazePose's own segmentation output (probability > 0.5) warped from the person's
  landmark region into the image.
- **jitter**: for tracked people (track id >= 0) in three consecutive frames, the mean of
  |p[t+1] - 2 p[t] + p[t-1]| / torso size[t] over the 12 body points the detector is confident
  about in all three frames: projected mesh joints of the model (and baselines) vs the
  detector's own keypoints (torso sizes per frame^2).
- **speed**: wall time of ``FramePipeline.process`` per frame (person detector + keypoint
  model + crops + regressor stages + kernels), per stage, first frame excluded (warm-up).
"""

from .metrics import (ARMS_DOWN_DEG, COCO_BODY, SMPL_FOR_COCO, acceleration_jitter,
                      baseline_rotmats, box_region, constant_pose, mask_iou, mesh_faces_camera,
                      pck_hits, shoulder_facing, silhouette_iou, torso_size)

__all__ = [
    "ARMS_DOWN_DEG",
    "COCO_BODY",
    "SMPL_FOR_COCO",
    "acceleration_jitter",
    "baseline_rotmats",
    "box_region",
    "constant_pose",
    "mask_iou",
    "mesh_faces_camera",
    "pck_hits",
    "shoulder_facing",
    "silhouette_iou",
    "torso_size",
]
