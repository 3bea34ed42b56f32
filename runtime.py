"""The running bot: build every part from the config, check the tokens, start, and stop cleanly.

`bot.py run` uses it as is; end-to-end tests build it in-process against the Slack emulator (with a
test strategy registry and an injected clock), exactly as production does.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import structlog
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from api.auth import Authenticator
from api.ratelimit import RateLimiter
from api.server import api_routes, start_http_server
from api.service import ApiService
from audit_sinks import build_sinks
from core.approval_only import ApprovalOnly
from core.audit_delivery import AUDIT_DELIVERY, POLL_SECONDS, AuditDelivery
from core.audit_events import config_loaded_detail
from core.claims import LEASE_TTL, Claims
from core.clock import Clock, SystemClock
from core.config import load_config
from core.engine import AccessEngine
from core.errors import StartupError
from core.hook_runner import HookRunner
from core.hooks import load_hooks
from core.lifecycle import SYSTEM
from core.metrics import MeteredRequests
from core.models import AuditEvent
from core.reconcile import RECONCILE_TICK_SECONDS, Reconciler
from core.retired import RetiredStrategies, rebuild_retired
from core.retry import Backoff
from core.scheduler import Scheduler
from core.secrets import SecretRegistry
from handlers.directory import SlackDirectory
from handlers.health import health_routes
from handlers.listeners import Listeners
from handlers.metrics import PrometheusMetrics, SlackCallCounter
from handlers.notifier import SlackNotifier
from storage.approvals import ApprovalRepo
from storage.audit import AuditLog
from storage.audit_outbox import AuditCursors
from storage.db import DEFAULT_DATABASE_PATH, Store, check_database_path, url_password
from storage.drift import DriftRepo
from storage.identities import IdentityStore
from storage.leases import LeaseRepo
from storage.reminders import ReminderRepo
from storage.request_queries import RequestQueries
from storage.requests import RequestRepo
from storage.stats import request_counts
from storage.tokens import TokenStore
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

log = structlog.get_logger("jitbot")

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
# SIGTERM: the listeners, the timers and the follow-ups share this many seconds to finish, so the
# process exits within 10 s (what is left, the next start recovers).
STOP_GRACE = 8.0
# A 429 is retried after each Retry-After this many times in the call itself; a message edit is then
# tried again later (core.retry.MESSAGE_EDIT), so a long throttle delays it but does not lose it.
RATE_LIMIT_RETRIES = 8
DEFAULT_API_RATE_LIMIT = 120


def slack_client(token: str, base_url: str, metrics: PrometheusMetrics) -> AsyncWebClient:
    """The bot's one Slack Web API client (bench/call_floor.py times calls through it too)."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        # One pooled session: without it slack_sdk opens a connection (and a TLS handshake) per call.
        session=aiohttp.ClientSession(),
        # The one place Slack retries are configured: every Web API call (Bolt's, the Socket Mode
        # handler's, ours) goes through this client. The counter only looks, for /metrics.
        retry_handlers=[
            SlackCallCounter(metrics),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise StartupError(f"{name} must be a whole number of at least 1 (got {text[:20]!r}).")
    return int(text)


@dataclass
class Settings:
    """Everything the process takes from its environment; the Slack tokens never show in its repr."""

    # Plain strings, because the Slack clients take them as they are; repr=False keeps them out of
    # repr() and str(). The Runtime registers them in its SecretRegistry however Settings is built.
    bot_token: str = field(repr=False)
    app_token: str = field(repr=False)
    config_path: Path
    db_path: str = field(repr=False)  # a postgresql:// URL may carry a password
    slack_api_url: str = DEFAULT_SLACK_API_URL
    # JITBOT_HTTP_ADDR (JITBOT_HEALTH_ADDR still accepted): /health and the /v1 API.
    health_address: str | None = None
    api_rate_limit: int = DEFAULT_API_RATE_LIMIT  # calls per token per minute, in bursts of as many
    lease_seconds: float = LEASE_TTL  # replicas: how long a dead replica's work waits before another takes it

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, secrets: SecretRegistry | None = None) -> Settings:
        """Read the process's variables, registering the tokens in `secrets`; a missing token or an
        unusable JITBOT_DB is a StartupError in one sentence."""
        bot, app = env.get("SLACK_BOT_TOKEN", "").strip(), env.get("SLACK_APP_TOKEN", "").strip()
        # Before any check: a token refused below (a user token, the two swapped) is still a secret.
        db = env.get("JITBOT_DB") or DEFAULT_DATABASE_PATH
        if secrets is not None:
            secrets.register(bot)
            secrets.register(app)
            password = url_password(db)  # a postgresql:// URL's password: never in a log line or error
            if password:
                secrets.register(password)
        missing = [name for name, value in (("SLACK_BOT_TOKEN", bot), ("SLACK_APP_TOKEN", app)) if not value]
        if missing:
            raise StartupError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                "create the tokens as the README's Slack app setup shows, then export them."
            )
        if not bot.startswith("xoxb-"):
            raise StartupError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-.")
        if not app.startswith("xapp-"):
            raise StartupError(
                "SLACK_APP_TOKEN must be an app-level token starting with xapp- (with connections:write)."
            )
        return cls(
            bot_token=bot,
            app_token=app,
            config_path=Path(env.get("JITBOT_CONFIG", "config/flows.yaml")),
            # Checked here, not when the Store opens: a URL we cannot use is refused before Slack is contacted.
            db_path=check_database_path(db, name="JITBOT_DB"),
            slack_api_url=env.get("SLACK_API_URL", DEFAULT_SLACK_API_URL) or DEFAULT_SLACK_API_URL,
            # JITBOT_HEALTH_ADDR is the older name of the same setting.
            health_address=env.get("JITBOT_HTTP_ADDR") or env.get("JITBOT_HEALTH_ADDR") or None,
            api_rate_limit=_positive_int(env, "JITBOT_API_RATE_LIMIT", DEFAULT_API_RATE_LIMIT),
            lease_seconds=_lease_seconds(env.get("JITBOT_LEASE_SECONDS")),
        )


