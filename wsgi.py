"""WSGI entry points for gunicorn: ``gunicorn wsgi:source_app``.

Settings come from TIPBOX_* environment variables. Prefer ``tipbox serve source``,
which applies tipbox's gunicorn configuration (no access log, addresses redacted).
"""

from __future__ import annotations

from tipbox.serve import scrub_environ
from tipbox.web.source import create_source_app

source_app = scrub_environ(create_source_app())
