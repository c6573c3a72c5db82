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


BINS = [[i / 10, (i + 1) / 10] for i in range(10)]


def _calibration(shift=0.0, *, per_part=True):
    """Ten ω bins; the lowest two are empty (null means), the others miscalibrated by ``shift``."""
    count = [0, 0] + [10 * (i + 1) for i in range(8)]
    mean_pred = [None, None] + [(i + 2.5) / 10 for i in range(8)]
    frac = [None, None] + [min(1.0, (i + 2.5) / 10 + shift) for i in range(8)]
    doc = {"bins": BINS, "count": count, "mean_pred": mean_pred, "frac_visible": frac,
           "ece": 0.0123 + shift, "per_part": None}
    if per_part:
        doc["per_part"] = [None if i == 5 else
                           {"count": count, "mean_pred": mean_pred, "frac_visible": frac,
                            "ece": None if i == 7 else i / 100} for i in range(24)]
    return doc


def _t2(base):
    def three(v):
        return {"mpjpe_mm": _stat(v), "pa_mpjpe_mm": _stat(v / 2), "pve_mm": _stat(None)}
    return {"all": three(base), "occluded": three(base * 1.5)}


def make_new_fields(m):
    """The fields added to metrics.json after schema 1's first release (issue 13)."""
    m = copy.deepcopy(m)
    for s in [m["overall"], *m["per_sequence"].values(), *m["by_occlusion"].values()]:
        s["visibility_calibration"] = _calibration(0.05, per_part=s is m["overall"]) \
            if s["matched"] else None
    m["latency_ms"]["total"]["histogram"] = {"edges": [0, 10, 20, 30, 40, 50],
                                             "counts": [0, 1, 3, 0, 1]}
    m["latency_ms"]["decode"]["histogram"] = {"edges": [0.0, 0.1, 0.2, 0.3],
                                              "counts": [2, 2, 1]}
    m["table2"] = {"occluded_min_share": 0.3,
                   "modes": {"visible": _t2(120.0), "global": _t2(110.0),
                             "ks_highest": _t2(105.0), "ks_matched": _t2(98.25)}}
    m["worst_frames"] = [
        {"bag": "seq_<b>&a", "frame": 123, "stamp_ns": 1_000_000_123, "mpjpe_mm": 250.5,
         "matched": 2, "misses": 1, "false_positives": 0,
         "image": "worst/00_seq_a_000123.jpg"},
        {"bag": "seq_a", "frame": 7, "stamp_ns": 7, "mpjpe_mm": 180.0, "matched": 1,
         "misses": 0, "false_positives": 2, "image": None},
        {"bag": "seq_a", "frame": 8, "stamp_ns": 8, "mpjpe_mm": None, "matched": 1,
         "misses": 0, "false_positives": 0, "image": "/etc/passwd"}]
    return m


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


def test_report_renders_new_sections(tmp_path: Path):
    """Calibration, latency histograms, table 2 and the worst-frames gallery (issue 13)."""
    m = make_new_fields(make_metrics())
    before = copy.deepcopy(m)
    text = write_html_report(m, tmp_path).read_text(encoding="utf-8")
    assert m == before
    p = _parse(text)
    assert not p.errors, p.errors
    assert not p.stack, f"unclosed: {p.stack}"
    for sid in ("calibration", "plot-calibration", "plot-calibration-ece-per-part",
                "table2", "worst-frames", "plot-latency-hist-0", "plot-latency-hist-2"):
        assert sid in p.ids, sid
    for missing in ("calibration-missing", "latency-histogram-missing", "table2-missing",
                    "worst-frames-missing"):
        assert missing not in p.ids, missing
    # 5 old charts + pooled diagram + ECE bars + 23 part tiles (part 5 is null) + 2 histograms
    assert p.tags.count("svg") == 5 + 2 + 23 + 2
    assert "plot-calibration-part-5" not in p.ids and "plot-calibration-part-23" in p.ids
    assert "None" not in text and "NaN" not in text and "<script" not in text
    # every SVG names itself for screen readers
    assert text.count("<svg ") == p.tags.count("svg")
    assert text.count('role="img">\n<title>') == p.tags.count("svg")
    # calibration: pooled ECE formatted, per-group table with sample counts (sum of bins = 360)
    assert "ECE 0.062" in text
    calib = text[text.index('id="calibration"'):text.index('id="latency"')]
    assert "<td>360</td><td>0.062</td>" in calib
    assert calib.count("<tr>") == 1 + 1 + 2 + 4  # header, overall, 2 sequences, 4 occlusion
    assert "<td>seq_b</td><td><span class=\"na\">n/a</span></td>" in calib
    for name in PART_NAMES:
        assert f">{name}</" in calib, name
    # one bar per non-empty bin: the total's histogram has 3, decode's 3
    lat = text[text.index('id="latency"'):text.index('id="table2"')]
    total_hist = lat[lat.index('id="plot-latency-hist-2"'):]
    total_hist = total_hist[:total_hist.index("</svg>")]
    assert total_hist.count('class="hist-bar"') == 3
    assert lat.count('class="hist-bar"') == 3 + 3
    assert "40+ ms: 1" in total_hist  # the last bin is open-ended
    assert "No histogram for: stage_a." in lat
    # table 2: one row per mode, best MPJPE in bold, occluded share in the caption
    t2 = text[text.index('id="table2"'):text.index('id="worst-frames"')]
    assert t2.count("<tr>") == 2 + 4
    for label in ("visible-only", "global-only", "KS-highest", "KS-matched (VisHMR)"):
        assert label in t2, label
    assert "<b>98.2</b>" in t2 or "<b>98.3</b>" in t2
    assert "&#8805; 30%" in t2 and t2.count('class="na">n/a') == 8  # PVE never computed
    # gallery: three figures, relative image lazily loaded, escaped bag, no absolute path
    g = text[text.index('id="worst-frames"'):text.index('id="sequences"')]
    assert g.count("<figure>") == 3 and g.count("<figcaption>") == 3
    assert '<img src="worst/00_seq_a_000123.jpg" loading="lazy"' in g
    assert g.count("<img ") == 1 and "/etc/passwd" not in g and g.count("no image") == 2
    assert "seq_&lt;b&gt;&amp;a, frame 123" in g and "seq_<b>" not in text
    assert "MPJPE 250.5 mm" in g and "matched 2 / misses 1 / fp 0" in g
    assert "MPJPE <span class=\"na\">n/a</span> mm" in g


def test_old_document_notes_missing_sections():
    """A schema-1 document from before issue 13 renders with "not in this report" notes."""
    text = render_html_report(make_metrics())
    p = _parse(text)
    assert not p.errors and not p.stack
    for ident in ("calibration-missing", "latency-histogram-missing", "table2-missing",
                  "worst-frames-missing"):
        assert ident in p.ids, ident
    assert text.count("not in this report") == 4
    # null table2 (not a VisHMR-family model) and null pooled calibration say why
    m = make_new_fields(make_metrics())
    m["table2"] = None
    m["overall"]["visibility_calibration"] = None
    m["worst_frames"] = []
    text = render_html_report(m)
    p = _parse(text)
    assert not p.errors and not p.stack
    assert "not of the VisHMR family" in text and "table2-missing" in p.ids
    assert "calibration-missing" in p.ids and "No scored frame" in text
