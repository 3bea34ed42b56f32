"""Identity overrides: which identity a Slack user has in a target system, when it is not their email.

An override is stored per (slack_id, system); system "*" applies to every system, and an override
for the exact system wins over it. Every change writes an audit row in the same transaction.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlite_utils

from core.clock import Clock, SystemClock
from core.errors import JitError
from core.models import AuditEvent
from core.secrets import SecretRegistry
from storage.audit import AuditWriter
from storage.db import Store, from_db_time, to_db_time

ANY_SYSTEM = "*"
CSV_COLUMNS = ("slack_id", "system", "identity")


@dataclass(frozen=True)
class IdentityOverride:
    """One stored override and who set it when."""

    slack_id: str
    system: str
    identity: str
    updated_at: datetime
    updated_by: str


class IdentityImportError(JitError):
    """A CSV import was refused; `issues` holds (line number, message) for every bad row."""

    def __init__(self, issues: list[tuple[int, str]]) -> None:
        self.issues = list(issues)
        super().__init__(
            "identity CSV refused, nothing imported:\n"
            + "\n".join(f"line {line}: {message}" for line, message in self.issues)
        )


# The key columns (slack_id, system) are indexed: PostgreSQL refuses an index entry past ~2,700 bytes
# where SQLite takes any length, so both refuse a key longer than any real Slack id or system name.
KEY_MAX = 256


def _check_value(name: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{name} is empty")
    if name != "identity" and len(value) > KEY_MAX:
        raise ValueError(f"{name} is longer than {KEY_MAX} characters")
    return value


def _upsert(
    db: sqlite_utils.Database,
    audit: AuditWriter,
    slack_id: str,
    system: str,
    identity: str,
    actor: str,
    at: datetime,
    source: str,
) -> None:
    previous = db.execute(
        "SELECT identity FROM identity_overrides WHERE slack_id = ? AND system = ?", [slack_id, system]
    ).fetchone()
    db.execute(
        "INSERT INTO identity_overrides (slack_id, system, identity, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (slack_id, system) DO UPDATE SET "
        "identity = excluded.identity, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        [slack_id, system, identity, to_db_time(at), actor],
    )
    detail = {
        "slack_id": slack_id,
        "system": system,
        "identity": identity,
        "previous": None if previous is None else previous[0],
        "source": source,
    }
    audit.insert(db, AuditEvent(at=at, actor=actor, action="identity.set", detail=detail))


def parse_identity_csv(text: str) -> tuple[list[tuple[str, str, str]], list[tuple[int, str]]]:
    """Parse override CSV text into rows and (line, message) issues; pure, for import_csv."""
    # strict: an unterminated quote is an error, not a value that swallows the rest of the file.
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    issues: list[tuple[int, str]] = []
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
    except csv.Error as exc:
        return [], [(reader.line_num, f"unreadable CSV: {exc}")]
    if header is None:
        return [], [(1, f"missing header row ({','.join(CSV_COLUMNS)})")]
    names = [cell.strip().lower() for cell in header]
    if sorted(names) != sorted(CSV_COLUMNS):
        return [], [
            (reader.line_num, f"header must name exactly the columns {', '.join(CSV_COLUMNS)}; got {', '.join(names)}")
        ]
    positions = [names.index(column) for column in CSV_COLUMNS]
    rows: list[tuple[str, str, str]] = []
    seen: dict[tuple[str, str], int] = {}
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader drops the broken line and resumes, so later rows are still checked.
            issues.append((reader.line_num, f"unreadable CSV: {exc}"))
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(CSV_COLUMNS):
            issues.append((line, f"expected {len(CSV_COLUMNS)} values, got {len(record)}"))
            continue
        try:
            slack_id, system, identity = (_check_value(CSV_COLUMNS[i], record[p]) for i, p in enumerate(positions))
        except ValueError as exc:
            issues.append((line, str(exc)))
            continue
        if (slack_id, system) in seen:
            issues.append((line, f"{slack_id}/{system} already given on line {seen[slack_id, system]}"))
            continue
        seen[slack_id, system] = line
        rows.append((slack_id, system, identity))
    return rows, issues


class IdentityStore:
    """Reads and changes identity overrides; every change is audited."""

    def __init__(self, store: Store, clock: Clock | None = None, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._audit = AuditWriter(SecretRegistry() if secrets is None else secrets)

    async def set(self, slack_id: str, system: str, identity: str, *, actor: str) -> None:
        """Store (or replace) the override of `slack_id` for `system` ("*" = every system)."""
        slack_id = _check_value("slack_id", slack_id)
        system = _check_value("system", system)
        identity = _check_value("identity", identity)
        at = self._clock.now()
        await self._store.write(lambda db: _upsert(db, self._audit, slack_id, system, identity, actor, at, "api"))

    async def get(self, slack_id: str, system: str) -> str | None:
        """The override for exactly `system`, else the one for "*", else None."""

        def query(db: sqlite_utils.Database) -> str | None:
            row = db.execute(
                "SELECT identity FROM identity_overrides WHERE slack_id = ? AND system IN (?, ?) "
                "ORDER BY system = ? LIMIT 1",
                [slack_id, system, ANY_SYSTEM, ANY_SYSTEM],
            ).fetchone()
            return None if row is None else row[0]

        return await self._store.read(query)

    async def list(self) -> list[IdentityOverride]:
        """Every override, by Slack id then system."""

        def query(db: sqlite_utils.Database) -> list[IdentityOverride]:
            rows = db.execute(
                "SELECT slack_id, system, identity, updated_at, updated_by FROM identity_overrides "
                "ORDER BY slack_id COLLATE BINARY, system COLLATE BINARY"
            ).fetchall()
            return [IdentityOverride(s, y, i, from_db_time(u), b) for s, y, i, u, b in rows]

        return await self._store.read(query)

    async def remove(self, slack_id: str, system: str, *, actor: str) -> bool:
        """Delete one override; True when there was one (only then is it audited)."""
        at = self._clock.now()

        def delete(db: sqlite_utils.Database) -> bool:
            # fetchall, not fetchone: the RETURNING statement must run to completion before COMMIT.
            rows = db.execute(
                "DELETE FROM identity_overrides WHERE slack_id = ? AND system = ? RETURNING identity",
                [slack_id, system],
            ).fetchall()
            if not rows:
                return False
            detail = {"slack_id": slack_id, "system": system, "previous": rows[0][0]}
            self._audit.insert(db, AuditEvent(at=at, actor=actor, action="identity.remove", detail=detail))
            return True

        return await self._store.write(delete)

    async def import_csv(self, source: Path | str, *, actor: str) -> int:
        """Import overrides from a CSV file (a Path) or CSV text (a str); all rows or none.

        Columns slack_id, system, identity (header required, any order). Raises IdentityImportError
        listing every bad row by line number; returns how many overrides were written.
        """
        if isinstance(source, Path):
            text = source.read_text(encoding="utf-8-sig")
        else:
            text = source
        rows, issues = parse_identity_csv(text)
        if issues:
            if isinstance(source, str) and "\n" not in source and "," not in source:
                issues.append((1, "this looks like a file name: pass a pathlib.Path to read a file"))
            raise IdentityImportError(issues)
        at = self._clock.now()

        def write_all(db: sqlite_utils.Database) -> int:
            for slack_id, system, identity in rows:
                _upsert(db, self._audit, slack_id, system, identity, actor, at, "csv")
            return len(rows)

        return await self._store.write(write_all)
