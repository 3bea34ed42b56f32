"""The access review rendered for an auditor: CSV for spreadsheets, or ONE self-contained HTML file.

Both writers take the grants as iterables and write as they go, so the report of a year of grants
never sits in memory. The HTML page needs nothing from the network: its CSS is inline, each
target's timeline is an inline SVG (one lane per person, one bar per grant, coloured by how it
ended, with the details in a tooltip), and a Content-Security-Policy forbids any script or fetch.
Every string that came from a person (names, reasons, target names) is escaped; in CSV, cells
that a spreadsheet would run as a formula are quoted as text.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from html import escape
from typing import TextIO

from core.access_review import GrantRecord, Outcome, TargetSummary, bar_end, outcome, outcome_detail

CSV_COLUMNS = (
    "flow",
    "target",
    "request_id",
    "requester",
    "requester_email",
    "identity",
    "requested_at",
    "approved_by",
    "approved_at",
    "reason",
    "approval_note",
    "access_from",
    "scheduled_end",
    "ended_at",
    "outcome",
    "outcome_detail",
)

# Spreadsheets run a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

COLOURS = {
    Outcome.ON_TIME: "#2e7d32",
    Outcome.EARLY: "#1565c0",
    Outcome.EXTENDED: "#6a1b9a",
    Outcome.FAILED: "#c62828",
    Outcome.ACTIVE: "#ef6c00",
    Outcome.OVERDUE: "#8b0000",
    Outcome.GRANTING: "#757575",
}

GrantSource = Callable[[TargetSummary, bool], Iterable[GrantRecord]]
"""The grants of one target of the period; `True` asks for them grouped by person (lanes)."""


def _time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _cell(value: str | None) -> str:
    text = value or ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(out: TextIO, records: Iterable[GrantRecord], *, now: datetime) -> int:
    """Write the header and one row per grant; return how many grants were written."""
    # The default dialect ends rows with CRLF (RFC 4180), so a lone CR or LF in a reason is quoted too.
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        result = outcome(record, now)
        writer.writerow(
            [
                _cell(value)
                for value in (
                    record.flow,
                    record.target,
                    record.request_id,
                    record.requester,
                    record.requester_email,
                    record.identity,
                    _time(record.requested_at),
                    record.approved_by,
                    _time(record.approved_at),
                    record.reason,
                    record.approval_note,
                    _time(record.start),
                    _time(record.scheduled_end),
                    _time(record.ended_at),
                    result.value,
                    outcome_detail(record, result),
                )
            ]
        )
        count += 1
    return count


# ── HTML ─────────────────────────────────────────────────────────────────────────────────────────

_WIDTH = 960
_LABELS = 230  # the left column of person names
_PLOT = _WIDTH - _LABELS - 12
_AXIS = 26
_LANE = 20
_BAR = 14

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1a1a1a;margin:24px auto;
max-width:1180px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;margin:0 0 16px}table{border-collapse:collapse;width:100%;margin:8px 0 16px}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f4f4f4}td.num{text-align:right}.legend span{display:inline-block;margin-right:14px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.outcome{font-weight:600;white-space:nowrap}svg.timeline{display:block;margin:8px 0;background:#fafafa;
border:1px solid #e3e3e3}svg text{font:11px sans-serif;fill:#333}svg .tick{stroke:#ddd}
@media print{h2{break-before:page}svg.timeline{break-inside:avoid}}
"""


def _outcome_class(result: Outcome) -> str:
    return "outcome-" + result.value.replace(" ", "-")


def _css() -> str:
    rules = "".join(f".{_outcome_class(o)}{{fill:{c};color:{c}}}" for o, c in COLOURS.items())
    return _CSS.strip() + rules


def _x(moment: datetime, since: datetime, span: float) -> float:
    offset = (moment - since).total_seconds() / span
    return _LABELS + _PLOT * min(max(offset, 0.0), 1.0)


_TICK_STEPS = tuple(
    timedelta(hours=h) for h in (1, 2, 3, 6, 12, 24, 48, 24 * 7, 24 * 14, 24 * 28, 24 * 56, 24 * 91, 24 * 182)
)


def _ticks(since: datetime, until: datetime) -> tuple[list[datetime], str]:
    """Round instants (whole hours or UTC midnights) across the period, at most 10, and their label format."""
    span = until - since
    step = next((s for s in _TICK_STEPS if span / s <= 10), _TICK_STEPS[-1])
    unit = timedelta(days=1) if step >= timedelta(days=1) else timedelta(hours=1)
    midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight + ((since - midnight + unit - timedelta(microseconds=1)) // unit) * unit
    ticks: list[datetime] = []
    moment = first
    while moment <= until and len(ticks) < 12:
        ticks.append(moment)
        moment += step
    return ticks, "%m-%d %H:%M" if step < timedelta(days=1) else "%Y-%m-%d"


def _axis(since: datetime, until: datetime, height: int) -> str:
    ticks, fmt = _ticks(since, until)
    span = (until - since).total_seconds()
    parts = []
    for moment in ticks:
        x = _x(moment, since, span)
        anchor = "start" if x < _LABELS + 30 else "end" if x > _WIDTH - 50 else "middle"
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{_AXIS - 6}" x2="{x:.1f}" y2="{height}"/>'
            f'<text x="{x:.1f}" y="{_AXIS - 10}" text-anchor="{anchor}">{escape(moment.strftime(fmt))}</text>'
        )
    return "".join(parts)


