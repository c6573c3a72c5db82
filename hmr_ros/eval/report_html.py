"""Self-contained HTML report for ``hmr-ros eval`` (``DIR/report.html`` beside ``metrics.json``).

`write_html_report(metrics, out_dir)` renders a ``metrics.json`` document (see
`hmr_ros.eval.bag_eval`) as one HTML file with inline SVG charts drawn here (no matplotlib, no
JavaScript, nothing fetched from the network):

* summary: overall metrics, throughput, configuration;
* error against occlusion level (MPJPE / PA-MPJPE / PVE per occlusion bin);
* visibility accuracy per part (24 SMPL parts) and visibility calibration: a reliability
  diagram of the predicted ω against the fraction of truly visible parts (pooled), the expected
  calibration error (ECE) per part and one small reliability plot per part;
* latency per stage (p50 / p95 / p99 bars) and one histogram per stage;
* table 2 of the VisHMR paper (the four merge modes on the same frames, all persons and the
  occluded ones);
* the worst frames (highest MPJPE) with their overlay images, referenced by relative path;
* per-sequence table, occlusion table and bag list (skipped bags with their reason).

Every section after the first three fields is optional: a document written before a field
existed renders with a short "not in this report" note in its place. A value that could not be
computed (``null``) is shown as "n/a" in tables and as an empty slot marked "n/a" in charts.
"""

from __future__ import annotations

