"""Self-contained HTML report for ``hmr-ros eval`` (``DIR/report.html`` beside ``metrics.json``).

`write_html_report(metrics, out_dir)` renders a ``metrics.json`` document (schema_version 1, see
`hmr_ros.eval.bag_eval`) as one HTML file with inline SVG charts drawn here (no matplotlib, no
JavaScript, nothing fetched from the network):

* summary: overall metrics, throughput, configuration;
* error against occlusion level (MPJPE / PA-MPJPE / PVE per occlusion bin);
* visibility accuracy per part (24 SMPL parts). Calibration (predicted ω against ground-truth
  visibility) needs per-person ω, which schema 1 does not carry: the report says so;
* latency per stage (p50 / p95 / p99 bars; schema 1 keeps percentiles, not the samples a
  histogram would need);
* per-sequence table, occlusion table and bag list (skipped bags with their reason).

A value that could not be computed (``null``) is shown as "n/a" in tables and as an empty slot
marked "n/a" in charts.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["write_html_report", "render_html_report", "PART_NAMES"]

PART_NAMES = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
              "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
              "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand")

COLORS = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2")
STAT_METRICS = (("mpjpe_mm", "MPJPE mm"), ("pa_mpjpe_mm", "PA-MPJPE mm"), ("pve_mm", "PVE mm"),
                ("kp2d_px", "2D px"), ("visibility_accuracy", "vis acc"))

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;
color:#222;max-width:1100px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
.na{color:#999}.note{color:#555;font-size:13px}.warn{color:#a33}
svg{background:#fff;border:1px solid #eee;margin:6px 0}
"""


# -- formatting -------------------------------------------------------------------------------


