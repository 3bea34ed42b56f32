"""The ack-first listener wrapper: when a button's ack leaves, and where its work's errors go."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from handlers.listeners import Listeners


class RecordingListeners(Listeners):
    """Listeners whose error handler records instead of answering in Slack."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[Exception] = []

    async def handle_error(self, error: Exception, body: dict[str, Any], client: Any) -> None:
        self.errors.append(error)


def bolt_args(events: list[str]) -> SimpleNamespace:
    async def ack(*args: Any, **kwargs: Any) -> None:
        events.append("acked")

    return SimpleNamespace(ack=ack, body={"user": {"id": "U_BOB"}}, client=object())


async def test_a_button_is_acked_before_its_work_has_taken_a_step() -> None:
    events: list[str] = []
    release = asyncio.Event()

    async def handle_button(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        events.append("work started")
        await release.wait()
        events.append("work done")

    listeners = RecordingListeners()
    await listeners.reported(handle_button, acks_at_once=True)(bolt_args(events))
    # Bolt sends the ack as soon as the wrapper returns: nothing of the work may come first.
    assert events == ["acked"]
    assert len(listeners.running()) == 1
    release.set()
    await listeners.drain(timeout=1)
    assert events == ["acked", "work started", "work done"]
    assert listeners.errors == []


async def test_a_button_listener_acking_again_sends_nothing_more() -> None:
    events: list[str] = []

    async def handle_button(ack: Any) -> None:
        await ack()
        await ack()

    listeners = RecordingListeners()
    await listeners.reported(handle_button, acks_at_once=True)(bolt_args(events))
    await listeners.drain(timeout=1)
    assert events == ["acked"]


async def test_what_a_button_raises_after_its_ack_goes_to_the_error_handler() -> None:
    events: list[str] = []

    async def handle_button(ack: Any) -> None:
        await ack()
        raise RuntimeError("refused")

    listeners = RecordingListeners()
    await listeners.reported(handle_button, acks_at_once=True)(bolt_args(events))
    await listeners.drain(timeout=1)
    assert events == ["acked"]
    assert [str(e) for e in listeners.errors] == ["refused"]


async def test_a_form_listener_returns_to_bolt_only_once_it_has_acked_with_its_answer() -> None:
    events: list[str] = []
    answered = asyncio.Event()

    async def handle_form(ack: Any) -> None:
        events.append("checking")
        await answered.wait()
        await ack(response_action="errors", errors={"field": "bad"})
        events.append("after ack")

    listeners = RecordingListeners()
    run = asyncio.create_task(listeners.reported(handle_form)(bolt_args(events)))
    await asyncio.sleep(0.01)
    assert not run.done() and events == ["checking"]
    answered.set()
    await run
    assert events[:2] == ["checking", "acked"]
    await listeners.drain(timeout=1)
