"""The shared-state settings: flags and environment variables, store selection, redacted URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy import settings as settings_mod
from proxy.store import StartupError, make_store, redact


def test_environment_variables_select_shared_state(tmp_path):
    s = settings_mod.load({}, env={"INFERENCE_PROXY_STORE": "postgresql://u@db/x", "INFERENCE_PROXY_REDIS":
                                   "redis://r:6379/1", "INFERENCE_PROXY_WORKERS": "3",
                                   "INFERENCE_PROXY_EMBEDDING_CACHE_TTL": "600"})
    assert (s.store, s.redis, s.workers, s.embedding_cache_ttl) == ("postgresql://u@db/x", "redis://r:6379/1", 3, 600)
    s = settings_mod.load({"workers": 2, "store": "sqlite:///tmp/x.db"}, env={"INFERENCE_PROXY_WORKERS": "5"})
    assert (s.workers, s.store) == (2, "sqlite:///tmp/x.db")  # flags win over the environment
    defaults = settings_mod.load({}, env={})
    assert (defaults.store, defaults.redis, defaults.workers, defaults.embedding_cache_ttl) == (None, None, 1, 0)


@pytest.mark.parametrize("cli, message", [({"workers": 0}, "workers"),
                                          ({"embedding_cache_ttl": 60}, "needs a Redis"),
                                          ({"embedding_cache_ttl": -1, "redis": "redis://x"}, "embedding_cache_ttl")])
def test_invalid_shared_settings_are_refused(cli, message):
    with pytest.raises(ValueError, match=message):
        settings_mod.load(cli, env={})


def test_the_store_follows_the_setting(tmp_path):
    from proxy.store.sqlite import SqliteStore

    default = make_store(settings_mod.load({"data_dir": str(tmp_path)}, env={}))
    assert isinstance(default, SqliteStore) and default.path == tmp_path / "endpoints.db"
    other = make_store(settings_mod.load({"store": f"sqlite://{tmp_path}/other.db"}, env={}))
    assert isinstance(other, SqliteStore) and other.path == Path(f"{tmp_path}/other.db")
    pytest.importorskip("asyncpg")
    from proxy.store.postgres import PostgresStore

    pg = make_store(settings_mod.load({"store": "postgresql://u:pw@db/x"}, env={}))
    assert isinstance(pg, PostgresStore) and "pw" not in repr(pg)
    with pytest.raises(StartupError, match="unsupported store"):
        make_store(settings_mod.load({"store": "mysql://u:pw@db/x"}, env={}))


def test_urls_in_logs_lose_their_password():
    assert redact("postgresql://gw:s3cret@db:5432/x?sslmode=require") == "postgresql://gw:***@db:5432/x?sslmode=require"
    assert redact("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact("redis://cache:6379/0") == "redis://cache:6379/0"


def test_vllm_engine_arguments_come_from_the_config_file(tmp_path):
    """README "Local models": engine arguments come from service_settings or `vllm_<name>` in the config."""
    from engines.base import EngineOptions
    from engines.vllm_engine import ENGINE_ARG_NAMES, engine_args

    config = tmp_path / "gateway.yaml"
    config.write_text("vllm_max_num_seqs: 6\nvllm_gpu_memory_utilization: 0.5\nvllm_dtype: bfloat16\n"
                      "vllm_max_model_len: 512\nvllm_max_num_batched_tokens: 1024\n")
    s = settings_mod.load({"config": str(config)}, env={})
    assert all(hasattr(s, f"vllm_{name}") for name in ENGINE_ARG_NAMES)
    args = engine_args(EngineOptions(slots=2), config=s)
    assert args == {"max_num_seqs": 6, "gpu_memory_utilization": 0.5, "dtype": "bfloat16", "max_model_len": 512,
                    "max_num_batched_tokens": 1024}
    # an endpoint's own service_settings still win over the config
    assert engine_args(EngineOptions(), [{"max_num_seqs": 9}], config=s)["max_num_seqs"] == 9
    config.write_text("vllm_max_num_seqs: many\n")
    with pytest.raises(Exception, match="vllm_max_num_seqs"):
        settings_mod.load({"config": str(config)}, env={})
