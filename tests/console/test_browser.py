"""The console in a real browser against a live gateway and simulated upstreams on loopback."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from proxy import appkeys
from proxy.keys import encoded
from tests.console.conftest import shot
from tests.fakes.custom_upstream import FakeCustom
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.slow


@pytest.fixture
async def keys(gateway):
    ring = gateway.app[appkeys.KEYS]  # what `inference-proxy keys create` does
    admin = encoded(*await ring.create("ops", "ops", roles=["inference_admin"]))
    user = encoded(*await ring.create("search-app", "search-app", roles=["inference_user"]))
    return {"admin": admin, "user": user}


def console_url(gateway) -> str:
    return str(gateway.make_url("/_console/"))


async def put(gateway, key, task, inference_id, body):
    headers = {"Authorization": f"ApiKey {key}"} if key else {}
    async with aiohttp.ClientSession() as http:
        async with http.put(gateway.make_url(f"/_inference/{task}/{inference_id}"), json=body, headers=headers) as r:
            assert r.status == 200, await r.text()


async def sign_in(page, gateway, key):
    await page.goto(console_url(gateway))
    await page.fill("#api-key", key)
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#endpoint-list")


async def test_sign_in_create_an_endpoint_and_stream_a_chat(page, gateway, keys, upstream):
    await page.goto(console_url(gateway))
    await page.wait_for_selector("#signin")
    await shot(page, "sign-in")
    await page.fill("#api-key", "bm90OmFrZXk=")
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#signin .error-box")
    assert "not accepted" in await page.inner_text("#signin .error-box")

    await page.fill("#api-key", keys["admin"])
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#endpoint-list .empty")
    assert await page.inner_text("#who-role") == "inference_admin"

    # the create form is generated from the catalogue: the secret is a password input
    await page.click("#new-endpoint")
    await page.select_option("#f-service", "openai")
    await page.select_option("#f-task", "chat_completion")
    await page.fill("#f-id", "chat")
    assert await page.get_attribute("#f-service_settings-api_key", "type") == "password"
    await page.fill("#f-service_settings-api_key", upstream.api_key)
    await page.fill("#f-service_settings-model_id", "slow-stream")
    await page.fill("#f-service_settings-url", f"{upstream.url}/v1/chat/completions")
    await page.fill("#f-service_settings-rate_limit-requests_per_minute", "600")
    preview = await page.inner_text("#f-preview")
    assert upstream.api_key not in preview and '"requests_per_minute": 600' in preview
    await shot(page, "create-endpoint")
    await page.click("#f-create")
    await page.wait_for_selector("tr[data-id=chat]")
    row = await page.inner_text("tr[data-id=chat]")
    assert "openai" in row and "chat_completion" in row and "slow-stream" in row and "ready" in row
    stored = gateway.app[appkeys.REGISTRY].get("chat")
    assert stored.secrets == {"api_key": upstream.api_key}
    assert stored.service_settings["rate_limit"] == {"requests_per_minute": 600}
    content = await page.content()
    assert upstream.api_key not in content and keys["admin"] not in content  # no secret in the page
    await shot(page, "endpoints")

    # the playground streams: text shows while the answer is still arriving (the fake waits 0.2 s a chunk)
    await page.click("tr[data-id=chat] >> text=Try")
    await page.wait_for_selector("#prompt")
    await page.fill("#prompt", "hello gateway")
    await page.click("#send")
    partial = await page.wait_for_function(
        "() => { const a = document.querySelector('#answer-0'); "
        "return a && a.classList.contains('streaming') && a.textContent.length > 0 && a.textContent; }")
    await page.wait_for_selector("#answer-0[data-done]")
    answer = await page.inner_text("#answer-0")
    expected = "".join(f"<{i}>{'HELLO GATEWAY'[i::5]}" for i in range(5))  # what the fake streams
    assert answer == expected
    assert expected.startswith(await partial.json_value()) and len(await partial.json_value()) < len(expected)
    ttft = await page.inner_text("[data-stat=ttft] b")
    assert ttft.endswith(" ms") and float(ttft[:-3].replace(",", "")) > 0
    assert await page.inner_text("[data-stat=chunks] b") == "5"
    assert upstream.requests[-1]["stream"] is True
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "hello gateway"}]
    await shot(page, "playground-chat")


async def test_a_chart_updates_as_requests_arrive(page, gateway, keys, upstream):
    await put(gateway, keys["admin"], "text_embedding", "emb", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "m", "url": f"{upstream.url}/v1/embeddings"}})
    await put(gateway, keys["admin"], "chat_completion", "chat", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "m", "url": f"{upstream.url}/v1/chat/completions"}})
    await sign_in(page, gateway, keys["user"])
    await page.click("#nav a[data-page=metrics]")
    await page.wait_for_selector("svg[data-chart=rps]")
    # nothing but the console's own polling so far, which is not inference traffic
    await page.wait_for_function("() => document.querySelector('svg[data-chart=rps]').dataset.points > 0")
    assert float(await page.get_attribute("svg[data-chart=rps]", "data-max")) == 0

    headers = {"Authorization": f"ApiKey {keys['user']}"}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(headers=headers) as http:
        # a few rounds over several samples, so the charts draw lines (and the screenshot shows some)
        for round_ in range(4):
            for i in range(2 + round_):
                url = gateway.make_url("/_inference/text_embedding/emb")
                async with http.post(url, json={"input": [f"x{i}"]}) as r:
                    assert r.status == 200
            async with http.post(gateway.make_url("/_inference/chat_completion/chat/_stream"), json=body) as r:
                assert r.status == 200
                await r.read()
            if round_ == 2:
                async with http.post(gateway.make_url("/_inference/text_embedding/emb"), json={"input": 5}) as r:
                    assert r.status == 400
            await asyncio.sleep(2.2)
    await page.wait_for_function("() => document.querySelector('svg[data-chart=rps]').dataset.max > 0")
    await page.wait_for_function("() => document.querySelector('svg[data-chart=latency]').dataset.points > 0")
    await page.wait_for_function("() => document.querySelector('svg[data-chart=ttft]').dataset.points > 0")
    await page.wait_for_function("() => document.querySelector('svg[data-chart=errors]').dataset.max > 0")
    assert await page.locator("svg[data-chart=rps] path.series").count() >= 2  # all, and each endpoint
    rows = await page.inner_text("#metrics-table")
    assert "emb" in rows and "chat" in rows
    emb_row = await page.locator("#metrics-table tr", has_text="emb").inner_text()
    assert emb_row.split()[:3] == ["emb", "15", "1"]  # fourteen answered, one refused
    await asyncio.sleep(2.5)  # one more sample, so the screenshot shows a line rather than a point
    await shot(page, "metrics")


async def test_a_user_key_gets_no_admin_controls(page, gateway, keys, upstream):
    await put(gateway, keys["admin"], "chat_completion", "chat", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "m", "url": f"{upstream.url}/v1/chat/completions"}})
    await sign_in(page, gateway, keys["user"])
    await page.wait_for_selector("tr[data-id=chat]")
    assert await page.inner_text("#who-role") == "inference_user"
    assert await page.locator("#new-endpoint").count() == 0
    assert await page.locator("[data-action=edit], [data-action=delete]").count() == 0
    assert await page.locator("tr[data-id=chat] >> text=Try").count() == 1
    await shot(page, "endpoints-user")
    # signing out forgets the key: the next visit asks again
    await page.click("#sign-out")
    await page.wait_for_selector("#signin")
    assert await page.evaluate("() => sessionStorage.length") == 0


async def test_update_keeps_the_secret_and_delete_shows_the_dry_run_first(page, gateway, keys, upstream):
    await put(gateway, keys["admin"], "chat_completion", "chat", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "m", "url": f"{upstream.url}/v1/chat/completions"}})
    registry = gateway.app[appkeys.REGISTRY]
    await sign_in(page, gateway, keys["admin"])
    await page.click("tr[data-id=chat] [data-action=edit]")
    await page.wait_for_selector("#f-update")
    assert await page.input_value("#f-service_settings-api_key") == ""  # never shown back
    assert await page.locator("#f-service_settings-model_id").count() == 0  # not updatable
    await page.fill("#f-service_settings-rate_limit-requests_per_minute", "42")
    await shot(page, "update-endpoint")
    await page.click("#f-update")
    await page.wait_for_selector("dialog", state="detached")
    assert registry.get("chat").service_settings["rate_limit"] == {"requests_per_minute": 42}
    assert registry.get("chat").secrets == {"api_key": upstream.api_key}

    await page.click("tr[data-id=chat] [data-action=edit]")
    await page.fill("#f-service_settings-api_key", "sk-rotated")
    await page.click("#f-update")
    await page.wait_for_selector("dialog", state="detached")
    assert registry.get("chat").secrets == {"api_key": "sk-rotated"}

    # an answer the gateway refuses is shown in the dialog, nothing changes
    await page.click("tr[data-id=chat] [data-action=edit]")
    await page.fill("#f-service_settings-rate_limit-requests_per_minute", "-1")
    await page.click("#f-update")
    await page.wait_for_selector("dialog .error-box:not([hidden])")
    assert "requests_per_minute" in await page.inner_text("dialog .error-box")
    await page.click("dialog >> text=Cancel")
    assert registry.get("chat").service_settings["rate_limit"] == {"requests_per_minute": 42}

    await page.click("tr[data-id=chat] [data-action=delete]")
    await page.wait_for_selector("#f-delete:not([disabled])")
    dry = await page.inner_text("#dry-run")
    assert '"acknowledged": false' in dry
    assert registry.get("chat") is not None  # the dry run changed nothing
    await shot(page, "delete-endpoint")
    await page.click("#f-delete")
    await page.wait_for_selector("tr[data-id=chat]", state="detached")
    assert registry.get("chat") is None


async def test_embeddings_rerank_and_sparse_playgrounds(page, gateway, upstream, serve_fake):
    custom = await serve_fake(FakeCustom())
    await put(gateway, None, "text_embedding", "emb", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "m", "url": f"{upstream.url}/v1/embeddings"}})
    await put(gateway, None, "rerank", "rr", {"service": "openshift_ai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "r", "url": f"{upstream.url}/v1/rerank"}})
    await put(gateway, None, "sparse_embedding", "sparse", {"service": "custom", "service_settings": {
        "url": f"{custom.url}/v1/sparse", "headers": {"Authorization": "Bearer ${api_key}"},
        "query_parameters": [["key", "${api_key}"]],
        "request": '{"input": ${input}}', "secret_parameters": {"api_key": custom.api_key},
        "response": {"json_parser": {
            "token_path": "$.result.sparse_embeddings[*].embedding[*].token_id",
            "weight_path": "$.result.sparse_embeddings[*].embedding[*].weight"}}}})

    # no key exists: the console opens on loopback without signing in
    await page.goto(console_url(gateway) + "#/playground/emb")
    await page.wait_for_selector("#run")
    assert await page.inner_text("#who-role") == "no API keys"
    await page.click("#run")
    await page.wait_for_selector("svg.heat")
    assert await page.inner_text("[data-stat=dims] b") == "8"  # the fake's vectors
    cells = page.locator("svg.heat rect")
    assert await cells.count() == 16
    diagonal = [float(await cells.nth(i * 5).get_attribute("data-value")) for i in range(4)]
    assert diagonal == pytest.approx([1.0] * 4, abs=1e-4)
    await shot(page, "playground-embeddings")

    await page.click("a[href='#/playground/rr']")
    await page.fill("#query", "capital of France")
    await page.click("#run")
    await page.wait_for_selector(".bar-row")
    values = await page.locator(".bar-row").evaluate_all("rows => rows.map(r => r.dataset.value)")
    scores = [float(v) for v in values]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    await shot(page, "playground-rerank")

    await page.click("a[href='#/playground/sparse']")
    await page.fill("#inputs", "a bb ccc")
    await page.click("#run")
    await page.wait_for_selector(".bar-row")
    names = await page.locator(".bar-row .name").all_inner_texts()
    assert names == ["3", "2", "1"]  # the fake weighs a token id by word length
    await shot(page, "playground-sparse")


async def test_stop_ends_the_stream_and_cancels_the_upstream(page, gateway, upstream):
    await put(gateway, None, "chat_completion", "stalls", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "stall", "url": f"{upstream.url}/v1/chat/completions"}})
    await page.goto(console_url(gateway) + "#/playground/stalls")
    await page.fill("#prompt", "wait for it")
    await page.press("#prompt", "Enter")
    # the fake sends its first piece, then waits 30 s
    await page.wait_for_function("() => document.querySelector('#answer-0').textContent.startsWith('<0>')")
    await page.click("#stop")
    await page.wait_for_selector("#answer-0[data-done]")
    assert (await page.inner_text("#answer-0")).endswith("[stopped]")
    await asyncio.wait_for(upstream.closed.wait(), 10)  # the gateway cancelled the upstream request
    assert upstream.disconnects == 1


async def test_completion_streams_and_upstream_errors_are_shown(page, gateway, upstream):
    await put(gateway, None, "completion", "comp", {"service": "openai", "service_settings": {
        "api_key": upstream.api_key, "model_id": "m", "url": f"{upstream.url}/v1/chat/completions"}})
    upstream.fail_next(401, "Incorrect API key provided")
    await page.goto(console_url(gateway) + "#/playground/comp")
    await page.fill("#prompt", "abc")
    await page.click("#send")
    await page.wait_for_selector(".msg.error")
    error = await page.inner_text(".msg.error")
    assert "Incorrect API key provided" in error and "[401]" in error  # the gateway's Elasticsearch message
    await page.fill("#prompt", "abc")
    await page.click("#send")
    await page.wait_for_selector("#answer-0[data-done]")
    assert await page.inner_text("#answer-0") == "<0>A<1>B<2>C<3><4>"
    assert await page.inner_text("[data-stat=chunks] b") == "5"


async def test_the_policy_refuses_inline_scripts_and_other_origins(page, gateway, upstream):
    await page.goto(console_url(gateway))
    await page.wait_for_selector("#endpoint-list")
    inline_ran = await page.evaluate("""() => {
        const el = document.createElement('script');
        el.textContent = 'window.injected = true';
        document.body.append(el);
        return window.injected === true;
    }""")
    assert inline_ran is False
    outcome = await page.evaluate("url => fetch(url).then(() => 'fetched', () => 'refused')", upstream.url)
    assert outcome == "refused"  # connect-src 'self': the upstream is another origin
    # chromium reports both refusals; the page itself had nothing to report
    assert all("Content Security Policy" in p for p in page.problems), page.problems
    assert any("inline script" in p for p in page.problems) and any("connect" in p for p in page.problems)
    page.problems.clear()


async def test_a_router_shows_its_targets_and_breakers(page, gateway, serve_fake):
    good, bad = await serve_fake(FakeOpenAI()), await serve_fake(FakeOpenAI())
    bad.fail_next(500, "down", times=20)
    for name, fake in (("good", good), ("bad", bad)):
        await put(gateway, None, "text_embedding", name, {"service": "openai", "service_settings": {
            "api_key": fake.api_key, "model_id": "m", "url": f"{fake.url}/v1/embeddings"}})
    await put(gateway, None, "text_embedding", "router", {"service": "router", "service_settings": {
        "targets": ["bad", "good"], "retries": 0, "circuit_breaker": {"failure_threshold": 1, "cooldown": "10m"}}})
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # the first fails over from bad (its breaker opens), the second passes it over
            async with http.post(gateway.make_url("/_inference/text_embedding/router"), json={"input": "x"}) as r:
                assert r.status == 200 and r.headers["X-Inference-Target"] == "good"
    await page.goto(console_url(gateway))
    row = "tr[data-id=router]"
    await page.wait_for_selector(f"{row} [data-state=degraded]")
    assert await page.get_attribute(f"{row} tr[data-target=bad] [data-breaker]", "data-breaker") == "open"
    assert await page.get_attribute(f"{row} tr[data-target=good] [data-breaker]", "data-breaker") == "closed"
    assert (await page.inner_text(f"{row} tr[data-target=good]")).split()[-2:] == ["2", "0"]  # answered, failed
    assert "strategy: fallback" in await page.inner_text(row)
    await shot(page, "endpoints-router")
    await page.click("#nav a[data-page=metrics]")
    await page.wait_for_selector("#routing:not([hidden]) tr[data-target=bad]")
    cells = (await page.inner_text("#routing tr[data-target=bad]")).split()
    assert cells == ["router", "bad", "open", "0", "1", "1"]  # answered, failed, passed over
    await shot(page, "metrics-routing")
