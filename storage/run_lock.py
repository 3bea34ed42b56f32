"""RunLock: the one process running the bot on a SQLite file holds an OS lock on `<database>.lock`.

Two schedulers on one file would each revoke, expire and retry on their own timers, and the timers
of one that died would be lost, so `storage.db.SqliteStore.open_file(path, exclusive=True)` takes
this lock before it even migrates the file, and refuses to start, naming the holder (pid, host,
start time), when another process has it. It is apart from `storage.db` because it is not about
the database at all: it is an flock() on a file beside it, with its own failure modes (no lock
support on the filesystem, a holder still writing its name), and PostgreSQL, where any number of
replicas run, never takes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from core.errors import StartupError

_HOLDER_BYTES = 4096  # what we read of a lock file: ours is ~100 bytes, anything longer is not ours


class RunLock:
    """The exclusive OS lock on `<database>.lock` that the one process running the bot on a database holds.

    flock() belongs to the open file, so the OS drops it however the holder ends, kill -9 and OOM
    kills included: there is never a stale lock to clean up by hand. The holder writes its pid, host
    and start time into the file so that the process refused can name it. The file is never deleted:
    unlinking it while another process waits would let each of them lock a different file.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, database: str) -> RunLock:
        """Take the lock of `database` without waiting; StartupError naming the holder if another process has it."""
        # realpath: a symlink or a relative path to the same database must find the same lock file.
        path = os.path.realpath(database) + ".lock"
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inheritable: no child keeps the lock
        except OSError as exc:
            raise StartupError(f"cannot create the lock file {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            # Two schedulers on one file would each own the other's timers, and those of the one that
            # died would be lost: refuse, and name the holder so the operator can find it.
            raise StartupError(
                f"another jitbot ({holder}) is already running on {database}: stop it first, "
                "or point JITBOT_DB at another file."
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StartupError(
                f"cannot lock {path} ({exc.strerror or exc}): jitbot needs a filesystem with "
                "file locks to make sure only one bot runs on a database."
            ) from exc
        try:
            started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": started})
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode() + b"\n", 0)
        except OSError as exc:
            os.close(fd)
            raise StartupError(f"cannot write the lock file {path}: {exc.strerror or exc}") from exc
        return cls(path, fd)

    def release(self) -> None:
        """Give the lock up and empty the file (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # while still locked: the next holder's details must not be erased
        except OSError:
            pass  # a full or read-only disk must not stop the release itself
        finally:
            os.close(fd)


def _describe_holder(fd: int) -> str:
    """'pid 4242 on host-a, started 2026-11-21T15:00:00Z' from a held lock file, as far as it can be read."""
    try:
        holder = json.loads(os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace"))
    except (OSError, ValueError):
        holder = None
    if not isinstance(holder, dict):
        # The holder has locked but not yet written (it is starting this very moment), or it is not ours.
        return "a process that has not said who it is yet"

    def part(key: str) -> str:
        # One line of bounded text whatever the file holds: it goes into the operator's error.
        return " ".join(str(holder.get(key, "?")).split())[:80] or "?"

    return f"pid {part('pid')} on {part('host')}, started {part('started_at')}"
