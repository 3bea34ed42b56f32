"""Live grants whose flow was edited or removed since they were granted: rebuild what revokes them.

Editing the config must never leave access that nothing revokes. Each approval records its flow's
`strategy:` block and target as written (references unresolved, so no secret is stored). At start,
every live grant whose recorded strategy no longer matches its flow's (the flow is gone, its
target was removed or changed, its strategy was replaced) gets that recorded strategy back, built
with today's integrations and secrets, and is revoked with it on time. Only when the integration
such a grant needs is gone too (or its recorded strategy no longer builds) does `run` refuse to
start, naming the flow, what is missing and the grants, so an operator restores it or revokes by hand.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from core.approval_only import ApprovalOnly
from core.config import recorded_strategy_config
from core.config_models import JitConfig
from core.errors import ConfigError, StartupError
from core.hook_loading import DEFAULT_HOOK_TIMEOUT
from core.models import CHAIN_KEYS, Target
from core.secrets import SecretRegistry
from core.targets import as_target

log = structlog.get_logger("jitbot.retired")


class RetiredStrategies:
    """The strategies rebuilt for retired grants, to open with the rest and close at stop."""

    def __init__(self) -> None:
        self.by_request: dict[str, tuple[Any, Target]] = {}
        self.strategies: list[Any] = []
        self.hook_modules: list[Any] = []

    async def aclose(self) -> None:
        """Close every rebuilt strategy and hooks module."""
        for closable in [*self.strategies, *self.hook_modules]:
            try:
                await closable.aclose()
            except Exception:
                log.exception("close.failed", what=type(closable).__name__)


async def rebuild_retired(
    requests: Any,
    config: Any,
    *,
    integrations: Mapping[str, object],
    strategy_types: Mapping[str, type],
    integration_types: Mapping[str, type],
    load_hooks: Callable[..., Any],
    secrets: SecretRegistry | None = None,
    read_aws_secret: Callable[[str], str] | None = None,
) -> RetiredStrategies:
    """Build the recorded strategy of every live grant its flow no longer describes; StartupError
    naming the flow, what is missing and the grants when one cannot be built.

    Resolved values are registered in `secrets` (the runtime's; by default the one `config` was
    loaded with), which also scrubs the reasons and the hooks files' errors. `read_aws_secret` reads an
    `${aws_secret:NAME}` as the config's own were read (None: AWS Secrets Manager; the sandbox's are made up)."""
    secrets = config.secrets if secrets is None else secrets
    retired = RetiredStrategies()
    built: dict[str, tuple[Any, Target]] = {}
    missing: dict[tuple[str, str], list[str]] = defaultdict(list)
    current: dict[tuple[str, str], dict[str, Any] | None] = {}  # each flow's own spec, per target
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for group in await requests.live_grant_specs():
        flow_name, target_name, spec = group.flow, group.target, group.spec
        if not spec:
            continue  # granted before grants recorded their strategy: revoked with the flow's, as then
        if (flow_name, target_name) not in current:
            flow = _flow_or_none(config, flow_name)
            current[(flow_name, target_name)] = flow.grant_spec(target_name) if flow is not None else None
        # Rows are grouped per identity too; how to revoke does not depend on who.
        written = {key: value for key, value in spec.items() if key not in ("identity", *CHAIN_KEYS)}
        if current[(flow_name, target_name)] == written:
            continue
        ids = await requests.live_grant_ids(group)  # only a group whose flow changed: rare, and small
        integration = spec.get("strategy", {}).get("integration")
        if isinstance(integration, str) and integration not in config.integrations:
            missing[(flow_name, f"integration '{integration}'")].extend(ids)
            continue
        key = json.dumps(written, sort_keys=True)  # one strategy per recorded spec, shared by everyone's grants
        if key not in built:
            try:
                built[key] = await _build(
                    spec,
                    config,
                    retired,
                    integrations=integrations,
                    strategy_types=strategy_types,
                    integration_types=integration_types,
                    load_hooks=load_hooks,
                    secrets=secrets,
                    read_aws_secret=read_aws_secret,
                )
            except (ConfigError, StartupError, OSError) as exc:
                missing[(flow_name, f"its recorded strategy ({secrets.scrub(_one_line(exc))})")].extend(ids)
                continue
        for request_id in ids:
            retired.by_request[request_id] = built[key]
        counts[(flow_name, target_name)] += len(ids)
    for (flow_name, target_name), grants in counts.items():
        log.warning(
            "grants.retired_flow",
            flow=flow_name,
            target=target_name,
            grants=grants,
            flow_present=current[(flow_name, target_name)] is not None,
        )
    if missing:
        await retired.aclose()
        raise StartupError(
            " ".join(
                f"Flow '{flow}' has {len(ids)} live grant(s) ({', '.join(sorted(ids)[:10])}) that jitbot must revoke, "
                f"but {what} is gone: restore it in the config, or revoke the access by hand first."
                for (flow, what), ids in sorted(missing.items())
            )
        )
    return retired


async def _build(
    spec: Mapping[str, Any],
    config: JitConfig,
    retired: RetiredStrategies,
    *,
    integrations: Mapping[str, object],
    strategy_types: Mapping[str, type],
    integration_types: Mapping[str, type],
    load_hooks: Callable[..., Any],
    secrets: SecretRegistry,
    read_aws_secret: Callable[[str], str] | None,
) -> tuple[Any, Target]:
    if spec.get("approval_only"):
        # A window of an approval-only flow: nothing to take back anywhere, it just ends on time.
        recorded = spec.get("target")
        target: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}
        name = str(target.get("name") or "approval")
        return ApprovalOnly(), Target(name, str(target.get("label") or name), {})
    if spec.get("literal_secrets"):
        raise StartupError(
            "its strategy block held a secret written literally, which was not recorded; "
            "write secrets as ${env:…} references"
        )
    # Resolution may call AWS Secrets Manager (blocking boto3): off the event loop.
    strategy_config = await asyncio.to_thread(
        recorded_strategy_config,
        spec,
        config,
        strategy_types=strategy_types,
        integration_types=integration_types,
        secrets=secrets,
        read_aws_secret=read_aws_secret,
    )
    hooks = None
    if spec.get("hooks") and strategy_config.type == "custom":
        hooks = load_hooks(
            spec["hooks"], timeout=float(spec.get("hook_timeout") or DEFAULT_HOOK_TIMEOUT), secrets=secrets
        )
        retired.hook_modules.append(hooks)
    strategy = strategy_types[strategy_config.type](strategy_config, integrations=integrations, hooks=hooks)
    await strategy.open()
    retired.strategies.append(strategy)
    return strategy, as_target(strategy_config.targets[0])


def _flow_or_none(config: Any, name: str) -> Any:
    try:
        return config.flow(name)
    except KeyError:
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
