"""Home tabs kept current: after a request changes, the Homes it makes stale are published again.

Slack shows a person the Home view last published for them, and jitbot publishes one when they open
the tab (`app_home_opened`). A Home left open goes stale when one of its requests changes (approved,
granted, denied, expired, cancelled, revoked, an extension asked for or approved). So each time a
request's message is posted or edited (`SlackNotifier.published`), this publishes again:

- the requester's Home;
- while the request is pending, the Homes of those who may decide it (display rules, core.overview);
  once it is decided, the Homes that listed it as waiting for a decision.

Only for people whose Home this process has published since it started (it remembers the latest
`PEOPLE_REMEMBERED`): nobody else has one to refresh, and whoever opens theirs gets it fresh then.
The work never slows a decision: `changed()` only notes the request; one background follow-up
(core.follow_ups, so the shutdown drains it) works through what is noted, one Home at a time, each
built from the database as it is by then (ten changes for one person make one or two publishes).
views.publish is Slack's Tier 4 (100+ per minute per workspace): these refreshes are paced at
`REFRESH_RATE` per minute, leaving the rest to people opening their Home, and a 429 is waited out by
the Slack client's own retry handler. A failure is logged, never raised nor shown to anyone.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import structlog
from aiolimiter import AsyncLimiter
from slack_sdk.web.async_client import AsyncWebClient

from core.engine import AccessEngine
from core.follow_ups import Lane
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.overview import awaits_decision_of

log = structlog.get_logger("jitbot.home")

PEOPLE_REMEMBERED = 10_000  # people whose Home was published, most recent kept
REFRESH_RATE = 50  # background views.publish calls per minute: half of Tier 4's 100
FOLLOW_UP_KEY = "home-refresh"

Publish = Callable[[AsyncWebClient, str], Awaitable[object]]


class HomeRefresh:
    """Notes changed requests and publishes the Homes they make stale, in the background."""

    def __init__(
        self,
        engine: AccessEngine,
        client: AsyncWebClient,
        publish: Publish,
        *,
        limiter: AsyncLimiter | None = None,
        remembered: int = PEOPLE_REMEMBERED,
    ) -> None:
        self.engine = engine
        self.client = client
        self.publish = publish
        self.limiter = limiter or AsyncLimiter(REFRESH_RATE, 60.0)
        self.remembered = remembered
        # Whose Home was published (most recent last), and the requests it listed as waiting for them.
        self._homes: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._changed: dict[str, AccessRequest] = {}  # request id → its latest state, in order noted
        self._stale: dict[str, None] = {}  # people whose Home is to be published again, in order
        self._working = False

    def shown(self, user: str, awaiting: Iterable[str]) -> None:
        """`user`'s Home was just published, listing the requests `awaiting` their decision."""
        self._homes.pop(user, None)
        self._homes[user] = frozenset(awaiting)
        while len(self._homes) > self.remembered:
            self._homes.popitem(last=False)

    def changed(self, request: AccessRequest) -> None:
        """`request` was just posted or edited: refresh the Homes it concerns, later. Never blocks or raises."""
        try:
            if not self._homes:
                return  # nobody has a Home to refresh
            self._changed.pop(request.id, None)
            self._changed[request.id] = request
            if not self._working:
                self.engine.life.follow_ups.add(FOLLOW_UP_KEY, self._work, lane=Lane.HOME, what="home")
                self._working = True  # after add: a failed add must not leave the work thought running
        except Exception:
            log.exception("home.refresh_not_queued", request_id=request.id)

    async def _work(self) -> None:
        try:
            while self._changed or self._stale:
                while self._changed:
                    request_id = next(iter(self._changed))
                    for user in await self._concerned(self._changed.pop(request_id)):
                        self._stale[user] = None
                    await asyncio.sleep(0)  # a burst of changes never holds the event loop for long
                if not self._stale:
                    continue
                user = next(iter(self._stale))
                del self._stale[user]  # a change noted from now on publishes it again
                try:
                    async with self.limiter:
                        await self.publish(self.client, user)
                except Exception as error:
                    log.warning("home.refresh_failed", user=user, error=type(error).__name__)
        finally:
            self._working = False

    async def _concerned(self, request: AccessRequest) -> list[str]:
        """Of the people whose Home was published, those whose Home `request` makes stale."""
        people = [request.requester] if request.requester in self._homes else []
        life, directory = self.engine.life, self.engine.directory
        for user, awaiting in list(self._homes.items()):
            if user == request.requester:
                continue
            if request.id in awaiting:
                people.append(user)  # listed there: decided since, or changed (an approval counted)
            elif request.status is S.PENDING:
                try:
                    if await awaits_decision_of(life, directory, user, request):
                        people.append(user)
                except Exception as error:  # display only: an unreadable group just leaves that Home as it is
                    log.warning("home.deciders_unknown", request_id=request.id, error=type(error).__name__)
                    break
        return people
