"""Only members of the security team's Slack user group may approve production access.

`evt.integrations.slack` is provided by jitbot itself (no `integrations:` entry needed): it wraps
the bot's own Slack client, and `is_in_usergroup(user, usergroup_id)` is a coroutine that reads
`usergroups.users.list` (cached briefly), so this hook is `async def`.

A refused click changes nothing: the person who clicked gets the message below, ephemerally, and
the attempt is audited. Denials are not restricted, so anyone allowed to decide can still say no.
"""

# The user group ID (S…), from the group's profile in Slack; the handle (@secops) can change.
SECURITY_TEAM = "S0SECOPS"


async def on_approve(evt):
    if await evt.integrations.slack.is_in_usergroup(evt.actor, SECURITY_TEAM):
        return None
    return evt.ignore("Only members of @secops can approve production access. Ask in #secops.")
