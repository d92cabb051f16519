"""A simulated Google Vertex AI upstream: the OAuth2 token endpoint of a service account, predict
embeddings, the Discovery Engine rank API, Gemini generateContent and Anthropic rawPredict.

Written from Google's public descriptions; it shares no code with the adapters. The token endpoint
verifies the RS256 JWT it receives against the service account's public key and issues opaque
tokens; every other call must carry `Authorization: Bearer <a token it issued>`.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .google_upstream import DIMS, Fault, GeminiSim, fake_vector, google_error

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def make_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_json(key: rsa.RSAPrivateKey, email: str, token_uri: str, project: str = "my-project") -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": project, "private_key_id": "kid-1",
                       "private_key": pem, "client_email": email, "client_id": "1234567890",
                       "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri})


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class FakeVertex:
    public_key: rsa.RSAPublicKey
    client_email: str = "gateway@my-project.iam.gserviceaccount.com"
    url: str = ""
    project: str = "my-project"
    sim: GeminiSim = field(default_factory=GeminiSim)
    issued: set[str] = field(default_factory=set)
    exchanges: int = 0
    expires_in: int = 3599
    jwt_headers: list[dict] = field(default_factory=list)
    calls: list[tuple[str, str, dict]] = field(default_factory=list)  # (path, auth token, body)
    faults: list[Fault] = field(default_factory=list)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def fail_next(self, status: int, body: dict, times: int = 1, headers: dict | None = None) -> None:
        self.faults.extend(Fault(status, json.dumps(body), headers or {}) for _ in range(times))

    # ------------------------------------------------------------------ OAuth2

    async def token(self, request: Request) -> Response:
        # application/x-www-form-urlencoded (parsed by hand: starlette's form parser needs python-multipart)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        bad = JSONResponse({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status_code=400)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"},
                                status_code=400)
        try:
            head, claims_b64, sig = str(form.get("assertion")).split(".")
            header = json.loads(_unb64(head))
            claims = json.loads(_unb64(claims_b64))
            self.public_key.verify(_unb64(sig), f"{head}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return bad
        self.jwt_headers.append(header)
        now = time.time()
        if header.get("alg") != "RS256" or claims.get("iss") != self.client_email:
            return bad
        if claims.get("aud") != self.token_uri or claims.get("scope") != SCOPE:
            return JSONResponse({"error": "invalid_scope", "error_description": "Invalid audience or scope"},
                                status_code=400)
        if not (claims["iat"] - 60 <= now <= claims["exp"]) or claims["exp"] - claims["iat"] > 3600:
            return JSONResponse({"error": "invalid_grant", "error_description": "Invalid JWT: Token must be a "
                                 "short-lived token (60 minutes) and in a reasonable timeframe."}, status_code=400)
        self.exchanges += 1
        token = f"ya29.fake-token-{self.exchanges}"
        self.issued.add(token)
        return JSONResponse({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})

    def _check(self, request: Request, body: dict) -> Response | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        self.calls.append((request.url.path, token, body))
        if token not in self.issued:
            return JSONResponse(google_error(
                401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                     "or other valid authentication credential.", "UNAUTHENTICATED"), status_code=401)
        if request.path_params.get("project", self.project) != self.project:
            return JSONResponse(google_error(403, f"Permission denied on resource project "
                                             f"{request.path_params['project']}.", "PERMISSION_DENIED"),
                                status_code=403)
        if self.faults:
            fault = self.faults.pop(0)
            return Response(fault.body, status_code=fault.status, headers=fault.headers,
                            media_type="application/json")
        return None

    # ------------------------------------------------------------------ aiplatform

    async def model_action(self, request: Request) -> Response:
        publisher = request.path_params["publisher"]
        model, _, action = request.path_params["target"].rpartition(":")
        body = await request.json()
        if (err := self._check(request, body)) is not None:
            return err
        if publisher == "google" and action == "predict":
            return self.predict(body)
        if publisher == "google" and action == "generateContent":
            return self.sim.generate(model, body)
        if publisher == "google" and action == "streamGenerateContent" and request.query_params.get("alt") == "sse":
            return self.sim.stream(model, body)
        if publisher == "anthropic" and action in ("rawPredict", "streamRawPredict"):
            return self.anthropic(model, body, stream=action == "streamRawPredict")
        return JSONResponse(google_error(404, f"Publisher Model `{publisher}/{model}:{action}` not found.",
                                         "NOT_FOUND"), status_code=404)

    def predict(self, body: dict) -> Response:
        self.sim.requests.append(body)
        instances = body.get("instances") or []
        if len(instances) > 250:
            return JSONResponse(google_error(400, "250 instances are allowed per prediction. Actual: "
                                             f"{len(instances)}", "INVALID_ARGUMENT"), status_code=400)
        dims = (body.get("parameters") or {}).get("outputDimensionality", DIMS)
        preds = [{"embeddings": {"statistics": {"truncated": False, "token_count": len(i["content"].split())},
                                 "values": fake_vector(i["content"], dims)}} for i in instances]
        return JSONResponse({"predictions": preds, "metadata": {"billableCharacterCount": 10}})

    # ------------------------------------------------------------------ Anthropic on Vertex

    def anthropic(self, model: str, body: dict, stream: bool) -> Response:
        self.sim.requests.append(body)
        if body.get("anthropic_version") != "vertex-2023-10-16" or "model" in body:
            return JSONResponse({"type": "error", "error": {"type": "invalid_request_error",
                                                            "message": "anthropic_version: vertex-2023-10-16 is "
                                                                       "required; model: Extra inputs are not "
                                                                       "permitted"}}, status_code=400)
        text = " ".join(m["content"] if isinstance(m["content"], str) else
                        " ".join(b.get("text", "") for b in m["content"]) for m in body["messages"]
                        if m["role"] == "user").upper()
        usage = {"input_tokens": 5, "output_tokens": 2}
        if not stream:
            return JSONResponse({"id": "msg_vertex_1", "type": "message", "role": "assistant", "model": model,
                                 "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                                 "stop_sequence": None, "usage": usage})

        async def events():
            yield {"event": "message_start", "data": json.dumps({"type": "message_start", "message": {
                "id": "msg_vertex_1", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}})}
            # Vertex adds its own event type to Anthropic's stream (the Anthropic SDKs skip it)
            yield {"event": "vertex_event", "data": json.dumps({"type": "vertex_event"})}
            yield {"event": "content_block_start", "data": json.dumps(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})}
            for piece in (text[:3], text[3:]):
                yield {"event": "content_block_delta", "data": json.dumps(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})}
            yield {"event": "content_block_stop", "data": json.dumps({"type": "content_block_stop", "index": 0})}
            yield {"event": "message_delta", "data": json.dumps(
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": 2}})}
            yield {"event": "message_stop", "data": json.dumps({"type": "message_stop"})}

        return EventSourceResponse(events(), ping=600, sep="\n")

    # ------------------------------------------------------------------ discoveryengine

    async def rank(self, request: Request) -> Response:
        body = await request.json()
        if (err := self._check(request, body)) is not None:
            return err
        self.sim.requests.append(body)
        if request.path_params["location"] != "global" or request.path_params["target"] != \
                "default_ranking_config:rank":
            return JSONResponse(google_error(404, "Ranking config not found.", "NOT_FOUND"), status_code=404)
        words = set(body["query"].lower().split())
        records = []
        for rec in body["records"]:
            found = words & set(rec["content"].lower().split())
            item = {"id": rec["id"], "score": round(len(found) / max(1, len(words)), 4)}
            if not body.get("ignoreRecordDetailsInResponse"):
                item["content"] = rec["content"]
            records.append(item)
        records.sort(key=lambda r: -r["score"])
        if body.get("topN"):
            records = records[:body["topN"]]
        return JSONResponse({"records": records})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/token", self.token, methods=["POST"]),
            Route("/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}",
                  self.model_action, methods=["POST"]),
            Route("/v1/projects/{project}/locations/{location}/rankingConfigs/{target}", self.rank, methods=["POST"]),
        ])
