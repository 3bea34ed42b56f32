"""`bot.py identities set|list|remove|import`: identity overrides in the database named by JITBOT_DB."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cli.common import EXIT_INVALID_CONFIG, database_path, fail


async def identities(args: argparse.Namespace) -> int:
    """Manage identity overrides in the database named by JITBOT_DB."""
    from storage.db import Store
    from storage.identities import IdentityImportError, IdentityStore

    store = await Store.open(database_path())
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        repo = IdentityStore(store)
        if args.action == "set":
            await repo.set(args.slack_id, args.system, args.identity, actor=actor)
            print(f"{args.slack_id} → {args.identity} ({args.system})")
        elif args.action == "list":
            for item in await repo.list():
                print(f"{item.slack_id}\t{item.system}\t{item.identity}")
        elif args.action == "remove":
            if not await repo.remove(args.slack_id, args.system, actor=actor):
                return fail(f"no override for {args.slack_id} ({args.system}).")
            print(f"removed {args.slack_id} ({args.system})")
        elif args.action == "import":
            try:
                count = await repo.import_csv(Path(args.file), actor=actor)
            except IdentityImportError as error:
                return fail(str(error), EXIT_INVALID_CONFIG)
            print(f"imported {count} override{'s' if count != 1 else ''}")
        return 0
    finally:
        await store.close()
