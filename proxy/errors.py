"""One error hierarchy for the whole gateway.

Every failure is a `GatewayError` carrying an HTTP status, the Elasticsearch exception `type`
and a human reason. Each API surface renders it in its own format (see `wire/es.py` and
`wire/openai.py`); nothing else decides statuses.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from .scrubbing import scrub_text, secret_strings


class GatewayError(Exception):
    """Base error: `status` is the HTTP status, `es_type` the Elasticsearch exception type."""

    status: int = 500
    es_type: str = "exception"
    simple: bool = False  # ES renders a few errors as a bare {"error": "<reason>", "status": N}

    def __init__(self, reason: str, *, status: int | None = None, headers: dict[str, str] | None = None,
                 param: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.param = param

    @property
    def status_code_name(self) -> str:
        """Lower-cased HTTP status name, e.g. ``bad_request``: the `code` of chat-style errors."""
        try:
            return HTTPStatus(self.status).name.lower()
        except ValueError:
            return "unknown"


class StatusError(GatewayError):
    """ES `ElasticsearchStatusException`: the thrower picks the status."""

    status = 400
    es_type = "status_exception"


class NotFoundError(GatewayError):
    status = 404
    es_type = "resource_not_found_exception"


class AlreadyExistsError(GatewayError):
    status = 400
    es_type = "resource_already_exists_exception"


class IllegalArgumentError(GatewayError):
    status = 400
    es_type = "illegal_argument_exception"


class ParseError(GatewayError):
    """A body that is not valid JSON or has fields the parser does not know."""

    status = 400
    es_type = "x_content_parse_exception"


class _AccumulatingValidation(GatewayError):
    """ES validation exceptions list their messages as ``Validation Failed: 1: a;2: b;``."""

    status = 400

    def __init__(self, messages: list[str] | str, **kw) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        text = "Validation Failed: " + "".join(f"{i}: {m};" for i, m in enumerate(self.messages, 1))
        super().__init__(text, **kw)


class ValidationError(_AccumulatingValidation):
    es_type = "validation_exception"


class RequestValidationError(_AccumulatingValidation):
    es_type = "action_request_validation_exception"


class TooManyRequestsError(StatusError):
    status = 429


class RateLimitReached(TooManyRequestsError):
    """An endpoint's own `rate_limit` has no slot before the request's deadline. `reason` keeps the ES
    wording for `/_inference`; client surfaces show `detail`, which says what happened."""

    def __init__(self, inference_id: str, timeout_text: str, requests_per_minute: float, wait: float) -> None:
        super().__init__(f"Request timed out after [{timeout_text}] for inference id [{inference_id}]",
                         headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        self.detail = (f"The rate limit of inference endpoint [{inference_id}] ([{requests_per_minute:g}] requests "
                       f"per minute) was reached: the next request slot opens in [{wait:.1f}s], later than this "
                       f"request's timeout of [{timeout_text}]")


class ServiceUnavailableError(StatusError):
    status = 503


class UpstreamError(StatusError):
    """A provider answered with an error, or could not be reached.

    `upstream_status` is what the provider said (0 when it never answered); `status` is what the
    gateway answers, following the ES rule: below 500 passed through, 500 and above become 400.
    `retryable` tells the backend whether trying again may help.
    """

    def __init__(self, reason: str, *, upstream_status: int, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, provider_type: str | None = None,
                 provider_code: str | None = None) -> None:
        if status is None:
            status = upstream_status if 0 < upstream_status < 500 else 400
        super().__init__(reason, status=status)
        self.upstream_status = upstream_status
        self.retryable = retryable
        self.retry_after = retry_after
        self.provider_type = provider_type
        self.provider_code = provider_code


class StreamCut(UpstreamError):
    """An upstream stream that ended before its terminator: an error, never a clean end."""

    def __init__(self, reason: str = "The upstream stream ended before it was complete") -> None:
        super().__init__(reason, upstream_status=502, status=502)


class StreamReportedError(UpstreamError):
    """The provider reported an error inside a stream it had started: 502 unless its kind says otherwise."""

    def __init__(self, detail: str, *, upstream_status: int = 502, provider_type: str | None = None,
                 provider_code: str | None = None) -> None:
        super().__init__(f"The upstream service reported an error in the stream: [{detail}]",
                         upstream_status=upstream_status, provider_type=provider_type, provider_code=provider_code)


def malformed(what: str = "response") -> UpstreamError:
    """An upstream answer that does not parse: the gateway's fault to report is 502, not the client's."""
    return UpstreamError(f"The upstream service sent a malformed {what}", upstream_status=502, status=502)


def redact(err: GatewayError, secrets: Any) -> GatewayError:
    """Replace every secret string found in `secrets` (an endpoint's) in the error's message, plainly
    or in any of the encodings an upstream may echo it in (proxy/scrubbing.py)."""
    reason = scrub_text(err.reason, secret_strings(secrets))
    if reason != err.reason:
        err.reason = reason
        err.args = (reason,)
    return err
