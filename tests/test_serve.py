"""Serving: no access log, no client address anywhere, and gunicorn tuned for slow uploads."""

from __future__ import annotations

from pathlib import Path

from tipbox.config import Settings
from tipbox.serve import PrivateLogger, gunicorn_options, redact, scrub_environ, tune_malloc
from tipbox.serve.worker import TipboxWorker


def test_addresses_are_redacted_from_log_lines() -> None:
    line = "Invalid request from ip=203.0.113.9: bad; also 2001:db8::1 and ::ffff:10.0.0.1"
    cleaned = redact(line)
    assert "203.0.113.9" not in cleaned and "2001:db8::1" not in cleaned
    assert "10.0.0.1" not in cleaned
    assert "Invalid request from ip=" in cleaned


def test_the_servers_own_listening_address_stays_in_the_log() -> None:
    line = "Listening at: http://127.0.0.1:8080 (42); request from 203.0.113.9"
    assert redact(line, frozenset({"127.0.0.1"})) == (
        "Listening at: http://127.0.0.1:8080 (42); request from [address removed]")


def test_the_wsgi_app_never_sees_the_client_address_or_browser() -> None:
    seen: dict[str, object] = {}

    def app(environ, start_response):
        seen.update(environ)
        return [b""]

    environ = {"REMOTE_ADDR": "198.51.100.7", "REMOTE_PORT": "5555",
               "HTTP_USER_AGENT": "Mozilla/5.0", "HTTP_X_FORWARDED_FOR": "198.51.100.8",
               "HTTP_REFERER": "http://example.org/", "PATH_INFO": "/"}
    scrub_environ(app)(environ, lambda *a: None)
    assert seen == {"PATH_INFO": "/"}


def test_gunicorn_runs_tipbox_worker_with_no_access_log(tmp_path: Path) -> None:
    opts = gunicorn_options("127.0.0.1", 8080, Settings(data_dir=tmp_path, serve_threads=300))
    assert opts["worker_class"] is TipboxWorker and opts["threads"] == 300
    assert opts["accesslog"] is None
    assert opts["logger_class"] is PrivateLogger
    assert opts["forwarded_allow_ips"] == ""


def test_malloc_tuning_is_accepted_by_glibc() -> None:
    # glibc's mallopt returns 1 per accepted setting (bench/upload.py shows the effect).
    import platform

    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")
