"""The App Home tab as a person uses it: open it (`app_home_opened`), read it, click its buttons."""

from __future__ import annotations

from collections.abc import Callable

from .errors import EmulatorUsageError
from .models import EnvelopeResult, View
from .view_state import action_payload, find_element


class HomeMixin:
    """Home-tab helpers of SlackEmulator (the bot publishes with views.publish)."""

    async def open_home(self, user: str) -> EnvelopeResult:
        """`user` opens the app's Home tab: Slack sends the `app_home_opened` event."""
        person = self._person(user)
        workspace = self.workspace
        event = {
            "type": "app_home_opened",
            "user": person.id,
            "channel": workspace.im_id(person.id),
            "tab": "home",
            "event_ts": workspace.next_ts(),
        }
        home = workspace.homes.get(person.id)
        if home is not None:
            event["view"] = self.view_api(home)
        return await self.send_event(event)

    def home_of(self, user: str) -> View | None:
        """The Home tab the bot last published for `user`, if any."""
        return self.workspace.homes.get(user)

    async def wait_for_home(
        self,
        user: str,
        contains: str | None = None,
        *,
        timeout: float = 5.0,
        where: Callable[[View], bool] | None = None,
    ) -> View:
        """`user`'s Home tab once it contains `contains` (and satisfies `where`)."""
        items = lambda: [v for v in [self.home_of(user)] if v]  # noqa: E731
        return await self._wait_in(items, f"the Home tab of {user}", contains, where, timeout)

    async def click_in_home(
        self, user: str, *, text: str | None = None, action_id: str | None = None, block_id: str | None = None
    ) -> EnvelopeResult:
        """`user` clicks a button on their Home tab (found by label, action_id and/or block_id)."""
        home = self.home_of(user)
        if home is None:
            raise EmulatorUsageError(f"{user} has no Home tab published")
        where = f"the Home tab of {user}"
        block, element = find_element(
            home.blocks, action_id=action_id, text=text, block_id=block_id, types=("button",), where=where
        )
        payload = {
            **self._interaction_base(user, "block_actions"),
            "container": {"type": "view", "view_id": home.id},
            "view": self.view_api(home),
            "actions": [action_payload(block, element, None, self.workspace.next_ts(), where)],
        }
        return await self.send_envelope("interactive", payload)
