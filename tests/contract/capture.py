"""The contract harness: one capture server on loopback and one comparison of two captured requests.

The server records every request exactly as it arrived (method, the raw request target, headers, body
bytes) and answers with whatever reply the test set, in one piece or as a stream of chunks.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

# Headers an SDK adds about itself, its platform, retries or transport: never part of the contract.
TELEMETRY_HEADERS = frozenset({
    "user-agent", "accept-encoding", "connection", "content-length", "host", "accept", "transfer-encoding",
    "x-goog-api-client", "x-client-request-id", "amz-sdk-invocation-id", "amz-sdk-request", "x-amz-user-agent",
    "x-fern-language", "x-fern-sdk-name", "x-fern-sdk-version", "x-fern-runtime", "x-fern-runtime-version",
    "x-fern-platform", "request-id", "x-ms-client-request-id", "x-ms-useragent", "x-request-id",
    "x-sdk-version", "x-sdk-platform", "x-stainless-helper-method", "x-stainless-raw-response",
    "x-llamastack-client-version", "x-amzn-trace-id",
})
# Headers the gateway adds as an intermediary: `Via` (RFC 9110) carries its loop-detection token (proxy/upstream.py).
GATEWAY_HEADERS = frozenset({"via"})
TELEMETRY_PREFIXES = ("x-stainless-", "x-speakeasy-", "x-ibm-", "x-watsonx-")


# https URL of a capture server -> the CA file an SDK is told to trust for it
CA_FILES: dict[str, str] = {}


@dataclass
class Captured:
    method: str
    target: str  # the request target as it arrived on the wire: path and query, percent-encoding untouched
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    body: bytes | list[bytes] = b"{}"  # a list: streamed, one write per chunk
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class CaptureServer:
    """Answers every method on every path with `reply`; `requests` keeps what arrived, in order."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self.reply = Reply()
        # path -> reply for side calls (an OAuth2 token endpoint) next to the call under test
        self.routes: dict[str, Reply] = {}
        self.url = ""
        self.https_url = ""  # set by serve_tls()
        self.ca_path = ""  # the PEM file of the CA that signed the TLS certificate
        self._runner: web.AppRunner | None = None

    async def start(self) -> "CaptureServer":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def serve_tls(self, directory: str) -> str:
        """The same server also on a loopback TLS port, with a certificate for 127.0.0.1 from a throwaway CA
        (trustme) whose PEM is written to `directory`: for SDKs that take only https URLs."""
        import os
        import ssl

        import trustme
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.ca_path = os.path.join(directory, "capture-ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)  # type: ignore[arg-type]
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.https_url = f"https://127.0.0.1:{port}"
        CA_FILES[self.https_url] = self.ca_path
        return self.https_url

    async def stop(self) -> None:
        CA_FILES.pop(self.https_url, None)
        if self._runner is not None:
            await self._runner.cleanup()

    def take(self) -> list[Captured]:
        out, self.requests = self.requests, []
        return out

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Captured(request.method, request.raw_path,
                                      {k.lower(): v for k, v in request.headers.items()}, body))
        reply = self.routes.get(request.path, self.reply)
        headers = {"Content-Type": reply.content_type, **reply.headers}
        if isinstance(reply.body, bytes):
            return web.Response(status=reply.status, body=reply.body, headers=headers)
        resp = web.StreamResponse(status=reply.status, headers=headers)
        await resp.prepare(request)
        for chunk in reply.body:
            await resp.write(chunk)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp


# ------------------------------------------------------------------------------ comparison


