"""Routers as endpoints: what PUT, GET, `_update` and DELETE check and answer."""

from __future__ import annotations

from .conftest import put, put_router, put_target


async def test_a_router_is_created_with_its_defaults_shown(http, upstreams):
    up = await upstreams()
    await put_target(http, "chat_completion", "chat-a", up)
    await put_target(http, "chat_completion", "chat-b", up)
    created = await put_router(http, "chat_completion", "chat-any", ["chat-a", {"id": "chat-b", "timeout": "5s"}])
    assert created == {"inference_id": "chat-any", "task_type": "chat_completion", "service": "router",
                       "service_settings": {"strategy": "fallback",
                                            "targets": ["chat-a", {"id": "chat-b", "timeout": "5s"}],
                                            "failover_on": [408, 429, "5xx"], "retries": 0,
                                            "circuit_breaker": {"failure_threshold": 5, "cooldown": "30s"}}}
    async with http.get("/_inference/chat-any") as resp:
        assert (await resp.json()) == {"endpoints": [created]}


async def test_targets_must_exist_and_share_the_task_type(http, upstreams):
    up = await upstreams()
    await put_target(http, "completion", "comp", up)
    body = await put_router(http, "chat_completion", "r", ["nope", "comp"], status=400)
    assert body["error"]["type"] == "status_exception"
    assert body["error"]["reason"] == ("Invalid router [r]: target [nope] does not exist; target [comp] "
                                       "has task type [completion], the router has [chat_completion]")


async def test_embedding_targets_must_produce_compatible_vectors(http, upstreams):
    up = await upstreams()
    await put_target(http, "text_embedding", "e1536", up, dimensions=1536)
    await put_target(http, "text_embedding", "e1536b", up, dimensions=1536)
    await put_target(http, "text_embedding", "e384", up, dimensions=384)
    body = await put_router(http, "text_embedding", "r", ["e1536", "e384"], status=400)
    assert body["error"]["reason"] == ("Invalid router [r]: its targets produce incompatible vectors: "
                                       "[dimensions] differs ([e1536] has [1536], [e384] has [384])")
    await put(http, "text_embedding", "e-cos", {"service": "openai", "service_settings": {
        "api_key": "sk-x", "model_id": "m", "url": up.url + "/v1/embeddings", "dimensions": 1536,
        "similarity": "cosine"}})
    body = await put_router(http, "text_embedding", "r", ["e1536", "e-cos"], status=400)
    assert "[similarity] differs ([e1536] has [dot_product], [e-cos] has [cosine])" in body["error"]["reason"]
    body = await put_router(http, "text_embedding", "r", ["e1536", "e1536b"], dimensions=384, status=400)
    assert body["error"]["reason"] == ("Invalid router [r]: [dimensions] is [384] but its targets have "
                                       "[1536]")
    # compatible: the router shows the vectors its targets share, as an embedding endpoint does
    created = await put_router(http, "text_embedding", "r", ["e1536", "e1536b"])
    settings = created["service_settings"]
    assert settings["dimensions"] == 1536 and settings["similarity"] == "dot_product"
    assert created["chunking_settings"]["strategy"] == "sentence"


async def test_cycles_are_refused(http, upstreams):
    up = await upstreams()
    await put_target(http, "completion", "leaf", up)
    await put_router(http, "completion", "r1", ["leaf"])
    await put_router(http, "completion", "r2", ["r1"])
    body = await put_router(http, "completion", "r3", ["r3"], status=400)
    assert body["error"]["reason"] == "Invalid router [r3]: target [r3] leads back to [r3] (r3 -> r3), a cycle"
    async with http.put("/_inference/r1/_update", json={"service_settings": {"targets": ["leaf", "r2"]}}) as resp:
        body = await resp.json()
        assert resp.status == 400, body
    assert body["error"]["reason"] == ("Invalid router [r1]: target [r2] leads back to [r1] "
                                       "(r1 -> r2 -> r1), a cycle")