import html
import math
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["write_html_report", "render_html_report", "bar_chart", "reliability_diagram",
           "histogram_chart", "PART_NAMES", "TABLE2_MODES"]

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
.grid{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
.small-multiples svg{margin:0}
.calib-empty{width:170px;height:148px;border:1px solid #eee;font-size:11px;text-align:center;
padding-top:20px;box-sizing:border-box}
caption{caption-side:bottom;text-align:left;font-size:12px;color:#555;padding-top:4px}
.table2 th{text-align:center}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px;
align-items:start}
.gallery figure{margin:0;border:1px solid #ddd;background:#fafafa}
.gallery img{display:block;width:100%;height:auto}
.gallery figcaption{font-size:12px;padding:4px 6px}
.noimg{aspect-ratio:4/3;display:flex;align-items:center;justify-content:center;color:#999}
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


def _svg_open(width: int, height: int, title: str, chart_id: str, cls: str = "chart") -> List[str]:
    """Opening of an accessible ``<svg>``: a ``<title>`` names the chart for screen readers."""
    ident = f' id="{_e(chart_id)}"' if chart_id else ""
    return [f'<svg xmlns="http://www.w3.org/2000/svg"{ident} class="{_e(cls)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
            f'<title>{_e(title)}</title>']


def _bin_edges(bins: Any, n: int) -> List[Tuple[float, float]]:
    """The ``[lo, hi]`` pairs of a calibration document, or ``n`` equal bins over [0, 1]."""
    if isinstance(bins, list) and len(bins) == n:
        pairs = []
        for b in bins:
            lo, hi = (_num(b[0]), _num(b[1])) if isinstance(b, (list, tuple)) and len(b) == 2 \
                else (None, None)
            if lo is None or hi is None or hi <= lo:
                break
            pairs.append((min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)))
        else:
            return pairs
    return [(i / max(n, 1), (i + 1) / max(n, 1)) for i in range(n)]


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


def reliability_diagram(bins: Any, calibration: Dict[str, Any], *, title: str,
                        compact: bool = False, chart_id: str = "") -> str:
    """Reliability diagram as an inline ``<svg>``: per predicted-ω bin a bar up to the fraction
    of truly visible samples, a dot at (mean predicted ω, fraction visible) and the diagonal a
    perfectly calibrated model would follow. Empty bins are marked n/a."""
    counts = calibration.get("count") if isinstance(calibration.get("count"), list) else []
    width, height = (172, 150) if compact else (440, 360)
    ml, mr, mt, mb = (24, 8, 20, 18) if compact else (56, 16, 34, 70)
    pw, ph = width - ml - mr, height - mt - mb

    def x(v: float) -> float:
        return ml + pw * min(max(v, 0.0), 1.0)

    def y(v: float) -> float:
        return mt + ph * (1.0 - min(max(v, 0.0), 1.0))

    out = _svg_open(width, height, title, chart_id, "chart calib-small" if compact else "chart")
    fs = 11 if compact else 14
    out.append(f'<text x="{width / 2:.1f}" y="{13 if compact else 18}" text-anchor="middle" '
               f'font-size="{fs}" font-weight="bold">{_e(title)}</text>')
    for k in range(0, 6, 5 if compact else 1):  # grid + ticks on both axes
        v = k / 5
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#e5e5e5"/>')
        out.append(f'<text x="{ml - 4}" y="{y(v) + 4:.1f}" text-anchor="end" '
                   f'font-size="{9 if compact else 11}">{v:g}</text>')
        out.append(f'<text x="{x(v):.1f}" y="{mt + ph + (11 if compact else 14)}" '
                   f'text-anchor="middle" font-size="{9 if compact else 11}">{v:g}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" '
               f'stroke="#888" stroke-dasharray="4 3"><title>perfect calibration</title></line>')
    points = []
    for i, (lo, hi) in enumerate(_bin_edges(calibration.get("bins", bins), len(counts))):
        n = _num(_at(counts, i))
        frac = _num(_at(calibration.get("frac_visible"), i))
        pred = _num(_at(calibration.get("mean_pred"), i))
        x0, x1 = x(lo) + 0.5, x(hi) - 0.5
        if not n or frac is None:
            if not compact:
                out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{mt + ph - 4}" font-size="9" '
                           f'fill="#999" text-anchor="middle">n/a</text>')
            continue
        tip = (f"predicted \u03c9 {lo:g}\u2013{hi:g}: {int(n)} samples, mean predicted "
               f"{_plain(pred, 3)}, fraction visible {frac:.3f}")
        out.append(f'<rect x="{x0:.1f}" y="{y(frac):.1f}" width="{max(x1 - x0, 1):.1f}" '
                   f'height="{y(0) - y(frac):.1f}" fill="{COLORS[0]}" fill-opacity="0.75">'
                   f'<title>{_e(tip)}</title></rect>')
        if not compact:  # sample count at the bar's foot (inside when the bar is tall enough)
            inside = y(0) - y(frac) > 14
            ty = y(0) - 4 if inside else y(frac) - 3
            out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{ty:.1f}" font-size="9" '
                       f'text-anchor="middle" '
                       f'fill="{"#fff" if inside else "#444"}">{int(n)}</text>')
        if pred is not None:
            points.append((x(pred), y(frac)))
    if len(points) > 1:
        out.append('<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>'.format(
            COLORS[2], " ".join(f"{px:.1f},{py:.1f}" for px, py in points)))
    for px, py in points:
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{2 if compact else 3.5}" '
                   f'fill="{COLORS[2]}"/>')
    ece = _num(calibration.get("ece"))
    out.append(f'<text x="{ml + 4}" y="{mt + (11 if compact else 14)}" '
               f'font-size="{9 if compact else 12}" fill="#333">ECE {_plain(ece, 3)}</text>')
    if not compact:
        out.append(f'<text x="{ml + pw / 2:.1f}" y="{mt + ph + 30}" text-anchor="middle" '
                   f'font-size="12">predicted &#969;</text>')
        out.append(f'<text x="14" y="{mt + ph / 2:.1f}" font-size="12" text-anchor="middle" '
                   f'transform="rotate(-90 14 {mt + ph / 2:.1f})">fraction visible (GT)</text>')
        ly = height - 12
        out.append(f'<rect x="{ml}" y="{ly - 9}" width="10" height="10" fill="{COLORS[0]}" '
                   f'fill-opacity="0.75"/><text x="{ml + 14}" y="{ly}" font-size="11">'
                   f'fraction visible (bar label: samples)</text>')
        out.append(f'<circle cx="{ml + 235}" cy="{ly - 4}" r="3.5" fill="{COLORS[2]}"/>'
                   f'<text x="{ml + 243}" y="{ly}" font-size="11">mean predicted &#969;</text>')
    out.append("</svg>")
    return "\n".join(out)


