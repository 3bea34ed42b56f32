"""SlackDirectory: people and user groups from the Slack Web API, cached briefly.

Also serves hooks as `evt.integrations.slack` (`await evt.integrations.slack.is_in_usergroup(user, id)`).
"""

from __future__ import annotations

from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.errors import NotAllowed
from core.ports import UserInfo
from core.ttl_cache import TTLCache


class SlackPerson(Protocol):
    """Anyone with a Slack id: a hook user (evt.user, evt.actor), a Subject, a UserInfo."""

    @property
    def slack_id(self) -> str: ...


class SlackDirectory:
    """Looks users up with users.info and user groups with usergroups.users.list."""

    name = "slack"

    def __init__(
        self, client: AsyncWebClient, *, team_id: str | None = None, user_ttl: float = 300, group_ttl: float = 60
    ) -> None:
        self.client = client
        self.team_id = team_id  # the bot's own workspace: anyone from another one is an outsider
        self._users = TTLCache(user_ttl)
        self._groups = TTLCache(group_ttl)

    async def open(self) -> None:
        """Nothing to open: the Slack client is shared."""

    async def aclose(self) -> None:
        """Nothing to close: the Slack client is shared."""

    async def lookup_user(self, slack_id: str, *, fresh: bool = False) -> UserInfo:
        """The user's email, name and standing from users.info (needs users:read.email)."""
        if fresh:
            user = await self._load_user(slack_id)
            self._users.put(slack_id, user)
            return user
        cached: UserInfo = await self._users.get_or_load(slack_id, lambda: self._load_user(slack_id))
        return cached

    async def _load_user(self, slack_id: str) -> UserInfo:
        try:
            response = await self.client.users_info(user=slack_id)
        except SlackApiError as exc:
            if exc.response.get("error") == "user_not_found":
                raise NotAllowed(f"Slack user {slack_id} was not found.") from None
            raise
        user = response["user"]
        profile = user.get("profile") or {}
        return UserInfo(
            slack_id=slack_id,
            email=profile.get("email") or None,
            name=profile.get("real_name") or user.get("real_name") or user.get("name"),
            is_bot=bool(user.get("is_bot")),
            deleted=bool(user.get("deleted")),
            guest=self._is_guest(user),
        )

    def _is_guest(self, user: dict[str, Any]) -> bool:
        # Guests (multi- or single-channel) and people from other organisations in a shared
        # channel: Slack marks the latter is_stranger, or they carry another workspace's team_id.
        if user.get("is_restricted") or user.get("is_ultra_restricted") or user.get("is_stranger"):
            return True
        home = user.get("team_id")
        return bool(self.team_id and home and home != self.team_id)

    async def usergroup_members(self, usergroup_id: str, *, fresh: bool = False) -> frozenset[str]:
        """Members of a user group (needs usergroups:read); `fresh` for decisions."""

        async def load() -> frozenset[str]:
            response = await self.client.usergroups_users_list(usergroup=usergroup_id)
            return frozenset(response.get("users") or [])

        if fresh:
            members = await load()
            self._groups.put(usergroup_id, members)
            return members
        cached: frozenset[str] = await self._groups.get_or_load(usergroup_id, load)
        return cached

    async def is_in_usergroup(self, user: SlackPerson | str, usergroup_id: str) -> bool:
        """Whether `user` (a hook user, or a Slack id) is a member of the user group, for hooks.

        Read fresh: hooks use it to decide (fast-track, restrict approvals), and a decision reads the
        present, never a cache someone was removed from a minute ago.
        """
        slack_id = user if isinstance(user, str) else user.slack_id
        return slack_id in await self.usergroup_members(usergroup_id, fresh=True)
