"""Adapters by ES service name, imported lazily: service name -> "module:Class"."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from .base import Adapter, EndpointView

_OPENAI = "adapters.openai_compat"
ADAPTERS: Mapping[str, str] = {
    "custom": "adapters.custom:CustomAdapter",
    "alibabacloud-ai-search": "adapters.alibabacloud:AlibabaCloudSearchAdapter",
    "watsonxai": "adapters.watsonxai:WatsonxAIAdapter",
    "openai": f"{_OPENAI}:OpenAIAdapter",
    "azureopenai": f"{_OPENAI}:AzureOpenAIAdapter",
    "mistral": f"{_OPENAI}:MistralAdapter",
    "deepseek": f"{_OPENAI}:DeepSeekAdapter",
    "groq": f"{_OPENAI}:GroqAdapter",
    "ai21": f"{_OPENAI}:AI21Adapter",
    "nvidia": f"{_OPENAI}:NvidiaAdapter",
    "llama": f"{_OPENAI}:LlamaAdapter",
    "openshift_ai": f"{_OPENAI}:OpenShiftAIAdapter",
    "hugging_face": f"{_OPENAI}:HuggingFaceAdapter",
    "fireworksai": f"{_OPENAI}:FireworksAIAdapter",
    "amazon_sagemaker": "adapters.amazon_sagemaker:AmazonSageMakerAdapter",
    "amazonbedrock": "adapters.amazonbedrock:AmazonBedrockAdapter",
    "anthropic": "adapters.anthropic:AnthropicAdapter",
    "azureaistudio": "adapters.azureaistudio:AzureAIStudioAdapter",
    "cohere": "adapters.cohere:CohereAdapter",
    "contextualai": "adapters.contextualai:ContextualAIAdapter",
    "googleaistudio": "adapters.google:GoogleAiStudioAdapter",
    "googlevertexai": "adapters.vertex:GoogleVertexAiAdapter",
    "jinaai": "adapters.jinaai:JinaAIAdapter",
    "voyageai": "adapters.voyageai:VoyageAIAdapter",
}


def adapter_class(service: str) -> "type[Adapter] | None":
    target = ADAPTERS.get(service)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def load_adapter(endpoint: "EndpointView") -> "Adapter":
    """Every remote service of the catalogue has an adapter (tests/unit/test_architecture.py holds it)."""
    cls = adapter_class(endpoint.service)
    assert cls is not None, endpoint.service
    return cls(endpoint)