def _plain(v: Any, digits: int = 1) -> str:
    """Like `_fmt` but plain text (for SVG text and titles)."""
    f = _num(v)
    return "n/a" if f is None else f"{f:.{digits}f}"


def histogram_chart(edges: Sequence[float], counts: Sequence[Any], *, title: str,
                    markers: Sequence[Tuple[str, Any]] = (), x_label: str = "ms",
                    width: int = 340, height: int = 210, chart_id: str = "") -> str:
    """Histogram as an inline ``<svg>``: one bar per non-empty bin (the last bin also holds
    everything above its upper edge) and dashed vertical lines at the ``markers`` values."""
    ml, mr, mt, mb = 44, 14, 30, 38
    pw, ph = width - ml - mr, height - mt - mb
    lo, hi = float(edges[0]), float(edges[-1])
    span = hi - lo
    most = max([_num(c) or 0.0 for c in counts] + [1.0])
    step = max(1.0, _nice_max(most / 4))  # counts: whole-number ticks
    top = step * math.ceil(most / step)

    def x(v: float) -> float:
        return ml + pw * (min(max(v, lo), hi) - lo) / span

    out = _svg_open(width, height, title, chart_id)
    out.append(f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13" '
               f'font-weight="bold">{_e(title)}</text>')
    for k in range(0, int(round(top / step)) + 1):
        yv = step * k
        yy = mt + ph - ph * yv / top
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{yy:.1f}" y2="{yy:.1f}" '
                   f'stroke="#e5e5e5"/><text x="{ml - 4}" y="{yy + 4:.1f}" text-anchor="end" '
                   f'font-size="10">{yv:.3g}</text>')
    for k in range(0, 5):
        xv = lo + span * k / 4
        out.append(f'<text x="{x(xv):.1f}" y="{mt + ph + 13}" text-anchor="middle" '
                   f'font-size="10">{xv:.3g}</text>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" '
               f'font-size="11">{_e(x_label)} (last bin: &#8805; its lower edge)</text>')
    for i, c in enumerate(counts):
        n = _num(c)
        if not n:
            continue
        b0, b1 = float(edges[i]), float(edges[i + 1])
        h = ph * min(n, top) / top
        upper = "+" if i == len(counts) - 1 else f"\u2013{b1:.3g}"
        out.append(f'<rect class="hist-bar" x="{x(b0) + 0.5:.1f}" y="{mt + ph - h:.1f}" '
                   f'width="{max(x(b1) - x(b0) - 1, 1):.1f}" height="{h:.1f}" '
                   f'fill="{COLORS[0]}"><title>{_e(f"{b0:.3g}{upper} {x_label}: {int(n)}")}'
                   f'</title></rect>')
    out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}" stroke="#333"/>')
    for j, (name, v) in enumerate(markers):
        f = _num(v)
        if f is None:
            continue
        mx = x(f)
        col = COLORS[(j + 1) % len(COLORS)]
        label = name if f <= hi else f"{name} {f:.3g}&#8594;"
        out.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{mt}" y2="{mt + ph}" stroke="{col}" '
                   f'stroke-width="1.5" stroke-dasharray="3 2"><title>{_e(name)}: '
                   f'{f:.4g} {_e(x_label)}</title></line>')
        out.append(f'<text x="{min(mx + 2, ml + pw - 2):.1f}" y="{mt + 9 + 10 * j}" '
                   f'font-size="9" fill="{col}" '
                   f'text-anchor="{"end" if mx > ml + pw - 40 else "start"}">{label}</text>')
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
    invisible = (m.get("config") or {}).get("invisible_below", 0.5)  # 0.5 before it was recorded
    return ('<section id="occlusion"><h2>Error against occlusion level</h2>'
            '<p class="note">Occlusion level: share of the 24 parts whose ground-truth '
            f'visibility is &lt; {_e(_fmt(invisible, 2))} (the part is less than that share '
            'seen). Empty bins show n/a.</p>'
            + chart + kp + acc + _table(_SUMMARY_HEADER, rows) + "</section>")