def shape(value: Any) -> Any:
    """Field names, JSON types and nesting of a body, without its values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _walk(a: Any, b: Any, where: str, out: list[str], ignore: Iterable[str]) -> None:
    if where in ignore:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            sub = f"{where}.{k}" if where else k
            if sub in ignore:
                continue
            if k not in b:
                if a[k] is not None:  # an explicit null is the field left unset
                    out.append(f"body: {sub} sent by the SDK, not by the gateway ({a[k]!r})")
            elif k not in a:
                out.append(f"body: {sub} sent by the gateway, not by the SDK ({b[k]!r})")
            else:
                _walk(a[k], b[k], sub, out, ignore)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{where}[{i}]", out, ignore)
        return
    if shape(a) != shape(b):
        out.append(f"body: {where or '<root>'} is {shape(a)!r} from the SDK, {shape(b)!r} from the gateway")
    elif a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)):
        out.append(f"body: {where or '<root>'} is {a!r} from the SDK, {b!r} from the gateway")


def _contract_headers(headers: Mapping[str, str], ignore: Iterable[str]) -> dict[str, str]:
    skip = set(ignore)
    out = {}
    for k, v in headers.items():
        if k in TELEMETRY_HEADERS or k in GATEWAY_HEADERS or k.startswith(TELEMETRY_PREFIXES) or k in skip:
            continue
        out[k] = v.split(";")[0].strip().lower() if k == "content-type" else v
    return out


def camel_keys(value: Any) -> Any:
    """Proto3 JSON field names in their lowerCamelCase form: Google's JSON parsers take `parameters_json_schema`
    and `parametersJsonSchema` alike (protobuf.dev/programming-guides/json), and google-genai sends the former."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def differences(sdk: Captured, gw: Captured, *, ignore_body: Iterable[str] = (), ignore_headers: Iterable[str] = (),
                ignore_query: Iterable[str] = (), proto_json: bool = False) -> list[str]:
    """Every way the gateway's request differs from the SDK's: method, path as sent, query, headers
    (authentication scheme and value, API versions, content type) and the body's fields, types,
    nesting and values. `ignore_*` name the differences a case accepts, each with its reason there."""
    out: list[str] = []
    if sdk.method != gw.method:
        out.append(f"method: {sdk.method} from the SDK, {gw.method} from the gateway")
    if sdk.path != gw.path:
        out.append(f"path: {sdk.path} from the SDK, {gw.path} from the gateway")
    q1 = {k: v for k, v in sdk.query.items() if k not in ignore_query}
    q2 = {k: v for k, v in gw.query.items() if k not in ignore_query}
    if q1 != q2:
        out.append(f"query: {q1} from the SDK, {q2} from the gateway")
    h1, h2 = _contract_headers(sdk.headers, ignore_headers), _contract_headers(gw.headers, ignore_headers)
    for k in sorted(set(h1) | set(h2)):
        if h1.get(k) != h2.get(k):
            out.append(f"header {k}: {h1.get(k)!r} from the SDK, {h2.get(k)!r} from the gateway")
    a, b = _decode(sdk.body, sdk.headers), _decode(gw.body, gw.headers)
    if proto_json:
        a, b = camel_keys(a), camel_keys(b)
    _walk(a, b, "", out, set(ignore_body))
    return out


def _decode(body: bytes, headers: Mapping[str, str]) -> Any:
    if not body:
        return None
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    try:
        return json.loads(body)
    except ValueError:
        return body


def sse(events: Iterable[Any], *, named: bool = False, done: bool = False) -> list[bytes]:
    """Server-sent events as the provider frames them: `data: <json>` blocks (with `event: <type>` lines
    where the provider names its events), optionally ended by `data: [DONE]`."""
    out = []
    for ev in events:
        data = ev if isinstance(ev, str) else json.dumps(ev, separators=(",", ":"))
        if named:
            out.append(f"event: {json.loads(data)['type']}\ndata: {data}\n\n".encode())
        else:
            out.append(f"data: {data}\n\n".encode())
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def sigv4_differences(req: Captured, *, access_key: str, secret_key: str, region: str, service: str) -> list[str]:
    """Re-sign the request exactly as it arrived (method, raw target, the headers it signed, body bytes)
    with botocore's own SigV4 signer: the signature must be the one the request carries."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth_header = req.headers.get("authorization", "")
    fields = dict(part.strip().split("=", 1) for part in auth_header.split(" ", 1)[-1].split(",") if "=" in part)
    if not auth_header.startswith("AWS4-HMAC-SHA256 ") or "Signature" not in fields:
        return [f"authorization: not a SigV4 header: {auth_header!r}"]
    signed = fields["SignedHeaders"].split(";")
    headers = {name: req.headers[name] for name in signed if name in req.headers}
    aws = AWSRequest(method=req.method, url=f"http://{req.headers['host']}{req.target}", data=req.body,
                     headers=headers)
    aws.context["timestamp"] = req.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
    out = []
    if signer.signed_headers(signer.headers_to_sign(aws)) != fields["SignedHeaders"]:
        out.append(f"sigv4: signed headers {fields['SignedHeaders']} differ from botocore's")
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    if expected != fields["Signature"]:
        out.append(f"sigv4: the signature does not cover the bytes that arrived (botocore's canonical request: "
                   f"{signer.canonical_request(aws)!r})")
    if fields.get("Credential", "").split("/")[2:4] != [region, service]:
        out.append(f"sigv4: credential scope {fields.get('Credential')} is not {region}/{service}")
    return out
