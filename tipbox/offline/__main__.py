"""``python -m tipbox.offline`` is ``tipbox-open``."""

from __future__ import annotations

import sys

from tipbox.offline.cli import main

sys.exit(main())
