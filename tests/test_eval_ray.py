"""``hmr-ros eval --ray``: bags fanned out over a (local, single-node) Ray cluster give the
metrics of one process; a truncated or missing bag is skipped with its reason."""

from __future__ import annotations

import logging
import signal
import sys

import pytest

ray = pytest.importorskip("ray")

from hmr_ros.bag.sample import make_sample_bag  # noqa: E402
from hmr_ros.eval import bag_eval  # noqa: E402
from hmr_ros.eval.bag_eval import DEFAULT_TOPICS  # noqa: E402
from hmr_ros.eval.ray_fanout import MISSING_RAY, evaluate_on_ray  # noqa: E402

# the bundled model; boxes from the bags' detections
OVERRIDES = {"person_detector": "none", "refine_iterations": 0}
KWARGS = {"min_iou": 0.3, "classes": ("person",), "realtime": False}


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_bags")
    good_a = make_sample_bag(root / "seq_a", seconds=1, fps=5, people=2, size=160,
                             storage="sqlite3")
    good_b = make_sample_bag(root / "seq_b", seconds=1, fps=5, people=2, size=160,
                             storage="mcap")
    mcap = next(p for p in sorted(good_b.rglob("*.mcap")))
    truncated = root / "truncated.mcap"
    truncated.write_bytes(mcap.read_bytes()[:200])  # cut inside the first record
    missing = root / "not_there.mcap"
    return [str(good_a), str(truncated), str(missing), str(good_b)]


@pytest.fixture(scope="module")
def single_process(bags):
    """The reference: the same bags, one process, one pipeline."""
    pipeline, _, backend, _ = bag_eval.build_pipeline(OVERRIDES)
    report = bag_eval.evaluate_bags(bags, pipeline, dict(DEFAULT_TOPICS), **KWARGS)
    return report, backend


@pytest.fixture(scope="module")
def on_ray(bags):
    """One Ray session for the module: a local single-node Ray, an actor per CPU (workers=0)."""
    names = bag_eval._bag_names(bags)
    assert not ray.is_initialized()
    results, backend, interrupted = evaluate_on_ray(
        "local", bags, names, dict(DEFAULT_TOPICS), KWARGS, OVERRIDES, workers=0,
        progress=True)
    assert not ray.is_initialized()  # the Ray it started is shut down again
    return results, backend, interrupted


def test_ray_results_equal_the_single_process_metrics(bags, on_ray, single_process):
    results, backend, interrupted = on_ray
    reference, reference_backend = single_process
    assert interrupted is False
    assert backend == reference_backend
    assert len(results) == len(bags) and all(r is not None for r in results)
    merged = bag_eval.merge_results(results, dict(DEFAULT_TOPICS), min_iou=KWARGS["min_iou"])
    for key in ("overall", "per_sequence", "by_occlusion"):
        assert merged[key] == reference[key], key
    strip = lambda bs: [{k: b[k] for k in ("path", "name", "status", "frames",  # noqa: E731
                                           "frames_scored", "frames_failed")} for b in bs]
    assert strip(merged["bags"]) == strip(reference["bags"])
    overall = merged["overall"]
    assert overall["frames"] == 10 and overall["matched"] > 0
    assert overall["mpjpe_mm"]["count"] == overall["matched"]
    assert set(merged["per_sequence"]) == {"seq_a", "seq_b"}
    assert merged["throughput"]["frames"] == 10


def test_truncated_and_missing_bags_are_skipped_and_the_others_kept(bags, on_ray):
    results, _, _ = on_ray
    by_path = {r.path: r for r in results}
    truncated, missing = by_path[bags[1]], by_path[bags[2]]
    assert truncated.status == "skipped" and "truncated.mcap" in truncated.reason
    assert missing.status == "skipped" and "not_there.mcap" in missing.reason
    for good in (bags[0], bags[3]):
        assert by_path[good].status == "ok" and by_path[good].frames == 5
    assert [r.name for r in results] == bag_eval._bag_names(bags)


def test_actors_that_cannot_start_skip_every_bag_with_the_reason(bags, tmp_path):
    # a model folder without a manifest: each actor dies building its pipeline
    overrides = {**OVERRIDES, "model_dir": str(tmp_path)}
    good = [bags[0], bags[3]]
    results, backend, interrupted = evaluate_on_ray(
        "local", good, bag_eval._bag_names(good), dict(DEFAULT_TOPICS), KWARGS, overrides,
        workers=1)
    assert backend is None and interrupted is False
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert "manifest.json" in results[0].reason
    assert "no Ray worker left" in results[1].reason
    assert not ray.is_initialized()


def test_missing_ray_is_a_clear_error(monkeypatch, bags):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RuntimeError) as err:
        evaluate_on_ray("local", bags[:1], ["a"], dict(DEFAULT_TOPICS), KWARGS, OVERRIDES)
    assert str(err.value) == MISSING_RAY
    assert "pip install 'hmr_ros[cluster]'" in str(err.value)


class _CtrlCAfterFirstBag(logging.Handler):
    """Sends this process a real SIGINT when the driver logs its first finished bag, i.e.
    while the next bag is in flight on the (single) actor."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.sent = False

    def emit(self, record):
        if not self.sent and record.getMessage().startswith("finished"):
            self.sent = True
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_keeps_the_finished_bags(bags):
    good = [bags[0], bags[3], bags[0]]
    names = bag_eval._bag_names(good)
    logger = logging.getLogger("hmr_ros.eval.ray_fanout")
    handler, level = _CtrlCAfterFirstBag(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    # Ctrl-C must raise KeyboardInterrupt here, whatever handler an earlier test left behind
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        results, backend, interrupted = evaluate_on_ray(
            "local", good, names, dict(DEFAULT_TOPICS), KWARGS, OVERRIDES, workers=1)
    finally:
        signal.signal(signal.SIGINT, previous)
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.sent and interrupted is True
    assert results[0] is not None and results[0].status == "ok" and results[0].frames == 5
    assert results[1:] == [None, None]  # in flight (dropped) and never started
    assert backend is not None
    assert not ray.is_initialized()
    # what was computed still makes a report
    report = bag_eval.merge_results([results[0]], dict(DEFAULT_TOPICS))
    assert report["overall"]["frames"] == 5


def test_cli_ray_local_writes_the_single_process_report(bags, single_process, tmp_path):
    """``hmr-ros eval --ray local`` end to end: the wiring of the CLI and `evaluate_bags`."""
    import json

    from hmr_ros import cli

    reference, _ = single_process
    out = tmp_path / "report"
    args = ["eval", *bags, "--report", str(out), "--ray", "local", "--no-progress"]
    for name, value in OVERRIDES.items():
        args += ["-p", f"{name}:={value}"]
    assert cli.main(args) == 0
    assert not ray.is_initialized()
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["ray"] == "local" and report["interrupted"] is False
    for key in ("overall", "per_sequence", "by_occlusion", "table2"):
        assert report[key] == reference[key], key
    assert [b["status"] for b in report["bags"]] == ["ok", "skipped", "skipped", "ok"]
    assert len(report["worst_frames"]) == len(reference["worst_frames"]) > 0
