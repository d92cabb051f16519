"""OAuth2 client credentials for `openai` and `azureopenai`, through `/_inference`, against the capture server
playing both the token endpoint and the provider.

The token requests are checked against RFC 6749 §4.4 and the forms ES uses: HTTP Basic client authentication
for `openai` (ES OAuth2TokenFetcher, Nimbus ClientSecretBasic) and credentials in the form for `azureopenai`
at `/{tenant}/oauth2/v2.0/token` (ES AzureOpenAiOAuth2Applier, Azure Identity's ClientSecretCredential). The
inference request itself is compared with the OpenAI SDK's given the same token.
"""

from __future__ import annotations

import asyncio
import base64
import json
from urllib.parse import parse_qs

from .capture import Reply, differences
from .cases import openai_chat, openai_chat_reply

SECRET = "s3cr:et/+"
MESSAGES = [{"role": "user", "content": "hi"}]


def _token_reply(token: str, expires_in: int = 3600) -> Reply:
    return Reply(json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}).encode())


async def _put(http, body: dict) -> None:
    async with http.put("/_inference/chat_completion/oa", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _chat(http) -> tuple[int, str]:
    async with http.post("/_inference/chat_completion/oa", json={"messages": MESSAGES}) as resp:
        return resp.status, await resp.text()


async def test_openai_client_credentials_with_basic_auth(capture, http):
    capture.routes["/oauth/token"] = _token_reply("tok-1")
    capture.reply = openai_chat_reply({})
    await _put(http, {"service": "openai", "service_settings": {
        "model_id": "m-1", "client_id": "app id", "client_secret": SECRET, "scopes": ["api.read", "api.write"],
        "token_url": "https://idp.example.com/oauth/token"}})
    for _ in range(2):
        status, raw = await _chat(http)
        assert status == 200, raw
    token_calls = [r for r in capture.requests if r.path == "/oauth/token"]
    calls = [r for r in capture.requests if r.path == "/v1/chat/completions"]
    assert len(token_calls) == 1 and len(calls) == 2  # the token is cached
    tok = token_calls[0]
    assert tok.method == "POST" and tok.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(tok.body.decode()) == {"grant_type": ["client_credentials"], "scope": ["api.read api.write"]}
    scheme, _, cred = tok.headers["authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(cred).decode() == "app+id:s3cr%3Aet%2F%2B"  # RFC 6749 §2.3.1
    # the inference call is the one the OpenAI SDK sends with that token as its key
    capture.requests.clear()
    sdk_call = openai_chat("/v1", client=lambda u: __import__("openai").OpenAI(base_url=u, api_key="tok-1"))
    await asyncio.to_thread(sdk_call, capture.url, {"messages": MESSAGES})
    assert differences(capture.requests[-1], calls[-1]) == []
    assert SECRET not in json.dumps([dict(r.headers) for r in calls])


async def test_a_401_drops_the_token_and_the_next_call_fetches_another(capture, http):
    capture.routes["/oauth/token"] = _token_reply("tok-1")
    capture.reply = Reply(json.dumps({"error": {"message": "token revoked", "type": "invalid_request_error"}})
                          .encode(), status=401)
    await _put(http, {"service": "openai", "service_settings": {
        "model_id": "m-1", "client_id": "c", "client_secret": SECRET,
        "token_url": "https://idp.example.com/oauth/token"}})
    status, raw = await _chat(http)
    assert status == 401 and "token revoked" in raw
    capture.routes["/oauth/token"] = _token_reply("tok-2")
    capture.reply = openai_chat_reply({})
    status, raw = await _chat(http)
    assert status == 200, raw
    assert capture.requests[-1].headers["authorization"] == "Bearer tok-2"


async def test_a_refused_token_request_is_reported_with_the_idp_error(capture, http):
    capture.routes["/oauth/token"] = Reply(json.dumps({"error": "invalid_client",
                                                       "error_description": "bad secret"}).encode(), status=401)
    await _put(http, {"service": "openai", "service_settings": {
        "model_id": "m-1", "client_id": "refused", "client_secret": SECRET,
        "token_url": "https://idp.example.com/oauth/token"}})  # a client of its own: tokens are cached per client
    status, raw = await _chat(http)
    assert status == 401 and "[invalid_client] bad secret" in raw and SECRET not in raw
    assert all(r.path == "/oauth/token" for r in capture.requests)  # nothing reached the provider


async def test_azureopenai_client_credentials_in_the_form(capture, http):
    capture.routes["/tenant-1/oauth2/v2.0/token"] = _token_reply("az-tok")
    capture.reply = openai_chat_reply({})
    await _put(http, {"service": "azureopenai", "service_settings": {
        "resource_name": "res", "deployment_id": "dep-1", "api_version": "2024-10-21", "tenant_id": "tenant-1",
        "client_id": "cid", "client_secret": SECRET, "scopes": ["https://cognitiveservices.azure.com/.default"]}})
    status, raw = await _chat(http)
    assert status == 200, raw
    tok, call = capture.requests[0], capture.requests[-1]
    assert tok.path == "/tenant-1/oauth2/v2.0/token" and "authorization" not in tok.headers
    assert parse_qs(tok.body.decode()) == {"grant_type": ["client_credentials"], "client_id": ["cid"],
                                           "client_secret": [SECRET],
                                           "scope": ["https://cognitiveservices.azure.com/.default"]}
    assert call.path == "/openai/deployments/dep-1/chat/completions"
    assert call.headers["authorization"] == "Bearer az-tok" and "api-key" not in call.headers
