"""Why ``tipbox-open`` stops before writing anything (exit status 2).

Messages say what happened and what to do next; they may quote bundle contents only
through :func:`tipbox.offline.names.display`, which makes them safe to print.
"""

from __future__ import annotations

from tipbox.errors import TipboxError


class Refused(TipboxError):
    """The bundle, a key file or the command line cannot be used; nothing was written."""


class BundleRefused(Refused):
    """The bundle is hostile, damaged or not a tipbox bundle."""
