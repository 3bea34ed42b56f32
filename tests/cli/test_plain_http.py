"""The API token never crosses the network in clear text unless the person says so: `bot.py request`,
`requests` and `revoke` refuse an `http://` JITBOT_API_URL whose host is not this machine, unless
`--insecure-http` is given. Real subprocesses; `.invalid` names never resolve (RFC 6761), so a
command that tried to connect would say it could not reach the API instead."""

from __future__ import annotations

import pytest

from cli.api_client import EXIT_BAD_INPUT, ApiClient, ApiFailure
from tests.e2e.botprocess import clean_env, run_cli

TOKEN = "jit_000000000000_" + "A" * 43


@pytest.mark.parametrize(
    "url",
    ["http://jitbot.internal:8080", "http://10.0.0.7", "http://LOCALHOST.evil.example", "http://[2001:db8::1]:80"],
)
def test_a_token_is_not_sent_over_plain_http_to_another_machine(url):
    with pytest.raises(ApiFailure) as refused:
        ApiClient.from_env({"JITBOT_API_URL": url, "JITBOT_API_TOKEN": TOKEN})
    assert refused.value.code == EXIT_BAD_INPUT
    assert "--insecure-http" in refused.value.message and "https://" in refused.value.message
    assert TOKEN not in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080",
        "http://LocalHost",
        "http://127.0.0.1:8080/",
        "http://127.8.9.10",
        "http://[::1]:8080",
        "https://jitbot.internal",
    ],
)
def test_https_and_this_machine_over_http_need_no_flag(url):
    client = ApiClient.from_env({"JITBOT_API_URL": url, "JITBOT_API_TOKEN": TOKEN})
    assert client.url == url.rstrip("/")


def test_the_flag_allows_plain_http_to_another_machine():
    client = ApiClient.from_env(
        {"JITBOT_API_URL": "http://jitbot.internal:8080", "JITBOT_API_TOKEN": TOKEN}, insecure_http=True
    )
    assert client.url == "http://jitbot.internal:8080"


def test_a_url_without_a_host_is_refused():
    with pytest.raises(ApiFailure, match="no host") as refused:
        ApiClient.from_env({"JITBOT_API_URL": "http://", "JITBOT_API_TOKEN": TOKEN})
    assert refused.value.code == EXIT_BAD_INPUT


@pytest.mark.parametrize("command", [("requests",), ("revoke", "r1"), ("request", "db_access", "--target", "t")])
async def test_every_api_command_refuses_plain_http_to_another_host_before_connecting(command):
    env = clean_env(JITBOT_API_URL="http://jitbot.invalid:8080", JITBOT_API_TOKEN=TOKEN)
    refused = await run_cli(*command, env=env)
    assert refused.returncode == 2, refused
    assert "JITBOT_API_URL" in refused.stderr and "--insecure-http" in refused.stderr, refused
    assert "could not reach" not in refused.stderr and "Traceback" not in refused.stderr
    assert TOKEN not in refused.stderr + refused.stdout

    allowed = await run_cli(*command, "--insecure-http", env=env)
    assert allowed.returncode == 1 and "could not reach the jitbot API" in allowed.stderr, allowed


async def test_the_help_of_each_api_command_names_the_flag():
    for command in ("request", "requests", "revoke"):
        shown = await run_cli(command, "--help", env=clean_env())
        assert shown.returncode == 0 and "--insecure-http" in shown.stdout, shown


class RecordingProxy:
    """A listener standing where a corporate HTTP proxy (HTTP_PROXY) would be: it records what it is sent."""

    def __init__(self) -> None:
        import socket
        import threading

        self.received = b""
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._server.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(5)
            try:
                self.received += connection.recv(65536)
                connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_token_for_this_machine_over_plain_http_never_goes_to_a_proxy_elsewhere(monkeypatch, variable):
    # http://localhost is allowed without --insecure-http because it never leaves this machine; a proxy
    # named in the environment (common on corporate laptops) would carry it, in clear text, to another host.
    import socket

    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # a port nothing listens on once this block ends
    proxy = RecordingProxy()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(variable, proxy.url)
        client = ApiClient.from_env({"JITBOT_API_URL": f"http://localhost:{port}", "JITBOT_API_TOKEN": TOKEN})
        with pytest.raises(ApiFailure):
            client.call("GET", "/v1/flows")
    finally:
        proxy.close()
    assert TOKEN.encode() not in proxy.received
    assert proxy.received == b""


@pytest.mark.parametrize("url", ["http://jitbot:pa55-w0rd@localhost:{port}", "http://jitbot:pa55-w0rd@"])
def test_a_password_in_the_api_url_is_never_printed(url):
    # A reverse proxy in front of the bot may take basic auth in the URL: its password is a secret too.
    import socket

    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    with pytest.raises(ApiFailure) as failed:
        ApiClient.from_env({"JITBOT_API_URL": url.format(port=port), "JITBOT_API_TOKEN": TOKEN}).call(
            "GET", "/v1/flows"
        )
    assert "pa55-w0rd" not in failed.value.message and TOKEN not in failed.value.message
