"""OAuth2 client-credentials tokens (RFC 6749 §4.4), as ES offers them for `openai` and `azureopenai`.

- `openai`: the endpoint's `token_url`, `client_id`, `scopes`; the client authenticates with HTTP Basic
  (ES OAuth2TokenFetcher: Nimbus `ClientSecretBasic`, the RFC 6749 §2.3.1 default).
- `azureopenai`: Microsoft identity platform `login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token`; the
  credentials travel in the form, as Azure Identity's ClientSecretCredential (ES AzureOpenAiOAuth2Applier)
  sends them.

Tokens are cached per (token URL, client, scopes) until shortly before they expire, and dropped when the
provider answers 401 (ES `onAuthenticationFailure`). The secret is never logged or part of a cache key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import msgspec

from proxy.errors import UpstreamError

from .base import malformed
from .tokens import ExpiringTokens

DEFAULT_LIFETIME = 3600.0


class ClientCredentials(msgspec.Struct, frozen=True):
    token_url: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ()
    basic_auth: bool = True  # False: client_id and client_secret in the form body

    def __repr__(self) -> str:
        return f"ClientCredentials({self.token_url}, {self.client_id})"

    def key(self) -> tuple[str, str, str, str]:
        digest = hashlib.sha256(self.client_secret.encode()).hexdigest()[:16]
        return (self.token_url, self.client_id, " ".join(self.scopes), digest)


class _Token(msgspec.Struct):
    access_token: str = ""
    expires_in: float | None = None


class _Error(msgspec.Struct):
    error: str | None = None
    error_description: str | None = None


_token = msgspec.json.Decoder(_Token)
_error = msgspec.json.Decoder(_Error)


class ClientCredentialsTokens:
    def __init__(self) -> None:
        # refresh early: 5 minutes before a 1 h token expires, a fifth of shorter lifetimes
        self._tokens = ExpiringTokens(lambda lifetime: min(300.0, lifetime * 0.2))

    def forget(self, creds: ClientCredentials) -> None:
        self._tokens.drop(creds.key())

    async def token(self, creds: ClientCredentials, session: Any, inference_id: str) -> str:
        return await self._tokens.get(creds.key(), lambda: self._exchange(creds, session, inference_id))

    async def _exchange(self, creds: ClientCredentials, session: Any, inference_id: str) -> tuple[str, float]:
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if creds.scopes:
            form["scope"] = " ".join(creds.scopes)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if creds.basic_auth:
            # RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding
            pair = f"{quote_plus(creds.client_id, safe='')}:{quote_plus(creds.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=creds.client_id, client_secret=creds.client_secret)
        who = f"for request for inference id [{inference_id}]"
        try:
            async with session.request("POST", creds.token_url, data=urlencode(form).encode(), headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=30)) as resp:
                status, body = resp.status, await resp.read()
        except asyncio.TimeoutError:
            raise UpstreamError(f"The OAuth2 token endpoint did not answer in time {who}", upstream_status=408,
                                retryable=True) from None
        except aiohttp.ClientError as exc:
            err = UpstreamError(f"Failed to reach the OAuth2 token endpoint {who}: {type(exc).__name__}",
                                upstream_status=502, retryable=True)
            err.status = 502
            raise err from None
        if status >= 300:
            try:
                info = _error.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                info = _Error()
            # ES OAuth2TokenFetcher's wording
            raise UpstreamError(f"Failed to retrieve access token {who}: [{info.error or status}] "
                                f"{info.error_description or ''}".rstrip(), upstream_status=status)
        try:
            token = _token.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise malformed("OAuth2 token response") from None
        if not token.access_token:
            raise malformed("OAuth2 token response (no access_token)")
        return token.access_token, max(0.0, float(token.expires_in or DEFAULT_LIFETIME))


TOKENS = ClientCredentialsTokens()
