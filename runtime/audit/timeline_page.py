"""The auditor's timeline page: one self-contained HTML document (inline CSS, SVG and JS).

Nothing is loaded from anywhere: the page renders offline, and its Content-Security-
Policy forbids any fetch, so a page that tried would fail loudly. The SVG and the event
table are rendered here, on the server, so the page shows everything without
JavaScript; the inline script only adds filtering and a detail panel, and records any
script error in ``window.__errors`` and in ``<body data-js-errors>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from runtime.audit.history import History, TimelineEntry
from runtime.audit.verify import ChainReport

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac")
FATE_COLOURS = {
    "kept": "#2e7d32",
    "kept_late": "#f9a825",
    "broken_and_escalated": "#c62828",
    "broken": "#e53935",
    "cancelled": "#757575",
    "open": "#1565c0",
}

WIDTH = 1000
LEFT = 110
RIGHT = 30
LANES = ("ownership", "note", "handoff", "promise", "escalation", "contact")
LANE_TITLES = {
    "ownership": "Owner",
    "note": "Notes",
    "handoff": "Hand-offs",
    "promise": "Promises",
    "escalation": "Escalations",
    "contact": "Contacts",
}
LANE_HEIGHT = 44
TOP = 30

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{padding:16px 24px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 4px}
main{padding:16px 24px}
.muted{color:#666}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff}
.ok{background:#2e7d32}.broken{background:#c62828}
.hash{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin-bottom:16px}
h2{font-size:16px;margin:0 0 8px}
svg{width:100%;height:auto;display:block}
svg text{font-size:12px;fill:#333}
svg .band text{fill:#fff;font-weight:600}
svg .marker{cursor:pointer}
svg .marker.selected{stroke:#000;stroke-width:2}
.legend span{display:inline-block;margin-right:16px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:-1px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f3f3f3}
tr.hidden,.marker.hidden{display:none}
#filters label{margin-right:12px}
#detail{min-height:1.5em}
"""

_SCRIPT = """
(function () {
  var categories = {};
  document.querySelectorAll('[data-category]').forEach(function (el) {
    categories[el.getAttribute('data-category')] = true;
  });
  var filters = document.getElementById('filters');
  Object.keys(categories).sort().forEach(function (name) {
    var label = document.createElement('label');
    var box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = true;
    box.addEventListener('change', function () {
      document.querySelectorAll('[data-category="' + name + '"]').forEach(function (el) {
        el.classList.toggle('hidden', !box.checked);
      });
    });
    label.appendChild(box);
    label.appendChild(document.createTextNode(' ' + name));
    filters.appendChild(label);
  });
  var detail = document.getElementById('detail');
  document.querySelectorAll('.marker').forEach(function (marker) {
    marker.addEventListener('click', function () {
      document.querySelectorAll('.marker.selected').forEach(function (m) { m.classList.remove('selected'); });
      marker.classList.add('selected');
      detail.textContent = marker.getAttribute('data-detail');
      var row = document.getElementById('v' + marker.getAttribute('data-version'));
      if (row) { row.scrollIntoView({block: 'nearest'}); }
    });
  });
  var data = JSON.parse(document.getElementById('timeline-data').textContent);
  document.getElementById('js-summary').textContent =
    data.events + ' events, ' + data.owners.length + ' owners: ' + data.owners.join(', ');
  document.body.setAttribute('data-rendered', 'yes');
})();
"""

