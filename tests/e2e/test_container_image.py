"""The container image, proven without a Docker engine: exactly the files its COPY lines bring in
(after .dockerignore) and a venv of requirements-runtime.lock alone are enough to validate the flows
file, start the bot against Slack, pass the image's own HEALTHCHECK and stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.botprocess import clean_env, read_rows
from tests.e2e.image import REPO, Dockerfile, exec_form, image_files, runtime_venv, stage_image

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    return int(process.returncode or 0), out.decode()


def test_the_image_runs_as_a_non_root_user_with_its_database_on_a_volume_and_a_health_check():
    dockerfile = Dockerfile.read()
    assert dockerfile.last("USER") not in ("root", "0")
    assert "/data" in dockerfile.last("VOLUME")
    assert dockerfile.env["JITBOT_DB"].startswith("/data/")
    assert dockerfile.env["JITBOT_HTTP_ADDR"].endswith(":8080")
    assert "/health" in " ".join(dockerfile.healthcheck)
    assert exec_form(dockerfile.last("ENTRYPOINT")) + exec_form(dockerfile.last("CMD")) == ["python", "bot.py", "run"]


def test_the_image_leaves_out_tests_databases_and_bytecode():
    files = image_files(Dockerfile.read())
    assert {"bot.py", "runtime.py", "config/flows.yaml"} <= set(files)
    assert not [f for f in files if f.startswith(("tests/", "bench/", ".venv/", "data/")) or "__pycache__" in f]
    assert not [f for f in files if f.endswith((".db", ".db-wal", ".db-shm", ".pyc"))]


def test_compose_runs_two_replicas_on_postgresql_each_on_its_own_port():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    bots = {name: service for name, service in services.items() if service.get("build") == "."}
    assert len(bots) == 2 and services["postgres"]["image"].startswith("postgres:")
    for service in bots.values():
        assert service["environment"]["JITBOT_DB"].startswith("postgresql://jitbot:${POSTGRES_PASSWORD")
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert any(volume.endswith(":/app/config:ro") for volume in service["volumes"])
    ports = [str(port) for service in bots.values() for port in service["ports"]]
    assert all(port.endswith(":8080") for port in ports) and len(set(ports)) == 2


async def test_the_images_files_and_runtime_lock_alone_start_the_bot(slack, tmp_path, databases):
    dockerfile = Dockerfile.read()
    venv = await asyncio.to_thread(runtime_venv)
    app, data = tmp_path / "app", tmp_path / "data"
    data.mkdir()
    stage_image(dockerfile, app)
    port = free_port()
    slack.add_channel("C0APPROVALS", name="approvals")
    image_env = {
        key: value.replace("/app", str(app)).replace("/data", str(data)) for key, value in dockerfile.env.items()
    }
    if databases.engine == "postgresql":  # as docker-compose.yml runs it: the runtime lock must carry the driver
        image_env["JITBOT_DB"] = str(databases.where())
    env = clean_env(
        **{**image_env, "JITBOT_HTTP_ADDR": f"127.0.0.1:{port}"},
        SLACK_API_URL=slack.api_url,
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_APP_TOKEN=slack.app_token,
        WEBHOOK_SECRET="whsec-image-test",  # the image's example flows file signs with it
        PYTHONPATH=None,
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    python = str(venv / "bin" / "python")
    entrypoint = exec_form(dockerfile.last("ENTRYPOINT"))
    assert entrypoint[0] == "python"
    command = [python, *entrypoint[1:]]

    code, out = await run([*command, "--help"], cwd=app, env=env)
    assert code == 0 and "validate" in out, out
    code, out = await run([*command, "validate"], cwd=app, env=env)
    assert code == 0 and "OK" in out, out

    # The bot imports nothing from this checkout: only the staged files and the venv are on its path.
    code, out = await run([python, "-c", "import sys; print(sys.path)"], cwd=app, env=env)
    assert str(REPO) not in out and sys.prefix not in out, out

    logs = (tmp_path / "bot.log").open("wb")
    bot = await asyncio.create_subprocess_exec(
        *command, *exec_form(dockerfile.last("CMD")), cwd=app, env=env, stdout=logs, stderr=logs
    )
    try:
        await slack.wait_connected()
        health = [python, *dockerfile.healthcheck[1:]]
        health = [part.replace(":8080/", f":{port}/") for part in health]
        code, out = await run(health, cwd=app, env=env, timeout=10)
        assert code == 0, out
        if databases.engine == "postgresql":
            assert read_rows(databases.where(), "SELECT name FROM jitbot_migrations"), "the bot did not migrate"
        else:
            assert (data / "jitbot.db").exists()
        assert not list(app.rglob("__pycache__"))  # PYTHONDONTWRITEBYTECODE, as in the image
        bot.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.wait(), 10) == 0, (tmp_path / "bot.log").read_text()
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
        logs.close()
