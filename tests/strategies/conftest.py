"""Shared fixtures for strategy tests. AWS: one moto server per session, reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from botocore.config import Config

from core.models import Target
from core.schema import TargetConfig
from core.targets import as_target
from strategies.aws import AwsIntegration, AwsIntegrationConfig
from tests.fakes.aws_fault_proxy import AwsFaultProxy
from tests.fakes.clock import FakeTime  # noqa: F401  (strategy tests import it from here)
from tests.fakes.moto_server import REGION, MotoServer, isolate_aws_env


def target_of(config: TargetConfig) -> Target:
    """The engine's view of a target config (the same function the engine uses)."""
    return as_target(config)


Opener = Callable[[Any], Awaitable[Any]]


@pytest.fixture
async def opened() -> AsyncIterator[Opener]:
    """`await opened(thing)`: open an integration or strategy now; each is closed, in order, after the test."""
    things: list[Any] = []

    async def open_now(thing: Any) -> Any:
        await thing.open()
        things.append(thing)
        return thing

    yield open_now
    for thing in things:
        await thing.aclose()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake static credentials, and nothing from the developer's own AWS config or instance role."""
    isolate_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def aws_moto(moto_server: MotoServer, aws_env: None) -> MotoServer:
    """The session's moto server (tests/conftest.py) with every backend reset, so each test starts from nothing."""
    moto_server.reset()
    return moto_server


@pytest.fixture
async def aws_proxy(aws_moto: MotoServer) -> AsyncIterator[AwsFaultProxy]:
    proxy = await AwsFaultProxy(aws_moto.url).start()
    yield proxy
    await proxy.close()


# botocore's own retries sleep for real with random jitter; tests turn them off so that the
# strategies' injected-sleep retry loop is what runs, deterministically.
NO_BOTOCORE_RETRIES = Config(retries={"total_max_attempts": 1})


@pytest.fixture
def aws_integration(aws_moto: MotoServer, opened: Opener) -> Callable[..., Awaitable[AwsIntegration]]:
    """Factory: an opened AwsIntegration named 'aws' (endpoint: moto unless given), closed after the test."""

    async def make(endpoint_url: str | None = None, *, clock: Any = None, **config: Any) -> AwsIntegration:
        cfg = AwsIntegrationConfig(type="aws", region=REGION, endpoint_url=endpoint_url or aws_moto.url, **config)
        return await opened(AwsIntegration("aws", cfg, botocore_config=NO_BOTOCORE_RETRIES, clock=clock))

    return make
