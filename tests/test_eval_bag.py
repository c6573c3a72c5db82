"""``hmr-ros eval``: bag replay through the node's pipeline, matching and metrics."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hmr_ros import cli  # noqa: E402
from hmr_ros.bag import BagReader  # noqa: E402
from hmr_ros.bag.sample import make_sample_bag  # noqa: E402
from hmr_ros.eval import bag_eval  # noqa: E402
from hmr_ros.eval.bag_eval import (DEFAULT_TOPICS, Accumulator, GroundTruthPerson,  # noqa: E402
                                   PredictedPerson, match_persons, occlusion_bin, score_frame)
from hmr_ros.runtime import FrameResult, PersonResult  # noqa: E402

SUMMARY_KEYS = {"frames", "gt_persons", "pred_persons", "matched", "misses", "false_positives",
                "mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "kp2d_px", "visibility_accuracy",
                "visibility_accuracy_per_part", "visibility_calibration"}


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_bags")
    out = {storage: make_sample_bag(root / f"seq_{storage}", seconds=1, fps=5, people=2,
                                    size=160, storage=storage)
           for storage in ("sqlite3", "mcap")}
    out["png"] = make_sample_bag(root / "seq_png", seconds=1, fps=5, people=2, size=160,
                                  storage="mcap", compressed="png")
    corrupt = root / "corrupt.mcap"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    out["corrupt"] = corrupt
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from hmr_ros.export import export_vishmr
    from tiny_vishmr import tiny_vishmr

    out = tmp_path_factory.mktemp("eval_model") / "onnx"
    export_vishmr(tiny_vishmr(), out)
    return out


def _skeleton(rng, n=24):
    return rng.normal(0.0, 0.3, (n, 3)) + np.array([0.0, 0.0, 3.0])


def _person(cls, joints, box, vertices=None, kp=None, vis=None):
    return cls(np.asarray(box, float), np.asarray(joints, float),
               None if vertices is None else np.asarray(vertices, float), kp, vis)


# -- metric and matching functions on constructed arrays -----------------------------------------


def test_shift_of_non_root_joints_gives_exactly_that_mpjpe():
    rng = np.random.default_rng(1)
    gt_j = _skeleton(rng)
    d = np.array([0.03, -0.04, 0.0])  # |d| = 50 mm
    pred_j = gt_j.copy()
    pred_j[1:] += d  # the pelvis stays: after root alignment 23 of 24 joints are off by |d|
    verts = rng.normal(0.0, 0.3, (50, 3)) + 3.0
    g = _person(GroundTruthPerson, gt_j, [0, 0, 10, 20], verts)
    p = _person(PredictedPerson, pred_j, [0, 0, 10, 20], verts + d)
    err = bag_eval.person_errors(p, g)
    expected = 1000.0 * np.linalg.norm(d) * 23 / 24  # computed here, independently
    assert err["mpjpe_mm"] == pytest.approx(expected, abs=1e-9)
    assert err["mpjpe_mm"] == pytest.approx(47.916666666666664, abs=1e-9)
    # every vertex is off by d, the pelvis is not: PVE is exactly |d|
    assert err["pve_mm"] == pytest.approx(50.0, abs=1e-9)
    # a whole-body shift is no error at all after root alignment
    err = bag_eval.person_errors(_person(PredictedPerson, gt_j + d, [0, 0, 10, 20]), g)
    assert err["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)


def test_similarity_transform_gives_zero_pa_mpjpe():
    rng = np.random.default_rng(2)
    gt_j = _skeleton(rng)
    a = 0.7
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    pred_j = 1.3 * gt_j @ rot.T + np.array([0.2, -0.1, 0.5])
    err = bag_eval.person_errors(_person(PredictedPerson, pred_j, [0, 0, 1, 1]),
                                 _person(GroundTruthPerson, gt_j, [0, 0, 1, 1]))
    assert err["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-6)
    # the same pose rotated is far off before alignment
    root_rel = lambda j: j - j[0]  # noqa: E731
    expected = 1000.0 * np.linalg.norm(root_rel(pred_j) - root_rel(gt_j), axis=-1).mean()
    assert err["mpjpe_mm"] == pytest.approx(expected, rel=1e-12)
    assert err["mpjpe_mm"] > 100.0


def test_hungarian_matching_counts_misses_and_false_positives():
    rng = np.random.default_rng(3)
    gts = [_person(GroundTruthPerson, _skeleton(rng), b)
           for b in ([0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110])]
    # predictions in another order; one far from everybody (false positive); gt 2 missed
    preds = [_person(PredictedPerson, gts[1].joints, [21, 0, 31, 10]),
             _person(PredictedPerson, gts[0].joints, [0, 1, 10, 11]),
             _person(PredictedPerson, gts[0].joints, [50, 50, 60, 60])]
    pairs, fp, missed = match_persons(preds, gts)
    assert sorted(pairs) == [(0, 1), (1, 0)]
    assert fp == [2] and missed == [2]
    # a greedy matcher would give pred 0 gt 0 (IoU 1) and leave pred 1 with a poor overlap;
    # Hungarian maximises the total overlap
    gts2 = [_person(GroundTruthPerson, _skeleton(rng), b) for b in ([0, 0, 10, 10],
                                                                    [4, 0, 14, 10])]
    preds2 = [_person(PredictedPerson, gts2[0].joints, [2, 0, 12, 10]),
              _person(PredictedPerson, gts2[1].joints, [0, 0, 10, 10])]
    iou = bag_eval._box_iou(np.stack([p.box for p in preds2]), np.stack([g.box for g in gts2]))
    pairs, _, _ = match_persons(preds2, gts2, min_iou=0.1)
    best = max([[(0, 0), (1, 1)], [(0, 1), (1, 0)]],
               key=lambda ps: sum(iou[i, j] for i, j in ps))
    assert sorted(pairs) == sorted(best)


def test_joint_distance_breaks_box_ties():
    rng = np.random.default_rng(4)
    box = [0, 0, 10, 20]
    gts = [_person(GroundTruthPerson, _skeleton(rng), box) for _ in range(2)]
    preds = [_person(PredictedPerson, gts[1].joints + 0.01, box),
             _person(PredictedPerson, gts[0].joints - 0.01, box)]
    pairs, fp, missed = match_persons(preds, gts)
    assert sorted(pairs) == [(0, 1), (1, 0)] and not fp and not missed
    preds.reverse()
    assert sorted(match_persons(preds, gts)[0]) == [(0, 0), (1, 1)]


def test_occlusion_bins_and_accumulation():
    assert occlusion_bin(0.0) == "0-0.1"
    assert occlusion_bin(0.1) == "0.1-0.3"
    assert occlusion_bin(0.49) == "0.3-0.5"
    assert occlusion_bin(1.0) == "0.5-1"
    assert occlusion_bin(None) is None
    rng = np.random.default_rng(5)
    vis = np.ones(24)
    vis[:12] = 0.05  # half the parts hidden (under 10% seen): bin 0.5-1
    g = GroundTruthPerson(np.array([0, 0, 10, 10.0]), _skeleton(rng), None, None, vis)
    assert g.occlusion == 0.5
    omega = vis.copy()
    omega[0] = 0.9  # one part of 24 wrong
    p = PredictedPerson(g.box, g.joints, None, None, omega)
    acc, bins = Accumulator(), bag_eval._bins()
    score_frame([p], [g], [acc], bins)
    s = acc.summary()
    assert s["matched"] == 1 and s["misses"] == 0 and s["false_positives"] == 0
    assert s["visibility_accuracy"]["mean"] == pytest.approx(23 / 24)
    assert s["visibility_accuracy_per_part"][0] == 0.0
    assert s["visibility_accuracy_per_part"][1] == 1.0
    assert bins["0.5-1"].matched == 1 and bins["0-0.1"].gt_persons == 0


# -- whole bags ---------------------------------------------------------------------------------


#: table 2's modes in the oracle: non-root joints and vertices shifted by these many mm along x
ORACLE_MODE_SHIFT_MM = {"visible": 30.0, "global": 50.0, "ks_highest": 20.0, "ks_matched": 10.0}


class _OraclePipeline:
    """Answers every frame with the bag's ground truth, non-root joints and all vertices
    shifted by ``d``: the evaluation must report exactly the known errors. Each table-2 merge
    mode gets its own known shift (`ORACLE_MODE_SHIFT_MM`)."""

    def __init__(self, bag, d):
        self.d = np.asarray(d, float)
        self.gt = {}
        with BagReader(bag) as reader:
            for m in reader.messages([DEFAULT_TOPICS["ground_truth"]]):
                msg = m.decode()
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                self.gt[stamp] = msg
        self.calls = 0

    def process(self, image, K, boxes, header):
        self.calls += 1
        assert image.ndim == 3 and K is not None and boxes is not None
        persons = []
        msg = self.gt[header.stamp_ns]
        vis = {v.body_id: v for v in msg.visibility}
        for h in msg.humans:
            joints = np.asarray(h.joints, float).reshape(24, 3)
            joints[1:] += self.d
            r = h.roi
            gj = np.asarray(h.joints, float).reshape(24, 3)
            gv = np.asarray(h.vertices, float).reshape(-1, 3)
            ablation = {}
            for mode, mm in ORACLE_MODE_SHIFT_MM.items():
                shift = np.array([mm / 1000.0, 0.0, 0.0])
                mj = gj.copy()
                mj[1:] += shift
                ablation[mode] = (gv + shift, mj)
            persons.append(PersonResult(
                track_id=-1, bbox=np.array([r.x_offset, r.y_offset, r.x_offset + r.width,
                                            r.y_offset + r.height], float), score=1.0,
                rel_rotmats=np.tile(np.eye(3), (24, 1, 1)), betas=np.zeros(10),
                transl=np.zeros(3),
                vertices=np.asarray(h.vertices, float).reshape(-1, 3) + self.d,
                joints=joints, keypoints2d=np.asarray(h.keypoints_2d, float).reshape(24, 2),
                visibility=np.asarray(vis[h.body_id].visibility, float), hypothesis=-1,
                ablation=ablation))
        return FrameResult(header=header, persons=tuple(persons),
                           timing={"total": 0.001, "stage_a": 0.0005})


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_replay_with_known_predictions_gives_known_metrics(bags, storage):
    d = [0.0, 0.06, -0.08]  # 100 mm
    pipe = _OraclePipeline(bags[storage], d)
    report = bag_eval.evaluate_bags([bags[storage]], pipe, dict(DEFAULT_TOPICS))
    assert pipe.calls == 5
    o = report["overall"]
    gt_persons = sum(len(m.humans) for m in pipe.gt.values())
    assert o["frames"] == 5 and o["gt_persons"] == gt_persons > 0
    assert o["matched"] == gt_persons and o["misses"] == 0 and o["false_positives"] == 0
    assert o["mpjpe_mm"]["mean"] == pytest.approx(100.0 * 23 / 24, abs=1e-3)  # float32 GT
    assert o["pve_mm"]["mean"] == pytest.approx(100.0, abs=1e-3)
    assert o["kp2d_px"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert o["visibility_accuracy"]["mean"] == 1.0
    assert o["pa_mpjpe_mm"]["mean"] > 1.0  # a non-rigid change Procrustes cannot undo
    assert sum(b["matched"] for b in report["by_occlusion"].values()) == gt_persons
    assert report["latency_ms"]["total"]["p50"] == pytest.approx(1.0)
    hist = report["latency_ms"]["total"]["histogram"]
    assert sum(hist["counts"]) == 5 and len(hist["edges"]) == len(hist["counts"]) + 1
    # table 2: every mode's known shift, over all persons and over the occluded ones
    occluded = sum(float(np.mean(np.asarray(v.visibility) < 0.1)) >= 0.3
                   for m in pipe.gt.values() for v in m.visibility)
    t2 = report["table2"]
    assert t2["occluded_min_share"] == 0.3 and list(t2["modes"]) == list(ORACLE_MODE_SHIFT_MM)
    for mode, mm in ORACLE_MODE_SHIFT_MM.items():
        rows = t2["modes"][mode]
        assert rows["all"]["mpjpe_mm"]["count"] == gt_persons
        assert rows["all"]["mpjpe_mm"]["mean"] == pytest.approx(mm * 23 / 24, abs=1e-3)
        assert rows["all"]["pve_mm"]["mean"] == pytest.approx(mm, abs=1e-3)
        assert rows["all"]["pa_mpjpe_mm"]["mean"] < mm
        assert rows["occluded"]["mpjpe_mm"]["count"] == occluded
    # calibration: the oracle's ω is the ground truth itself
    cal = o["visibility_calibration"]
    assert sum(cal["count"]) == 24 * gt_persons and len(cal["per_part"]) == 24
    for lo_hi, mean_pred, frac in zip(cal["bins"], cal["mean_pred"], cal["frac_visible"]):
        if mean_pred is not None:
            assert frac == (1.0 if lo_hi[0] >= 0.5 else 0.0)
    # the worst frames, worst first, each with an overlay
    worst = report["worst_frames"]
    assert len(worst) == 1  # 5 frames: one bad moment
    assert [w["mpjpe_mm"] for w in worst] == sorted((w["mpjpe_mm"] for w in worst),
                                                     reverse=True)
    assert all(report["_images"][w["image"]][:2] == b"\xff\xd8" for w in worst)


def test_visibility_calibration_against_hand_counts():
    # 4 persons x 2 parts: ω 0.05 (truly visible 1 of 2), 0.95 (2 of 2), 0.55 (0 of 4)
    pred = np.array([[0.05, 0.55], [0.05, 0.55], [0.95, 0.55], [0.95, 0.55]])
    gt = np.array([[1.0, 0.0], [0.0, 0.0], [0.9, 0.2], [0.8, 0.4]])
    cal = bag_eval.visibility_calibration(pred, gt)
    assert cal["count"][0] == 2 and cal["count"][5] == 4 and cal["count"][9] == 2
    assert sum(cal["count"]) == 8
    assert cal["frac_visible"][0] == 0.5 and cal["frac_visible"][5] == 0.0
    assert cal["frac_visible"][9] == 1.0 and cal["mean_pred"][1] is None
    ece = (2 * abs(0.05 - 0.5) + 4 * abs(0.55 - 0.0) + 2 * abs(0.95 - 1.0)) / 8
    assert cal["ece"] == pytest.approx(ece)
    part1 = cal["per_part"][1]
    assert part1["count"][5] == 4 and part1["ece"] == pytest.approx(0.55)
    assert bag_eval.visibility_calibration(np.zeros((0, 24)), np.zeros((0, 24))) is None


def test_cli_eval_both_storages_and_a_corrupt_bag(bags, tiny_model, tmp_path, capsys):
    report_dir = tmp_path / "report"
    paths = [bags["sqlite3"], bags["corrupt"], bags["mcap"], bags["png"]]
    rc = cli.main(["eval", *map(str, paths), "--report", str(report_dir), "--no-progress",
                   "-p", f"model_dir:={tiny_model}", "-p", "person_detector:=none",
                   "-p", "refine_iterations:=0", "--output-bags", "--worst", "4"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "skipped" in printed and "frames/s" in printed
    text = (report_dir / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    report = json.loads(text)
    assert report["schema_version"] == bag_eval.SCHEMA_VERSION == 1
    assert set(report) == {"schema_version", "tool", "created", "interrupted", "config", "bags",
                           "overall", "per_sequence", "by_occlusion", "latency_ms",
                           "throughput", "table2", "worst_frames"}
    assert report["interrupted"] is False
    assert report["config"]["realtime"] is False and report["config"]["workers"] == 1
    assert report["config"]["topics"] == DEFAULT_TOPICS
    assert report["config"]["person_detector"] == "none"
    status = {Path(b["path"]).name: b for b in report["bags"]}
    assert status["corrupt.mcap"]["status"] == "skipped"
    assert "corrupt.mcap" in status["corrupt.mcap"]["reason"]
    for name in ("seq_sqlite3", "seq_mcap", "seq_png"):
        assert status[name]["status"] == "ok" and status[name]["frames"] == 5
        assert status[name]["frames_scored"] == 5
    assert set(report["per_sequence"]) == {"seq_sqlite3", "seq_mcap", "seq_png"}
    for s in [report["overall"], *report["per_sequence"].values(),
              *report["by_occlusion"].values()]:
        assert set(s) == SUMMARY_KEYS
    o = report["overall"]
    assert o["frames"] == 15 and o["matched"] > 0
    assert o["matched"] + o["misses"] == o["gt_persons"]
    assert o["matched"] + o["false_positives"] == o["pred_persons"]
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "kp2d_px", "visibility_accuracy"):
        assert o[key]["count"] == o["matched"] and math.isfinite(o[key]["mean"]), key
    assert len(o["visibility_accuracy_per_part"]) == 24
    # raw images give the same result whatever the storage
    assert report["per_sequence"]["seq_sqlite3"]["mpjpe_mm"] == \
        report["per_sequence"]["seq_mcap"]["mpjpe_mm"]
    assert sum(b["gt_persons"] for b in report["by_occlusion"].values()) == o["gt_persons"]
    lat = report["latency_ms"]
    assert {"total", "decode", "preprocess"} <= set(lat)
    for v in lat.values():
        assert v["p50"] <= v["p95"] <= v["p99"] and v["count"] > 0
    t = report["throughput"]
    assert t["frames"] == 15 and t["fps"] > 0 and t["pipeline_fps"] >= t["fps"]
    # table 2 in the same run: without refinement the deployed merge is KS-matched itself
    t2 = report["table2"]["modes"]
    assert list(t2) == ["visible", "global", "ks_highest", "ks_matched"]
    assert t2["ks_matched"]["all"]["mpjpe_mm"] == o["mpjpe_mm"]
    assert t2["ks_matched"]["all"]["pve_mm"] == o["pve_mm"]
    assert t2["visible"]["all"]["mpjpe_mm"]["mean"] != o["mpjpe_mm"]["mean"]
    # the worst frames, with their overlays on disk
    worst = report["worst_frames"]
    # one per 5-frame bag: frames closer than 10 to a worse one are the same bad moment
    assert len(worst) == 3 and {w["bag"] for w in worst} == set(report["per_sequence"])
    for w in worst:
        assert w["bag"] in report["per_sequence"] and (report_dir / w["image"]).is_file()
    assert worst[0]["mpjpe_mm"] >= worst[-1]["mpjpe_mm"]
    # output bags: the inputs and the predictions; replaying one scores exactly as the input
    out_bag = Path(status["seq_mcap"]["output_bag"])
    assert out_bag.parent == report_dir / "bags" and status["corrupt.mcap"]["output_bag"] is None
    with BagReader(out_bag) as reader:
        counts = {t.topic: t.count for t in reader.topics()}
        durability = {t.topic: t.durability for t in reader.topics()}
        predicted = [m.decode() for m in reader.messages([bag_eval.PREDICTION_TOPIC])]
    with BagReader(bags["mcap"]) as reader:
        for topic in reader.topics():
            assert counts[topic.topic] == topic.count
            assert durability[topic.topic] == topic.durability  # latched faces stay latched
    assert counts[bag_eval.PREDICTION_TOPIC] == counts[bag_eval.PREDICTION_MARKERS] == 5
    humans = [h for msg in predicted for h in msg.humans]
    assert len(humans) == report["per_sequence"]["seq_mcap"]["pred_persons"] > 0
    assert all(len(h.vertices) > 0 for h in humans)
    again = tmp_path / "again"
    assert cli.main(["eval", str(out_bag), "--report", str(again), "--no-progress", "--worst",
                     "0", "-p", f"model_dir:={tiny_model}", "-p", "person_detector:=none",
                     "-p", "refine_iterations:=0"]) == 0
    replay = json.loads((again / "metrics.json").read_text())
    assert replay["overall"]["mpjpe_mm"] == report["per_sequence"]["seq_mcap"]["mpjpe_mm"]
    assert replay["worst_frames"] == [] and not (again / "worst").exists()


def test_cli_eval_only_corrupt_bags_fails(bags, tiny_model, tmp_path, capsys):
    rc = cli.main(["eval", str(bags["corrupt"]), "--report", str(tmp_path / "r"),
                   "--no-progress", "-p", f"model_dir:={tiny_model}",
                   "-p", "person_detector:=none"])
    assert rc == 1
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["bags"][0]["status"] == "skipped"
    assert report["overall"]["frames"] == 0 and report["overall"]["mpjpe_mm"]["mean"] is None


# -- Ctrl-C, bags that break part-way, --realtime, --workers ------------------------------------


class _InterruptingPipeline(_OraclePipeline):
    """Ctrl-C arrives while frame ``n + 1`` runs."""

    def __init__(self, bag, n):
        super().__init__(bag, [0.0, 0.0, 0.0])
        self.n = n

    def process(self, image, K, boxes, header):
        if self.calls >= self.n:
            raise KeyboardInterrupt
        return super().process(image, K, boxes, header)


def test_ctrl_c_still_writes_what_was_computed(bags, tmp_path, monkeypatch, capsys):
    pipe = _InterruptingPipeline(bags["sqlite3"], 3)
    monkeypatch.setattr(bag_eval, "build_pipeline",
                        lambda overrides=None: (pipe, None, "stub",
                                                bag_eval.node_config(overrides)))
    out = tmp_path / "report"
    rc = cli.main(["eval", str(bags["sqlite3"]), str(bags["mcap"]), "--report", str(out),
                   "--no-progress"])
    assert rc == 130
    assert "interrupted" in capsys.readouterr().out
    assert (out / "report.html").is_file()
    report = json.loads((out / "metrics.json").read_text())
    assert report["interrupted"] is True and report["schema_version"] == 1
    first, second = report["bags"]
    assert first["status"] == "partial" and first["reason"] == "interrupted"
    assert first["frames"] == 3 and first["frames_scored"] == 3
    assert second["status"] == "skipped" and "interrupted" in second["reason"]
    assert report["overall"]["frames"] == 3 and report["throughput"]["frames"] == 3
    assert report["overall"]["matched"] == report["overall"]["gt_persons"] > 0
    assert list(report["per_sequence"]) == ["seq_sqlite3"]


def test_bag_breaking_part_way_keeps_the_frames_read(bags, monkeypatch):
    from hmr_ros.bag import BagError

    original = BagReader.messages

    def breaking(self, *args, **kwargs):
        for i, m in enumerate(original(self, *args, **kwargs)):
            if i == 10:
                raise BagError("truncated chunk (test)")
            yield m

    monkeypatch.setattr(BagReader, "messages", breaking)
    pipe = _OraclePipeline(bags["mcap"], [0.0, 0.06, -0.08])
    report = bag_eval.evaluate_bags([bags["mcap"]], pipe, dict(DEFAULT_TOPICS))
    rec = report["bags"][0]
    assert rec["status"] == "partial" and "truncated chunk" in rec["reason"]
    assert 0 < rec["frames"] < 5 and rec["frames"] == pipe.calls
    assert report["overall"]["frames"] == rec["frames_scored"] > 0
    assert report["overall"]["mpjpe_mm"]["mean"] == pytest.approx(100.0 * 23 / 24, abs=1e-3)
    assert report["interrupted"] is False
    assert "partial" in bag_eval.format_table(report)


class _SlowPipeline(_OraclePipeline):
    def __init__(self, bag, seconds):
        super().__init__(bag, [0.0, 0.0, 0.0])
        self.seconds = seconds

    def process(self, image, K, boxes, header):
        import time

        time.sleep(self.seconds)
        return super().process(image, K, boxes, header)


def test_realtime_drops_frames_like_the_node(bags):
    # 5 frames at 5 fps (one every 200 ms) into a worker that needs 450 ms a frame
    pipe = _SlowPipeline(bags["sqlite3"], 0.45)
    report = bag_eval.evaluate_bags([bags["sqlite3"]], pipe, dict(DEFAULT_TOPICS),
                                    realtime=True)
    rec = report["bags"][0]
    assert rec["status"] == "ok"
    assert rec["frames_dropped"] >= 1
    assert rec["frames"] + rec["frames_dropped"] == 5 == pipe.calls + rec["frames_dropped"]
    assert report["config"]["realtime"] is True
    assert report["overall"]["frames"] == rec["frames"]
    # the first and the newest frame always run: only frames in between are dropped
    assert rec["frames"] >= 2
    # as fast as possible nothing is dropped
    fast = bag_eval.evaluate_bags([bags["sqlite3"]], _OraclePipeline(bags["sqlite3"], [0, 0, 0]),
                                  dict(DEFAULT_TOPICS))
    assert fast["bags"][0]["frames_dropped"] == 0 and fast["bags"][0]["frames"] == 5


def test_workers_give_the_metrics_of_one_process(bags, tiny_model, tmp_path, capsys):
    paths = [str(bags["sqlite3"]), str(bags["corrupt"]), str(bags["mcap"])]
    reports = {}
    for n in (1, 2):
        out = tmp_path / f"w{n}"
        rc = cli.main(["eval", *paths, "--report", str(out), "--no-progress", "--no-html",
                       "--workers", str(n), "-p", f"model_dir:={tiny_model}",
                       "-p", "person_detector:=none", "-p", "refine_iterations:=0"])
        assert rc == 0
        reports[n] = json.loads((out / "metrics.json").read_text())
    one, two = reports[1], reports[2]
    assert two["config"]["workers"] == 2 and one["config"]["workers"] == 1
    assert one["config"]["backend"] == two["config"]["backend"]
    for key in ("overall", "per_sequence", "by_occlusion"):
        assert one[key] == two[key], key
    strip = lambda bs: [{k: b[k] for k in ("path", "name", "status", "frames",  # noqa: E731
                                           "frames_scored", "frames_failed")} for b in bs]
    assert strip(one["bags"]) == strip(two["bags"])
    assert [b["status"] for b in two["bags"]] == ["ok", "skipped", "ok"]
    assert one["overall"]["frames"] == 10 and one["overall"]["matched"] > 0
    assert set(one["latency_ms"]) == set(two["latency_ms"])


def test_worst_frames_of_a_large_stream_are_kept_as_thumbnails():
    import cv2

    rng = np.random.default_rng(7)
    gt_j = _skeleton(rng)
    kp = np.column_stack([np.linspace(900, 1100, 24), np.linspace(500, 1000, 24)])
    g = _person(GroundTruthPerson, gt_j, [850, 450, 1150, 1050], kp=kp)
    p = _person(PredictedPerson, gt_j + 0.1, [850, 450, 1150, 1050], kp=kp + 20)
    rgb = np.zeros((1500, 2000, 3), np.uint8)
    K = np.array([[1800.0, 0, 1000], [0, 1800, 750], [0, 0, 1]])
    worst = bag_eval._WorstFrames(1, "big")
    for frame in range(3):
        errors, pairs, fp, missed = score_frame([p], [g], [Accumulator()], bag_eval._bins())
        worst.offer(frame, frame, errors, pairs, fp, missed, rgb, [p], [g], K)
    assert all(item[3][0].shape == (720, 960, 3) for item in worst._heap)  # not 2000 x 1500
    (record, jpeg), = worst.render("procedural")
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (720, 960, 3) and record["matched"] == 1
    # the ground truth's box is drawn where the frame's box lands in the thumbnail (x 0.48)
    assert img[int(450 * 0.48) + 20, int(850 * 0.48)].max() > 100
