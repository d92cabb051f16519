"""The access log's writer: one JSON line per request (`observability.observe` makes the lines)."""

from __future__ import annotations

import asyncio
import logging
import re
import time

access_log = logging.getLogger("proxy.access")
_FIELDS = re.compile(r"%\((\w+)\)")


FLUSH_S = 0.05  # how long a line may wait to be written with others: at 3,000 requests/s, ~150 per write
FLUSH_LINES = 512


class AccessLog:
    """Writes the access log's lines. Through `logging` a line costs a LogRecord, a lookup of the
    caller's frame, formatting, and a write and a flush of its own: about 25 µs, a twentieth of a
    proxied request (bench/hotspots.py). When the line would reach nothing but the one stream handler
    that the gateway's own set-up (`logging.basicConfig`) put on the root logger, the lines of one
    event loop are formatted here exactly as that handler's formatter would, and written to its
    stream in one write at most `FLUSH_S` later (or once `FLUSH_LINES` wait; `flush` at shutdown).
    Any other set-up (an application embedding the gateway, a test's `caplog`, a filter) gets
    ordinary log records."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._handler: logging.StreamHandler | None = None
        self._fmt = ""
        self._second = -1
        self._date = ""

    def write(self, line: str) -> None:
        root = logging.root
        handler = root.handlers[0] if len(root.handlers) == 1 else None
        if handler is not self._handler:
            self._handler = handler if handler is not None and self._plain(handler) else None
        if self._handler is None or access_log.handlers or not access_log.propagate or access_log.filters \
                or root.filters or self._handler.filters or self._handler.level > logging.INFO:
            access_log.info(line)
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        asctime = "%s,%03d" % (self._date, int((now - second) * 1000))
        pending = self._pending
        if not pending:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
        pending.append(self._fmt % {"asctime": asctime, "levelname": "INFO", "name": "proxy.access",
                                    "message": line})
        if len(pending) >= FLUSH_LINES:
            self.flush()

    def _plain(self, handler: logging.Handler) -> bool:
        """A StreamHandler whose formatter is logging's own %-style one, with no date format, using only
        the fields this class fills in."""
        formatter = handler.formatter
        if type(handler) is not logging.StreamHandler or type(formatter) is not logging.Formatter:
            return False
        fmt = formatter._fmt or ""
        if formatter.datefmt is not None or not isinstance(formatter._style, logging.PercentStyle) \
                or not set(_FIELDS.findall(fmt)) <= {"asctime", "levelname", "name", "message"}:
            return False
        self._fmt = fmt
        return True

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._pending = self._pending, []
        if not lines:
            return
        handler = self._handler
        if handler is None:  # the set-up changed within the turn
            for line in lines:
                access_log.info(line)
            return
        handler.acquire()
        try:
            handler.stream.write("\n".join(lines) + handler.terminator)
            handler.flush()
        except Exception:  # noqa: BLE001 - as logging does: a failing log must not fail requests
            pass
        finally:
            handler.release()
