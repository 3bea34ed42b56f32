"""moto's server mode on 127.0.0.1 (a free port), so boto3 talks the real AWS wire protocol in tests.

    server = MotoServer().start()
    boto3.client("iam", endpoint_url=server.url, region_name="us-east-1")
    server.reset()   # forget every resource (POST /moto-api/reset)
    server.stop()
"""

from __future__ import annotations

import logging
import urllib.request
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account


class MotoServer:
    """A ThreadedMotoServer bound to a free loopback port, with reset and direct-client helpers."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def start(self) -> "MotoServer":
        """Start serving in a daemon thread; returns self once the port is bound."""
        # werkzeug logs one line per request to stderr; keep test output readable.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        self._server.stop()

    def reset(self) -> None:
        """Drop every backend's state (moto recreates the default SSO instance with new ids)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.status != 200:
                raise RuntimeError(f"moto reset answered {response.status}")

    def client(self, service: str) -> Any:
        """A plain boto3 client straight to moto (no integration, no proxy), for setup and checks."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
