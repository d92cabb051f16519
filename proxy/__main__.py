"""Command line: `inference-proxy serve [--host] [--port] [--data-dir] [--config]`."""

from __future__ import annotations

import argparse
import logging
import sys



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inference-proxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="address to bind (env INFERENCE_PROXY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env INFERENCE_PROXY_PORT, default 9200)")
    serve.add_argument("--data-dir", dest="data_dir", help="where the endpoint store and key file live "
                                                           "(env INFERENCE_PROXY_DATA_DIR, default ./data)")
    serve.add_argument("--config", help="TOML or YAML config file (env INFERENCE_PROXY_CONFIG)")
    serve.add_argument("--upstream-proxy", dest="upstream_proxy",
                       help="HTTP(S) proxy for upstream calls (env INFERENCE_PROXY_UPSTREAM_PROXY or HTTPS_PROXY)")
    serve.add_argument("--log-level", dest="log_level", help="env INFERENCE_PROXY_LOG_LEVEL, default INFO")
    serve.add_argument("--store", help="endpoint store: postgresql://user@host/db shared by several gateways, or "
                                       "sqlite:///path (env INFERENCE_PROXY_STORE, default endpoints.db in the data "
                                       "dir); gateways sharing a store need the same INFERENCE_PROXY_SECRET_KEY")
    serve.add_argument("--redis", help="redis://host:port/db: rate limits shared by every gateway using it, and "
                                       "the embedding cache (env INFERENCE_PROXY_REDIS)")
    serve.add_argument("--embedding-cache-ttl", dest="embedding_cache_ttl", type=int,
                       help="seconds text_embedding results stay cached in Redis; 0 (default) turns the cache off "
                            "(env INFERENCE_PROXY_EMBEDDING_CACHE_TTL)")
    serve.add_argument("--workers", type=int, help="processes serving the port (env INFERENCE_PROXY_WORKERS, "
                                                   "default 1)")
    serve.add_argument("--insecure", action="store_true", default=None,
                       help="serve a non-loopback address without API keys (only while no key was ever created)")
    keys = sub.add_parser("keys", help="manage API keys", parents=[_store_options(argparse.SUPPRESS)])
    key_sub = keys.add_subparsers(dest="keys_command", required=True)
    # the store options go before or after the subcommand: `keys create --data-dir D` and `keys --data-dir D create`
    where = _store_options(argparse.SUPPRESS)
    create = key_sub.add_parser("create", help="create a key and print it once", parents=[where])
    create.add_argument("--role", required=True, choices=["superuser", "inference_admin", "inference_user"],
                        help="superuser may also manage API keys through /_security/api_key")
    create.add_argument("--name", required=True)
    create.add_argument("--owner", help="the user the key belongs to (default: its name)")
    key_sub.add_parser("list", help="list keys (never their secrets)", parents=[where])
    revoke = key_sub.add_parser("revoke", help="revoke a key by id", parents=[where])
    revoke.add_argument("key_id")
    usage = sub.add_parser("usage", help="usage per API key and endpoint, summed over every replica",
                           parents=[_store_options(None)])
    usage.add_argument("--key", dest="usage_key", help="one API key id")
    usage.add_argument("--endpoint", dest="usage_endpoint", help="one endpoint id")
    usage.add_argument("--hours", dest="usage_hours", type=float, default=24.0, help="the last N hours (default 24)")
    return parser