_ERROR_TRAP = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__errors.push(String(e.reason)); });
"""

_REPORT_ERRORS = """
document.body.setAttribute('data-js-errors', String(window.__errors.length));
document.getElementById('js-errors').textContent = window.__errors.join('\\n');
"""


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _name(agent_id: str | None, names: Mapping[str, str]) -> str:
    if not agent_id:
        return "nobody"
    name = names.get(agent_id)
    return f"{name} ({agent_id})" if name and name != agent_id else agent_id


class _Scale:
    def __init__(self, start: datetime, end: datetime) -> None:
        if end <= start:
            end = start + timedelta(minutes=1)
        pad = (end - start) * 0.03
        self.start, self.end = start - pad, end + pad
        self.span = (self.end - self.start).total_seconds()

    def x(self, moment: datetime) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (moment - self.start).total_seconds() / self.span


def _marker(entry: TimelineEntry, x: float, y: float, colour: str, shape: str) -> str:
    detail = f"v{entry.version} {_utc(entry.occurred_at)} {entry.event_type} by {entry.actor}: {entry.summary}"
    attrs = (
        f'class="marker" data-category="{escape(entry.category)}" data-version="{entry.version}" '
        f'data-detail="{escape(detail)}" fill="{colour}"'
    )
    title = f"<title>{escape(detail)}</title>"
    if shape == "diamond":
        points = f"{x:.1f},{y - 8:.1f} {x + 8:.1f},{y:.1f} {x:.1f},{y + 8:.1f} {x - 8:.1f},{y:.1f}"
        return f'<polygon {attrs} points="{points}">{title}</polygon>'
    if shape == "triangle":
        points = f"{x:.1f},{y - 8:.1f} {x + 8:.1f},{y + 7:.1f} {x - 8:.1f},{y + 7:.1f}"
        return f'<polygon {attrs} points="{points}">{title}</polygon>'
    if shape == "square":
        return f'<rect {attrs} x="{x - 7:.1f}" y="{y - 7:.1f}" width="14" height="14">{title}</rect>'
    return f'<circle {attrs} cx="{x:.1f}" cy="{y:.1f}" r="7">{title}</circle>'


def _svg(history: History, names: Mapping[str, str], colours: Mapping[str, str]) -> str:
    entries = history.entries
    if not entries:
        return "<p>No events.</p>"
    scale = _Scale(entries[0].occurred_at, entries[-1].occurred_at)
    height = TOP + LANE_HEIGHT * len(LANES) + 30
    lane_y = {lane: TOP + LANE_HEIGHT * i + LANE_HEIGHT / 2 for i, lane in enumerate(LANES)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="Ownership and events over time">'
    ]
    for lane in LANES:
        y = lane_y[lane]
        parts.append(f'<text x="8" y="{y + 4:.1f}">{LANE_TITLES[lane]}</text>')
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
    # Ownership bands.
    y = lane_y["ownership"]
    for period in history.periods:
        x1 = scale.x(period.since)
        x2 = scale.x(period.until) if period.until else scale.x(scale.end) - 1
        label = _name(period.owner, names)
        until = _utc(period.until) if period.until else "now"
        tip = f"{label}: owner from {_utc(period.since)} to {until} ({period.cause})"
        parts.append(
            f'<g class="band" data-owner="{escape(period.owner)}"><rect x="{x1:.1f}" y="{y - 15:.1f}" '
            f'width="{max(x2 - x1, 2):.1f}" height="30" rx="4" fill="{colours[period.owner]}">'
            f"<title>{escape(tip)}</title></rect>"
            f'<text x="{x1 + 6:.1f}" y="{y + 4:.1f}">{escape(label)}</text></g>'
        )
    # Event markers.
    fates = {p.promise_id: p.fate for p in history.promises}
    for entry in entries:
        x = scale.x(entry.occurred_at)
        if entry.category == "note":
            parts.append(_marker(entry, x, lane_y["note"], "#5c6bc0", "circle"))
        elif entry.category == "handoff":
            parts.append(_marker(entry, x, lane_y["handoff"], "#8e24aa", "triangle"))
        elif entry.category == "promise":
            colour = FATE_COLOURS.get(fates.get(entry.promise_id or "", "open"), "#1565c0")
            parts.append(_marker(entry, x, lane_y["promise"], colour, "diamond"))
        elif entry.category == "escalation":
            parts.append(_marker(entry, x, lane_y["escalation"], "#c62828", "square"))
        elif entry.category == "contact":
            parts.append(_marker(entry, x, lane_y["contact"], "#00897b", "circle"))
        elif entry.category == "ownership":
            parts.append(_marker(entry, x, lane_y["ownership"] + 22, "#333", "triangle"))
    # Time axis.
    axis_y = TOP + LANE_HEIGHT * len(LANES) + 10
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    for i in range(5):
        moment = scale.start + (scale.end - scale.start) * (i / 4)
        x = scale.x(moment)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 5}" stroke="#999"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="{anchor}">{_utc(moment)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rows(entries: Sequence[TimelineEntry], names: Mapping[str, str], fates: Mapping[str, str]) -> str:
    rows = []
    for e in entries:
        fate = fates.get(e.promise_id or "")
        what = escape(e.summary) + (f" <strong>[{escape(fate)}]</strong>" if fate else "")
        rows.append(
            f'<tr id="v{e.version}" data-category="{escape(e.category)}"><td>{e.version}</td>'
            f"<td>{_utc(e.occurred_at)}</td><td>{escape(e.event_type)}</td><td>{escape(e.actor)}</td>"
            f"<td>{what}</td><td>{escape(_name(e.owner_after, names)) if e.owner_after else ''}</td></tr>"
        )
    return "".join(rows)


def _json_for_script(value: object) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_timeline_page(
    history: History, report: ChainReport, tenant_id: str, names: Mapping[str, str], generated_at: datetime
) -> str:
    """The whole page."""
    owners = list(dict.fromkeys(p.owner for p in history.periods))
    colours = {owner: PALETTE[i % len(PALETTE)] for i, owner in enumerate(owners)}
    labels = {p.promise_id: p.label for p in history.promises}
    if report.ok:
        status = (
            f'<span class="badge ok">chain verified</span> {report.events} events, head '
            f'<span class="hash">v{report.head_version} {escape(report.head_hash)}</span>'
        )
    else:
        assert report.broken is not None
        status = f'<span class="badge broken">chain BROKEN</span> <strong>{escape(report.broken.describe())}</strong>'
    legend = "".join(
        f'<span class="owner"><span class="swatch" style="background:{colours[o]}"></span>{escape(_name(o, names))}'
        "</span>"
        for o in owners
    )
    periods = "".join(
        f"<tr><td>{escape(_name(p.owner, names))}</td><td>{_utc(p.since)}</td>"
        f"<td>{_utc(p.until) if p.until else 'now'}</td><td>{escape(p.cause)}"
        f"{' (' + escape(p.handoff_id) + ')' if p.handoff_id else ''}</td>"
        f'<td class="hash">v{p.cause_version} {escape(p.cause_event_id)}</td></tr>'
        for p in history.periods
    )
    promises = "".join(
        f"<tr><td>{escape(p.promise_id)}</td><td>{escape(_name(p.promised_by, names))}</td><td>{_utc(p.due_at)}</td>"
        f"<td>{escape(_name(p.responsible_id, names))}</td>"
        f'<td><span class="badge" style="background:{FATE_COLOURS.get(p.fate, "#555")}">{escape(p.label)}</span></td>'
        f"<td>{escape(p.what)}</td><td>"
        + escape(", ".join(f"level {e.level} to {_name(e.to_agent_id, names)}" for e in p.escalations))
        + "</td></tr>"
        for p in history.promises
    )
    data = {
        "tenant_id": tenant_id,
        "customer_id": history.customer_id,
        "events": len(history.entries),
        "owners": [_name(o, names) for o in owners],
        "chain": report.as_dict(),
    }
    title = f"Customer {history.customer_id}: timeline"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<script>{_ERROR_TRAP}</script>
<style>{_CSS}</style>
</head>
<body data-rendered="no" data-js-errors="unknown">
<header>
<h1>Customer {escape(history.customer_id)} <span class="muted">tenant {escape(tenant_id)}</span></h1>
<div id="chain-status">{status}</div>
<div class="muted">Generated {_utc(generated_at)}. <span id="js-summary"></span></div>
</header>
<main>
<section><h2>Ownership over time</h2>
<div class="legend" id="owners">{legend}</div>
{_svg(history, names, colours)}
<div id="filters"></div>
<div id="detail" class="muted">Click a marker for details.</div>
</section>
<section><h2>Owners</h2><table><thead><tr><th>owner</th><th>from</th><th>to</th><th>why</th><th>made owner by</th>
</tr></thead><tbody>{periods}</tbody></table></section>
<section><h2>Promises</h2><table><thead><tr><th>promise</th><th>promised by</th><th>due</th><th>responsible</th>
<th>fate</th><th>what</th><th>escalations</th></tr></thead><tbody>{promises or '<tr><td colspan="7">none</td></tr>'}
</tbody></table></section>
<section><h2>Events</h2><table><thead><tr><th>#</th><th>time</th><th>event</th><th>actor</th><th>what</th>
<th>owner after</th></tr></thead><tbody>{_rows(history.entries, names, labels)}</tbody></table></section>
<pre id="js-errors" hidden></pre>
</main>
<script type="application/json" id="timeline-data">{_json_for_script(data)}</script>
<script>{_SCRIPT}</script>
<script>{_REPORT_ERRORS}</script>
</body>
</html>
"""
