"""HTML report of ``hmr-ros eval`` (`hmr_ros.eval.report_html`)."""

from __future__ import annotations

import copy
from html.parser import HTMLParser
from pathlib import Path

from hmr_ros.eval.report_html import PART_NAMES, render_html_report, write_html_report

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


def _stat(mean, count=3):
    return {"count": count if mean is not None else 0, "mean": mean,
            "median": mean}


def _summary(mpjpe, *, per_part=True, occ=False):
    empty = mpjpe is None
    return {"frames": None if occ else 5, "gt_persons": 0 if empty else 3,
            "pred_persons": None if occ else 3, "matched": 0 if empty else 3, "misses": 0,
            "false_positives": None if occ else 0, "mpjpe_mm": _stat(mpjpe),
            "pa_mpjpe_mm": _stat(None if empty else mpjpe / 2),
            "pve_mm": _stat(None),  # no vertices: never computed
            "kp2d_px": _stat(None if empty else 7.5),
            "visibility_accuracy": _stat(None if empty else 0.8),
            "visibility_accuracy_per_part":
                ([None if i == 3 else i / 24 for i in range(24)] if per_part and not empty
                 else None)}


def make_metrics():
    return {
        "schema_version": 1, "tool": "hmr-ros eval", "created": "2026-01-01T00:00:00+00:00",
        "config": {"model_dir": "/m", "backend": "numpy", "merge_mode": "ks_matched",
                   "person_detector": "none", "min_iou": 0.3, "topics": {},
                   "occlusion_bins": [[0.0, 0.1], [0.1, 0.3], [0.3, 0.5], [0.5, 1.0]]},
        "bags": [{"path": "/b/seq_a", "name": "seq_a", "status": "ok", "reason": None,
                  "frames": 5, "frames_scored": 5, "frames_failed": 0, "wall_s": 0.5,
                  "fps": 10.0},
                 {"path": "/b/bad.mcap", "name": "bad<&>", "status": "skipped",
                  "reason": "truncated <chunk> & more", "frames": 0, "frames_scored": 0,
                  "frames_failed": 0, "wall_s": None, "fps": None}],
        "overall": _summary(100.0),
        "per_sequence": {"seq_a": _summary(100.0), "seq_b": _summary(None)},
        "by_occlusion": {"0-0.1": _summary(None, occ=True), "0.1-0.3": _summary(80.0, occ=True),
                         "0.3-0.5": _summary(120.0, occ=True),
                         "0.5-1": _summary(150.0, occ=True)},
        "latency_ms": {"decode": {"count": 5, "mean": 0.1, "p50": 0.1, "p95": 0.2, "p99": 0.3},
                       "stage_a": {"count": 0, "mean": None, "p50": None, "p95": None,
                                   "p99": None},
                       "total": {"count": 5, "mean": 30.0, "p50": 28.0, "p95": 40.0,
                                 "p99": 55.0}},
        "throughput": {"frames": 5, "wall_s": 0.5, "fps": 10.0, "pipeline_s": None,
                       "pipeline_fps": None},
    }


class _Checker(HTMLParser):
    """Strict-ish well-formedness: every non-void element closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.ids, self.tags = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def _parse(text):
    p = _Checker()
    p.feed(text)
    p.close()
    return p


def test_report_written_with_all_sections_and_nulls(tmp_path: Path):
    m = make_metrics()
    before = copy.deepcopy(m)
    path = write_html_report(m, tmp_path / "rep")
    assert path == tmp_path / "rep" / "report.html" and path.is_file()
    assert m == before  # input untouched
    text = path.read_text(encoding="utf-8")
    p = _parse(text)
    assert not p.errors, p.errors
    assert not p.stack, f"unclosed: {p.stack}"
    for sid in ("summary", "occlusion", "visibility", "latency", "sequences",
                "plot-occlusion-error", "plot-occlusion-2d", "plot-occlusion-vis",
                "plot-visibility-per-part", "plot-latency", "calibration-missing"):
        assert sid in p.ids, sid
    assert p.tags.count("svg") == 5
    # self-contained: no scripts, no external resources
    assert "<script" not in text and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    # nulls rendered as n/a, never as None/nan
    assert "n/a" in text
    assert "None" not in text and ">nan<" not in text.lower() and "NaN" not in text
    # escaping of bag names and reasons
    assert "bad&lt;&amp;&gt;" in text and "truncated &lt;chunk&gt; &amp; more" in text
    # per-sequence and occlusion tables, all parts, all stages
    for name in ("seq_a", "seq_b", "occlusion 0-0.1", "occlusion 0.5-1", *PART_NAMES,
                 "decode", "stage_a", "total"):
        assert name in text, name


def test_report_tolerates_empty_and_partial_documents(tmp_path: Path):
    for m in ({}, {"overall": None, "by_occlusion": {}, "latency_ms": {}, "bags": []},
              {**make_metrics(), "overall": _summary(None)}):
        text = render_html_report(m)
        p = _parse(text)
        assert not p.errors and not p.stack
        assert "calibration-missing" in p.ids
    assert write_html_report({}, tmp_path).is_file()


def test_eval_cli_writes_html(tmp_path: Path, monkeypatch):
    """The ``--html`` hook (default on) writes report.html beside metrics.json."""
    import argparse
    import json

    from hmr_ros.eval import bag_eval

    monkeypatch.setattr(bag_eval, "build_pipeline",
                        lambda overrides: (None, None, "numpy", argparse.Namespace(
                            model_dir="/m", merge_mode="ks_matched", person_detector="none")))
    metrics = make_metrics()
    del metrics["latency_ms"]["stage_a"]  # the CLI's text table needs numeric percentiles
    monkeypatch.setattr(bag_eval, "evaluate_bags", lambda *a, **k: metrics)
    parser = argparse.ArgumentParser()
    bag_eval.add_arguments(parser)
    args = parser.parse_args(["x.bag", "--report", str(tmp_path / "on"), "--no-progress"])
    assert args.html is True
    assert bag_eval.run(args) == 0
    assert json.loads((tmp_path / "on" / "metrics.json").read_text())["schema_version"] == 1
    assert (tmp_path / "on" / "report.html").is_file()
    args = parser.parse_args(["x.bag", "--report", str(tmp_path / "off"), "--no-html"])
    assert bag_eval.run(args) == 0
    assert not (tmp_path / "off" / "report.html").exists()
