"""The inference region policy (ES 9.5 `_inference/_region_policy`) and its enforcement.

The policy document and its errors follow Elasticsearch: `PutRegionPolicyAction.Request` (strict
parser, `[region_policy.<list>] must not be empty`), `RegionPolicy` (`allowed_geos` and
`allowed_regions` are an exclusive field set), `CspRegion` (`csp`, `region`), `RegionPolicyDoc`
(`region_policy`, `created_at`, `updated_at`), `TransportGetRegionPolicyAction` (404 "No region
policy is configured for this deployment") and `TransportPutRegionPolicyAction` (409 for a policy
that denies endpoints in use unless `force`). Geography codes `us`, `eu`, `apac` and the 403
"Requested model is not available in the allowed inference regions" are from Elastic's
"Region and hosting" page (explore-analyze/elastic-inference/eis regions).

In Elasticsearch the policy steers the Elastic Inference Service. Here it applies to every
endpoint: each adapter declares where an endpoint's data is processed from its settings
(`Adapter.data_location`), local models are where the gateway says it is (`location` setting),
and an endpoint whose location cannot be told is allowed by no policy.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Iterable

import msgspec

from .backends import adapter_class
from .errors import GatewayError, IllegalArgumentError, NotFoundError, ParseError, RequestValidationError, StatusError
from .wire.es import decode_strict

DOC_ID = "_region_policy"
GEOS = ("us", "eu", "apac")
DENIED_MESSAGE = "Requested model is not available in the allowed inference regions"
NO_POLICY = "No region policy is configured for this deployment"


class CspRegion(msgspec.Struct, forbid_unknown_fields=True):
    csp: str
    region: str


class RegionPolicy(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    allowed_geos: list[str] | None = None
    allowed_regions: list[CspRegion] | None = None


class PutBody(msgspec.Struct, forbid_unknown_fields=True):
    region_policy: RegionPolicy | None = None


class RegionPolicyDoc(msgspec.Struct, omit_defaults=True):
    """What GET answers and what the store keeps (ES `RegionPolicyDoc.toXContent` order)."""

    region_policy: RegionPolicy
    created_at: str
    created_by: str | None = None
    updated_at: str | None = None
    updated_by: str | None = None


_put_decoder = msgspec.json.Decoder(PutBody)
_policy_decoder = msgspec.json.Decoder(RegionPolicy)
_doc_decoder = msgspec.json.Decoder(RegionPolicyDoc)
_encoder = msgspec.json.Encoder()


# ------------------------------------------------------------------------------ parsing


def _nested_error(body: bytes, cause: GatewayError) -> ParseError:
    """ObjectParser wraps an error in a nested object: `failed to parse field [x]`, the cause under it."""
    idx = body.find(b'"region_policy"')
    line = body.count(b"\n", 0, max(idx, 0)) + 1
    col = (idx - (body.rfind(b"\n", 0, idx) + 1) + 1) if idx >= 0 else 1
    err = ParseError(f"[{line}:{col}] [put_region_policy_request] failed to parse field [region_policy]")
    err.caused_by = cause  # type: ignore[attr-defined]
    return err


def parse_put(body: bytes) -> RegionPolicy:
    """The PUT body, with the errors of ES `PutRegionPolicyAction.Request.PARSER` and `validate()`."""
    if b"region_policy" in body:
        try:
            raw = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raw = None
        inner = raw.get("region_policy") if isinstance(raw, dict) else None
        if isinstance(inner, dict):
            try:
                decode_strict(_policy_decoder, "region_policy", _encoder.encode(inner))
            except ParseError as exc:
                raise _nested_error(body, exc) from None
            if "allowed_geos" in inner and "allowed_regions" in inner:
                raise _nested_error(body, IllegalArgumentError(
                    "The following fields are not allowed together: [allowed_geos, allowed_regions] "))
    put = decode_strict(_put_decoder, "put_region_policy_request", body)
    if put.region_policy is None:
        raise IllegalArgumentError("Required [region_policy]")
    policy = put.region_policy
    errors = []
    if policy.allowed_regions is not None and not policy.allowed_regions:
        errors.append("[region_policy.allowed_regions] must not be empty")
    if policy.allowed_geos is not None and not policy.allowed_geos:
        errors.append("[region_policy.allowed_geos] must not be empty")
    if errors:
        raise RequestValidationError(errors)
    return policy


def now_text() -> str:
    """ES prints an Instant as strict_date_optional_time with milliseconds, in UTC."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def encode_doc(doc: RegionPolicyDoc) -> bytes:
    return _encoder.encode(doc)


_cache: tuple[bytes, RegionPolicyDoc] | None = None


def decode_doc(body: bytes) -> RegionPolicyDoc:
    global _cache
    if _cache is not None and _cache[0] is body:
        return _cache[1]
    doc = _doc_decoder.decode(body)
    _cache = (body, doc)
    return doc