def _tooltip(record: GrantRecord, result: Outcome) -> str:
    detail = outcome_detail(record, result)
    lines = [
        f"{record.who}: {result.value}" + (f" ({detail})" if detail else ""),
        f"{_time(record.start)} → {_time(record.ended_at) or 'still held'}",
        f"approved by {record.approved_by or '?'}",
    ]
    if record.reason:
        lines.append(f"reason: {record.reason}")
    lines.append(f"request {record.request_id}")
    return escape("\n".join(lines))


def _timeline(
    out: TextIO,
    summary: TargetSummary,
    records: Iterable[GrantRecord],
    *,
    since: datetime,
    until: datetime,
    now: datetime,
) -> Counter[Outcome]:
    """Write one target's SVG (one lane per person, a bar per grant); return its outcome counts."""
    height = _AXIS + summary.people * _LANE + 6
    span = (until - since).total_seconds()
    label = escape(f"Timeline of the grants of {summary.flow} / {summary.target}")
    out.write(
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}" '
        f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}">'
    )
    out.write(_axis(since, until, height))
    counts: Counter[Outcome] = Counter()
    lane, person = -1, None
    for record in records:
        if record.requester != person:
            lane, person = lane + 1, record.requester
            y = _AXIS + lane * _LANE
            who = record.requester_email or record.requester
            short = who if len(who) <= 34 else who[:33] + "…"
            out.write(
                f'<text class="lane" x="4" y="{y + _BAR}"><title>{escape(record.who)}</title>{escape(short)}</text>'
            )
        result = outcome(record, now)
        counts[result] += 1
        start = record.start or record.requested_at
        end = bar_end(record, now) or start
        x1, x2 = _x(start, since, span), _x(end, since, span)
        width = max(x2 - x1, 2.0)  # a failed attempt or a very short grant is still visible
        out.write(
            f'<rect class="grant {_outcome_class(result)}" data-request="{escape(record.request_id)}" '
            f'x="{x1:.1f}" y="{_AXIS + lane * _LANE + 3}" width="{width:.1f}" height="{_BAR}" rx="2">'
            f"<title>{_tooltip(record, result)}</title></rect>"
        )
    out.write("</svg>")
    return counts


def _table(out: TextIO, records: Iterable[GrantRecord], *, now: datetime) -> None:
    out.write(
        "<table><thead><tr><th>Request</th><th>Who</th><th>Identity</th><th>From</th><th>Until</th>"
        "<th>Approved by</th><th>Reason</th><th>Ended</th></tr></thead><tbody>"
    )
    for record in records:
        result = outcome(record, now)
        detail = outcome_detail(record, result)
        until_text = _time(record.ended_at) or f"(scheduled {_time(record.scheduled_end)})"
        approved = f"{record.approved_by or ''} {_time(record.approved_at)}".strip()
        if record.approval_note:
            approved += f" — {record.approval_note}"
        cells = (
            record.request_id,
            record.who,
            record.identity or "",
            _time(record.start),
            until_text,
            approved,
            record.reason or "",
        )
        out.write("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells))
        out.write(
            f'<td><span class="outcome {_outcome_class(result)}">{escape(result.value)}</span>'
            + (f"<br>{escape(detail)}" if detail else "")
            + "</td></tr>"
        )
    out.write("</tbody></table>")


def write_html(
    out: TextIO,
    targets: Iterable[TargetSummary],
    grants: GrantSource,
    *,
    since: datetime,
    until: datetime,
    now: datetime,
) -> int:
    """Write the whole page (one section per target: timeline, outcome counts, table); return the grants."""
    targets = list(targets)  # one small row per target, not per grant
    title = f"Access review {_time(since)} to {_time(until)}"
    out.write(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # Nothing may be fetched or run: the file is evidence, opened offline by an auditor.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{_css()}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">Generated {escape(_time(now))} by jitbot from its request records. '
        f"{len(targets)} target{'s' if len(targets) != 1 else ''}, "
        f"{sum(t.grants for t in targets)} grants.</p>"
        '<p class="legend">'
        + "".join(
            f'<span><span class="swatch" style="background:{c}"></span>{escape(o.value)}</span>'
            for o, c in COLOURS.items()
        )
        + "</p>"
    )
    if targets:
        out.write("<table><thead><tr><th>Flow</th><th>Target</th><th>Grants</th><th>People</th></tr></thead><tbody>")
        for t in targets:
            out.write(
                f"<tr><td>{escape(t.flow)}</td><td>{escape(t.target)}</td>"
                f'<td class="num">{t.grants}</td><td class="num">{t.people}</td></tr>'
            )
        out.write("</tbody></table>")
    else:
        out.write("<p>No access was granted in this period.</p>")
    total = 0
    for summary in targets:
        out.write(f'<section class="target"><h2>{escape(summary.flow)} / {escape(summary.target)}</h2>')
        counts = _timeline(out, summary, grants(summary, True), since=since, until=until, now=now)
        out.write(
            '<p class="counts">'
            + ", ".join(f"{n} {escape(o.value)}" for o, n in sorted(counts.items(), key=lambda i: -i[1]))
            + "</p>"
        )
        _table(out, grants(summary, False), now=now)
        out.write("</section>")
        total += summary.grants
    out.write("</body></html>\n")
    return total