def _missing(ident: str, what: str, why: str) -> str:
    """The note an older (or partial) metrics.json gets in place of a section's content."""
    return f'<p class="note missing" id="{_e(ident)}">{what} not in this report: {why}</p>'


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
            + "</section>\n" + _section_calibration(m))


def _calibration_groups(m: Dict[str, Any]) -> List[Tuple[str, Any]]:
    groups: List[Tuple[str, Any]] = [("overall", m.get("overall"))]
    groups += [(name, s) for name, s in (m.get("per_sequence") or {}).items()]
    groups += [(f"occlusion {name}", s) for name, s in (m.get("by_occlusion") or {}).items()]
    return groups


def _section_calibration(m: Dict[str, Any]) -> str:
    head = ('<section id="calibration"><h2>Visibility calibration</h2>'
            '<p class="note">Is the predicted visibility &omega; a probability? Samples are '
            '(person, part) pairs of matched persons, binned by predicted &omega;; a bar is the '
            'share of its samples whose ground-truth visibility is &gt; 0.5. A calibrated model '
            'follows the diagonal. ECE: the count-weighted mean gap |fraction visible &minus; '
            'mean predicted &omega;| over the bins.</p>')
    overall = m.get("overall") if isinstance(m.get("overall"), dict) else {}
    if "visibility_calibration" not in overall:
        return head + _missing("calibration-missing", "Visibility calibration",
                               "this metrics.json has no visibility_calibration.") + "</section>"
    calib = overall.get("visibility_calibration")
    if not isinstance(calib, dict):
        return head + _missing("calibration-missing", "Visibility calibration",
                               "no matched person with predicted &omega; and ground-truth "
                               "visibility.") + "</section>"
    bins = calib.get("bins")
    parts_html = ""
    per_part = calib.get("per_part")
    if isinstance(per_part, list) and per_part:
        names = list(PART_NAMES) if len(per_part) == len(PART_NAMES) else \
            [f"part {i}" for i in range(len(per_part))]
        eces = [(p or {}).get("ece") if isinstance(p, dict) else None for p in per_part]
        parts_html = bar_chart(names, [("ECE", eces)], title="Expected calibration error per "
                               "part (lower is better)", y_label="ECE", height=300,
                               chart_id="plot-calibration-ece-per-part")
        tiles = []
        for i, (name, p) in enumerate(zip(names, per_part)):
            if isinstance(p, dict):
                tiles.append(reliability_diagram(bins, p, title=name, compact=True,
                                                 chart_id=f"plot-calibration-part-{i}"))
            else:
                tiles.append(f'<div class="calib-empty"><b>{_e(name)}</b><br>'
                             f'<span class="na">n/a</span></div>')
        parts_html += ('<h3>Reliability per part</h3><div class="grid small-multiples">'
                       + "".join(tiles) + "</div>")
    else:
        parts_html = '<p class="note">No per-part calibration in this report.</p>'
    rows = []
    for name, s in _calibration_groups(m):
        c = (s or {}).get("visibility_calibration") if isinstance(s, dict) else None
        counts = c.get("count") if isinstance(c, dict) else None
        total = sum(int(_num(n) or 0) for n in counts) if isinstance(counts, list) else None
        rows.append([_e(name), _fmt(total), _fmt((c or {}).get("ece"), 3)])
    pooled = reliability_diagram(bins, calib, title="Reliability diagram, all parts pooled",
                                 chart_id="plot-calibration")
    return (head + '<div class="grid">' + pooled + '<div>'
            + _table(["group", "samples", "ECE"], rows, "calibration-table")
            + "</div></div>" + parts_html + "</section>")


