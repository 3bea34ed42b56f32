"""moto's server mode on 127.0.0.1 (a free port), so boto3 talks the real AWS wire protocol in tests.

    server = MotoServer().start()
    boto3.client("iam", endpoint_url=server.url, region_name="us-east-1")
    server.reset()   # forget every resource (POST /moto-api/reset)
    server.stop()

`isolate_aws_env` keeps the developer's own AWS setup out of a test; `seed_identity_center` gives
moto's IAM Identity Center a permission set and a user.
"""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
SSO_ACCOUNT = "012345678901"  # the account Identity Center tests assign permission sets in
# Variables through which a developer's shell would change what boto3 does; botocore sends even
# loopback requests through a configured proxy.
_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class MotoServer:
    """A ThreadedMotoServer bound to a free loopback port, with reset and direct-client helpers."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def start(self) -> MotoServer:
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


def isolate_aws_env(monkeypatch: Any, tmp_path: Path, *, endpoint_url: str | None = None) -> None:
    """Fake static credentials in REGION and nothing from the developer's AWS config, proxies or instance role.

    With `endpoint_url`, the standard chain (AWS_ENDPOINT_URL) points there, as for `${aws_secret:…}`.
    """
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    if endpoint_url is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@dataclass
class IdentityCenter:
    """moto's SSO instance with one permission set and one user in its identity store."""

    admin: Any  # boto3 sso-admin client straight to moto
    instance_arn: str
    identity_store_id: str
    permission_set_arn: str
    user_id: str

    def assignment(self) -> dict[str, str]:
        """The keys of the seeded user's assignment of the permission set in SSO_ACCOUNT (for moto's own calls)."""
        return {
            "InstanceArn": self.instance_arn,
            "TargetId": SSO_ACCOUNT,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": self.permission_set_arn,
            "PrincipalType": "USER",
            "PrincipalId": self.user_id,
        }

    def holders(self) -> list[str]:
        """Principal ids of the users assigned the permission set in SSO_ACCOUNT, straight from moto."""
        response = self.admin.list_account_assignments(
            InstanceArn=self.instance_arn, AccountId=SSO_ACCOUNT, PermissionSetArn=self.permission_set_arn
        )
        return [a["PrincipalId"] for a in response["AccountAssignments"] if a["PrincipalType"] == "USER"]


def seed_identity_center(
    moto: MotoServer, *, user_name: str = "alice", email: str = "alice@example.com"
) -> IdentityCenter:
    """Set up moto's default SSO instance: a ProdAdmin permission set and Alice as `user_name` / `email`."""
    admin = moto.client("sso-admin")
    instance = admin.list_instances()["Instances"][0]
    permission_set = admin.create_permission_set(Name="ProdAdmin", InstanceArn=instance["InstanceArn"])
    user = moto.client("identitystore").create_user(
        IdentityStoreId=instance["IdentityStoreId"],
        UserName=user_name,
        DisplayName="Alice",
        Name={"GivenName": "Alice", "FamilyName": "Requester"},
        Emails=[{"Value": email, "Primary": True}],
    )
    return IdentityCenter(
        admin,
        instance["InstanceArn"],
        instance["IdentityStoreId"],
        permission_set["PermissionSet"]["PermissionSetArn"],
        user["UserId"],
    )
