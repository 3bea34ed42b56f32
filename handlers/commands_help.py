"""`/sym help` and `/sym list`: answered in the ack, so only the caller sees them."""

from __future__ import annotations

from core.config_models import JitConfig
from core.engine import AccessEngine
from handlers import blocks, home_blocks

SUBCOMMANDS = ("help", "list")


def help_text(config: JitConfig) -> str:
    """The flows with their labels, and the commands."""
    command = config.slack.command
    flows = "\n".join(f"• `{command} {f.name}`: {blocks.escape(f.label)}" for f in config.flows)
    return (
        f"*Ask for access*\n`{command}`: choose what you need\n{flows}\n\n"
        f"*See what you have*\n`{command} list`: your access and pending requests (only you see it)\n"
        "The bot's *Home* tab: the same, with Revoke now, Extend and Cancel request, "
        "and the requests waiting for your decision\n\n"
        f"`{command} help`: this message"
    )


async def list_text(config: JitConfig, engine: AccessEngine, user: str) -> str:
    """The caller's live grants and pending requests."""
    overview = await engine.overview(user, home_blocks.LIST_PER_SECTION)
    return home_blocks.list_text(config, overview)