def _store_options(default) -> argparse.ArgumentParser:
    """Where the keys are: the options of `serve` that locate the data directory. With a SUPPRESS
    default, an option given at one level is not overwritten by the other level's default."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--data-dir", dest="data_dir", default=default, help="the gateway's data directory "
                                                                              "(env INFERENCE_PROXY_DATA_DIR)")
    options.add_argument("--config", default=default, help="TOML or YAML config file (env INFERENCE_PROXY_CONFIG)")
    options.add_argument("--store", default=default, help="the endpoint store holding the keys, as for `serve` "
                                                          "(env INFERENCE_PROXY_STORE)")
    return options


async def _keys_in_store(settings, args: dict) -> int:
    from .keys import REQUIRED_MARKER, KeyRing, encoded
    from .store import make_store
    from .store.files import private_dir

    private_dir(settings.data_path)
    store = make_store(settings)
    await store.open()
    try:
        ring = KeyRing(store, marker=settings.data_path / REQUIRED_MARKER)
        await ring.load()
        command = args["keys_command"]
        if command == "create":
            record, secret = await ring.create(args["name"], args.get("owner") or args["name"], roles=[args["role"]])
            print(f"id:      {record.id}\nname:    {record.name}\nrole:    {args['role']}\n"
                  f"api_key: {encoded(record, secret)}\n(shown once: pass it as `ApiKey <api_key>` or "
                  f"`Bearer <api_key>`)")
        elif command == "list":
            import time

            now = time.time()
            for k in ring.find():
                state = "active" if k.active(now) else ("revoked" if k.invalidated_at else "expired")
                print(f"{k.id}\t{k.name}\t{','.join(k.role_names)}\t{state}")
        else:
            done, _ = await ring.invalidate([args["key_id"]])
            if not done:
                print(f"inference-proxy: no active key [{args['key_id']}]", file=sys.stderr)
                return 1
        return 0
    finally:
        await store.close()


async def _usage(settings, args: dict) -> int:
    import time

    from .keys import KeyRing
    from .store import make_store
    from .usage import BUCKET_S, FIELDS, summarize

    store = make_store(settings)
    await store.open()
    try:
        end = time.time()
        start = end - args["usage_hours"] * 3600
        rows = await store.query_usage(args["usage_key"], args["usage_endpoint"], int(start) // BUCKET_S * BUCKET_S,
                                       int(end) + 1)
        ring = KeyRing(store)
        await ring.load()
        entries, totals = summarize(rows, start, None, settings.prices, {k.id: k.name for k in ring.find()})
    finally:
        await store.close()
    columns = ("key", "key_name", "endpoint", *FIELDS, *(("cost",) if settings.prices else ()))
    print("\t".join(columns))
    for entry in entries:
        print("\t".join(str(entry.get(c) if entry.get(c) is not None else "-") for c in columns))
    print("\t".join(["total", "", "", *(str(totals[c]) for c in columns[3:])]))
    return 0


async def _any_key(settings) -> bool:
    from .store import make_store

    store = make_store(settings)
    await store.open()
    try:
        return bool(await store.load_keys())
    finally:
        await store.close()


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    keys_args = {k: args.pop(k) for k in ("keys_command", "name", "role", "owner", "key_id", "usage_key",
                                          "usage_endpoint", "usage_hours") if k in args}
    insecure = bool(args.pop("insecure", False))
    from . import settings as settings_mod
    try:
        settings = settings_mod.load(args)
    except (ValueError, OSError) as exc:
        print(f"inference-proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if command in ("keys", "usage"):
        import asyncio

        from .store import StartupError

        try:
            if command == "keys":
                return asyncio.run(_keys_in_store(settings, keys_args))
            return asyncio.run(_usage(settings, keys_args))
        except StartupError as exc:
            print(f"inference-proxy: {exc}", file=sys.stderr)
            return 2
    if command == "serve":
        import asyncio

        from .keys import REQUIRED_MARKER

        marker = settings.data_path / REQUIRED_MARKER
        if insecure or not _loopback(settings.host):
            if marker.exists() or asyncio.run(_any_key(settings)):
                if insecure:
                    logging.getLogger("proxy").warning("--insecure is ignored: API keys exist or existed for this "
                                                       "gateway (%s), so every request needs one", marker)
            elif not _loopback(settings.host):
                if not insecure:
                    print(f"inference-proxy: refusing to bind {settings.host}: no API key exists, so anyone who "
                          f"can reach it could use it. Create one (`inference-proxy keys create --role "
                          f"inference_admin --name admin`) or pass --insecure.", file=sys.stderr)
                    return 2
                logging.getLogger("proxy").warning("serving %s without API keys (--insecure): anyone who can "
                                                   "reach it can use it", settings.host)
        from .workers import serve, supervise

        if settings.workers > 1:
            return supervise(settings)
        return serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
