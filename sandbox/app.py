"""The sandbox: the real bot (runtime.Runtime) against the in-process Slack, a receiver, and a clock to move.

Everything the production bot runs runs here: the engine, the Slack handlers over a real Socket
Mode WebSocket, SQLite, the scheduler and the webhook strategy. What differs is said in `notes`
(sandbox/stand_ins.py): webhook flows deliver to the built-in receiver, other systems are stand-ins.
"""

from __future__ import annotations

import json
import os
import secrets as token_source
import shutil
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import yaml

from core.clock import OffsetClock
from core.config import load_config
from core.config_models import JitConfig
from core.errors import StartupError
from core.secrets import SecretRegistry
from runtime import Runtime, Settings
from sandbox import stand_ins
from sandbox.directory import Person, seed
from sandbox.ledger import Ledger
from sandbox.made_up_secrets import MadeUpSecrets
from sandbox.receiver import BuiltInReceiver
from sandbox.slack import SlackEmulator
from storage.db import check_database_path
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

# The flows file's webhook secret is this environment variable in the shipped config.
WEBHOOK_SECRET_VARIABLE = "WEBHOOK_SECRET"
MAX_FAST_FORWARD = timedelta(days=7)
# What the bot's Slack app subscribes to, as shipped: Slack sends only those events.
MANIFEST = Path(__file__).resolve().parent.parent / "config" / "slack-manifest.yaml"


def slack_app_features(manifest: Path) -> tuple[bool, frozenset[str]]:
    """Whether the app has a Home tab, and the bot events it subscribes to (none when unreadable)."""
    try:
        document = yaml.safe_load(manifest.read_text())
    except (OSError, yaml.YAMLError):
        return False, frozenset()
    if not isinstance(document, dict):
        return False, frozenset()
    home = ((document.get("features") or {}).get("app_home") or {}).get("home_tab_enabled") is True
    events = ((document.get("settings") or {}).get("event_subscriptions") or {}).get("bot_events") or []
    return home, frozenset(e for e in events if isinstance(e, str))


class Sandbox:
    """One sandboxed bot; `start()` brings up Slack, the receiver and the bot, `stop()` undoes it."""

    def __init__(self, config_path: Path, *, db_path: str | None = None) -> None:
        self.config_path = config_path
        self.clock = OffsetClock()
        self.secrets = SecretRegistry()
        self.instance = uuid.uuid4().hex  # the page notices a restarted sandbox by this
        self._db_path = db_path
        self._scratch: str | None = None
        self._kept: Path | None = None
        self.config: JitConfig | None = None
        self.people: list[Person] = []
        self.notes: list[str] = []
        self.home_tab = False
        self.events: frozenset[str] = frozenset()
        self.emu: SlackEmulator | None = None
        self.ledger: Ledger | None = None
        self.receiver: BuiltInReceiver | None = None
        self.runtime: Runtime | None = None

    async def start(self) -> None:
        """Start the Slack, the receiver and the bot; ConfigError / StartupError as `bot.py run` raises them."""
        # References stay unresolved here: this copy only names channels, people and what is stood in for.
        self.config = load_config(self.config_path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES)
        if self.config.audit.destinations:
            # The bot would deliver the sandbox's made-up events to real places (a SIEM, a bucket, a file),
            # with the credentials of the environment: the sandbox contacts nothing outside this machine.
            names = ", ".join(d.key for d in self.config.audit.destinations)
            raise StartupError(
                f"{self.config_path} sends audit events to {names}, and the sandbox sends nothing out: "
                "run it with a copy of the flows file without audit.destinations."
            )
        # ${aws_secret:…} gets made-up values: the sandbox never reads AWS with the machine's credentials.
        made_up = MadeUpSecrets.of_file(self.config_path)
        self.notes = stand_ins.notes(self.config) + made_up.notes()
        self.home_tab, self.events = slack_app_features(MANIFEST)
        if self._db_path is None:
            self._scratch = tempfile.mkdtemp(prefix="jitbot-sandbox-")
            db_path = str(Path(self._scratch) / "jitbot.db")
        else:
            db_path = check_database_path(self._db_path, name="--db")
            # Beside a kept database: the bot's clock and the receiver's list survive a restart with it.
            self._kept = Path(f"{db_path}.sandbox.json")
        self.emu = SlackEmulator(clock=self.clock)
        self.people = seed(self.emu, self.config)
        await self.emu.start()
        self.ledger = Ledger(now=self.clock.now, on_change=self._changed)
        self._restore()
        secret = token_source.token_hex(32)
        self.secrets.register(secret)
        # The flows file's ${env:WEBHOOK_SECRET} resolves; the receiver checks signatures with it.
        os.environ[WEBHOOK_SECRET_VARIABLE] = secret
        self.receiver = await BuiltInReceiver(secret, self.ledger).start()
        settings = Settings(
            bot_token=self.emu.bot_token,
            app_token=self.emu.app_token,
            config_path=self.config_path,
            db_path=db_path,
            slack_api_url=self.emu.api_url,
        )
        self.runtime = Runtime(
            settings,
            clock=self.clock,
            strategy_types=stand_ins.strategy_types(self.ledger, self.receiver.url, secret),
            integration_types=stand_ins.integration_types(),
            secrets=self.secrets,
            read_aws_secret=made_up.read,
        )
        await self.runtime.start()

    def _changed(self) -> None:
        """Save what must survive a restart (with --db), and wake the page."""
        if self._kept is not None and self.ledger is not None:
            document = {"clock_offset_seconds": self.clock.offset.total_seconds(), **self.ledger.dump()}
            temporary = self._kept.with_name(self._kept.name + ".tmp")
            temporary.write_text(json.dumps(document))
            os.replace(temporary, self._kept)  # whole or not at all
        if self.emu is not None:
            self.emu.workspace.changed()

    def _restore(self) -> None:
        if self._kept is None or not self._kept.exists() or self.ledger is None:
            return
        saved = json.loads(self._kept.read_text())
        self.ledger.load(saved)
        offset = timedelta(seconds=float(saved.get("clock_offset_seconds", 0)))
        if offset > timedelta(0):
            self.clock.advance(offset)  # the bot's clock never goes back, even across a restart

    async def fast_forward(self, delta: timedelta) -> None:
        """Move the bot's clock ahead by `delta`, then do what became due (the scheduler's own sweep)."""
        if not timedelta(0) < delta <= MAX_FAST_FORWARD:
            raise ValueError(f"fast-forward by more than nothing and at most {MAX_FAST_FORWARD.days} days")
        self.clock.advance(delta)
        assert self.emu is not None and self.runtime is not None and self.runtime.scheduler is not None
        self._changed()
        # Revokes and expires what is now overdue and re-arms the timers of the next window by the moved clock.
        await self.runtime.scheduler.sweep()

    async def stop(self) -> None:
        """Stop the bot first (it drains its work), then the receiver and the Slack; drop a scratch database."""
        if self.runtime is not None:
            await self.runtime.stop()
        if self.receiver is not None:
            await self.receiver.stop()
        if self.emu is not None:
            await self.emu.stop()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
