"""The `evt` a policy hook receives (docs/hooks.md), and the decisions a hook can hand back.

    evt.request_id, evt.flow                     the request and its flow's name
    evt.target.name / .label / .settings         what is asked for
    evt.fields                                   every submitted field by name
    evt.user, evt.actor                          HookUser(slack_id, email, name, identity)
    evt.via                                      'slack' or 'api': how the request or click arrived
    evt.integrations.NAME                        each built entry of `integrations:`
    evt.granted_at, evt.expires_at, evt.state    set where they exist (grant, revoke, after_*)
    evt.extends                                  the id of the live grant this request extends, or None

    return evt.approve("on call")  /  evt.deny("out of hours")  /  evt.ignore("ask secops")

The request side of `evt` is read-only: attributes cannot be assigned, and mappings are
`MappingProxyType` all the way down (lists become tuples), so a hook cannot alter the request the
engine goes on to store. The integration objects themselves are the live clients.

Sync hooks (plain `def`) run in a separate hook process (see `core.hooks`): they get a copy of
`evt` rebuilt from `evt.snapshot()`, whose `evt.integrations` knows the names but refuses to be
used, because the integrations are async clients bound to the bot's event loop.

A decision method both returns its decision and records it on `evt`, so a hook that forgets the
`return` still decides. When a hook returns a decision, the returned one wins; when it returns
nothing, the last recorded one counts (see `core.hooks.HookModule.call`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

INTEGRATIONS_NEED_ASYNC = "integrations are async clients: make this hook `async def` to use them"
"""Why `evt.integrations.NAME` fails in a sync hook."""


def freeze(value: Any) -> Any:
    """Return a read-only deep copy: dicts become mapping proxies, lists tuples, sets frozensets."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """Undo `freeze` for sending: mapping proxies become dicts again (tuples and frozensets stay)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(thaw(item) for item in value)
    if isinstance(value, frozenset):
        return frozenset(thaw(item) for item in value)
    return value


@dataclass(frozen=True)
class Approve:
    """A hook's decision to approve the request (on_request fast-track)."""

    reason: str
    kind: ClassVar[str] = "approve"


@dataclass(frozen=True)
class Deny:
    """A hook's decision to deny the request (on_request)."""

    reason: str
    kind: ClassVar[str] = "deny"


@dataclass(frozen=True)
class Ignore:
    """A hook's refusal of a click (on_approve / on_deny); `message` is shown to the clicker."""

    message: str
    kind: ClassVar[str] = "ignore"

    @property
    def reason(self) -> str:
        """The same text as `message`, so every decision has a `.reason`."""
        return self.message


Decision = Approve | Deny | Ignore
_D = TypeVar("_D", Approve, Deny, Ignore)


@dataclass(frozen=True)
class HookUser:
    """A person as hooks see them; `identity` is their stored override for the strategy, if any."""

    slack_id: str
    email: str | None = None
    name: str | None = None
    identity: str | None = None

    @classmethod
    def of(cls, person: Any) -> HookUser:
        """Build from any object with `slack_id` (Subject, UserInfo, HookUser) or from a bare Slack id."""
        if isinstance(person, HookUser):
            return person
        if isinstance(person, str):
            return cls(slack_id=person)
        return cls(
            slack_id=person.slack_id,
            email=getattr(person, "email", None),
            name=getattr(person, "name", None),
            identity=getattr(person, "identity", None),
        )


@dataclass(frozen=True)
class HookTarget:
    """The target as hooks see it; `settings` is a read-only mapping."""

    name: str
    label: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", freeze(self.settings or {}))

    @classmethod
    def of(cls, target: Any) -> HookTarget:
        """Build from any object with name, label and settings (core.models.Target, HookTarget)."""
        if isinstance(target, HookTarget):
            return target
        return cls(name=target.name, label=target.label, settings=getattr(target, "settings", None) or {})


