"""How far the keypoint detector (BlazePose) is from the synthetic ground truth: per visibility
state the error over the box size and the confidence, limb swaps, face confidence seen from
behind -- the numbers the training keypoint noise (hmr_ros.train.data.training_keypoint_noise) is
set from. Usage: python benchmarks/measure_keypoint_noise.py DATA_DIR [N]."""
import numpy as np, sys
from hmr_ros.data.synthetic import SyntheticShards
from hmr_ros.detect import PoseKeypointDetector, DetectorParams
ds = SyntheticShards(sys.argv[1])
det = PoseKeypointDetector(params=DetectorParams(track=False))
errs = {0: [], 1: [], 2: []}; confs = {0: [], 1: [], 2: []}; swaps_arm = swaps_leg = n_people = 0; found = 0
face_hidden_conf = []; face_seen_conf = []
N = min(len(ds), int(sys.argv[2]) if len(sys.argv) > 2 else 200)
for i in range(N):
    s = ds[i]
    img = s["image"].numpy() if hasattr(s["image"], "numpy") else np.asarray(s["image"])
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if img.shape[0] == 3: img = img.transpose(1, 2, 0)
    img = np.ascontiguousarray(img)
    box = np.asarray(s["people_bbox"][0], float)
    gt = np.asarray(s["people_coco17"][0], float) - 0.5  # +0.5 centres -> integer centres
    vis = np.asarray(s["people_coco17_vis"][0])
    ff = float(s["people_face_front"][0])
    size = max(box[2] - box[0], box[3] - box[1])
    [person] = det.keypoints_for_boxes(img, [box])
    n_people += 1
    if person is None: continue
    found += 1
    kp = person.coco17
    for k in range(17):
        e = np.linalg.norm(kp[k, :2] - gt[k]) / size
        errs[int(vis[k])].append(e); confs[int(vis[k])].append(kp[k, 2])
    for pairs, name in (([(5, 6), (7, 8), (9, 10)], "arm"), ([(11, 12), (13, 14), (15, 16)], "leg")):
        idx = [p for p in pairs if vis[p[0]] == 2 and vis[p[1]] == 2]
        if len(idx) >= 2:
            straight = sum(np.linalg.norm(kp[a, :2] - gt[a]) + np.linalg.norm(kp[b, :2] - gt[b]) for a, b in idx)
            swapped = sum(np.linalg.norm(kp[a, :2] - gt[b]) + np.linalg.norm(kp[b, :2] - gt[a]) for a, b in idx)
            if swapped < 0.7 * straight:
                if name == "arm": swaps_arm += 1
                else: swaps_leg += 1
    (face_hidden_conf if ff < 0 else face_seen_conf).append(kp[[0, 1, 2], 2].mean())
print(f"people {n_people}, landmarks kept {found}")
for st in (2, 1, 0):
    e = np.array(errs[st]); c = np.array(confs[st])
    if len(e):
        print(f"state {st}: n={len(e)} err/box median {np.median(e):.3f} p90 {np.percentile(e, 90):.3f} >0.15: {np.mean(e > 0.15):.3f}; conf mean {c.mean():.2f} median {np.median(c):.2f}")
print(f"arm swaps {swaps_arm}/{found}, leg swaps {swaps_leg}/{found}")
print(f"face conf: seen {np.mean(face_seen_conf):.2f} (n={len(face_seen_conf)}), hidden {np.mean(face_hidden_conf):.2f} (n={len(face_hidden_conf)})")
