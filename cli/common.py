"""What the command line's subcommands share: the database path, one-sentence failures, exit codes."""

from __future__ import annotations

import os
import sys

EXIT_STARTUP = 1
EXIT_INVALID_CONFIG = 2


def database_path() -> str:
    """JITBOT_DB (data/jitbot.db by default, or a postgresql:// URL); StartupError if it is unusable."""
    from storage.db import DEFAULT_DATABASE_PATH, check_database_path

    return check_database_path(os.environ.get("JITBOT_DB") or DEFAULT_DATABASE_PATH, name="JITBOT_DB")


def fail(message: str, code: int = EXIT_STARTUP) -> int:
    """Print `jitbot: message` on stderr; return `code`."""
    print(f"jitbot: {message}", file=sys.stderr)
    return code