def _num(v: Any) -> Optional[float]:
    """A finite float, or None (null, NaN, inf, non-numbers)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(v: Any, digits: int = 1) -> str:
    f = _num(v)
    if f is None:
        return '<span class="na">n/a</span>'
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{f:.{digits}f}"


def _mean(stat: Any) -> Optional[float]:
    return _num(stat.get("mean")) if isinstance(stat, dict) else None


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>\n" for r in rows)
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>'


# -- SVG charts -------------------------------------------------------------------------------


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def bar_chart(categories: Sequence[str], series: Sequence[Tuple[str, Sequence[Any]]], *,
              title: str, y_label: str = "", y_max: Optional[float] = None, width: int = 900,
              height: int = 320, chart_id: str = "") -> str:
    """Grouped vertical bar chart as an inline ``<svg>``; None values leave a slot marked n/a."""
    ml, mr, mt, mb = 60, 20, 34, 90
    pw, ph = width - ml - mr, height - mt - mb
    vals = [_num(v) for _, vs in series for v in vs]
    finite = [v for v in vals if v is not None]
    top = y_max if y_max is not None else _nice_max(max(finite) if finite else 1.0)
    n_cat, n_ser = max(len(categories), 1), max(len(series), 1)
    group_w = pw / n_cat
    bar_w = group_w * 0.8 / n_ser
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{_e(chart_id)}" class="chart" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f'<title>{_e(title)}</title>',
           f'<text x="{width / 2:.1f}" y="18" text-anchor="middle" font-size="14" '
           f'font-weight="bold">{_e(title)}</text>']
    for k in range(6):  # y grid + ticks
        yv = top * k / 5
        y = mt + ph - ph * k / 5
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{yv:.3g}</text>')
    if y_label:
        out.append(f'<text x="14" y="{mt + ph / 2:.1f}" font-size="12" text-anchor="middle" '
                   f'transform="rotate(-90 14 {mt + ph / 2:.1f})">{_e(y_label)}</text>')
    out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}" stroke="#333"/>')
    out.append(f'<line x1="{ml}" x2="{ml}" y1="{mt}" y2="{mt + ph}" stroke="#333"/>')
    for i, cat in enumerate(categories):
        gx = ml + i * group_w + group_w * 0.1
        for j, (name, vs) in enumerate(series):
            v = _num(vs[i]) if i < len(vs) else None
            x = gx + j * bar_w
            if v is None:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{mt + ph - 4}" font-size="9" '
                           f'fill="#999" text-anchor="middle">n/a</text>')
                continue
            h = ph * min(max(v, 0.0), top) / top
            out.append(f'<rect x="{x:.1f}" y="{mt + ph - h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                       f'height="{h:.1f}" fill="{COLORS[j % len(COLORS)]}">'
                       f'<title>{_e(name)} {_e(cat)}: {v:.4g}</title></rect>')
        cx = ml + i * group_w + group_w / 2
        ty = mt + ph + 12
        rotate = len(categories) > 10
        if rotate:
            out.append(f'<text x="{cx:.1f}" y="{ty}" font-size="11" text-anchor="end" '
                       f'transform="rotate(-50 {cx:.1f} {ty})">{_e(cat)}</text>')
        else:
            out.append(f'<text x="{cx:.1f}" y="{ty + 4}" font-size="11" '
                       f'text-anchor="middle">{_e(cat)}</text>')
    lx = ml
    for j, (name, _) in enumerate(series):  # legend
        ly = height - 14
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" '
                   f'fill="{COLORS[j % len(COLORS)]}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}" font-size="12">{_e(name)}</text>')
        lx += 24 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out)


# -- sections ---------------------------------------------------------------------------------


def _summary_row(name: str, s: Any) -> List[str]:
    s = s if isinstance(s, dict) else {}
    row = [_e(name)] + [_fmt(s.get(k)) for k in ("frames", "gt_persons", "pred_persons",
                                                 "matched", "misses", "false_positives")]
    for key, _ in STAT_METRICS:
        row.append(_fmt(_mean(s.get(key)), 3 if key == "visibility_accuracy" else 1))
    return row


_SUMMARY_HEADER = ["group", "frames", "gt", "pred", "matched", "misses", "fp"] + \
    [label for _, label in STAT_METRICS]


def _section_summary(m: Dict[str, Any]) -> str:
    cfg = m.get("config") or {}
    thr = m.get("throughput") or {}
    cfg_rows = [[_e(k), _e(cfg.get(k))] for k in ("model_dir", "backend", "merge_mode",
                                                 "person_detector", "min_iou") if k in cfg]
    thr_rows = [[_e(k), _fmt(thr.get(k), 2)] for k in ("frames", "wall_s", "fps", "pipeline_s",
                                                      "pipeline_fps")]
    return ('<section id="summary"><h2>Summary</h2>'
            + _table(_SUMMARY_HEADER, [_summary_row("overall", m.get("overall"))])
            + '<p class="note">Errors are means over matched persons; vis acc is the share of '
            'the 24 parts whose predicted &omega; &gt; 0.5 agrees with ground truth.</p>'
            + "<h3>Throughput</h3>" + _table(["", "value"], thr_rows)
            + "<h3>Configuration</h3>" + _table(["", "value"], cfg_rows) + "</section>")


def _section_occlusion(m: Dict[str, Any]) -> str:
    occ = m.get("by_occlusion") or {}
    cats = list(occ)
    series = [(label, [_mean((occ[c] or {}).get(key)) for c in cats])
              for key, label in STAT_METRICS[:3]]
    chart = bar_chart(cats, series, title="3D error against occlusion level",
                      y_label="mm", chart_id="plot-occlusion-error")
    kp = bar_chart(cats, [("2D px", [_mean((occ[c] or {}).get("kp2d_px")) for c in cats])],
                   title="2D keypoint error against occlusion level", y_label="px",
                   width=440, height=260, chart_id="plot-occlusion-2d")
    acc = bar_chart(cats, [("vis acc", [_mean((occ[c] or {}).get("visibility_accuracy"))
                                        for c in cats])],
                    title="Visibility accuracy against occlusion level", y_label="accuracy",
                    y_max=1.0, width=440, height=260, chart_id="plot-occlusion-vis")
    rows = [_summary_row(f"occlusion {c}", occ[c]) for c in cats]
    return ('<section id="occlusion"><h2>Error against occlusion level</h2>'
            '<p class="note">Occlusion level: share of the 24 parts whose ground-truth '
            'visibility is &lt; 0.5. Empty bins show n/a.</p>'
            + chart + kp + acc + _table(_SUMMARY_HEADER, rows) + "</section>")


def _section_visibility(m: Dict[str, Any]) -> str:
    per_part = (m.get("overall") or {}).get("visibility_accuracy_per_part")
    parts = list(PART_NAMES)
    if isinstance(per_part, list) and len(per_part) != len(parts):
        parts = [f"part {i}" for i in range(len(per_part))]
    values = per_part if isinstance(per_part, list) else [None] * len(parts)
    series = [("overall", values)]
    for name, s in (m.get("per_sequence") or {}).items():
        v = (s or {}).get("visibility_accuracy_per_part")
        if isinstance(v, list) and len(v) == len(parts) and len(m.get("per_sequence")) > 1:
            series.append((name, v))
    note = "" if isinstance(per_part, list) else \
        '<p class="warn">No per-part visibility accuracy (no matched persons).</p>'
    chart = bar_chart(parts, series[:len(COLORS)], title="Visibility accuracy per part",
                      y_label="accuracy", y_max=1.0, height=360,
                      chart_id="plot-visibility-per-part")
    return ('<section id="visibility"><h2>Visibility accuracy per part</h2>' + note + chart
            + '<p class="warn" id="calibration-missing">Visibility calibration (reliability of '
            'the predicted &omega; against ground-truth visibility) is not shown: metrics.json '
            '(schema_version 1) does not carry per-person predicted &omega;.</p></section>')


def _section_latency(m: Dict[str, Any]) -> str:
    lat = m.get("latency_ms") or {}
    stages = [s for s in lat if s != "total"] + (["total"] if "total" in lat else [])
    series = [(q, [(lat[s] or {}).get(q) for s in stages]) for q in ("p50", "p95", "p99")]
    chart = bar_chart(stages, series, title="Latency per stage (p50 / p95 / p99)",
                      y_label="ms", chart_id="plot-latency")
    rows = [[_e(s)] + [_fmt((lat[s] or {}).get(k), 2 if k != "count" else 0)
                       for k in ("count", "mean", "p50", "p95", "p99")] for s in stages]
    return ('<section id="latency"><h2>Latency per stage</h2>' + chart
            + '<p class="note">metrics.json keeps per-stage percentiles, not the samples, so '
            'percentiles are plotted instead of a histogram.</p>'
            + _table(["stage", "count", "mean ms", "p50 ms", "p95 ms", "p99 ms"], rows)
            + "</section>")


def _section_sequences(m: Dict[str, Any]) -> str:
    seq = m.get("per_sequence") or {}
    rows = [_summary_row(name, s) for name, s in seq.items()]
    bag_rows = [[_e(b.get("name")), _e(b.get("status")), _fmt(b.get("frames")),
                 _fmt(b.get("frames_scored")), _fmt(b.get("frames_failed")),
                 _fmt(b.get("wall_s"), 2), _fmt(b.get("fps"), 1),
                 _e(b.get("reason")) if b.get("reason") else '<span class="na">-</span>']
                for b in (m.get("bags") or [])]
    return ('<section id="sequences"><h2>Per-sequence results</h2>'
            + (_table(_SUMMARY_HEADER, rows) if rows else '<p class="warn">No sequence was '
               'read completely.</p>')
            + "<h3>Bags</h3>"
            + _table(["bag", "status", "frames", "scored", "failed", "wall s", "fps", "reason"],
                     bag_rows) + "</section>")


def render_html_report(metrics: Dict[str, Any]) -> str:
    """The report for a ``metrics.json`` document as one HTML string."""
    m = metrics or {}
    title = "hmr-ros eval report"
    sections = [_section_summary(m), _section_occlusion(m), _section_visibility(m),
                _section_latency(m), _section_sequences(m)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_e(title)}</h1><p class=\"note\">{_e(m.get('tool', 'hmr-ros eval'))} "
            f"&middot; created {_e(m.get('created', 'n/a'))} &middot; schema_version "
            f"{_e(m.get('schema_version', 'n/a'))}</p>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def write_html_report(metrics: Dict[str, Any], out_dir: Any) -> Path:
    """Write ``out_dir/report.html`` for a ``metrics.json`` document; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(render_html_report(metrics), encoding="utf-8")
    return path
