"""The store's upkeep inside each worker: what crashes left is swept as the worker starts
and every ten minutes after (tipbox.store_sweep), so no `tipbox init` is needed after a
worker or the whole service was killed. The data folder's temporaries that killed writers
left (tipbox.durable) are removed as the worker starts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tipbox.config import Settings

log = logging.getLogger(__name__)


def sweep_in_each_worker(settings: Settings) -> Callable[[Any], None]:
    """gunicorn's ``post_worker_init`` hook: start the worker's sweeper thread."""

    def post_worker_init(_worker: Any) -> None:
        from tipbox.db import make_engine, make_session_factory
        from tipbox.durable import remove_dead_temps
        from tipbox.storage import CiphertextStore
        from tipbox.store_sweep import Sweeper

        # An engine of the sweeper's own: it is built after the fork, like the app's.
        sessions = make_session_factory(make_engine(settings.database_url))
        Sweeper(CiphertextStore(settings.store_dir), sessions).start()
        # What a `tipbox init` or `tipbox digest` killed mid-write left in the data folder
        # (a copy of the secrets, it may be): once per start is enough, as those are rare
        # and short runs, and `tipbox init` removes them too.
        try:
            removed = sum(remove_dead_temps(path) for path in settings.written_whole)
        except OSError as exc:  # not a reason to refuse visitors: doctor reports them
            log.warning("could not remove the data folder's temporary files (%s)",
                        type(exc).__name__)
            return
        if removed:
            log.info("removed %d temporary file(s) that a killed writer left in the data "
                     "folder", removed)

    return post_worker_init