def _histogram_of(stage_stats: Any) -> Optional[Tuple[List[float], List[Any]]]:
    """A stage's ``(edges, counts)`` when well-formed, else None."""
    hist = stage_stats.get("histogram") if isinstance(stage_stats, dict) else None
    if not isinstance(hist, dict):
        return None
    edges, counts = hist.get("edges"), hist.get("counts")
    if not isinstance(edges, list) or not isinstance(counts, list) or \
            len(edges) != len(counts) + 1 or not counts:
        return None
    fe = [_num(e) for e in edges]
    if any(e is None for e in fe) or any(b <= a for a, b in zip(fe, fe[1:])):
        return None
    return [float(e) for e in fe], counts


def _section_latency(m: Dict[str, Any]) -> str:
    lat = m.get("latency_ms") or {}
    stages = [s for s in lat if s != "total"] + (["total"] if "total" in lat else [])
    series = [(q, [(lat[s] or {}).get(q) for s in stages]) for q in ("p50", "p95", "p99")]
    chart = bar_chart(stages, series, title="Latency per stage (p50 / p95 / p99)",
                      y_label="ms", chart_id="plot-latency")
    rows = [[_e(s)] + [_fmt((lat[s] or {}).get(k), 2 if k != "count" else 0)
                       for k in ("count", "mean", "p50", "p95", "p99")] for s in stages]
    hists, without = [], []
    for i, s in enumerate(stages):
        h = _histogram_of(lat[s])
        if h is None:
            without.append(s)
            continue
        marks = [(q, (lat[s] or {}).get(q)) for q in ("p50", "p95", "p99")]
        hists.append(histogram_chart(h[0], h[1], title=f"{s} latency", markers=marks,
                                     chart_id=f"plot-latency-hist-{i}"))
    if hists:
        hist_html = ('<h3>Latency histograms</h3><div class="grid small-multiples">'
                     + "".join(hists) + "</div>")
        if without:
            hist_html += (f'<p class="note">No histogram for: '
                          f'{_e(", ".join(without))}.</p>')
    else:
        hist_html = _missing("latency-histogram-missing", "Latency histograms",
                             "this metrics.json has no per-stage histogram.")
    return ('<section id="latency"><h2>Latency per stage</h2>' + chart + hist_html
            + _table(["stage", "count", "mean ms", "p50 ms", "p95 ms", "p99 ms"], rows)
            + "</section>")


TABLE2_MODES = (("visible", "visible-only"), ("global", "global-only"),
                ("ks_highest", "KS-highest"), ("ks_matched", "KS-matched (VisHMR)"))
_TABLE2_METRICS = (("mpjpe_mm", "MPJPE"), ("pa_mpjpe_mm", "PA-MPJPE"), ("pve_mm", "PVE"))