class HookIntegrations:
    """Attribute (and item) access to the built integrations by their `integrations:` name."""

    __slots__ = ("_items",)
    _items: MappingProxyType[str, object]

    def __init__(self, integrations: Mapping[str, object] | None = None) -> None:
        object.__setattr__(self, "_items", MappingProxyType(dict(integrations or {})))

    def __getattr__(self, name: str) -> object:
        items = object.__getattribute__(self, "_items")
        try:
            return items[name]
        except KeyError:
            known = ", ".join(sorted(items)) or "none configured"
            raise AttributeError(f"no integration named {name!r} (known: {known})") from None

    def __getitem__(self, name: str) -> object:
        return self.__getattr__(name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("evt.integrations is read-only")

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"HookIntegrations({', '.join(sorted(self._items))})"


class UnusableIntegrations(HookIntegrations):
    """`evt.integrations` in a sync hook's process: the names are there, using one is a clear error."""

    __slots__ = ()

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__(dict.fromkeys(names))

    def __getattr__(self, name: str) -> object:
        if name not in object.__getattribute__(self, "_items"):
            return super().__getattr__(name)  # the usual "no integration named …" error
        raise RuntimeError(f"evt.integrations.{name}: {INTEGRATIONS_NEED_ASYNC}")


@dataclass(frozen=True, kw_only=True)
class HookEvent:
    """The `evt` argument of every hook; read-only apart from the decision it records."""

    request_id: str
    flow: str
    target: HookTarget
    user: HookUser
    fields: Mapping[str, Any] = field(default_factory=dict)
    actor: HookUser | None = None
    integrations: HookIntegrations = field(default_factory=HookIntegrations)
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    state: Mapping[str, str] = field(default_factory=dict)
    # How the request (on_request, routing) or the click (on_approve / on_deny) reached jitbot:
    # "slack" or "api"; None in the hooks no person's action calls (after_*, grant, revoke).
    via: str | None = None
    extends: str | None = None
    # Decisions recorded by evt.approve/deny/ignore; a list so the frozen event can still collect them.
    _recorded: list[Decision] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Accept the domain types the engine already holds, so callers need no conversion code.
        object.__setattr__(self, "target", HookTarget.of(self.target))
        object.__setattr__(self, "user", HookUser.of(self.user))
        if self.actor is not None:
            object.__setattr__(self, "actor", HookUser.of(self.actor))
        if not isinstance(self.integrations, HookIntegrations):
            object.__setattr__(self, "integrations", HookIntegrations(self.integrations))
        object.__setattr__(self, "fields", freeze(self.fields or {}))
        object.__setattr__(self, "state", freeze(self.state or {}))

    def approve(self, reason: str = "approved by policy hook") -> Approve:
        """Approve the request (from on_request); returns the decision and records it."""
        return self._record(Approve(str(reason)))

    def deny(self, reason: str = "denied by policy hook") -> Deny:
        """Deny the request (from on_request); returns the decision and records it."""
        return self._record(Deny(str(reason)))

    def ignore(self, message: str = "This click was refused by policy.") -> Ignore:
        """Refuse the current click (from on_approve/on_deny); returns the decision and records it."""
        return self._record(Ignore(str(message)))

    @property
    def decision(self) -> Decision | None:
        """The last decision recorded on this event, or None."""
        return self._recorded[-1] if self._recorded else None

    def clear_decision(self) -> None:
        """Forget recorded decisions (the hook runner does this before each call)."""
        self._recorded.clear()

    def snapshot(self) -> dict[str, Any]:
        """The event as plain, picklable data for a hook process: no live clients, no decisions."""
        return {
            "request_id": self.request_id,
            "flow": self.flow,
            "target": {"name": self.target.name, "label": self.target.label, "settings": thaw(self.target.settings)},
            "user": _person(self.user),
            "actor": _person(self.actor) if self.actor is not None else None,
            "fields": thaw(self.fields),
            "integrations": tuple(self.integrations),
            "granted_at": self.granted_at,
            "expires_at": self.expires_at,
            "state": thaw(self.state),
            "via": self.via,
            "extends": self.extends,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> HookEvent:
        """Rebuild a read-only event from `snapshot()`; its integrations refuse to be used."""
        actor = data.get("actor")
        return cls(
            request_id=data["request_id"],
            flow=data["flow"],
            target=HookTarget(**data["target"]),
            user=HookUser(**data["user"]),
            actor=HookUser(**actor) if actor is not None else None,
            fields=data["fields"],
            integrations=UnusableIntegrations(data["integrations"]),
            granted_at=data["granted_at"],
            expires_at=data["expires_at"],
            state=data["state"],
            via=data.get("via"),
            extends=data.get("extends"),
        )

    def _record(self, decision: _D) -> _D:
        self._recorded.append(decision)
        return decision


def _person(user: HookUser) -> dict[str, str | None]:
    return {"slack_id": user.slack_id, "email": user.email, "name": user.name, "identity": user.identity}
