"""`bot.py audit verify | export | destinations`: the audit trail's evidence commands (docs/audit.md).

Like `runtime.py`, this module wires storage and core together for a command; `bot.py` only parses
arguments and turns the results into exit codes. Everything streams: events are read a page at a
time (storage.audit_outbox), so a year of events is checked or exported in bounded memory.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from core.audit_events import ChainBreak, ChainChecker
from core.ports import DestinationStatus
from storage.audit_outbox import AuditCursors, AuditReader, ExportFilter
from storage.db import Store

CSV_COLUMNS = (
    "seq",
    "event_id",
    "at",
    "type",
    "action",
    "actor_id",
    "actor_slack_id",
    "actor_email",
    "actor_name",
    "via",
    "request_id",
    "flow",
    "target",
    "status_from",
    "status_to",
    "reason",
    "fields",
    "detail",
    "prev_hash",
    "hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def parse_when(text: str, *, end: bool = False) -> datetime:
    """A --since / --until value: a date (YYYY-MM-DD) or an ISO 8601 time (UTC when no offset is given).

    As an end, a bare date includes that whole day (`--until 2026-12-31` ends at 2027-01-01T00:00Z).
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None and len(text) == 10:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + timedelta(days=1) if end else moment
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ── verify ──────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `audit verify`: how many events were checked, the head, and the first problem."""

    checked: int
    head_seq: int
    head_hash: str | None
    problem: ChainBreak | None = None


async def verify(store: Store, against: list[Path]) -> VerifyResult:
    """Check the whole chain, then each destination copy in `against` (JSON lines of the file destination)."""
    checker = ChainChecker()
    async for page in AuditReader(store).pages():
        for event in page:
            problem = checker.feed(event)
            if problem is not None:
                return VerifyResult(checker.count, event.seq, event.hash, problem)
    head_seq = checker.last.seq if checker.last else 0
    head_hash = checker.last.hash if checker.last else None
    result = VerifyResult(checker.count, head_seq, head_hash)
    for path in against:
        problem = await _check_copy(store, path, head_seq)
        if problem is not None:
            return VerifyResult(checker.count, head_seq, head_hash, problem)
    return result


async def _check_copy(store: Store, path: Path, head_seq: int) -> ChainBreak | None:
    """Every event of a destination's copy must be in the database unchanged, and the copy's newest
    chain head must not be beyond the database's end (rows removed from the end)."""
    reader = AuditReader(store)
    newest: tuple[int, str, str] = (0, "", "")
    for chunk in _copy_chunks(path):
        found = await reader.by_seq([seq for seq, _, _, _ in chunk])
        for seq, event_id, digest, head in chunk:
            if seq > newest[0]:
                newest = (seq, event_id, digest)
            if head is not None and head[0] > newest[0]:
                newest = head
            stored = found.get(seq)
            if stored is None:
                if seq > head_seq:
                    continue  # reported below as a removed tail
                return ChainBreak(seq, event_id, f"it is in {path} but no longer in the database (deleted)")
            if stored.event_id != event_id or stored.hash != digest:
                return ChainBreak(seq, event_id, f"the database's event differs from the copy in {path} (edited)")
    if 0 < newest[0] <= head_seq and newest[2]:
        stored = (await reader.by_seq([newest[0]])).get(newest[0])
        if stored is not None and stored.hash != newest[2]:
            return ChainBreak(
                newest[0], stored.event_id, f"the chain head {path} saw at seq {newest[0]} differs from the database's"
            )
    if newest[0] > head_seq:
        return ChainBreak(
            newest[0],
            newest[1] or "(see the destination)",
            f"{path} has seen event seq {newest[0]} but the database ends at seq {head_seq}: "
            "the newest events were removed from the database",
        )
    return None


def _copy_chunks(path: Path, size: int = 500) -> Iterator[list[tuple[int, str, str, tuple[int, str, str] | None]]]:
    chunk: list[tuple[int, str, str, tuple[int, str, str] | None]] = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                head = line.get("chain_head") or {}
                chunk.append(
                    (
                        int(line["seq"]),
                        str(line["event_id"]),
                        str(line["hash"]),
                        (int(head["seq"]), str(head.get("event_id") or ""), str(head.get("hash")))
                        if head.get("seq")
                        else None,
                    )
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{path}:{number} is not an audit event line") from None
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


# ── export ──────────────────────────────────────────────────────────────────────────────────────


async def export(store: Store, selection: ExportFilter, fmt: str, out: IO[str]) -> int:
    """Write the selected events to `out` as JSON lines or CSV, a page at a time; return how many."""
    count = 0
    # RFC 4180's CRLF row ends: with them the writer quotes a cell holding a lone CR too (with "\n" alone
    # it does not, and a reason with a CR would start a new row whose first cell escaped formula quoting).
    writer = csv.writer(out, lineterminator="\r\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    async for page in AuditReader(store).pages(selection):
        for event in page:
            document = event.document()
            if writer is None:
                out.write(json.dumps(document, ensure_ascii=False) + "\n")
            else:
                writer.writerow(_csv_row(document))
            count += 1
        out.flush()
    return count


def _csv_row(document: dict[str, Any]) -> list[str]:
    actor = document["actor"]
    values: dict[str, Any] = {
        **document,
        "actor_id": actor["id"],
        "actor_slack_id": actor["slack_id"],
        "actor_email": actor["email"],
        "actor_name": actor["name"],
        "fields": None if document["fields"] is None else json.dumps(document["fields"], ensure_ascii=False),
        "detail": json.dumps(document["detail"], ensure_ascii=False),
    }
    return [_cell(values[column]) for column in CSV_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # A spreadsheet runs a cell that starts like a formula; a requester's reason must never be one.
    return "'" + text if text.startswith(_FORMULA_START) else text


# ── destinations ────────────────────────────────────────────────────────────────────────────────


async def destination_status(store: Store, names: list[str] | None) -> list[DestinationStatus]:
    """The configured destinations' cursors (every cursor in the database when `names` is None)."""
    return await AuditCursors(store).status(names)


def print_status(statuses: list[DestinationStatus], now: datetime, out: IO[str] = sys.stdout) -> None:
    """One block per destination: backlog, how far behind, last delivery, last error."""
    if not statuses:
        out.write("no audit destinations (add them under audit.destinations in the flows file)\n")
        return
    for status in statuses:
        behind = ""
        if status.oldest_undelivered_at is not None:
            behind = f", oldest undelivered {_age(now - status.oldest_undelivered_at)} old"
        out.write(f"{status.name}\n")
        out.write(f"  backlog: {status.backlog} event{'s' if status.backlog != 1 else ''}{behind}\n")
        out.write(f"  delivered up to seq {status.position} of {status.head}")
        out.write(f", last at {_when(status.delivered_at)}\n" if status.delivered_at else " (nothing delivered yet)\n")
        if status.last_error:
            out.write(
                f"  last error ({_when(status.last_error_at)}, {status.failures} in a row): {status.last_error}\n"
            )
        else:
            out.write("  last error: none\n")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "never"


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
