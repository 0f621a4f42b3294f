"""The store's upkeep inside each worker: what crashes left is swept as the worker starts
and every ten minutes after (tipbox.store_sweep), so no `tipbox init` is needed after a
worker or the whole service was killed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tipbox.config import Settings


def sweep_in_each_worker(settings: Settings) -> Callable[[Any], None]:
    """gunicorn's ``post_worker_init`` hook: start the worker's sweeper thread."""

    def post_worker_init(_worker: Any) -> None:
        from tipbox.db import make_engine, make_session_factory
        from tipbox.storage import CiphertextStore
        from tipbox.store_sweep import Sweeper

        # An engine of the sweeper's own: it is built after the fork, like the app's.
        sessions = make_session_factory(make_engine(settings.database_url))
        Sweeper(CiphertextStore(settings.store_dir), sessions).start()

    return post_worker_init
