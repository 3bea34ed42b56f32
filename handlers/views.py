"""The flow picker and the request form: pick → form; submit → engine.prepare/submit or inline errors."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.config_models import JitConfig
from core.engine import AccessEngine
from core.resubmission import earlier
from core.submission import FieldModels
from core.submitting import SubmissionRejected
from handlers import blocks
from handlers.forms import parse_form, submission_key
from handlers.ids import ActionId, BlockId, CallbackId, field_block_id
from handlers.listeners import Ack, Listeners
from handlers.metadata import BadMetadata, FormMetadata

log = structlog.get_logger("jitbot.views")

# Slack closes the modal with an error if the ack of a submission takes more than 3 s; identity
# checks against the target system must fit inside that, with room for the round trip.
VALIDATION_BUDGET_SECONDS = 2.2


def register(app: AsyncApp, config: JitConfig, engine: AccessEngine, listeners: Listeners) -> None:
    """Listen for the flow picker's select and the request form's submission."""
    models = FieldModels()

    async def handle_flow_pick_action(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        chosen = body["actions"][0].get("selected_option") or {}
        flow = next((f for f in config.flows if f.name == chosen.get("value")), None)
        if flow is None:
            return
        view = body["view"]
        channel = FormMetadata.decode(view.get("private_metadata")).channel if view.get("private_metadata") else None
        try:
            await client.views_update(
                view_id=view["id"], hash=view.get("hash"), view=blocks.request_form(flow, channel)
            )
        except SlackApiError as error:
            if error.response.get("error") != "hash_conflict":
                raise
            # The modal changed since this pick was sent (the same pick delivered again, or a newer one):
            # what it shows now is newer than what this envelope would draw.
            log.info("flow_pick.outdated", flow=flow.name)

    async def handle_request_form_submission(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        key = submission_key(body, view)
        if key is not None and await earlier(engine.requests, key) is not None:
            await ack()  # Slack delivered this submission again (a late ack): its request exists
            return
        try:
            meta = FormMetadata.decode(view.get("private_metadata"))
            flow = config.flow(meta.flow)
        except (BadMetadata, KeyError):
            await ack(
                response_action="errors",
                errors={BlockId.TARGET: "This form is out of date; close it and run the command again."},
            )
            return
        # parse_form turns any missing or malformed value into an inline error, never an exception.
        form = parse_form(flow, (view.get("state") or {}).get("values") or {}, models=models)
        # Without errors, parse_form has set the target and the duration; the None checks narrow the types.
        if form.errors or form.target is None or form.duration is None:
            await ack(response_action="errors", errors=form.errors)
            return
        requester = body["user"]["id"]
        try:
            draft = await asyncio.wait_for(
                engine.prepare(flow.name, requester, form.target, form.fields, form.duration),
                VALIDATION_BUDGET_SECONDS,
            )
        except SubmissionRejected as rejected:
            await ack(response_action="errors", errors={_block_for(k): v for k, v in rejected.errors.items()})
            return
        except TimeoutError:
            system = getattr(engine.strategies.get(flow.name), "system", "the target system")
            log.warning("submission.validation_timeout", flow=flow.name, requester=requester)
            await ack(
                response_action="errors",
                errors={BlockId.TARGET: f"Could not check your account in {system} in time. Please submit again."},
            )
            return
        except Exception:
            # The modal must get an answer inside 3 s whatever broke; nothing was stored or posted.
            error_id = uuid.uuid4().hex[:8]
            log.exception("submission.check_crashed", error_id=error_id, flow=flow.name)
            await ack(
                response_action="errors",
                errors={
                    BlockId.TARGET: (
                        f"Something went wrong checking this request (error id {error_id}). Please try again."
                    )
                },
            )
            return
        await ack()
        await engine.submit(replace(draft, key=key))

    app.action(ActionId.PICK_FLOW)(listeners.reported(handle_flow_pick_action, acks_at_once=True))
    app.view(CallbackId.REQUEST_FORM)(listeners.reported(handle_request_form_submission))


def _block_for(key: str) -> str:
    return BlockId.TARGET if key == "target" else field_block_id(key)
