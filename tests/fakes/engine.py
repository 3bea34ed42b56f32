"""The one place tests put an AccessEngine together: adapt it when the engine's constructor changes.

As runtime.py does: the repositories (requests, audit, identities, approvals, reminders) on one
store, and a HookRunner with the Slack directory as `evt.integrations.slack`. Retry pauses are zero
(the clock is fake; real sleeps would only slow a test down). A test passes its own stand-ins for
Slack, the target systems and the clock, and anything else the engine takes as `options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.config import load_config
from core.config_models import JitConfig
from core.engine import AccessEngine
from core.hook_runner import HookRunner
from core.ports import Directory, Notifier, RequestStore
from core.strategy import Strategy
from storage.approvals import ApprovalRepo
from storage.audit import AuditLog
from storage.identities import IdentityStore
from storage.reminders import ReminderRepo
from storage.requests import RequestRepo
from tests.fakes.clock import FrozenClock
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES


def flows_config(folder: Path, text: str) -> JitConfig:
    """`text` written as `folder`/flows.yaml and loaded as the bot loads it, with the test strategies."""
    (folder / "flows.yaml").write_text(text)
    return load_config(
        folder / "flows.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES
    )


def build_engine(
    store: Any,
    config: JitConfig,
    *,
    strategies: Mapping[str, Strategy],
    notifier: Notifier,
    directory: Directory,
    clock: FrozenClock,
    requests: RequestStore | None = None,
    hook_modules: Mapping[str, Any] | None = None,
    **options: Any,
) -> AccessEngine:
    """An engine on real repositories over `store`; `requests` replaces its request repository, `options`
    go to the constructor as they are (timers, or grant_retry_delay etc. to override the zero pauses)."""
    audit = AuditLog(store)
    settings: dict[str, Any] = {
        "grant_retry_delay": 0,
        "retry_delay": 0,
        "approvals": ApprovalRepo(store),
        "reminders": ReminderRepo(store),
        **options,
    }
    return AccessEngine(
        config=config,
        requests=RequestRepo(store) if requests is None else requests,
        audit=audit,
        identities=IdentityStore(store, clock),
        strategies=dict(strategies),
        hooks=HookRunner(dict(hook_modules or {}), {"slack": directory}, notifier=notifier, audit=audit, clock=clock),
        notifier=notifier,
        directory=directory,
        clock=clock,
        **settings,
    )
