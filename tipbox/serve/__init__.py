"""Running the interfaces under gunicorn, configured for many slow clients over Tor.

The one place that configures gunicorn. One worker process of tipbox's own kind
(tipbox.serve.worker): a connection waits in the worker's event loop while its request
head arrives and while it is kept alive, under deadlines, and holds one of a few hundred
threads only while its request is answered or its body read, so an upload taking hours
(streamed into gpg, never to disk) is not cut off while its bytes keep coming. No access
log is written, and the error log passes through a filter that removes anything shaped
like an IP address. The error pages gunicorn writes itself carry the app's security
headers (tipbox.serve.error_pages).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import re
import resource
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from tipbox.config import Settings
from tipbox.serve.error_pages import use_tipbox_error_pages
from tipbox.serve.store_upkeep import sweep_in_each_worker
from tipbox.serve.worker import ConnectionLimits, TipboxWorker

# Dotted quads and anything with three or more colon-separated hex groups (IPv6).
_IP_RE = re.compile(
    r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\b"
)

# Request metadata that no part of tipbox may see, let alone log.
_SCRUBBED_ENVIRON = ("REMOTE_ADDR", "REMOTE_PORT", "HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR",
                     "HTTP_X_REAL_IP", "HTTP_FORWARDED", "HTTP_REFERER", "HTTP_VIA")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def redact(text: str, keep: frozenset[str] = frozenset()) -> str:
    """``text`` with every IP address replaced, except those in ``keep``."""
    return _IP_RE.sub(lambda m: m[0] if m[0] in keep else "[address removed]", text)


# gunicorn's line for a request it could not parse: "Invalid request from ip=...: " and
# its exception, which quotes what the client sent ("Invalid HTTP Version: 'HTTP/1.1 x'").
_INVALID_REQUEST = re.compile(r"(Invalid request from ip=\S*: [^:'\"(]*)[:'\"(].*", re.DOTALL)


def without_request_text(message: str) -> str:
    """gunicorn's line for an unparsable request, cut to the kind of fault: the rest
    repeats the client's bytes (up to a whole request line), which no log should keep."""
    return _INVALID_REQUEST.sub(lambda m: m[1].rstrip(), message)


class _RedactingFilter(logging.Filter):
    def __init__(self, keep: frozenset[str]) -> None:
        super().__init__()
        self.keep = keep

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(without_request_text(record.getMessage()), self.keep)
        record.args = ()
        return True


class PrivateLogger(Logger):
    """gunicorn's logger with the access log off and addresses removed from errors."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # The server's own listening address ("Listening at: ...") is no secret, and an
        # admin reading the log needs it; every other address goes.
        own = frozenset(bind.rsplit(":", 1)[0].strip("[]") for bind in cfg.bind)
        for handler in self.error_log.handlers:
            handler.addFilter(_RedactingFilter(own))

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


def scrub_environ(app: WSGIApp) -> WSGIApp:
    """Drop the client's address and browser details before Flask sees the request."""

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for key in _SCRUBBED_ENVIRON:
            environ.pop(key, None)
        return app(environ, start_response)

    return middleware


def gunicorn_options(host: str, port: int, settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "worker_class": TipboxWorker,
        "workers": 1,
        "threads": settings.serve_threads,
        "worker_connections": settings.max_connections,
        # Heartbeat timeout only: the worker's loop answers it, whatever its threads do,
        # so it does not cut off long request bodies.
        "timeout": 120,
        "graceful_timeout": 3600,
        "keepalive": 75,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": PrivateLogger,
        "forwarded_allow_ips": "",
        "proxy_allow_ips": "",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "control_socket_disable": True,
        "post_worker_init": sweep_in_each_worker(settings),
    }


class TipboxServer(BaseApplication):
    def __init__(self, app: WSGIApp, options: dict[str, Any],
                 connection_limits: ConnectionLimits) -> None:
        self._app = app
        self._options = options
        # Read by TipboxWorker, which gunicorn builds with this object as its "app".
        self.connection_limits = connection_limits
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        return self._app


# glibc's mallopt() parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MIB = 1024 * 1024


def tune_malloc() -> bool:
    """Let the worker reuse the memory of its upload buffers instead of returning it.

    An upload crosses gunicorn, Werkzeug and python-gnupg as bytes objects of about
    1 MiB, several per MiB received, each freed at once. With glibc's defaults each
    free hands the pages back to the kernel (munmap, or trimming an arena's top) and
    the next buffer faults fresh zeroed pages in: 290,000 to 870,000 page faults per
    GiB uploaded, half the worker's CPU time (bench/upload.py). Serving buffers of up
    to 4 MiB from the heap, and trimming only beyond 8 MiB of free space, keeps them;
    two arenas bound what the worker's many threads can keep so. Set before gunicorn
    forks, so the worker inherits it. A no-op where the C library is not glibc.
    Returns whether every setting was accepted.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    results = [mallopt(param, value) for param, value in (
        (_M_ARENA_MAX, 2), (_M_MMAP_THRESHOLD, 4 * _MIB), (_M_TRIM_THRESHOLD, 8 * _MIB))]
    return all(r == 1 for r in results)


def _without_server_header() -> None:
    """gunicorn writes "Server: gunicorn" itself, after the app's headers; the app cannot
    remove it. Wrap its header builder once so that line is dropped."""
    from gunicorn.http import wsgi

    original = wsgi.Response.default_headers
    if getattr(original, "_tipbox", False):
        return

    def default_headers(self: Any) -> list[str]:
        return [h for h in original(self) if not h.lower().startswith("server:")]

    default_headers._tipbox = True  # type: ignore[attr-defined]
    wsgi.Response.default_headers = default_headers


def no_core_dumps() -> None:
    """A crashing worker or gpg must not write its memory (plaintext in flight) to disk."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4: also no ptrace by other users


def raise_open_files_limit(needed: int) -> None:
    """Every open connection is a file descriptor, and so are each upload's pipes to gpg:
    lift the soft limit (often 1,024) as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target != resource.RLIM_INFINITY and target < needed:
        logging.getLogger(__name__).warning(
            "open files limited to %d, fewer than the %d that TIPBOX_MAX_CONNECTIONS and "
            "TIPBOX_SERVE_THREADS may need: raise the hard limit (LimitNOFILE=)", target, needed)


def serve(app: WSGIApp, host: str, port: int, settings: Settings | None = None) -> None:
    """Serve ``app`` until stopped. ``settings`` default to those a tipbox Flask app was
    built with (``app.config["TIPBOX_SETTINGS"]``)."""
    settings = settings or _settings_of(app)
    no_core_dumps()
    _without_server_header()
    use_tipbox_error_pages()
    tune_malloc()
    # Per connection one socket; per request in a thread a few more (gpg's pipes).
    raise_open_files_limit(settings.max_connections + 8 * settings.serve_threads + 64)
    limits = ConnectionLimits(settings.request_head_seconds, settings.body_stall_seconds)
    TipboxServer(scrub_environ(app), gunicorn_options(host, port, settings), limits).run()


def _settings_of(app: WSGIApp) -> Settings:
    config = getattr(app, "config", None)
    found = config.get("TIPBOX_SETTINGS") if isinstance(config, dict) else None
    if not isinstance(found, Settings):
        raise TypeError("serve() needs settings for an app that is not a tipbox Flask app")
    return found
