"""`bot.py request`, `bot.py requests` and `bot.py revoke`: access requests from a terminal or a CI job.

    bot.py request db_access --target prod_admin --field reason="deploy 42" --duration 1h --wait

`request` reads the flow from `GET /v1/flows` (to name its duration field and type its values),
posts it, and with `--wait` follows it until it is decided: exit 0 when granted, 1 when denied,
expired, cancelled or failed, 2 when the input was refused.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO
from urllib.parse import quote

from cli.api_client import EXIT_BAD_INPUT, ApiClient, ApiFailure

GRANTED = "granted"
STILL_GOING = frozenset({"pending", "approved"})  # approved: granting now
POLL_SECONDS = 2.0


def _fields(flow: dict[str, Any], pairs: Sequence[str], duration: str | None) -> dict[str, Any]:
    known = {f["name"]: f for f in flow["fields"]}
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ApiFailure(f"--field takes NAME=VALUE, got {pair!r}.", EXIT_BAD_INPUT)
        if name not in known:
            raise ApiFailure(
                f"the flow {flow['name']} has no field {name!r} (its fields: {', '.join(known)}).", EXIT_BAD_INPUT
            )
        fields[name] = _typed(known[name], value)
    if duration is not None:
        spec = next(f for f in flow["fields"] if f["type"] == "duration")
        fields[spec["name"]] = duration
    return fields


def _typed(spec: dict[str, Any], value: str) -> Any:
    if spec["type"] == "bool":
        lowered = value.strip().lower()
        if lowered not in {"true", "false", "yes", "no", "1", "0"}:
            raise ApiFailure(f"--field {spec['name']} takes true or false.", EXIT_BAD_INPUT)
        return lowered in {"true", "yes", "1"}
    return value  # ints are read by the API's own rules, from text as from the Slack form


def _flow(client: ApiClient, name: str) -> dict[str, Any]:
    flows = client.call("GET", "/v1/flows")["flows"]
    for flow in flows:
        if flow["name"] == name:
            return dict(flow)
    listed = ", ".join(f["name"] for f in flows) or "none"
    raise ApiFailure(f"no flow named {name!r} that this token may use (flows: {listed}).", EXIT_BAD_INPUT)


def request(
    client: ApiClient,
    flow_name: str,
    target: str,
    pairs: Sequence[str],
    duration: str | None,
    *,
    wait: bool,
    out: TextIO = sys.stdout,
    status_line: TextIO = sys.stderr,
    poll: float = POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Ask for access; with `wait`, follow the request until it is decided. Returns the exit code."""
    flow = _flow(client, flow_name)
    targets = {t["name"]: t for t in flow["targets"]}
    labels = {t["label"]: t["name"] for t in flow["targets"]}
    target = labels.get(target, target)  # a target may be named by its label too
    if target not in targets:
        listed = ", ".join(targets)
        raise ApiFailure(f"the flow {flow_name} has no target {target!r} (targets: {listed}).", EXIT_BAD_INPUT)
    created = client.call(
        "POST", "/v1/requests", {"flow": flow_name, "target": target, "fields": _fields(flow, pairs, duration)}
    )
    print(created["id"], file=out, flush=True)
    if not wait:
        print(f"request {created['id']} sent for approval ({created['status']}).", file=status_line, flush=True)
        return 0
    return follow(client, created, status_line=status_line, poll=poll, sleep=sleep)


def follow(
    client: ApiClient,
    current: dict[str, Any],
    *,
    status_line: TextIO,
    poll: float,
    sleep: Callable[[float], None],
) -> int:
    """Show one live status line until the request is decided; 0 when granted, else 1."""
    live = status_line.isatty()
    shown = ""
    started = time.monotonic()
    while True:
        line = _describe(current, time.monotonic() - started)
        if live:
            status_line.write("\r\033[K" + line)
        elif line.split(" (")[0] != shown.split(" (")[0]:
            status_line.write(line + "\n")
        status_line.flush()
        shown = line
        if current["status"] not in STILL_GOING:
            if live:
                status_line.write("\n")
            return 0 if current["status"] == GRANTED else 1
        sleep(poll)
        current = client.call("GET", f"/v1/requests/{current['id']}")


def _describe(request: dict[str, Any], waited: float) -> str:
    status = request["status"]
    who = f" by {request['decided_by']}" if request.get("decided_by") else ""
    if status == "pending":
        return f"request {request['id']}: waiting for approval ({int(waited)} s)"
    if status == GRANTED:
        return f"request {request['id']}: granted{who} until {request.get('expires_at')}"
    reason = request.get("decision_reason") or request.get("failure_reason")
    return f"request {request['id']}: {status}{who}" + (f": {reason}" if reason else "")


def requests_table(client: ApiClient, *, mine: bool, status: str | None, out: TextIO = sys.stdout) -> int:
    """`bot.py requests`: the requests the token's user made or may decide, as a table."""
    query = [f"mine={'true' if mine else 'false'}"] + ([f"status={quote(status, safe='')}"] if status else [])
    rows = client.call("GET", "/v1/requests?" + "&".join(query))["requests"]
    header = ("ID", "FLOW", "TARGET", "REQUESTER", "STATUS", "CREATED", "ENDS")
    table = [header] + [
        (
            r["id"],
            r["flow"],
            r["target"],
            r["requester"],
            r["status"],
            (r["created_at"] or "")[:16].replace("T", " "),
            (r.get("expires_at") or "")[:16].replace("T", " "),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
    return 0


def revoke(client: ApiClient, request_id: str, *, out: TextIO = sys.stdout) -> int:
    """`bot.py revoke ID`: end a live grant now (as its requester, or someone who may approve its flow)."""
    ended = client.call("POST", f"/v1/requests/{quote(request_id, safe='')}/revoke")
    if ended["status"] == "revoked":
        print(f"request {ended['id']}: access ended.", file=out)
    else:  # the target system refused for now: jitbot retries the revocation with back-off, and alerts
        print(f"request {ended['id']}: being ended; jitbot keeps retrying the revocation.", file=out)
    return 0
