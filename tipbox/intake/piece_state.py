"""What an upload sent in pieces holds between its requests, and how far it got.

:class:`UploadState` is what an upload's row (:class:`~tipbox.models.Upload`) keeps as JSON:
the keys the page encrypted to, the complete items, the open one with its packet check's
snapshot. It comes back from the database, so :meth:`UploadState.from_json` checks and
converts every field again and refuses any temp file that is not the upload's own.
:class:`UploadStatus` is how far the upload got, as the browser (static/encrypt-core.js)
reads it.

The protocol that loads, changes and saves these is :mod:`tipbox.intake.pieces`. No Flask
and no database here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TypedDict

from tipbox.crypto.message_check import CheckSnapshot
from tipbox.intake.draft import DraftState, SavedDraft
from tipbox.models import ItemKind
from tipbox.store_claims import TEMP_NAME_RE


@dataclass
class OpenItem:
    """The item pieces are arriving for: its temp file, the bytes held, the check's state."""

    temp_name: str
    kind: ItemKind
    held: int = 0
    check: CheckSnapshot | None = None


class SavedOpenItem(TypedDict):
    """An :class:`OpenItem` as JSON."""

    temp_name: str
    kind: str  # an ItemKind value
    held: int
    check: CheckSnapshot | None


class SavedUpload(TypedDict):
    """An :class:`UploadState` as JSON (:meth:`UploadState.to_json`): an upload's row."""

    fingerprints: list[str]
    draft: SavedDraft
    open: SavedOpenItem | None
    finished: bool


@dataclass
class UploadState:
    """What an upload's row holds between requests: the keys its page encrypted to, the
    complete items (a :class:`DraftState`), the open one. Never a file name."""

    fingerprints: tuple[str, ...]
    draft: DraftState
    open: OpenItem | None = None
    finished: bool = False

    def to_json(self) -> str:
        open_item: SavedOpenItem | None = None if self.open is None else {
            "temp_name": self.open.temp_name, "kind": self.open.kind.value,
            "held": self.open.held, "check": self.open.check}
        saved: SavedUpload = {"fingerprints": list(self.fingerprints),
                              "draft": self.draft.to_dict(), "open": open_item,
                              "finished": self.finished}
        return json.dumps(saved)

    @classmethod
    def from_json(cls, raw: str, token: str) -> UploadState:
        """The state :meth:`to_json` wrote for the upload ``token``; refuses any name
        outside that upload's own temp files. Every field is checked and converted again
        (the check's snapshot when the check resumes), whatever its type says: it comes
        back from the database."""
        data: SavedUpload = json.loads(raw)
        draft = DraftState.from_dict(data["draft"])
        if draft.owner != token:
            raise ValueError("an upload state of another claim")
        open_item = None
        if data["open"] is not None:
            raw_open = data["open"]
            match = TEMP_NAME_RE.fullmatch(str(raw_open["temp_name"]))
            if not match or match[1] != token:
                raise ValueError("not a temp file of this upload")
            open_item = OpenItem(str(raw_open["temp_name"]), ItemKind(raw_open["kind"]),
                                 int(raw_open["held"]), raw_open["check"])
        return cls(tuple(str(f) for f in data["fingerprints"]), draft, open_item,
                   bool(data["finished"]))

    @property
    def held_bytes(self) -> int:
        return sum(i.size for i in self.draft.items) + (self.open.held if self.open else 0)

    def status(self, token: str) -> UploadStatus:
        items = [ItemProgress(i.kind, i.size, True) for i in self.draft.items]
        if self.open is not None:
            items.append(ItemProgress(self.open.kind, self.open.held, False))
        return UploadStatus(token, tuple(items), self.finished)


@dataclass(frozen=True)
class ItemProgress:
    kind: ItemKind
    held: int  # bytes of its ciphertext the server holds
    complete: bool


class ItemProgressJSON(TypedDict):
    kind: str  # an ItemKind value
    held: int
    complete: bool


class UploadStatusJSON(TypedDict):
    """An :class:`UploadStatus` as the browser (static/encrypt-core.js) reads it."""

    upload: str  # the token
    finished: bool
    items: list[ItemProgressJSON]


@dataclass(frozen=True)
class UploadStatus:
    """How far an upload got: what the page asks after a failed request."""

    token: str
    items: tuple[ItemProgress, ...] = field(default=())
    finished: bool = False

    def as_dict(self) -> UploadStatusJSON:
        return {"upload": self.token, "finished": self.finished,
                "items": [{"kind": i.kind.value, "held": i.held, "complete": i.complete}
                          for i in self.items]}

