"""AWS plumbing shared by `amazonbedrock` and `amazon_sagemaker`: Signature Version 4 request
signing, the `application/vnd.amazon.eventstream` binary framing, and AWS error bodies.

SigV4 (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), checked against the
published `aws-sig-v4-test-suite` vectors in tests/unit/test_aws.py:

    canonical request = METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
                        signed header names \\n hex(sha256(payload))
    string to sign    = "AWS4-HMAC-SHA256" \\n amz-date \\n date/region/service/aws4_request \\n
                        hex(sha256(canonical request))
    signing key       = HMAC chain "AWS4"+secret -> date -> region -> service -> "aws4_request"

Every header the request carries is signed (host, content-type, x-amz-*, x-amzn-sagemaker-*),
except those a hop may rewrite (user-agent, expect, content-length, ...), as botocore does.

The event-stream decoder follows the Smithy specification (smithy-lang/smithy
docs/source-2.0/aws/amazon-eventstream.rst, verified): each message is
`[total u32][headers_len u32][prelude CRC32][headers][payload][message CRC32]`, big-endian, both
CRCs checked; typed headers 0..9. It takes bytes split anywhere and yields whole messages.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import msgspec

from proxy.errors import StatusError, StreamReportedError, UpstreamError

from .base import Adapter, Framing, ProviderError, StreamCut, UpstreamRequest

# ------------------------------------------------------------------------------------------ SigV4

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Headers a proxy or the HTTP client may add or rewrite after signing: never signed (botocore's
# UNSIGNED_HEADERS plus hop-by-hop headers and the lengths aiohttp computes itself).
_UNSIGNED = frozenset({"authorization", "user-agent", "expect", "x-amzn-trace-id", "content-length",
                       "connection", "transfer-encoding", "keep-alive", "proxy-authorization", "te", "upgrade"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials(access_key={self.access_key[:4]}…)"


def amz_date(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def _uri_encode(text: str) -> str:
    # RFC 3986 unreserved characters stay, everything else is %XX (upper-case hex), spaces as %20
    return quote(text, safe="-_.~")


def canonical_uri(path: str, double_encode: bool = True) -> str:
    """The path with each segment URI-encoded; twice for every service except S3.

    Segments are decoded first, so the result does not depend on how the HTTP client escaped the
    path on the wire (yarl sends `:` bare even when the URL said `%3A`); `%2F` inside a segment
    stays part of that segment.
    """
    if not path:
        return "/"
    segments = path.split("/")
    if double_encode:
        # non-S3 services normalise the path (RFC 3986 dot segments, empty segments removed)
        out: list[str] = []
        for seg in segments[1:]:
            if seg in ("", "."):
                continue
            if seg == "..":
                if out:
                    out.pop()
                continue
            out.append(seg)
        trailing = path.endswith("/") and bool(out)
        encoded = "/" + "/".join(_uri_encode(_uri_encode(unquote(seg))) for seg in out)
        return encoded + ("/" if trailing else "")
    return "/".join(_uri_encode(unquote(seg)) for seg in segments) or "/"


def canonical_query(query: str) -> str:
    pairs = [(_uri_encode(k), _uri_encode(v)) for k, v in parse_qsl(query, keep_blank_values=True)]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def host_of(url: str) -> str:
    """The Host header an HTTP client sends for `url` (the default port left out)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return host


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical header block, signed header names) of every signable header."""
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        key = name.lower().strip()
        if key in _UNSIGNED:
            continue
        merged.setdefault(key, []).append(" ".join(str(value).split()))
    names = sorted(merged)
    block = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return block, ";".join(names)


def canonical_request(method: str, url: str, headers: Mapping[str, str], payload_hash: str,
                      double_encode: bool = True) -> tuple[str, str]:
    """(canonical request, signed header names); `headers` must include the host."""
    parts = urlsplit(url)
    block, signed = canonical_headers(headers)
    text = "\n".join((method.upper(), canonical_uri(parts.path, double_encode), canonical_query(parts.query),
                      block, signed, payload_hash))
    return text, signed


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def string_to_sign(date_time: str, scope: str, canonical: str) -> str:
    return "\n".join((ALGORITHM, date_time, scope, hashlib.sha256(canonical.encode()).hexdigest()))


def sign_request(method: str, url: str, headers: Mapping[str, str], body: bytes, *, credentials: Credentials,
                 region: str, service: str, date_time: str | None = None, content_sha256: bool = False,
                 double_encode: bool = True) -> dict[str, str]:
    """The request's headers plus `X-Amz-Date`, `X-Amz-Security-Token` (session credentials),
    `X-Amz-Content-Sha256` (when asked) and `Authorization`."""
    date_time = date_time or amz_date()
    out = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-date",
                                                                   "x-amz-security-token")}
    out["X-Amz-Date"] = date_time
    if credentials.session_token:
        out["X-Amz-Security-Token"] = credentials.session_token
    payload_hash = hashlib.sha256(body).hexdigest()
    if content_sha256:
        out["X-Amz-Content-Sha256"] = payload_hash
    to_sign = dict(out)
    if not any(k.lower() == "host" for k in to_sign):
        to_sign["host"] = host_of(url)
    canonical, signed = canonical_request(method, url, to_sign, payload_hash, double_encode)
    scope = f"{date_time[:8]}/{region}/{service}/aws4_request"
    signature = hmac.new(signing_key(credentials.secret_key, date_time[:8], region, service),
                         string_to_sign(date_time, scope, canonical).encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                            f"SignedHeaders={signed}, Signature={signature}")
    return out


# ------------------------------------------------------------------------------- event stream

# Smithy: payloads up to 24 MiB and headers up to 128 KiB; a client must not reject smaller
# messages, and anything past these bounds is corrupt framing, not a legitimate message.
MAX_HEADERS_BYTES = 128 * 1024
MAX_MESSAGE_BYTES = 24 * 1024 * 1024 + MAX_HEADERS_BYTES + 16
_PRELUDE = struct.Struct(">III")


class EventStreamError(UpstreamError):
    """Corrupt event-stream framing (bad CRC, impossible lengths, unknown header type)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The upstream service sent a corrupt event stream: {reason}", upstream_status=502,
                         status=502)


