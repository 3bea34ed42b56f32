"""The `custom` strategy: grant and revoke with `grant(evt)` / `revoke(evt)` from the flow's hooks file.

    strategy:
      type: custom
      targets:
        - {name: reporting_db, label: Reporting DB, settings: {role: reader}}
    hooks: hooks/reporting.py

    # hooks/reporting.py
    async def grant(evt):                 # evt: the hook event, plus granted_at / expires_at
        grant_id = await add_reader(evt.user.email, evt.target.settings["role"], until=evt.expires_at)
        return {"grant_id": grant_id}     # optional: kept as the grant's state (values become str)

    async def revoke(evt):                # evt.state is what grant returned
        await remove_reader(evt.state["grant_id"])

Both must be idempotent, like every strategy. They run under the flow's hook time limit. A hook
that raises or times out is a retryable StrategyUnavailable naming the file and function; a hook
may raise `core.errors.SubjectNotFound` / `TargetNotFound` itself to report those precisely.

The limit really stops them: a plain `def` grant runs in a hook process that is killed at the limit
(see `core.hooks`), so once a grant has timed out none of its code runs any more, and the clean-up
revoke cannot be overtaken by it. (A request it had already sent is the target system's to finish:
pass it evt.expires_at.) Plain `def` hooks cannot use `evt.integrations`; `async def` ones can.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from core.errors import HookError, StartupError, StrategyError, StrategyUnavailable
from core.hook_events import HookEvent, HookIntegrations, HookTarget, HookUser
from core.hook_loading import HookResultError
from core.hooks import HookModule
from core.hooks_lint import HookIssue, check_hooks
from core.schema import StrategyConfig, TargetConfig
from core.strategy import GrantContext, GrantResult
from strategies.base import MatchedElsewhere


class CustomTarget(TargetConfig):
    """A custom target: `settings` is handed to the hooks as `evt.target.settings`."""

    settings: dict[str, Any] = {}


class CustomStrategyConfig(StrategyConfig):
    """Keys of a `type: custom` strategy block (only targets; the code lives in the flow's hooks file)."""

    type: Literal["custom"]
    targets: Annotated[list[CustomTarget], Field(min_length=1)]  # a flow with no target grants nothing


class CustomStrategy(MatchedElsewhere):
    """Calls the flow's `grant(evt)` / `revoke(evt)` hooks."""

    system = "custom hooks"
    config_model = CustomStrategyConfig
    required_hooks = ("grant", "revoke")
    unidentified_consequence = "this access cannot be granted to you"

    def __init__(
        self,
        config: CustomStrategyConfig,
        *,
        integrations: Mapping[str, object] | None = None,
        hooks: HookModule | None = None,
        timeout: float | None = None,
    ) -> None:
        self.config = config
        self.hooks = hooks
        self._integrations = dict(integrations or {})
        self._timeout = timeout  # None: the hooks module's own limit (the flow's hook time limit)

    @property
    def identity_key(self) -> str:
        """Identity overrides for custom flows are kept under the strategy type."""
        return "custom"

    @classmethod
    def hook_problems(cls, hooks: HookModule | None) -> list[str]:
        """What is missing for this strategy to work with a loaded hooks module (empty when fine)."""
        if hooks is None:
            return ["a custom strategy needs the flow's `hooks:` file with grant(evt) and revoke(evt)"]
        return [
            f"{hooks.path}: {name}(evt) is required by the custom strategy but not defined"
            for name in hooks.missing(cls.required_hooks)
        ]

    @classmethod
    def check_hooks_file(cls, path: str | Path) -> list[HookIssue]:
        """Lint the flow's hooks file without running it, requiring grant and revoke (for `bot.py validate`)."""
        return check_hooks(path, required=cls.required_hooks)

    async def open(self) -> None:
        """Refuse to start without grant/revoke hooks."""
        problems = self.hook_problems(self.hooks)
        if problems:
            raise StartupError("; ".join(problems))

    async def aclose(self) -> None:
        """Nothing to release: the hooks module (and its hook processes) is closed by whoever loaded it."""

    async def grant(self, ctx: GrantContext) -> GrantResult:
        """Call `grant(evt)`; a returned dict becomes the grant's state (values as str)."""
        self._require_someone(ctx)
        state = await self._call("grant", self.event(ctx))
        return GrantResult(state=state or {})

    async def revoke(self, ctx: GrantContext, state: Mapping[str, str]) -> None:
        """Call `revoke(evt)` with `evt.state` set to what grant returned."""
        await self._call("revoke", self.event(ctx, state))

    def event(self, ctx: GrantContext, state: Mapping[str, str] | None = None) -> HookEvent:
        """The `evt` for grant/revoke: the hook event of docs/hooks.md plus granted_at, expires_at and state."""
        return HookEvent(
            request_id=ctx.request_id,
            flow=ctx.flow,
            target=HookTarget.of(ctx.target),
            user=HookUser.of(ctx.subject),
            fields=ctx.fields,
            integrations=HookIntegrations(self._integrations),
            granted_at=ctx.granted_at,
            expires_at=ctx.expires_at,
            state=state or {},
        )

    def _where(self) -> str:
        return "custom strategy"

    async def _call(self, name: str, evt: HookEvent) -> Any:
        if self.hooks is None or not self.hooks.has(name):
            raise StrategyUnavailable("; ".join(self.hook_problems(self.hooks)), retryable=False)
        try:
            return await self.hooks.call(name, evt, timeout=self._timeout)
        except HookError as exc:
            cause = exc.__cause__
            if isinstance(cause, StrategyError):
                raise cause from exc  # the hook said precisely what is wrong (SubjectNotFound, TargetNotFound, …)
            # A bad return value is a bug a retry will not fix; a crash or a time-out may be transient.
            retryable = not isinstance(exc, HookResultError)
            raise StrategyUnavailable(
                f"custom {name}: {exc}",
                retryable=retryable,
                user_message=f"The custom {name} in {Path(exc.path).name} failed.",
            ) from exc
