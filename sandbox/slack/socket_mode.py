"""Socket Mode: the `/link/` WebSocket, `hello`, envelope delivery, ack tracking, disconnects.

Like Slack, one app may hold up to `MAX_CONNECTIONS` connections at once (several replicas of a bot,
each with its own), and each envelope goes to any one of them with no pattern a bot could rely on:
here a seeded random choice. A connection beyond the limit is told `too_many_websockets` and gets
nothing. An envelope whose connection closes before acking it (the process was killed) is lost, as
with Slack, where the person sees an error and clicks again: `deliver` raises `DeliveryLost` at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from .errors import AckTimeout, DeliveryLost, NotConnected, WaitTimeout
from .models import EnvelopeResult

if TYPE_CHECKING:
    from .emulator import SlackEmulator

MAX_CONNECTIONS = 10  # Slack's limit of simultaneous Socket Mode connections per app


@dataclass
class Connection:
    """One open Socket Mode WebSocket."""

    id: int
    ws: web.WebSocketResponse
    request: web.Request
    opened_at: float
    draining: bool = False
    frames: list[dict] = field(default_factory=list)
    unacked: set[str] = field(default_factory=set)  # envelope ids sent here and not yet acked

    @property
    def usable(self) -> bool:
        """Open and not told to go away (a `disconnect` was sent or it was dropped)."""
        return not self.draining and not self.ws.closed


class SocketHub:
    """Every Socket Mode connection, and the envelopes waiting for their ack."""

    def __init__(self, emu: SlackEmulator, *, seed: int | None = None):
        self.emu = emu
        self.connections: dict[int, Connection] = {}
        self.tickets: set[str] = set()
        self.connects = 0
        self._pending: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._spread = random.Random(seed)  # which connection gets an envelope: any, no pattern
        self.stray_frames: list[dict] = []

    def issue_url(self) -> str:
        """A single-use `ws://…/link/?ticket=…` URL, as apps.connections.open returns."""
        ticket = uuid.uuid4().hex
        self.tickets.add(ticket)
        return f"ws://127.0.0.1:{self.emu.port}/link/?ticket={ticket}&app_id={self.emu.app_id}"

    def usable(self) -> list[Connection]:
        """Connections an envelope may be delivered to."""
        return [c for c in self.connections.values() if c.usable]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Accept a WebSocket with a valid ticket, say hello, and read acks until it closes."""
        ticket = request.query.get("ticket", "")
        if ticket not in self.tickets:
            return web.Response(status=401, text="unknown or already used ticket")
        self.tickets.discard(ticket)
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        connection = Connection(id=next(self._ids), ws=ws, request=request, opened_at=time.monotonic())
        over_limit = len(self.usable()) >= MAX_CONNECTIONS
        connection.draining = over_limit  # never usable: it gets no envelope
        self.connections[connection.id] = connection
        self.connects += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.usable()),
                "connection_info": {"app_id": self.emu.app_id},
                "debug_info": {"host": "applink-emulator", "build_number": 1, "approximate_connection_time": 18060},
            }
        )
        if over_limit:
            await ws.send_json(
                {
                    "type": "disconnect",
                    "reason": "too_many_websockets",
                    "num_connections": len(self.usable()),
                    "debug_info": {"host": "applink-emulator"},
                }
            )
        self.emu.workspace.changed()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_frame(connection, message.data)
        finally:
            self.connections.pop(connection.id, None)
            self._lose(connection)
            self.emu.workspace.changed()
        return ws

    def _lose(self, connection: Connection) -> None:
        """Fail the envelopes a closed connection never acked: nobody will answer them now."""
        for envelope_id in connection.unacked:
            future = self._pending.get(envelope_id)
            if future is not None and not future.done():
                future.set_exception(DeliveryLost(f"connection {connection.id} closed before acking"))
        connection.unacked.clear()

    def _on_frame(self, connection: Connection, data: str) -> None:
        arrived = time.monotonic()
        try:
            frame = json.loads(data)
        except json.JSONDecodeError:
            self.emu.record_problem("invalid_ack", f"connection {connection.id} sent non-JSON: {data[:200]!r}")
            return
        connection.frames.append(frame)
        if isinstance(frame, dict):
            connection.unacked.discard(frame.get("envelope_id"))  # type: ignore[arg-type]
        future = self._pending.get(frame.get("envelope_id")) if isinstance(frame, dict) else None
        if future is None or future.done():
            self.stray_frames.append(frame)
            return
        future.set_result((frame, arrived))

    async def wait_usable(self, n: int, timeout: float) -> list[Connection]:
        """Wait until at least `n` usable connections are open."""
        try:
            return await self.emu.workspace.wait_for(
                lambda: self.usable() if len(self.usable()) >= n else None,
                timeout,
                lambda: f"{n} Socket Mode connection(s) (have {len(self.usable())})",
            )
        except WaitTimeout as error:
            raise NotConnected(f"{error}; is the bot's AsyncSocketModeHandler connected?") from None

    async def deliver(self, envelope: dict) -> EnvelopeResult:
        """Send `envelope` to one usable connection and wait for its ack (AckTimeout past the deadline)."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[envelope["envelope_id"]] = future
        result = EnvelopeResult(envelope=envelope)
        try:
            sent = await self._send(envelope, result)
            self.emu.envelopes.append(result)
            frame, arrived = await asyncio.wait_for(future, self.emu.ack_timeout)
        except TimeoutError:
            detail = (
                f"{result.summary} (envelope {result.envelope_id}) was not acked within "
                f"{self.emu.ack_timeout}s; Bolt sends no ack when no listener matches or ack() is not called"
            )
            self.emu.record_problem("unacked", detail)
            self.emu.workspace.changed()
            raise AckTimeout(detail) from None
        except DeliveryLost as lost:
            detail = f"{result.summary} (envelope {result.envelope_id}) was lost: {lost}"
            self.emu.record_problem("unacked", detail)
            self.emu.workspace.changed()
            raise DeliveryLost(detail) from None
        finally:
            self._pending.pop(envelope["envelope_id"], None)
        result.ack = frame
        result.latency = arrived - sent
        self.emu.workspace.changed()
        return result

    async def _send(self, envelope: dict, result: EnvelopeResult) -> float:
        """Write the envelope to a usable connection (skipping one that died meanwhile); returns the send time."""
        while True:
            usable = await self.wait_usable(1, self.emu.connect_timeout)
            connection = self._spread.choice(usable)
            connection.unacked.add(envelope["envelope_id"])
            try:
                sent = time.monotonic()
                await connection.ws.send_json(envelope)
            except ConnectionError:
                connection.unacked.discard(envelope["envelope_id"])
                connection.draining = True
                continue
            result.connection_id = connection.id
            return sent

    async def disconnect(self, reason: str) -> int:
        """Send a `disconnect` frame to every usable connection; the client should reconnect."""
        targets = self.usable()
        for connection in targets:
            connection.draining = True
            await connection.ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-emulator"}}
            )
        self.emu.workspace.changed()
        return len(targets)

    async def drop(self, *, abort: bool = False) -> int:
        """Close every connection from the server side: a CLOSE frame, or (abort) a dead TCP socket."""
        targets = list(self.connections.values())
        for connection in targets:
            connection.draining = True
            transport = connection.request.transport
            if abort and transport is not None:
                transport.abort()
            else:
                await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped by test")
        self.emu.workspace.changed()
        return len(targets)

    async def close_all(self) -> None:
        """Close every connection (emulator shutdown)."""
        for connection in list(self.connections.values()):
            connection.draining = True
            await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"emulator stopped")
        for future in self._pending.values():
            future.cancel()
