"""The bodies of `/v1`: reading a request's JSON within bounds, and writing an answer model as JSON.

`read_json` reads at most MAX_BODY_BYTES (a larger body is a 413 before anything is parsed, whether
or not it declares its length), insists on a JSON content type (415) and well-formed JSON (400),
and tells an absent body (`NO_BODY`) from JSON's null; `json_response` writes a pydantic model.
They are apart from `api.service` because they are the HTTP plumbing every operation shares, with
no knowledge of the engine, the flows or the callers, and the server's own body limit
(`api.server`) is the same MAX_BODY_BYTES.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api.problems import Problem

MAX_BODY_BYTES = 64 * 1024
"""The largest request body read; a larger one is a 413 before it is parsed."""

NO_BODY = object()
"""What read_json returns for an empty body (JSON's null is a body, and None)."""


async def read_json(request: web.Request, *, required: bool) -> Any:
    """The JSON body, at most MAX_BODY_BYTES (413), JSON (415 for another type, 400 when malformed);
    NO_BODY when there is none and none is required."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise Problem(413, f"The body is larger than {MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Problem(413, f"The body is larger than {MAX_BODY_BYTES} bytes.")
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise Problem(400, "Send a JSON object as the body.")
        return NO_BODY
    kind = request.content_type
    if kind != "application/json" and not kind.endswith("+json"):
        raise Problem(415, "Send the body as application/json.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise Problem(400, "The body is not valid JSON.") from None


def json_response(model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A model as a JSON answer."""
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json", headers=dict(headers or {})
    )
