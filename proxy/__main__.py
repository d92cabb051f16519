"""Command line: `inference-proxy serve [--host] [--port] [--data-dir] [--config]`."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    from . import settings as settings_mod
    try:
        settings = settings_mod.load(args)
    except (ValueError, OSError) as exc:
        print(f"inference-proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if command == "serve":
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        from .server import create_app
        web.run_app(create_app(settings), host=settings.host, port=settings.port, handler_cancellation=True,
                    access_log=None, print=lambda msg: logging.getLogger("proxy").info(msg.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
