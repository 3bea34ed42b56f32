"""SlackEmulator: a local Slack (Web API + Socket Mode) on 127.0.0.1 that a test drives as people would."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from .home import HomeMixin
from .models import Call, Channel, EnvelopeResult, Ephemeral, Message, Problem, User, Usergroup, View
from .people import PeopleMixin
from .socket_mode import SocketHub
from .state import Workspace
from .throttle import TIERS, Throttle
from .web_api import Fault, ResponseUrl, build_app

DEFAULT_SCOPES = ("commands", "chat:write", "im:write", "users:read", "users:read.email", "usergroups:read")


class SlackEmulator(PeopleMixin, HomeMixin):
    """A fake Slack workspace the bot reaches through `SLACK_API_URL = emu.api_url`."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-emulator-bot-token",
        app_token: str = "xapp-1-emulator-app-token",
        users: Iterable[User | dict] = (),
        channels: Iterable[Channel | dict] = (),
        usergroups: Iterable[Usergroup | dict] = (),
        team_id: str = "T_EMULATOR",
        team_domain: str = "emulator",
        app_id: str = "A_JITBOT",
        bot_user_id: str = "U_JITBOT",
        bot_id: str = "B_JITBOT",
        scopes: Iterable[str] = DEFAULT_SCOPES,
        ack_timeout: float = 3.0,
        trigger_ttl: float = 3.0,
        connect_timeout: float = 5.0,
        clock: Any = None,
        seed: int | None = None,
    ):
        self.bot_token, self.app_token = bot_token, app_token
        self.team_id, self.team_domain, self.app_id = team_id, team_domain, app_id
        self.bot_user_id, self.bot_id = bot_user_id, bot_id
        self.scopes = list(scopes)
        self.ack_timeout, self.connect_timeout = ack_timeout, connect_timeout
        self.workspace = Workspace(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, clock=clock, trigger_ttl=trigger_ttl
        )
        self.socket = SocketHub(self, seed=seed)  # seed: which connection gets each envelope, reproducibly
        self.faults: dict[str, list[Fault]] = {}
        self.throttles: dict[str, Throttle] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        self.envelopes: list[EnvelopeResult] = []
        self.problems: list[Problem] = []
        self._calls: list[Call] = []
        self._expected: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.workspace.add_user(User(id=bot_user_id, name="jitbot", is_bot=True))
        for user in users:
            self.add_user(**user) if isinstance(user, dict) else self.workspace.add_user(user)
        for channel in channels:
            self.add_channel(**channel) if isinstance(channel, dict) else self.workspace.add_channel(channel)
        for group in usergroups:
            self.add_usergroup(**group) if isinstance(group, dict) else self.workspace.add_usergroup(group)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> SlackEmulator:
        """Listen on 127.0.0.1 on a free port."""
        self._runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close every socket and stop listening."""
        if self._runner is not None:
            await self.socket.close_all()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The value for SLACK_API_URL / AsyncWebClient(base_url=...)."""
        return f"{self.base_url}/api/"

    url = api_url

    def __repr__(self) -> str:
        return (
            f"SlackEmulator({self.api_url}, {len(self.socket.usable())} connection(s), "
            f"{len(self._calls)} call(s), {len(self.envelopes)} envelope(s), {len(self.problems)} problem(s))"
        )

    # -- directory -----------------------------------------------------------------------------------

    def add_user(
        self,
        id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        real_name: str = "",
        is_bot: bool = False,
        deleted: bool = False,
        guest: str | None = None,
        team_id: str | None = None,
    ) -> User:
        """Add (or replace) a workspace member; `guest` is 'multi', 'single' or 'external' (Slack Connect)."""
        name = name or (email.split("@")[0] if email else id.lower())
        return self.workspace.add_user(
            User(
                id=id,
                name=name,
                email=email,
                real_name=real_name,
                is_bot=is_bot,
                deleted=deleted,
                is_restricted=guest == "multi",
                is_ultra_restricted=guest == "single",
                is_stranger=guest == "external",
                team_id=team_id or ("T_OTHER_ORG" if guest == "external" else None),
            )
        )

    def add_channel(
        self,
        id: str,
        *,
        name: str | None = None,
        members: Iterable[str] | None = None,
        is_private: bool = False,
        bot_is_member: bool = True,
        is_archived: bool = False,
    ) -> Channel:
        """Add a channel; `members=None` lets every user see it."""
        return self.workspace.add_channel(
            Channel(
                id=id,
                name=name or id.lower(),
                is_private=is_private,
                members=set(members) if members else None,
                bot_is_member=bot_is_member,
                is_archived=is_archived,
            )
        )

    def add_usergroup(
        self, id: str, *, handle: str | None = None, users: Iterable[str] = (), name: str = ""
    ) -> Usergroup:
        """Add a user group with its members."""
        return self.workspace.add_usergroup(Usergroup(id=id, handle=handle or id.lower(), users=list(users), name=name))

    # -- faults ---------------------------------------------------------------------------------------

    def fail(self, method: str, error: str = "internal_error", *, times: int | None = 1) -> None:
        """Answer the next `times` calls of `method` with `ok: false, error` (None: every call)."""
        self.faults.setdefault(method, []).append(Fault("fail", times, error=error))

    def rate_limit(self, method: str, *, times: int | None = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429, Retry-After and `ratelimited`."""
        self.faults.setdefault(method, []).append(Fault("rate_limit", times, retry_after=retry_after))

    def throttle(
        self, method: str, *, tier: int | None = None, limit: int | None = None, per: float = 60.0
    ) -> Throttle:
        """Rate-limit `method` as Slack does: `limit` calls (or the tier's per-minute count) in any `per`
        seconds, then 429 `ratelimited` with Retry-After until a slot frees (clear_faults removes it)."""
        if (tier is None) == (limit is None):
            raise ValueError("give exactly one of tier= or limit=")
        throttle = self.throttles[method] = Throttle(TIERS[tier] if tier is not None else limit or 0, per)
        return throttle

    def delay(self, method: str, seconds: float, *, times: int | None = None) -> None:
        """Hold answers to `method` for `seconds` (the next `times` calls; None: every call)."""
        self.faults.setdefault(method, []).append(Fault("delay", times, seconds=seconds))

    def clear_faults(self, method: str | None = None) -> None:
        """Forget scripted faults (of one method, or all)."""
        if method is None:
            self.faults.clear()
            self.throttles.clear()
        else:
            self.faults.pop(method, None)
            self.throttles.pop(method, None)

    # -- Socket Mode control --------------------------------------------------------------------------

    async def disconnect(self, reason: str = "refresh_requested") -> int:
        """Send Slack's `disconnect` frame to every connection; returns how many got it."""
        return await self.socket.disconnect(reason)

    async def drop_connections(self, *, abort: bool = False) -> int:
        """Close the bot's sockets from the server side (abort: without a CLOSE frame)."""
        return await self.socket.drop(abort=abort)

    async def wait_connected(self, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until the bot holds at least `n` usable Socket Mode connections."""
        await self.socket.wait_usable(n, timeout)

    @property
    def connection_count(self) -> int:
        """Usable Socket Mode connections right now."""
        return len(self.socket.usable())

    @property
    def connects(self) -> int:
        """How many WebSocket connections were ever accepted."""
        return self.socket.connects

    @property
    def ack_latencies(self) -> list[float]:
        """Seconds between sending each acked envelope and receiving its ack."""
        return [e.latency for e in self.envelopes if e.latency is not None]

    # -- queries --------------------------------------------------------------------------------------

    def messages_in(self, channel: str) -> list[Message]:
        """Live messages in a channel (a user id means the DM with that user), oldest first."""
        # A query must not create the DM channel, so resolve user ids by hand.
        channel_id = self.workspace.im_id(channel) if channel in self.workspace.users else channel
        return [m for m in self.workspace.messages.get(channel_id, []) if not m.deleted]

    def message(self, channel: str, ts: str) -> Message:
        """The live message at (channel, ts); KeyError naming what is stored otherwise."""
        for message in self.messages_in(channel):
            if message.ts == ts:
                return message
        raise KeyError(f"no message {ts!r} in {channel}; stored: {[m.ts for m in self.messages_in(channel)]}")

    def dms_to(self, user: str) -> list[Message]:
        """Messages the bot sent to `user` in their DM."""
        return self.messages_in(user) if user in self.workspace.users else []

    def ephemerals_to(self, user: str, channel: str | None = None) -> list[Ephemeral]:
        """Ephemeral messages `user` saw (optionally only in `channel`)."""
        return [e for e in self.workspace.ephemerals if e.user == user and channel in (None, e.channel)]

    def calls(self, method: str | None = None) -> list[Call]:
        """Web API calls the bot made (of one method, or all), in order."""
        return [c for c in self._calls if method in (None, c.method)]

    def open_views(self, user: str) -> list[View]:
        """The user's open modal stack, bottom first."""
        return self.workspace.open_views(user)

    def latest_view(self, user: str) -> View | None:
        """The top of the user's open modal stack, if any."""
        stack = self.open_views(user)
        return stack[-1] if stack else None

    def view(self, view_id: str) -> View:
        """Any view ever opened, by id."""
        return self.workspace.views[view_id]

    def issue_trigger(self, user: str) -> str:
        """A fresh trigger_id for `user`, for tests that hand-build payloads (valid `trigger_ttl` seconds)."""
        return self.workspace.issue_trigger(self._person(user).id)

    def view_api(self, view: View) -> dict:
        """A view as Slack sends it (API answers and payloads)."""
        return view.to_api(team_id=self.team_id, app_id=self.app_id, bot_id=self.bot_id)

    # -- waiting --------------------------------------------------------------------------------------

    async def wait_for(
        self, condition: Callable[[], Any], timeout: float = 5.0, *, description: str | None = None
    ) -> Any:
        """Return the first truthy `condition()` result, re-checked whenever the emulator's state changes."""
        return await self.workspace.wait_for(condition, timeout, lambda: description or repr(condition))

    async def wait_for_message(
        self,
        channel: str,
        contains: str | None = None,
        *,
        timeout: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> Message:
        """The first message in `channel` whose text/blocks contain `contains` (and satisfies `where`)."""
        return await self._wait_in(
            lambda: self.messages_in(channel), f"a message in {channel}", contains, where, timeout
        )

    async def wait_for_dm(
        self,
        user: str,
        contains: str | None = None,
        *,
        timeout: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> Message:
        """The first DM to `user` containing `contains`."""
        return await self._wait_in(lambda: self.dms_to(user), f"a DM to {user}", contains, where, timeout)

    async def wait_for_ephemeral(
        self,
        user: str,
        contains: str | None = None,
        *,
        timeout: float = 5.0,
        where: Callable[[Ephemeral], bool] | None = None,
    ) -> Ephemeral:
        """The first ephemeral message to `user` containing `contains`."""
        return await self._wait_in(
            lambda: self.ephemerals_to(user), f"an ephemeral to {user}", contains, where, timeout
        )

    async def wait_for_view(
        self,
        user: str,
        contains: str | None = None,
        *,
        timeout: float = 5.0,
        where: Callable[[View], bool] | None = None,
    ) -> View:
        """The top open view of `user` once it contains `contains` (title or block text)."""
        return await self._wait_in(
            lambda: [v for v in [self.latest_view(user)] if v], f"an open view of {user}", contains, where, timeout
        )

    async def wait_for_call(self, method: str, *, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until the bot made at least `count` calls of `method`; returns them."""
        return await self.wait_for(
            lambda: self.calls(method) if len(self.calls(method)) >= count else None,
            timeout,
            description=f"{count} call(s) of {method} (have {len(self.calls(method))})",
        )

    async def next_message(self, channel: str | None = None, *, timeout: float = 5.0) -> Message:
        """The next message posted from now on (in `channel`, or anywhere)."""

        def posted() -> list[Message]:
            stored = (
                self.messages_in(channel) if channel else [m for ms in self.workspace.messages.values() for m in ms]
            )
            return stored

        seen = {(m.channel, m.ts) for m in posted()}
        fresh = lambda: next((m for m in posted() if (m.channel, m.ts) not in seen), None)  # noqa: E731
        return await self.wait_for(fresh, timeout, description=f"a new message in {channel or 'any channel'}")

    async def _wait_in(
        self,
        items: Callable[[], list],
        what: str,
        contains: str | None,
        where: Callable[[Any], bool] | None,
        timeout: float,
    ) -> Any:
        def match() -> Any:
            return next(
                (
                    item
                    for item in items()
                    if (contains is None or contains in item.plain) and (where is None or where(item))
                ),
                None,
            )

        def describe() -> str:
            wanted = f" containing {contains!r}" if contains else ""
            return f"{what}{wanted}{' matching where=' if where else ''}; have: {items()!r}"

        return await self.workspace.wait_for(match, timeout, describe)

    # -- problems -------------------------------------------------------------------------------------

    def record_call(self, call: Call) -> None:
        self._calls.append(call)
        self.workspace.changed()

    def record_problem(self, kind: str, detail: str) -> None:
        """Note something real Slack would refuse or report; `verify()` fails on it unless expected."""
        self.problems.append(Problem(kind, detail))
        self.workspace.changed()

    def expect_unacked(self) -> None:
        """This test means to leave envelopes unacked; don't fail it for that."""
        self.expect_problem("unacked")

    def expect_rejected(self) -> None:
        """This test means to send payloads Slack refuses (invalid blocks, bad triggers, bad acks)."""
        self.expect_problem("rejected", "invalid_ack")

    def expect_problem(self, *kinds: str) -> None:
        """Accept problems of these kinds ("unacked", "rejected", "invalid_ack", "unknown_method")."""
        self._expected.update(kinds)

    def unexpected_problems(self) -> list[Problem]:
        """Recorded problems the test did not declare with expect_*()."""
        return [p for p in self.problems if p.kind not in self._expected]

    def verify(self) -> None:
        """Raise AssertionError listing every unexpected problem (the `slack` fixture calls this)."""
        problems = self.unexpected_problems()
        if problems:
            lines = "\n".join(f"  - [{p.kind}] {p.detail}" for p in problems)
            raise AssertionError(f"the Slack emulator saw {len(problems)} problem(s):\n{lines}")
