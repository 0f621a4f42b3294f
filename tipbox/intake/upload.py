"""Receiving one upload: the two forms a submission arrives in, read as they stream.

The route chooses the form (tipbox.web.source): the plain one a browser without
JavaScript posts, which gpg encrypts on arrival (:func:`read_plain_form`), or the one
static/encrypt.js posts, whose items are OpenPGP messages already
(:func:`read_encrypted_form`). Either way the CSRF token is the first field and is checked
before any byte of the rest is encrypted or stored (:func:`receive_upload`). No Flask
here: the web layer hands in the body, the keyring and a CSRF check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tipbox.config import Settings
from tipbox.crypto.gpg import Readable
from tipbox.errors import MalformedUpload, PageKeysOutdated, PageOutdated, SubmissionRejected
from tipbox.i18n import N_
from tipbox.intake.draft import Draft, Receipt
from tipbox.intake.limits import ReserveGuard
from tipbox.intake.multipart import NOT_A_FORM, MultipartReader, Part
from tipbox.models import ItemKind
from tipbox.storage import CiphertextStore

# Reads the parts after the CSRF token into the draft.
FormReader = Callable[[Iterator[Part], Draft, Settings], None]
# True if the token is valid for the session at hand.
CsrfCheck = Callable[[str], bool]

CSRF_REFUSED = N_("This form had expired or was sent from somewhere else, so nothing was "
                  "kept. Reload the page and send it again.")


def multipart_body(stream: Readable, mimetype: str, boundary: str | None,
                   settings: Settings, store: CiphertextStore) -> MultipartReader:
    """The reader over a request body, or MalformedUpload if it is not multipart. The
    body is refused once the store's disk is down to TIPBOX_MIN_FREE_BYTES."""
    if mimetype != "multipart/form-data" or not boundary:
        raise MalformedUpload(NOT_A_FORM)
    return MultipartReader(ReserveGuard(stream, store, settings.min_free_bytes),
                           boundary.encode("latin-1", "replace"),
                           chunk_size=settings.upload_chunk_bytes,
                           max_parts=settings.max_files + 16)


def receive_upload(body: MultipartReader, read_form: FormReader, draft: Draft,
                   csrf_valid: CsrfCheck, source_id: int, settings: Settings) -> Receipt:
    """CSRF first, then the form's items into ``draft``, then all of it kept at once."""
    with draft:
        parts = iter(body)
        check_csrf_first(next(parts, None), csrf_valid)
        draft.check_quota(source_id)
        read_form(parts, draft, settings)
        return draft.commit(source_id)


def check_csrf_first(part: Part | None, csrf_valid: CsrfCheck) -> None:
    """The token is the form's first field, so a forged upload is refused before any byte
    of it is encrypted or stored."""
    if part is None or part.is_file or part.name != "csrf_token":
        raise SubmissionRejected(CSRF_REFUSED)
    try:
        token = part.read_all(1024).decode("ascii")
    except (UnicodeDecodeError, SubmissionRejected):
        raise SubmissionRejected(CSRF_REFUSED) from None
    if not csrf_valid(token):
        raise SubmissionRejected(CSRF_REFUSED)


def read_plain_form(parts: Iterator[Part], draft: Draft, settings: Settings) -> None:
    """The form as a browser without JavaScript sends it: gpg encrypts on arrival."""
    for part in parts:
        if part.is_file and part.name == "files":
            draft.add_file(part, part.filename or "")
        elif not part.is_file and part.name == "message":
            text = message_text(part, settings)
            if text.strip():
                draft.add_message(text)
        elif not part.is_file and part.name == "fingerprints":
            # Only encrypt.js sends this field, and it posts to its own route; here it comes
            # from a page loaded before that route existed. Its ciphertext must not be taken
            # for plain files (nor its message, a file part, be dropped): reload, resend.
            raise PageOutdated()
        else:
            part.drain()  # unknown fields are ignored, never stored


def read_encrypted_form(parts: Iterator[Part], draft: Draft, settings: Settings) -> None:
    """What encrypt.js sends: ``fingerprints`` (the keys the page encrypted to),
    ``empty_files`` (a count, for the receipt), then ``message`` and ``files`` parts that
    are each one OpenPGP message.

    An ``encrypted`` field, which encrypt.js sent before the protocol was chosen by route,
    is still accepted if it says ``1``.
    """
    keys_checked = False
    for part in parts:
        if not part.is_file and part.name == "encrypted":
            if part.read_all(16) != b"1":
                raise MalformedUpload(NOT_A_FORM)
        elif not part.is_file and part.name == "fingerprints":
            sent = part.read_all(4096).decode("ascii", "replace").upper().split()
            if sorted(sent) != sorted(draft.recipients):
                raise PageKeysOutdated()
            keys_checked = True
        elif not part.is_file and part.name == "empty_files":
            raw = part.read_all(16).decode("ascii", "replace")
            # isdecimal on ASCII only: "²".isdigit() is true but int("²") fails.
            draft.skipped_empty_files = min(int(raw), settings.max_files) \
                if raw.isascii() and raw.isdecimal() else 0
        elif part.name in ("message", "files"):
            if not keys_checked:
                raise PageKeysOutdated()
            if part.name == "message":
                # The text's UTF-8 bound plus room for a PKESK per key (RSA-4096: 0.5 KiB).
                draft.add_encrypted(part, ItemKind.MESSAGE,
                                    max_bytes=settings.max_form_field_bytes + 16 * 1024)
            else:
                draft.add_encrypted(part, ItemKind.FILE)
        else:
            part.drain()


def message_text(part: Part, settings: Settings) -> str:
    """The message field as text, line breaks as the source typed them."""
    raw = part.read_all(settings.max_form_field_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionRejected(N_(
            "The message could not be read as text, so nothing was kept. Type or paste it "
            "again and send it.")) from None
    text = text.replace("\r\n", "\n")
    if len(text) > settings.max_message_chars:
        raise SubmissionRejected(N_(
            "The message is longer than %(limit)s characters, so nothing was kept. Shorten "
            "it, or put the text in a file and attach it."),
            params={"limit": settings.max_message_chars})
    return text