# ------------------------------------------------------------------------------ locations

# The geography of a cloud region, told from its name: AWS (`us-east-1`, `eu-west-1`, `ap-south-1`),
# Google Cloud (`us-central1`, `europe-west4`, `asia-northeast1`, `australia-southeast1`), Azure
# (`eastus2`, `westeurope`, `japaneast`), IBM Cloud (`us-south`, `eu-de`, `jp-tok`), Alibaba Cloud
# (`cn-hangzhou`, `ap-southeast-1`, `eu-central-1`). A region outside these three has no geography and
# is matched by `allowed_regions` only.
_GEO_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("us", re.compile(r"^(us|usgov|northamerica)[-0-9]|^(east|west|central|northcentral|southcentral|"
                      r"westcentral)us\d*$")),
    ("eu", re.compile(r"^(eu|europe)[-0-9]|^(west|north)europe$|^(france|germany|sweden|switzerland|norway|"
                      r"poland|italy|spain)[a-z]*$")),
    ("apac", re.compile(r"^(ap|asia|australia|jp|au|cn)[-0-9]|^(japan|korea|australia|southeastasia|eastasia|"
                        r"centralindia|southindia|westindia)[a-z]*$")),
)


def geo_of(region: str) -> str | None:
    name = region.lower()
    for geo, pattern in _GEO_PATTERNS:
        if pattern.search(name):
            return geo
    return None


class Location(msgspec.Struct, frozen=True):
    csp: str
    region: str

    @property
    def geo(self) -> str | None:
        return geo_of(self.region)

    def __str__(self) -> str:
        return f"{self.csp}/{self.region}"


def parse_location(text: str | None) -> Location | None:
    """The gateway's own location setting: `csp/region`, e.g. `aws/eu-west-1` or `onprem/europe-paris`."""
    if not text:
        return None
    csp, sep, region = text.partition("/")
    if not sep or not csp or not region:
        raise ValueError(f"location [{text}] must be <csp>/<region>, e.g. aws/eu-west-1")
    return Location(csp.lower(), region.lower())


def endpoint_location(ep: Any, gateway: Location | None) -> Location | None:
    """Where an endpoint's data is processed, as its adapter reads it from the settings."""
    if ep.spec.local:
        return gateway
    cls = adapter_class(ep.service)
    if cls is None:
        return None
    found = cls.data_location({**ep.service_settings, **ep.task_settings})
    return None if found is None else Location(found[0].lower(), found[1].lower())


def allows(policy: RegionPolicy, where: Location | None) -> bool:
    if where is None:
        return False
    if policy.allowed_regions is not None:
        return any(r.csp.lower() == where.csp and r.region.lower() == where.region for r in policy.allowed_regions)
    if policy.allowed_geos is not None:
        return where.geo is not None and where.geo in {g.lower() for g in policy.allowed_geos}
    return True


def policy_allows(registry: Any, location: str | None, ep: Any) -> bool:
    """Whether the stored policy, if any, allows this endpoint. A router is allowed itself: each target it tries
    is checked in turn (router.py passes over the denied ones)."""
    body = registry.document(DOC_ID)
    if body is None or ep.spec.composite:
        return True
    return allows(decode_doc(body).region_policy, endpoint_location(ep, parse_location(location)))


def denied(policy: RegionPolicy, endpoints: Iterable[Any], gateway: Location | None) -> list[str]:
    return sorted(ep.inference_id for ep in endpoints
                  if not ep.spec.composite and not allows(policy, endpoint_location(ep, gateway)))


# ------------------------------------------------------------------------------ errors


class DeniedInUse(StatusError):
    """ES `TransportPutRegionPolicyAction.buildDeniedInUseEndpointsException` (409, with metadata)."""

    status = 409

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"Cannot put the region policy because it would deny access to the following in-use "
                         f"inference endpoints: [{', '.join(ids)}]. Ensure that these inference endpoints are not "
                         f"in use, or use force to ignore this warning and proceed anyway.")
        # `es.`-prefixed metadata print without the prefix, a single value as a string
        # (ElasticsearchException.headerToXContent)
        self.metadata = {"denied_endpoint_ids": ids[0] if len(ids) == 1 else ids}


def denied_error(inference_id: str) -> StatusError:
    """What inference on a denied endpoint answers: ES's 403 wording (`BaseResponseHandler.PERMISSION_DENIED`)
    around the message the Elastic Inference Service sends."""
    return StatusError(f"Received a permission denied error status code for request from inference entity id "
                       f"[{inference_id}] status [403]. Error message: [{DENIED_MESSAGE}]", status=403)


def no_policy() -> NotFoundError:
    return NotFoundError(NO_POLICY)
