"""WSGI entry points for gunicorn: ``gunicorn wsgi:source_app`` and ``wsgi:newsroom_app``.

Settings come from TIPBOX_* environment variables. Prefer ``tipbox serve source`` and
``tipbox serve newsroom``, which apply tipbox's gunicorn configuration (no access log,
addresses redacted). Serve the two on different ports; expose only the source one.
"""

from __future__ import annotations

from tipbox.serve import scrub_environ
from tipbox.web.newsroom import create_newsroom_app
from tipbox.web.source import create_source_app

source_app = scrub_environ(create_source_app())
newsroom_app = scrub_environ(create_newsroom_app())
