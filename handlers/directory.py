"""SlackDirectory: people and user groups from the Slack Web API, cached briefly.

Also serves hooks as `evt.integrations.slack` (`await evt.integrations.slack.is_in_usergroup(user, id)`).
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.errors import NotAllowed
from core.ports import UserInfo
from core.ttl_cache import TTLCache


class SlackDirectory:
    """Looks users up with users.info and user groups with usergroups.users.list."""

    name = "slack"

    def __init__(self, client: AsyncWebClient, *, user_ttl: float = 300, group_ttl: float = 60) -> None:
        self.client = client
        self._users = TTLCache(user_ttl)
        self._groups = TTLCache(group_ttl)

    async def open(self) -> None:
        """Nothing to open: the Slack client is shared."""

    async def aclose(self) -> None:
        """Nothing to close: the Slack client is shared."""

    async def lookup_user(self, slack_id: str) -> UserInfo:
        """The user's email and name from users.info (needs users:read.email)."""
        return await self._users.get_or_load(slack_id, lambda: self._load_user(slack_id))

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
        )

    async def usergroup_members(self, usergroup_id: str) -> frozenset[str]:
        """Members of a user group (needs usergroups:read)."""
        async def load() -> frozenset[str]:
            response = await self.client.usergroups_users_list(usergroup=usergroup_id)
            return frozenset(response.get("users") or [])

        return await self._groups.get_or_load(usergroup_id, load)

    async def is_in_usergroup(self, user, usergroup_id: str) -> bool:
        """Whether `user` (a hook user, or a Slack id) is a member of the user group, for hooks."""
        slack_id = user if isinstance(user, str) else user.slack_id
        return slack_id in await self.usergroup_members(usergroup_id)
