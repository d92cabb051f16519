"""Each remote service, each task, checked against the provider's own SDK (see `cases.py`).

For every case and every gateway surface (`/_inference` and `/v1`): the SDK sends the call to the
capture server and parses the reply built from its own response types; the gateway sends the
equivalent request to the same server and answers from the same reply. The two requests must agree
on method, path as sent, query, headers (auth scheme, API versions) and body; the two answers on content.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from typing import Any

import pytest

from .capture import Reply, differences
from .cases import CASES, ERROR_BODIES, Case
from .conftest import RESULTS

BOM = "\ufeff"
# ES request bodies carry fewer knobs than OpenAI's: these reach a provider through /v1 only
_V1_ONLY = ("seed", "user", "response_format", "dimensions", "stream_options")
# and /v1/embeddings has no input type, nor inputs other than text
_ES_ONLY = ("input_type", "images")


def _sdk_version(case: Case) -> str:
    try:
        return importlib.metadata.version(case.sdk)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _settings(case: Case, url: str) -> dict[str, Any]:
    return json.loads(json.dumps(case.settings).replace("{url}", url).replace("{host}", url.split("//", 1)[1]))


def _surface_params(case: Case, surface: str) -> dict[str, Any]:
    params = dict(case.params)
    if surface == "es":
        if case.task == "completion":  # an ES completion request carries its input only
            return {k: v for k, v in params.items() if k in ("input", "stream")}
        for name in _V1_ONLY:
            params.pop(name, None)
    else:
        for name in _ES_ONLY:
            params.pop(name, None)
    return params


def _gateway_request(case: Case, surface: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    task, ep = case.task, "contract"
    chat = {k: params[k] for k in ("messages", "temperature", "top_p", "stop", "tools", "tool_choice", "seed", "user",
                                   "response_format") if k in params}
    if surface == "es":
        suffix = "/_stream" if case.stream else ""
        if task == "text_embedding" or task == "sparse_embedding":
            body = {"input": params["input"]}
            if "input_type" in params:
                body["input_type"] = params["input_type"]
        elif task == "embedding" and isinstance(params["input"][0], dict):  # ES content objects, as they are
            body = {"input": params["input"]}
        elif task == "embedding":  # ES's multimodal items (SPEC _types/CommonTypes.ts RequestEmbedding)
            body = {"input": [{"content": {"type": "text", "value": t}} for t in params["input"]]
                    + [{"content": {"type": "image", "format": "base64", "value": f"data:image/png;base64,{i}"}}
                       for i in params.get("images", [])]}
        elif task == "rerank":
            body = {"query": params["query"], "input": params["documents"]}
            body.update({k: params[k] for k in ("top_n", "return_documents") if k in params})
        elif task == "completion":
            body = {"input": params["input"]}
        else:
            body = dict(chat)
            if "max_tokens" in params:
                body["max_completion_tokens"] = params["max_tokens"]
        return f"/_inference/{task}/{ep}{suffix}", body
    if task in ("text_embedding", "sparse_embedding", "embedding"):
        body = {"model": ep, "input": params["input"]}
        body.update({k: params[k] for k in ("dimensions", "user") if k in params})
        return "/v1/embeddings", body
    if task == "rerank":
        body = {"model": ep, "query": params["query"], "documents": params["documents"]}
        body.update({k: params[k] for k in ("top_n", "return_documents") if k in params})
        return "/v1/rerank", body
    body = {"model": ep, **chat}
    if task == "completion":
        body = {"model": ep, "prompt": params["input"], **{k: v for k, v in chat.items() if k != "messages"}}
    if "max_tokens" in params:
        body["max_tokens"] = params["max_tokens"]
    if case.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return ("/v1/completions" if task == "completion" else "/v1/chat/completions"), body


def _events(raw: str) -> list[dict]:
    out = []
    for block in raw.replace(BOM, "").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line[6:].strip() != "[DONE]":
                out.append(json.loads(line[6:]))
    return out


def gateway_answer(case: Case, surface: str, status: int, raw: str) -> Any:
    """The gateway's answer reduced to what the SDK's parsed answer is reduced to (`Case.answer`)."""
    assert status == 200, raw
    task = case.task
    if case.stream:
        text, calls = "", {}
        for ev in _events(raw):
            if "completion" in ev:
                text += "".join(c.get("delta", "") for c in ev["completion"])
            for choice in ev.get("choices", []):
                d = choice.get("delta", {}) or {}
                text += d.get("content") or choice.get("text") or ""
                for call in d.get("tool_calls") or []:
                    slot = calls.setdefault(call.get("index", 0), ["", ""])
                    fn = call.get("function") or {}
                    slot[0] += fn.get("name") or ""
                    slot[1] += fn.get("arguments") or ""
        return {"text": text, "tools": [tuple(v) for _, v in sorted(calls.items())]}
    data = json.loads(raw)
    if task in ("text_embedding", "sparse_embedding", "embedding"):
        if surface == "es":
            return [item["embedding"] for item in data["embeddings" if task == "embedding" else task]]
        return [item["embedding"] for item in data["data"]]
    if task == "rerank":
        items = data["rerank"] if surface == "es" else data["results"]
        return [(item["index"], round(item["relevance_score"], 6)) for item in items]
    if surface == "es" and task == "completion":
        return {"text": data["completion"][0]["result"], "tools": []}
    choice = data["choices"][0]
    if "text" in choice:
        return {"text": choice["text"], "tools": []}
    msg = choice["message"]
    return {"text": msg.get("content") or "",
            "tools": [(c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls") or []]}


def _normal(answer: Any) -> Any:
    """Tool arguments compared as JSON values: their spacing is the provider's or the gateway's choice."""
    if isinstance(answer, dict) and "tools" in answer:
        tools = []
        for name, args in answer["tools"]:
            try:
                tools.append((name, json.loads(args)))
            except ValueError:
                tools.append((name, args))
        return {**answer, "tools": tools}
    return answer


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_gateway_sends_what_the_sdk_sends(case: Case, capture, http, tmp_path, es):
    reason = case.unavailable()
    if reason:
        print(f"SKIP {case.id}: {reason}")
        pytest.skip(reason)
    settings = _settings(case, capture.url)
    body = {"service": case.service, "service_settings": settings}
    if case.task_settings:
        body["task_settings"] = case.task_settings
    async with http.put(f"/_inference/{case.task}/contract", json=body) as resp:
        assert resp.status == 200, await resp.text()
    capture.routes.update({p: r() if callable(r) else r for p, r in case.routes.items()})
    sdk_url = await capture.serve_tls(str(tmp_path)) if case.tls else capture.url
    found: dict[str, list[str]] = {}
    side: dict[str, dict[str, Any]] = {}  # side-call path -> the first such request from the SDK and the gateway
    for surface in case.surfaces:
        params = _surface_params(case, surface)
        capture.reply = case.reply(params)
        sdk_result = await asyncio.to_thread(case.call, sdk_url, params)
        sdk_sent = capture.take()
        sdk_req = sdk_sent[-1]
        path, gw_body = _gateway_request(case, surface, params)
        if case.task == "embedding" and surface == "es":  # ES's `embedding` task through the official client
            resp = await es.inference.embedding(inference_id="contract", body=gw_body)
            status, raw = resp.meta.status, json.dumps(resp.body)
        else:
            async with http.post(path, json=gw_body) as resp:
                status, raw = resp.status, await resp.text()
        sent = capture.take()
        assert sent, f"{surface}: the gateway sent nothing upstream: {status} {raw}"
        gw_req = sent[-1]
        for who, reqs in (("sdk", sdk_sent[:-1]), ("gateway", sent[:-1])):
            for req in reqs:
                if req.path in case.routes:
                    side.setdefault(req.path, {}).setdefault(who, req)
        found[surface] = differences(sdk_req, gw_req, ignore_body=case.ignore_body,
                                     ignore_headers=case.ignore_headers, ignore_query=case.ignore_query,
                                     proto_json=case.proto_json)
        if case.verify is not None:
            found[surface] += case.verify(sdk_req, gw_req, settings)
        assert _normal(gateway_answer(case, surface, status, raw)) == _normal(case.answer(sdk_result)), surface
    for route, pair in side.items():  # compared where both made the call (the gateway caches its tokens)
        if len(pair) == 2:
            found[route] = differences(pair["sdk"], pair["gateway"], ignore_headers=case.ignore_side)
    assert found == {k: [] for k in found}
    RESULTS.append({"service": case.service, "task": case.task, "stream": case.stream, "sdk": case.sdk,
                    "version": _sdk_version(case), "surfaces": list(case.surfaces), "variant": case.variant})


ERROR_CASES = [c for c in CASES if c.service in ERROR_BODIES and not c.stream]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
async def test_provider_error_bodies_reach_the_client(case: Case, capture, http, tmp_path):
    """A 400 in the provider's own error shape: the SDK raises with its message, and the gateway answers
    400 with the same message on both surfaces (ES envelope, OpenAI error)."""
    reason = case.unavailable()
    if reason:
        pytest.skip(reason)
    message = f"contract error for {case.id}"
    body, content_type, headers = ERROR_BODIES[case.service](message)
    capture.reply = Reply(body.encode(), status=400, content_type=content_type, headers=headers)
    capture.routes.update({p: r() if callable(r) else r for p, r in case.routes.items()})
    if not case.sdk.endswith("api-reference"):  # an SDK reads the body into its exception
        with pytest.raises(Exception) as raised:
            sdk_url = await capture.serve_tls(str(tmp_path)) if case.tls else capture.url
            await asyncio.to_thread(case.call, sdk_url, _surface_params(case, "es"))
        assert message in str(raised.value), f"the SDK did not read the error body: {raised.value!r}"
    body = {"service": case.service, "service_settings": _settings(case, capture.url)}
    if case.task_settings:
        body["task_settings"] = case.task_settings
    async with http.put(f"/_inference/{case.task}/contract", json=body) as resp:
        assert resp.status == 200, await resp.text()
    for surface in case.surfaces:
        path, gw_body = _gateway_request(case, surface, _surface_params(case, surface))
        async with http.post(path, json=gw_body) as resp:
            status, raw = resp.status, await resp.text()
        assert status == 400 and message in raw, (surface, status, raw)


def test_every_remote_service_and_task_has_a_case_or_a_reason():
    from adapters import ADAPTERS
    from proxy.catalogue import SERVICES

    from .cases import NOT_COVERED

    covered = {f"{c.service}/{c.task}{'/stream' if c.stream else ''}" for c in CASES}
    wanted = set()
    for service in ADAPTERS:
        spec = SERVICES[service]
        for task in spec.tasks:
            wanted.add(f"{service}/{task.value}")
            if task in spec.stream_tasks():
                wanted.add(f"{service}/{task.value}/stream")
    assert sorted(wanted - covered - set(NOT_COVERED)) == [], "services and tasks with neither a case nor a reason"
    assert sorted(covered & set(NOT_COVERED)) == [], "covered now: remove from NOT_COVERED"
    assert sorted(set(NOT_COVERED) - wanted) == [], "listed but not a task of the service"