async def test_settings_are_checked(http, upstreams):
    up = await upstreams()
    await put_target(http, "completion", "c1", up)
    cases = [
        ({"targets": []}, "[targets] must be a non-empty list of inference endpoint ids"),
        ({"targets": [{"id": "c1", "weight": 2}]}, "target [c1] has a [weight], which only the [weighted] strategy"),
        ({"targets": [{"id": "c1", "weight": 0}], "strategy": "weighted"}, "[weight] must be a positive number"),
        ({"targets": [{"id": "c1", "timeout": "soon"}]}, "[timeout] must be a positive time value"),
        ({"targets": [{"id": "c1", "colour": "red"}]}, "target [c1] has unknown settings ['colour']"),
        ({"targets": ["c1", "c1"]}, "[targets] lists ['c1'] more than once"),
        ({"targets": [7]}, "[targets] entries must be an endpoint id or an object with an [id]"),
        ({"targets": ["c1"], "failover_on": [200]}, "[failover_on] entries are statuses from 400 to 599"),
        ({"targets": ["c1"], "retries": -1}, "[retries] must be zero or a positive integer"),
        ({"targets": ["c1"], "circuit_breaker": {"cooldown": "later"}}, "failed to parse setting [cooldown]"),
    ]
    for settings, reason in cases:
        async with http.put("/_inference/completion/bad", json={"service": "router",
                                                                "service_settings": settings}) as resp:
            body = await resp.json()
            assert resp.status == 400, (settings, body)
        assert body["error"]["type"] == "validation_exception", body
        assert reason in body["error"]["reason"], (settings, body)
    body = await put_router(http, "completion", "bad", ["c1"], strategy="fastest", status=400)
    assert "[strategy] must be one of [fallback, least_busy, least_latency, round_robin, weighted]" \
        in body["error"]["reason"]


async def test_deleting_a_target_is_refused_while_a_router_uses_it(http, upstreams):
    up = await upstreams()
    await put_target(http, "completion", "used", up)
    await put_router(http, "completion", "r-one", ["used"])
    await put_router(http, "completion", "r-two", ["used"])
    message = ("Inference endpoint used is referenced by routers: [r-one, r-two]. Ensure that no routers are using "
               "this inference endpoint, or use force to ignore this warning and delete the inference endpoint.")
    async with http.delete("/_inference/used") as resp:
        body = await resp.json()
        assert resp.status == 409
    assert body == {"error": {"root_cause": [{"type": "status_exception", "reason": message}],
                              "type": "status_exception", "reason": message}, "status": 409}
    async with http.delete("/_inference/used?dry_run=true") as resp:
        assert await resp.json() == {"acknowledged": False, "pipelines": [], "indexes": [],
                                     "routers": ["r-one", "r-two"], "error_message": message}
    async with http.get("/_inference/used") as resp:
        assert resp.status == 200
    # a router itself is not referenced: it goes at once, and its target is then free of it
    async with http.delete("/_inference/r-two") as resp:
        assert await resp.json() == {"acknowledged": True, "pipelines": [], "indexes": []}
    async with http.delete("/_inference/used?force=true") as resp:
        assert resp.status == 200 and (await resp.json())["acknowledged"] is True
    # the router that still names it passes it over and says so
    async with http.post("/_inference/completion/r-one", json={"input": "hi"}) as resp:
        body = await resp.json()
        assert resp.status == 503
    assert body["error"]["reason"] == "Router [r-one] has no target available: [used] (does not exist)"


async def test_a_router_is_updated_like_an_endpoint(http, upstreams):
    up = await upstreams()
    await put_target(http, "completion", "u1", up)
    await put_target(http, "completion", "u2", up)
    await put_router(http, "completion", "ru", ["u1"])
    async with http.put("/_inference/ru/_update", json={"service_settings": {
            "strategy": "round_robin", "targets": ["u1", "u2"], "circuit_breaker": {"cooldown": "1m"}}}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    assert body["service_settings"]["strategy"] == "round_robin"
    assert body["service_settings"]["targets"] == ["u1", "u2"]
    assert body["service_settings"]["circuit_breaker"] == {"failure_threshold": 5, "cooldown": "1m"}
    async with http.put("/_inference/ru/_update", json={"service_settings": {"targets": ["u1", "gone"]}}) as resp:
        assert resp.status == 400
    async with http.get("/_inference/ru") as resp:
        assert (await resp.json())["endpoints"][0]["service_settings"]["targets"] == ["u1", "u2"]


async def test_per_request_task_settings_are_refused_clearly(http, upstreams):
    up = await upstreams()
    await put_target(http, "text_embedding", "t", up)
    await put_router(http, "text_embedding", "r", ["t"])
    async with http.post("/_inference/text_embedding/r", json={"input": "x", "task_settings": {"user": "u"}}) as resp:
        body = await resp.json()
        assert resp.status == 400
    assert body["error"]["reason"] == "Configuration contains settings [{user=u}] unknown to the [router] service"
    # a top-level input_type reaches the target, which answers as it would directly (openai refuses it)
    answers = []
    for inference_id in ("t", "r"):
        async with http.post(f"/_inference/text_embedding/{inference_id}",
                             json={"input": "x", "input_type": "search"}) as resp:
            answers.append((resp.status, await resp.json()))
    assert answers[0] == answers[1] and answers[0][0] == 400
    assert "Invalid input_type [search]" in answers[0][1]["error"]["reason"]