def _section_table2(m: Dict[str, Any]) -> str:
    head = '<section id="table2"><h2>Merge modes (VisHMR paper, table 2)</h2>'
    if "table2" not in m:
        return head + _missing("table2-missing", "Table 2",
                               "this metrics.json has no table2.") + "</section>"
    t2 = m.get("table2")
    modes = t2.get("modes") if isinstance(t2, dict) else None
    if not isinstance(modes, dict) or not modes:
        return head + _missing("table2-missing", "Table 2", "the model is not of the VisHMR "
                               "family (no merge modes to compare).") + "</section>"
    share = _num(t2.get("occluded_min_share"))
    keys = [k for k, _ in TABLE2_MODES if k in modes] + \
        [k for k in modes if k not in dict(TABLE2_MODES)]
    labels = dict(TABLE2_MODES)
    cols = [(group, key) for group in ("all", "occluded") for key, _ in _TABLE2_METRICS]

    def stat(mode: str, group: str, key: str) -> Any:
        g = (modes.get(mode) or {}).get(group) if isinstance(modes.get(mode), dict) else None
        return (g or {}).get(key) if isinstance(g, dict) else None

    best = {}
    for col in cols:  # lowest mean per column is shown bold
        means = [_mean(stat(k, *col)) for k in keys]
        finite = [v for v in means if v is not None]
        best[col] = min(finite) if len(finite) > 1 else None
    rows = []
    for k in keys:
        row = [_e(labels.get(k, k))]
        for group in ("all", "occluded"):
            row.append(_fmt((stat(k, group, "mpjpe_mm") or {}).get("count")
                            if isinstance(stat(k, group, "mpjpe_mm"), dict) else None))
            for key, _ in _TABLE2_METRICS:
                v = _mean(stat(k, group, key))
                cell = _fmt(v)
                row.append(f"<b>{cell}</b>" if v is not None and v == best[(group, key)]
                           else cell)
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    metric_heads = "".join(f"<th>{_e(label)} mm</th>" for _, label in _TABLE2_METRICS)
    occl = f"&#8805; {share * 100:.0f}%" if share is not None else "a share"
    caption = ("Table 2: the same frames run through each merge mode of the visibility-aware "
               f"model. Mean errors over matched persons; <i>occluded</i>: persons with {occl} "
               "of their 24 parts not visible in the ground truth; n: matched persons; best "
               "(lowest) mean per column in bold.")
    table = ('<table class="table2"><caption>' + caption + '</caption><thead>'
             '<tr><th rowspan="2">mode</th><th colspan="4">all persons</th>'
             '<th colspan="4">occluded persons</th></tr>'
             f'<tr><th>n</th>{metric_heads}<th>n</th>{metric_heads}</tr></thead><tbody>\n'
             + "\n".join(rows) + "\n</tbody></table>")
    return head + table + "</section>"


def _image_src(path: Any) -> Optional[str]:
    """A relative image path as an escaped, URL-quoted ``src``; None for absolute paths or
    URLs (the report never points outside its folder)."""
    if not isinstance(path, str) or not path or path.startswith(("/", "\\")) or \
            ":" in path or ".." in path.replace("\\", "/").split("/"):
        return None
    return _e(urllib.parse.quote(path.replace("\\", "/"), safe="/"))


def _section_worst_frames(m: Dict[str, Any]) -> str:
    head = ('<section id="worst-frames"><h2>Worst frames</h2>'
            '<p class="note">Frames with the highest MPJPE (mean over the frame\'s matched '
            'persons), worst first, with their overlay images.</p>')
    if "worst_frames" not in m:
        return head + _missing("worst-frames-missing", "Worst frames",
                               "this metrics.json has no worst_frames.") + "</section>"
    frames = [f for f in (m.get("worst_frames") or []) if isinstance(f, dict)]
    if not frames:
        return head + '<p class="note">No scored frame with a matched person.</p></section>'
    figures = []
    for rank, f in enumerate(frames, 1):
        bag, frame = f.get("bag"), f.get("frame")
        caption = (f"#{rank} {_e(bag if bag is not None else 'n/a')}, frame {_fmt(frame)}"
                   f"<br>MPJPE {_fmt(f.get('mpjpe_mm'))} mm<br>matched "
                   f"{_fmt(f.get('matched'))} / misses {_fmt(f.get('misses'))} / fp "
                   f"{_fmt(f.get('false_positives'))}")
        src = _image_src(f.get("image"))
        alt = f"overlay of {bag} frame {frame}, MPJPE {_plain(f.get('mpjpe_mm'))} mm"
        img = (f'<img src="{src}" loading="lazy" alt="{_e(alt)}">' if src else
               '<div class="noimg">no image</div>')
        figures.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
    return head + '<div class="gallery">' + "\n".join(figures) + "</div></section>"


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
                _section_latency(m), _section_table2(m), _section_worst_frames(m),
                _section_sequences(m)]
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
