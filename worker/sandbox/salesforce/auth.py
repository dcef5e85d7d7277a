"""Login endpoints and sessions of the emulated org.

Shapes follow what simple-salesforce parses: the SOAP ``loginResponse`` carries *unprefixed*
``sessionId`` and ``serverUrl`` elements (it looks them up by local tag name), a SOAP fault is
HTTP 500 with ``sf:exceptionCode`` / ``sf:exceptionMessage``; the OAuth token endpoint answers
``{access_token, instance_url}`` or 400 ``{error, error_description}``. JWT bearer assertions
are verified against the configured public key (RS256, ``iss`` = consumer key, ``sub`` =
username, ``exp`` required), so a test that signs with the wrong key fails as in production.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import jwt

INSTANCE_HOST = "crmsync-sandbox.my.salesforce.com"
INSTANCE_URL = f"https://{INSTANCE_HOST}"
ORG_ID = "00DHp00000CrmSyncEAA"  # 18-character org id, shown in session ids like a real org's
USER_ID = "005Hp00000DemoUsrIAA"


@dataclass(frozen=True, slots=True)
class SandboxCredentials:
    """What the emulated org accepts. Defaults are the documented demo values (not secrets)."""

    username: str = "demo@crmsync.local"
    password: str = "demo-password"  # noqa: S105 -- well-known demo value
    security_token: str = "demo-token"  # noqa: S105
    consumer_key: str = "crmsync-demo-client"
    consumer_secret: str = "demo-secret"  # noqa: S105
    jwt_public_key_pem: str | None = None

    def __repr__(self) -> str:  # keep the demo secrets out of logs all the same
        return f"SandboxCredentials(username={self.username!r}, consumer_key={self.consumer_key!r})"


@dataclass(frozen=True, slots=True)
class LoginResult:
    status: int
    body: bytes
    content_type: str


class SessionRegistry:
    """Issued access tokens and their birth times; ``ttl_s`` None means they never expire."""

    def __init__(self, ttl_s: float | None) -> None:
        self.ttl_s = ttl_s
        self._issued: dict[str, float] = {}
        #: fault switches (``SalesforceFaults``): a frozen user or a revoked permission -- every
        #: session refused (REST 401, Pub/Sub auth.error) though logins succeed -- or every
        #: login refused (a wrong password, a locked user).
        self.refuse_sessions = False
        self.refuse_logins = False

    def issue(self) -> str:
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
        self._issued[token] = time.monotonic()
        return token

    def valid(self, token: str) -> bool:
        if self.refuse_sessions:
            return False
        born = self._issued.get(token)
        if born is None:
            return False
        if self.ttl_s is not None and time.monotonic() - born > self.ttl_s:
            del self._issued[token]
            return False
        return True

    def expire_all(self) -> None:
        self._issued.clear()


_SOAP_FIELD = re.compile(r"<(?:[\w-]+:)?(username|password)>(.*?)</(?:[\w-]+:)?\1>", re.DOTALL)


def soap_login(
    body: bytes, credentials: SandboxCredentials, sessions: SessionRegistry, version: str
) -> LoginResult:
    """``POST /services/Soap/u/{version}`` with a partner ``login`` envelope."""
    fields = {
        name: html.unescape(value)
        for name, value in _SOAP_FIELD.findall(body.decode("utf-8", "replace"))
    }
    expected = credentials.password + credentials.security_token
    if (
        sessions.refuse_logins
        or fields.get("username") != credentials.username
        or fields.get("password") != expected
    ):
        return _soap_fault(
            "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
        )
    token = sessions.issue()
    server_url = f"{INSTANCE_URL}/services/Soap/u/{version}/{ORG_ID[:15]}"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{INSTANCE_URL}/services/Soap/m/{version}/{ORG_ID[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{server_url}</serverUrl>"
        f"<sessionId>{html.escape(token)}</sessionId>"
        f"<userId>{USER_ID}</userId>"
        f"<userInfo><organizationId>{ORG_ID}</organizationId>"
        f"<userName>{html.escape(credentials.username)}</userName></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return LoginResult(200, xml.encode(), "text/xml; charset=utf-8")


def _soap_fault(code: str, message: str) -> LoginResult:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {html.escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{html.escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return LoginResult(500, xml.encode(), "text/xml; charset=utf-8")


def oauth_token(
    body: bytes,
    authorization: str | None,
    credentials: SandboxCredentials,
    sessions: SessionRegistry,
) -> LoginResult:
    """``POST /services/oauth2/token``: password, client_credentials and JWT-bearer grants."""
    form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
    grant = form.get("grant_type", "")
    if sessions.refuse_logins:
        return _oauth_error("invalid_grant", "authentication failure")
    if grant == "password":
        ok = (
            form.get("client_id") == credentials.consumer_key
            and form.get("client_secret") == credentials.consumer_secret
        )
        if not ok:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if (
            form.get("username") != credentials.username
            or form.get("password") != credentials.password
        ):
            return _oauth_error("invalid_grant", "authentication failure")
    elif grant == "client_credentials":
        if _basic_auth(authorization) != (credentials.consumer_key, credentials.consumer_secret):
            return _oauth_error("invalid_client", "invalid client credentials")
    elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        problem = _jwt_problem(form.get("assertion", ""), credentials)
        if problem is not None:
            return _oauth_error("invalid_grant", problem)
    else:
        return _oauth_error("unsupported_grant_type", "grant type not supported")
    token = sessions.issue()
    payload = {
        "access_token": token,
        "instance_url": INSTANCE_URL,
        "id": f"https://login.salesforce.com/id/{ORG_ID}/{USER_ID}",
        "token_type": "Bearer",
        "issued_at": str(int(time.time() * 1000)),
        "signature": "emulated",
    }
    return LoginResult(200, json.dumps(payload).encode(), "application/json")


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    key, sep, secret = decoded.partition(":")
    return (key, secret) if sep else None


def _jwt_problem(assertion: str, credentials: SandboxCredentials) -> str | None:
    if credentials.jwt_public_key_pem is None:
        return "JWT bearer is not configured for this org (no public key)"
    try:
        claims = jwt.decode(
            assertion,
            credentials.jwt_public_key_pem,
            algorithms=["RS256"],
            options={"require": ["exp", "iss", "sub", "aud"], "verify_aud": False},
        )
    except jwt.InvalidTokenError as exc:
        return f"invalid assertion: {type(exc).__name__}"
    if claims.get("iss") != credentials.consumer_key:
        return "invalid_client_id"
    if claims.get("sub") != credentials.username:
        return "user hasn't approved this consumer"
    audience = str(claims.get("aud", ""))
    if not re.fullmatch(r"https://[\w.-]+\.salesforce\.com", audience):
        return "audience is not a Salesforce login URL"
    return None


def _oauth_error(error: str, description: str) -> LoginResult:
    payload = {"error": error, "error_description": description}
    return LoginResult(400, json.dumps(payload).encode(), "application/json")
