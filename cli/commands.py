"""`bot.py tokens …` (in the database) and `bot.py request|requests|revoke` (through the HTTP API)."""

from __future__ import annotations

import argparse

from cli.common import EXIT_INVALID_CONFIG, database_path, fail
from core import event_loop


def tokens(args: argparse.Namespace) -> int:
    """Create, list or revoke API tokens in the database named by JITBOT_DB."""
    from cli import tokens as commands
    from storage.tokens import TokenError

    db_path = database_path()
    try:
        if args.action == "create":
            return event_loop.run(commands.create(db_path, args.user, args.name, args.expires, args.scope))
        if args.action == "list":
            return event_loop.run(commands.list_tokens(db_path))
        return event_loop.run(commands.revoke(db_path, args.token))
    except (TokenError, ValueError) as error:
        return fail(str(error), EXIT_INVALID_CONFIG)


def api_command(args: argparse.Namespace) -> int:
    """`request`, `requests` and `revoke`: calls to the HTTP API at JITBOT_API_URL with JITBOT_API_TOKEN."""
    from cli import requests as commands
    from cli.api_client import ApiClient, ApiFailure

    try:
        client = ApiClient.from_env(insecure_http=args.insecure_http)
        if args.command == "request":
            return commands.request(client, args.flow, args.target, args.field, args.duration, wait=args.wait)
        if args.command == "revoke":
            return commands.revoke(client, args.request_id)
        return commands.requests_table(client, mine=args.mine, status=args.status)
    except ApiFailure as failure:
        return fail(failure.message, failure.code)