class EventMessage(msgspec.Struct, frozen=True):
    """One decoded event-stream message: typed headers and the raw payload bytes."""

    headers: dict[str, Any]
    payload: bytes

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str | None:
        value = self.headers.get(":event-type")
        return None if value is None else str(value)

    @property
    def exception_type(self) -> str | None:
        value = self.headers.get(":exception-type") or self.headers.get(":error-code")
        return None if value is None else str(value)


def _parse_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    i, n = 0, len(data)
    try:
        while i < n:
            name_len = data[i]
            name = data[i + 1:i + 1 + name_len].decode("utf-8")
            i += 1 + name_len
            kind = data[i]
            i += 1
            if kind == 0:
                value: Any = True
            elif kind == 1:
                value = False
            elif kind == 2:
                value = struct.unpack_from(">b", data, i)[0]
                i += 1
            elif kind == 3:
                value = struct.unpack_from(">h", data, i)[0]
                i += 2
            elif kind == 4:
                value = struct.unpack_from(">i", data, i)[0]
                i += 4
            elif kind in (5, 8):  # long; timestamp (ms since the epoch)
                value = struct.unpack_from(">q", data, i)[0]
                i += 8
            elif kind in (6, 7):  # byte array; UTF-8 string
                size = struct.unpack_from(">H", data, i)[0]
                raw = data[i + 2:i + 2 + size]
                if len(raw) != size:
                    raise EventStreamError("a header value runs past the header block")
                value = raw.decode("utf-8") if kind == 7 else bytes(raw)
                i += 2 + size
            elif kind == 9:
                raw = data[i:i + 16]
                if len(raw) != 16:
                    raise EventStreamError("a header value runs past the header block")
                value = uuid.UUID(bytes=bytes(raw))
                i += 16
            else:
                raise EventStreamError(f"unknown header value type [{kind}]")
            if i > n or not name:
                raise EventStreamError("a header runs past the header block")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise EventStreamError("malformed headers") from None
    return headers


