"""The sandbox's small workspace: a requester, an approver and an outsider, and the flows file's channels.

Ids come from the flows file, so it runs as written: every approval and alerts channel exists (the
bot a member), the users named under `approvers:` exist (the first is the approver you can play),
and every user group named there has the approver in it. The outsider is a guest account, who may
neither ask nor decide unless a flow sets `allow_guests: true`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config_models import JitConfig
from sandbox.slack import SlackEmulator

REQUESTER_ID = "U0REQUESTER"
DEFAULT_APPROVER_ID = "U0ADMIN1"  # the id the shipped config/flows.yaml suggests under `approvers:`
OUTSIDER_ID = "U0OUTSIDER"


@dataclass(frozen=True)
class Person:
    """Someone the page lets you be."""

    id: str
    name: str
    real_name: str
    role: str  # requester | approver | outsider
    about: str


def people(config: JitConfig) -> list[Person]:
    """The people of the sandbox: the requester, each approver the config names (or one), the outsider."""
    listed = list(dict.fromkeys(u for f in config.flows if f.approvers for u in f.approvers.users))
    approver_ids = [i for i in listed if i not in (REQUESTER_ID, OUTSIDER_ID)] or [DEFAULT_APPROVER_ID]
    approvers = [
        Person(
            uid,
            "avery" if n == 0 else f"approver{n + 1}",
            "Avery Approver" if n == 0 else f"Approver {n + 1}",
            "approver",
            "may approve or deny other people's requests",
        )
        for n, uid in enumerate(approver_ids)
    ]
    return [
        Person(REQUESTER_ID, "riley", "Riley Requester", "requester", "asks for access with /sym"),
        *approvers,
        Person(OUTSIDER_ID, "oakley", "Oakley Outsider", "outsider", "a guest account: may neither ask nor approve"),
    ]


def seed(emu: SlackEmulator, config: JitConfig) -> list[Person]:
    """Add the people, channels and user groups the flows file needs; return the people."""
    everyone = people(config)
    for person in everyone:
        emu.add_user(
            person.id,
            email=f"{person.name}@example.com",
            name=person.name,
            real_name=person.real_name,
            guest="multi" if person.role == "outsider" else None,
        )
    channels = [f.approval_channel for f in config.flows]
    if config.slack.alerts_channel:
        channels.append(config.slack.alerts_channel)
    for channel in dict.fromkeys(channels):
        emu.add_channel(channel, name=channel_name(channel))
    approver_ids = [p.id for p in everyone if p.role == "approver"]
    groups = dict.fromkeys(g for f in config.flows if f.approvers for g in f.approvers.usergroups)
    for group in groups:
        emu.add_usergroup(group, handle=group.lower(), users=approver_ids)
    return everyone


def channel_name(channel_id: str) -> str:
    """A readable name for a channel id of the flows file: C0APPROVALS → approvals."""
    name = channel_id.lower()
    return name[2:] if name.startswith("c0") and len(name) > 2 else name
