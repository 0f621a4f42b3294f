"""Marking texts for translation where they are defined, to translate them where shown.

A message raised deep in the domain (a refusal, an error page's title) is translated only
when a page or a JSON answer is rendered, in the reader's language. ``pybabel extract``
finds only literal strings inside calls to its keywords, so such a text is wrapped in
:func:`N_` where it is written: extraction sees it (``-k N_``, see babel.cfg), and at run
time it stays the untranslated template that ``gettext`` later looks up. Plain Python, no
Flask: the domain layer imports this.
"""

from __future__ import annotations


def N_(text: str) -> str:
    """Mark ``text`` for extraction; return it unchanged."""
    return text