def _lease_seconds(text: str | None) -> float:
    """JITBOT_LEASE_SECONDS: the replicas' lease lifetime, 1 to 300 seconds (default LEASE_TTL)."""
    if text is None or not text.strip():
        return LEASE_TTL
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 300:  # NaN fails too
        raise StartupError(f"JITBOT_LEASE_SECONDS must be a number of seconds from 1 to 300, not {text!r}.")
    return value


@dataclass
class Runtime:
    """One bot instance; `start()` builds and connects everything, `stop()` undoes it in reverse."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    strategy_types: Mapping[str, type] = field(default_factory=lambda: STRATEGY_TYPES)
    integration_types: Mapping[str, type] = field(default_factory=lambda: INTEGRATION_TYPES)
    start_timers: bool = True
    # This bot's secrets: every part that writes text out scrubs with it. `bot.py` passes the one
    # its logging was configured with; the Slack tokens are registered however Settings was built.
    secrets: SecretRegistry = field(default_factory=SecretRegistry)
    # Audit delivery: the back-off after a failed delivery and how often an idle worker looks again
    # (tests shorten both).
    audit_backoff: Backoff = AUDIT_DELIVERY
    audit_poll_seconds: float = POLL_SECONDS
    # Where `${aws_secret:NAME}` is read from, by NAME: None is AWS Secrets Manager; the sandbox passes
    # its made-up values so that it never reads a real secret with the machine's credentials.
    read_aws_secret: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        self.secrets.register(self.settings.bot_token)
        self.secrets.register(self.settings.app_token)
        self.config = None
        self.store: Store | None = None
        self.integrations: dict[str, object] = {}
        self.strategies: dict[str, object] = {}
        self.engine: AccessEngine | None = None
        self.scheduler: Scheduler | None = None
        self.app: AsyncApp | None = None
        self.socket: AsyncSocketModeHandler | None = None
        self.client: AsyncWebClient | None = None
        self.health = None
        self.team_id: str | None = None
        self.retired: RetiredStrategies | None = None
        self.reconciler: Reconciler | None = None
        self.hook_modules: dict[str, object] = {}
        self.listeners = Listeners(self.secrets)  # this bot's Slack listener work, drained at stop
        self.metrics = PrometheusMetrics()  # this bot's own registry, served at /metrics
        self.audit_delivery: AuditDelivery | None = None
        self.claims: Claims | None = None  # replicas only (PostgreSQL): this process's leases

    async def start(self) -> None:
        """Load config, open storage and integrations, check tokens, recover, arm timers, connect."""
        settings = self.settings
        # Resolution may call AWS Secrets Manager (blocking boto3): keep it off the event loop.
        self.config = await asyncio.to_thread(
            load_config,
            settings.config_path,
            strategy_types=self.strategy_types,
            integration_types=self.integration_types,
            resolve_secrets=True,
            secrets=self.secrets,
            read_aws_secret=self.read_aws_secret,
        )
        self.client = slack_client(settings.bot_token, settings.slack_api_url, self.metrics)
        # The run lock first: a second bot on this database refuses before it touches Slack.
        self.store = await Store.open(settings.db_path, exclusive=True, secrets=self.secrets)
        await self._check_tokens()
        secrets = self.secrets
        requests = MeteredRequests(RequestRepo(self.store, secrets), self.metrics)
        audit = AuditLog(self.store, secrets)
        identities = IdentityStore(self.store, secrets=secrets)
        await self._audit_config_loaded(audit)

        for name, spec in self.config.integrations.items():
            integration = self.integration_types[spec.type](name, spec)
            await integration.open()
            self.integrations[name] = integration
        hook_modules = self.hook_modules
        for flow in self.config.flows:
            if flow.hooks_path is not None:
                hook_modules[flow.name] = load_hooks(
                    flow.hooks_path, timeout=flow.hook_timeout.total_seconds(), secrets=secrets
                )
        for flow in self.config.flows:
            if flow.strategy is None:  # an approval-only flow: decisions recorded, nothing granted anywhere
                strategy = ApprovalOnly()
            else:
                strategy = self.strategy_types[flow.strategy.type](
                    flow.strategy, integrations=self.integrations, hooks=hook_modules.get(flow.name)
                )
            await strategy.open()
            self.strategies[flow.name] = strategy

        directory = SlackDirectory(self.client, team_id=self.team_id)
        notifier = SlackNotifier(self.client, self.config, secrets, lookup=requests.get)
        runner = HookRunner(
            hook_modules,
            {**self.integrations, "slack": directory},
            notifier=notifier,
            audit=audit,
            clock=self.clock,
            secrets=secrets,
        )
        self.engine = AccessEngine(
            config=self.config,
            requests=requests,
            audit=audit,
            identities=identities,
            strategies=self.strategies,
            hooks=runner,
            notifier=notifier,
            directory=directory,
            clock=self.clock,
            secrets=secrets,
            approvals=ApprovalRepo(self.store, secrets),
            reminders=ReminderRepo(self.store, secrets),
        )
        self.engine.metrics = self.metrics
        self.metrics.watch(
            request_counts=functools.partial(request_counts, self.store),
            follow_ups_pending=self.engine.life.follow_ups.pending,
        )
        if self.store.dialect == "postgresql":
            # Replicas: each lock of a request or an access is also a lease in the database, renewed
            # while held; a replica that dies loses its leases within LEASE_TTL and the others take over.
            self.claims = Claims(LeaseRepo(self.store), ttl=settings.lease_seconds)
            self.claims.metrics = self.metrics
            self.metrics.watch_leases(self.claims.held)
            self.claims.start()
            self.engine.life.guards.claims = self.claims
        self.scheduler = Scheduler(self.engine, self.clock)
        self.scheduler.claims = self.claims
        self.engine.timers = self.scheduler
        # Live grants of flows edited or removed since: revoked with what they recorded.
        self.retired = await rebuild_retired(
            requests,
            self.config,
            integrations=self.integrations,
            strategy_types=self.strategy_types,
            integration_types=self.integration_types,
            load_hooks=load_hooks,
            secrets=secrets,
            read_aws_secret=self.read_aws_secret,  # the sandbox's made-up values, like the config's own
        )
        self.engine.retired = self.retired.by_request
        # Drift reconciliation: who holds each target without a live grant (flows with `reconcile:`).
        self.reconciler = Reconciler(self.engine.life, DriftRepo(self.store, secrets))

        # process_before_response=True: our listener wrapper (handlers.listeners.Listeners.reported) returns as
        # soon as ack() is called and finishes the work in the background, so Bolt sends the ack at
        # once instead of polling for it every 10 ms.
        self.app = AsyncApp(client=self.client, process_before_response=True)
        home = handlers.register(self.app, config=self.config, engine=self.engine, listeners=self.listeners)
        notifier.published = home.refresh.changed  # a request changed: Homes left open are published again

        if self.start_timers:
            self.scheduler.start(sweep=False)
        counts = await self.engine.recover()
        # What the flows file cannot show: approvers' user groups too small for approvals_required.
        await self.engine.policy.check_at_start()
        if self.start_timers:
            self.scheduler.start_sweep()  # only now: a sweep must not race recovery
            if self.reconciler.flows():
                # Each tick runs the flows whose `every` has passed since their stored last run.
                self.scheduler.every("reconcile", self.reconciler.run_due, timedelta(seconds=RECONCILE_TICK_SECONDS))
            armed = await self.scheduler.arm_window()
            log.info("timers.armed", count=armed)
        # Delivery reads the trail after each destination's cursor; it runs beside requests, never in their path.
        self.audit_delivery = AuditDelivery(
            AuditCursors(self.store),
            build_sinks(
                self.config.audit,
                integrations=self.integrations,
                base_dir=settings.config_path.parent,
                clock=self.clock,
            ),
            alert=notifier.alert,
            clock=self.clock,
            secrets=secrets,
            backoff=self.audit_backoff,
            poll_seconds=self.audit_poll_seconds,
        )
        self.audit_delivery.claims = self.claims
        self.metrics.watch_audit(self.audit_delivery.backlog)
        await self.audit_delivery.start()
        self.socket = AsyncSocketModeHandler(self.app, settings.app_token)
        await self.socket.connect_async()
        if settings.health_address:
            routes = health_routes({"slack": self.socket.client.is_connected, "database": self._database_answers})
            auth = Authenticator(
                TokenStore(self.store, self.clock, secrets=secrets),
                clock=self.clock,
                limiter=RateLimiter(settings.api_rate_limit, 60.0, now=lambda: self.clock.now().timestamp()),
                audit=audit,
                directory=directory,
            )
            service = ApiService(engine=self.engine, auth=auth, queries=RequestQueries(self.store), directory=directory)
            self.health = await start_http_server(
                settings.health_address,
                [*routes, aiohttp.web.get("/metrics", self.metrics.handle), *api_routes(service, auth)],
                secrets=secrets,
            )
        log.info("jitbot.started", flows=[f.name for f in self.config.flows], **counts)

    async def _audit_config_loaded(self, audit: AuditLog) -> None:
        """Record the flows file this start runs on (its SHA-256), and whether it changed since the last start."""
        path = self.settings.config_path
        content = await asyncio.to_thread(path.read_bytes)
        previous = await audit.latest("config.loaded")
        previous_sha = previous.detail.get("sha256") if previous is not None else None
        detail = config_loaded_detail(
            str(path),
            content,
            previous_sha if isinstance(previous_sha, str) else None,
            [flow.name for flow in self.config.flows],
            [destination.key for destination in self.config.audit.destinations],
        )
        await audit.append(AuditEvent(at=self.clock.now(), actor=SYSTEM, action="config.loaded", detail=detail))

    async def _database_answers(self) -> bool:
        return await self.store.read(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)

    async def _check_tokens(self) -> None:
        # slack_sdk retries a bad app token forever inside connect(); one explicit call each turns
        # a bad token into one clear sentence instead.
        try:
            identity = await self.client.auth_test()
            self.team_id = identity.get("team_id")
        except SlackApiError as exc:
            raise StartupError(f"Slack rejected SLACK_BOT_TOKEN ({exc.response.get('error')}).") from None
        except Exception as exc:
            raise StartupError(
                f"Could not reach the Slack API at {self.settings.slack_api_url} ({type(exc).__name__})."
            ) from None
        try:
            await self.client.apps_connections_open(app_token=self.settings.app_token)
        except SlackApiError as exc:
            raise StartupError(
                f"Slack rejected SLACK_APP_TOKEN ({exc.response.get('error')}); it needs the connections:write scope."
            ) from None

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop taking envelopes, let work in flight finish within `grace` seconds, then close clients and
        the database. What is not finished by then stays in the database for the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self.health is not None:
            await self.health.cleanup()
        if self.socket is not None:
            # Closing the connection stops new envelopes; one not acked yet is redelivered by Slack.
            await self.socket.close_async()
            await self.listeners.drain(timeout=max(0.0, deadline - loop.time()))
        if self.scheduler is not None:
            await self.scheduler.shutdown(grace=max(0.0, deadline - loop.time()))
        if self.engine is not None:
            left = await self.engine.settle(max(0.0, deadline - loop.time()))
            if left or self.listeners.running():
                log.warning("stop.unfinished", listeners=len(self.listeners.running()), follow_ups=left)
            # Time is up: cancel what is left before its clients close under it. A grant cut short stays
            # `approved` (recovery settles it), a revocation stays due, an edit is not sent.
            await self.listeners.cancel()
            await self.engine.cancel_follow_ups()
        if self.audit_delivery is not None:
            await self.audit_delivery.stop()
        if self.claims is not None:
            await self.claims.stop()  # what is unfinished is due again, for the other replicas at once
        if self.retired is not None:
            await self.retired.aclose()
        # After the listeners and timers are drained, so no hook call is running: stops their processes.
        for module in self.hook_modules.values():
            try:
                await module.aclose()
            except Exception:
                log.exception("close.failed", what="hooks")
        for closable in [*self.strategies.values(), *self.integrations.values()]:
            try:
                await closable.aclose()
            except Exception:
                log.exception("close.failed", what=type(closable).__name__)
        if self.client is not None and getattr(self.client, "session", None) is not None:
            await self.client.session.close()
        if self.store is not None:
            await self.store.close()
        if self.engine is not None:
            log.info("jitbot.stopped")