class EventStreamDecoder:
    """Incremental `application/vnd.amazon.eventstream` decoder: bytes split anywhere in, whole
    messages out; a bad CRC or an impossible length is an `UpstreamError` at once."""

    __slots__ = ("_buf", "_checked")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._checked = False  # the prelude of the message at the head of the buffer is verified

    def feed(self, chunk: bytes) -> list[EventMessage]:
        buf = self._buf
        buf += chunk
        out: list[EventMessage] = []
        start = 0
        while len(buf) - start >= 12:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, start)
            if not self._checked:
                if zlib.crc32(buf[start:start + 8]) != prelude_crc:
                    raise EventStreamError("prelude CRC mismatch")
                if total < 16 or total > MAX_MESSAGE_BYTES or headers_len > MAX_HEADERS_BYTES \
                        or headers_len > total - 16:
                    raise EventStreamError(f"impossible lengths (total {total}, headers {headers_len})")
                self._checked = True
            if len(buf) - start < total:
                break
            end = start + total
            (message_crc,) = struct.unpack_from(">I", buf, end - 4)
            if zlib.crc32(buf[start:end - 4]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            headers = _parse_headers(bytes(buf[start + 12:start + 12 + headers_len]))
            out.append(EventMessage(headers, bytes(buf[start + 12 + headers_len:end - 4])))
            start = end
            self._checked = False
        if start:
            del buf[:start]
        return out

    def close(self) -> list[EventMessage]:
        """End of input: bytes of an unfinished message mean the stream was cut."""
        if self._buf:
            left = len(self._buf)
            self._buf.clear()
            raise StreamCut(f"The upstream stream ended inside an event-stream message ({left} bytes left)")
        return []


# ------------------------------------------------------------------------------------- errors

_any_decoder = msgspec.json.Decoder(Any)


def error_type(headers: Mapping[str, str]) -> str | None:
    """`x-amzn-ErrorType`, without the `:http://internal.amazon.com/...` suffix AWS may add."""
    raw = headers.get("x-amzn-ErrorType") or headers.get("x-amzn-errortype")
    if not raw:
        return None
    return raw.split(":", 1)[0].strip() or None


def parse_aws_error(headers: Mapping[str, str], body: bytes) -> ProviderError | None:
    """AWS REST-JSON error bodies: `{"message": ...}` (Bedrock) or `{"Message": ...}` /
    `{"ErrorCode", "Message"}` (SageMaker Runtime), the type in `x-amzn-ErrorType` or `__type`."""
    kind = error_type(headers)
    message: str | None = None
    try:
        data = _any_decoder.decode(body) if body.strip() else None
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        message = text[:500] or None
        data = None
    if isinstance(data, dict):
        for key in ("message", "Message", "errorMessage"):
            if isinstance(data.get(key), str):
                message = data[key]
                break
        if kind is None and isinstance(data.get("__type"), str):
            kind = data["__type"].rsplit("#", 1)[-1]
        code = data.get("ErrorCode")
        if message is None and isinstance(data.get("error"), dict):
            message = data["error"].get("message")
        return ProviderError(message=message, type=kind, code=str(code) if code is not None else None,
                             retryable=True if kind in _THROTTLING else None)
    if message is None and kind is None:
        return None
    return ProviderError(message=message, type=kind, retryable=True if kind in _THROTTLING else None)


# SageMaker answers throttling with HTTP 400: the error type, not the status, says a retry may help
_THROTTLING = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"})


def stream_exception(message: EventMessage, statuses: Mapping[str, int]) -> UpstreamError:
    """An `exception` (modeled) or `error` (unmodeled) event-stream message as an UpstreamError."""
    kind = message.exception_type or "unknown"
    text = message.headers.get(":error-message")
    if text is None:
        try:
            data = _any_decoder.decode(message.payload) if message.payload else None
        except msgspec.DecodeError:
            data = message.payload.decode("utf-8", "replace")[:300]
        if isinstance(data, dict):
            text = data.get("message") or data.get("Message") or msgspec.json.encode(data).decode()[:300]
        else:
            text = data
    status = statuses.get(kind) or statuses.get(kind[:1].lower() + kind[1:]) or 502
    return StreamReportedError(f"{kind}: {text}", upstream_status=status, provider_type=kind)


# ------------------------------------------------------------------------------------ adapter


class AwsAdapter(Adapter):
    """What both AWS services share: SigV4 in `authorize`, event-stream framing, AWS error bodies.

    Subclasses set `signing_name`. Credentials are the endpoint's `access_key` and `secret_key`
    secrets, plus an optional `session_token` for temporary credentials.
    """

    framing = Framing.AWS_EVENTSTREAM
    signing_name: ClassVar[str]

    @classmethod
    def data_location(cls, settings: Mapping[str, Any]) -> tuple[str, str] | None:
        region = settings.get("region")  # the region is the host: bedrock-runtime.{region}.amazonaws.com
        return ("aws", region) if isinstance(region, str) and _REGION.fullmatch(region) else None

    def region(self) -> str:
        region = self.setting("region")
        if not isinstance(region, str) or not _REGION.fullmatch(region):
            # the region becomes part of the host name: refuse anything that is not a region code
            raise StatusError(f"Invalid [region] [{region}] for the [{self.service}] service")
        return region

    def credentials(self) -> Credentials:
        access, secret = self.setting("access_key"), self.setting("secret_key")
        if not access or not secret:
            raise StatusError(f"The [{self.service}] service needs [access_key] and [secret_key]")
        return Credentials(str(access), str(secret), self.setting("session_token") or None)

    async def authorize(self, up: UpstreamRequest, client: Any) -> UpstreamRequest:
        # `up.url` is the URL really called (RemoteBackend applies the origin overrides before
        # calling authorize), so the signed host and path are the ones the server receives.
        headers = sign_request(up.method, up.url, up.headers, up.body, credentials=self.credentials(),
                               region=self.region(), service=self.signing_name)
        return msgspec.structs.replace(up, headers=headers)

    def stream_decoder(self) -> EventStreamDecoder:
        return EventStreamDecoder()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError | None:
        return parse_aws_error(headers, body)


__all__ = ["AwsAdapter", "Credentials", "EventMessage", "EventStreamDecoder", "EventStreamError", "amz_date",
           "canonical_request", "canonical_uri", "parse_aws_error", "sign_request", "signing_key",
           "stream_exception", "string_to_sign"]
