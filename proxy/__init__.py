"""inference-proxy: the Elasticsearch Inference API and an OpenAI-compatible facade in one gateway."""

__version__ = "0.1.0"
