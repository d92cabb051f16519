"""Settings Elasticsearch prints in GET although the PUT left them out (checked in the ES settings classes)."""

from __future__ import annotations


async def test_jina_prints_its_embedding_type(es):
    # JinaAIEmbeddingServiceSettings.toXContentFragmentOfExposedFields writes embedding_type unconditionally
    resp = await es.inference.put_jinaai(task_type="text_embedding", jinaai_inference_id="jina", service="jinaai",
                                         service_settings={"api_key": "jina_x", "model_id": "jina-embeddings-v3"})
    assert resp.body["service_settings"]["embedding_type"] == "float"
    resp = await es.inference.put_jinaai(task_type="text_embedding", jinaai_inference_id="jina-bit", service="jinaai",
                                         service_settings={"api_key": "jina_x", "model_id": "jina-embeddings-v3",
                                                           "embedding_type": "bit"})
    assert resp.body["service_settings"]["embedding_type"] == "bit"


async def test_openshift_ai_prints_whether_dimensions_came_from_the_user(es):
    # OpenShiftAiEmbeddingsServiceSettings writes dimensions_set_by_user always
    base = {"api_key": "k", "url": "https://openshift.example/v1/embeddings", "model_id": "m"}
    plain = await es.inference.put_openshift_ai(task_type="text_embedding", openshiftai_inference_id="os1",
                                                service="openshift_ai", service_settings=base)
    assert plain.body["service_settings"]["dimensions_set_by_user"] is False
    sized = await es.inference.put_openshift_ai(task_type="text_embedding", openshiftai_inference_id="os2",
                                                service="openshift_ai", service_settings={**base, "dimensions": 64})
    assert sized.body["service_settings"]["dimensions_set_by_user"] is True
    chat = await es.inference.put_openshift_ai(task_type="chat_completion", openshiftai_inference_id="os3",
                                               service="openshift_ai", service_settings=base)
    assert "dimensions_set_by_user" not in chat.body["service_settings"]  # an embeddings setting only


async def test_fireworks_prints_its_default_embeddings_url(es):
    # FireworksAiEmbeddingsServiceSettings shows `url` always (DEFAULT_URL when none is given) and keeps
    # dimensions_set_by_user out of GET (SPEC PutFireworksAiResponseExample1); the chat settings show `url` only
    # when given (FireworksAiChatCompletionServiceSettings)
    base = {"api_key": "fw_x", "model_id": "nomic-ai/nomic-embed-text-v1.5"}
    resp = await es.inference.put_fireworksai(task_type="text_embedding", fireworksai_inference_id="fw",
                                              service="fireworksai", service_settings=base)
    shown = resp.body["service_settings"]
    assert shown["url"] == "https://api.fireworks.ai/inference/v1/embeddings"
    assert "dimensions_set_by_user" not in shown
    assert (await es.inference.get(inference_id="fw")).body["endpoints"][0] == resp.body
    own = await es.inference.put_fireworksai(task_type="text_embedding", fireworksai_inference_id="fw2",
                                             service="fireworksai",
                                             service_settings={**base, "url": "https://fw.example/v1/embeddings",
                                                               "dimensions": 64})
    assert own.body["service_settings"]["url"] == "https://fw.example/v1/embeddings"
    chat = await es.inference.put_fireworksai(task_type="chat_completion", fireworksai_inference_id="fw3",
                                              service="fireworksai",
                                              service_settings={"api_key": "fw_x", "model_id": "m"})
    assert "url" not in chat.body["service_settings"]
