"""The daily digest: an e-mail telling journalists how many sources wrote, and nothing else.

It counts whole UTC days only, from the day after the last digest's last day through
yesterday, so no digest says when in a day anyone wrote, and a digest run twice in a day
sends nothing the second time. It names no source, no designation, no item, no date. A
message goes out even when nobody wrote: whether one is sent at all must not tell the
mail provider anything. Each recipient gets a message of their own; those listed with a
public key get it encrypted (PGP/MIME), where the count is hidden from the provider too.

Plain Python, no click: `tipbox digest` (tipbox/cli/digest_commands.py) prints what
:func:`send_digest` returns.
"""

from __future__ import annotations

import datetime as dt
import json
import smtplib
import ssl
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.encoders import encode_7or8bit
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import parseaddr
from pathlib import Path

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session, sessionmaker

from tipbox.clock import today
from tipbox.config import Settings
from tipbox.crypto.keyring import KEY_SUFFIXES
from tipbox.durable import write_whole
from tipbox.errors import DigestError
from tipbox.models import Item

# English for now: the digest has no language setting (docs/translating.md), so its
# texts are not in the catalogs, where they would wait for translations no one sees.
SUBJECT = "Newsroom digest"
BODY = ("%(sources)s wrote to the newsroom since the last digest.\n\n"
        "Log in to the newsroom interface to read what they sent. This message says "
        "nothing more on purpose: no names, no contents, no times.\n")
# What the server says in its greeting: never the machine's own host name.
EHLO_NAME = "localhost"
SMTP_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Recipient:
    address: str
    key_file: Path | None = None  # encrypted to this public key if set


@dataclass(frozen=True)
class DigestSent:
    """What a digest did. ``count`` is for the caller to decide whether to show: a timer's
    log line with a daily count and its date would keep the history of activity."""

    count: int
    last_day: dt.date
    plain: int  # messages sent in clear
    encrypted: int  # messages sent encrypted


def send_digest(settings: Settings, sessions: sessionmaker[Session], *,
                clock: Callable[[], dt.date] = today) -> DigestSent | None:
    """Send the digest for the whole days since the last one; None if those days were
    already counted. The state advances only once every message has been handed over."""
    first_day, last_day = _period(settings.digest_state_file, clock())
    if first_day > last_day:
        return None
    recipients = digest_recipients(settings)
    sender = _sender(settings)
    count = sources_that_wrote(sessions, first_day, last_day)
    messages = [_message(sender, r, count, settings.gpg_binary) for r in recipients]
    _deliver(settings, sender, messages)
    _save_state(settings.digest_state_file, last_day)
    return DigestSent(count, last_day, sum(r.key_file is None for r in recipients),
                      sum(r.key_file is not None for r in recipients))


def sources_that_wrote(sessions: sessionmaker[Session], first_day: dt.date,
                       last_day: dt.date) -> int:
    """How many sources sent at least one item on these days (both included)."""
    with sessions() as db:
        return int(db.scalar(select(func.count(distinct(Item.source_id))).where(
            Item.submitted_on >= first_day, Item.submitted_on <= last_day)) or 0)


def digest_recipients(settings: Settings) -> list[Recipient]:
    """Everyone the digest goes to: TIPBOX_DIGEST_TO in clear, and the owner of each
    public key in TIPBOX_DIGEST_KEYS_DIR encrypted."""
    recipients = [Recipient(address) for address in settings.digest_to]
    keys_dir = settings.digest_keys_dir
    if keys_dir is not None:
        if not keys_dir.is_dir():
            raise DigestError(f"TIPBOX_DIGEST_KEYS_DIR names {keys_dir}, which is not a "
                              "folder. Create it and put each journalist's public key in it.")
        for path in sorted(keys_dir.iterdir()):
            if path.suffix.lower() in KEY_SUFFIXES and path.is_file():
                recipients.append(Recipient(_key_address(path, settings.gpg_binary), path))
    if not recipients:
        raise DigestError("The digest has nobody to go to. Set TIPBOX_DIGEST_TO (addresses, "
                          "separated by commas) or TIPBOX_DIGEST_KEYS_DIR (a folder of the "
                          "journalists' public keys).")
    return recipients


def _period(state_file: Path, day: dt.date) -> tuple[dt.date, dt.date]:
    yesterday = day - dt.timedelta(days=1)
    try:
        last = dt.date.fromisoformat(json.loads(state_file.read_text())["counted_through"])
    except FileNotFoundError:
        return yesterday, yesterday  # the first digest counts yesterday only
    except (ValueError, KeyError, TypeError):
        raise DigestError(f"{state_file} is damaged. Delete it: the next digest then "
                          "counts yesterday only.") from None
    return last + dt.timedelta(days=1), yesterday


def _save_state(state_file: Path, last_day: dt.date) -> None:
    write_whole(state_file, json.dumps({"counted_through": last_day.isoformat()}))


def _sender(settings: Settings) -> str:
    if not settings.smtp_host:
        raise DigestError("No mail server is set: set TIPBOX_SMTP_HOST (and TIPBOX_SMTP_PORT "
                          "if it is not 587), then run `tipbox digest` again.")
    if not settings.digest_from:
        raise DigestError("Set TIPBOX_DIGEST_FROM to the address the digest is sent from.")
    return settings.digest_from


def _message(sender: str, recipient: Recipient, count: int, gpg_binary: str) -> Message:
    sources = "1 source" if count == 1 else f"{count} sources"
    body = MIMEText(BODY % {"sources": sources}, "plain", "utf-8")
    if recipient.key_file is None:
        message: Message = body
    else:
        message = _pgp_mime(body, recipient.key_file, gpg_binary)
    # No Date and no Message-ID of our own: the exact time is not ours to add.
    message["Subject"] = SUBJECT
    message["From"] = sender
    message["To"] = recipient.address
    return message


def _pgp_mime(body: MIMEText, key_file: Path, gpg_binary: str) -> Message:
    """RFC 3156: the whole inner part (headers included) encrypted, in two parts."""
    with _throwaway_home() as home:
        done = subprocess.run(
            [gpg_binary, "--homedir", str(home), "--batch", "--no-tty", "--armor",
             "--trust-model", "always", "--recipient-file", str(key_file), "--encrypt"],
            input=body.as_bytes(), capture_output=True, check=False)
    if done.returncode != 0:
        raise DigestError(f"gpg could not encrypt the digest to {key_file.name}. Check that "
                          "it is a valid public key that can encrypt and has not expired, "
                          "or remove it from TIPBOX_DIGEST_KEYS_DIR.")
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer.attach(MIMEApplication(b"Version: 1\n", "pgp-encrypted", _encoder=encode_7or8bit))
    armored = MIMEApplication(done.stdout, "octet-stream", _encoder=encode_7or8bit)
    armored.add_header("Content-Disposition", "inline", filename="encrypted.asc")
    outer.attach(armored)
    return outer


def _key_address(path: Path, gpg_binary: str) -> str:
    with _throwaway_home() as home:
        done = subprocess.run(
            [gpg_binary, "--homedir", str(home), "--batch", "--no-tty", "--with-colons",
             "--show-keys", str(path)], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        fields = line.split(":")
        if fields[0] == "uid" and len(fields) > 9:
            address = parseaddr(fields[9].replace("\\x3a", ":"))[1]
            if "@" in address:
                return address
    raise DigestError(f"{path.name} in TIPBOX_DIGEST_KEYS_DIR has no user id with an e-mail "
                      "address, so the digest cannot be sent to its owner. Add one to the "
                      "key, or remove the file.")


@contextmanager
def _throwaway_home() -> Iterator[Path]:
    # Public-key work only: gpg starts no agent for it, and the home holds nothing secret.
    with tempfile.TemporaryDirectory(prefix="tipbox-gpg-") as made:
        yield Path(made)


def _deliver(settings: Settings, sender: str, messages: list[Message]) -> None:
    host = settings.smtp_host or ""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)
        with smtplib.SMTP(host, settings.smtp_port, local_hostname=EHLO_NAME,
                          timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise DigestError(f"The mail server {host} does not offer STARTTLS, and tipbox "
                                  "never sends mail in clear. Use a server that does "
                                  "(TIPBOX_SMTP_HOST, TIPBOX_SMTP_PORT).")
            smtp.starttls(context=context)
            smtp.ehlo()
            if settings.smtp_username:
                _log_in(smtp, settings)
            for message in messages:
                smtp.send_message(message, from_addr=sender)
    except ssl.SSLCertVerificationError:
        raise DigestError(f"The certificate of the mail server {host} could not be verified. "
                          "If it uses a certificate of its own, give its CA certificate in "
                          "TIPBOX_SMTP_CA_FILE; nothing was sent.") from None
    except smtplib.SMTPAuthenticationError:
        raise DigestError(f"The mail server {host} refused the log-in. Check "
                          "TIPBOX_SMTP_USERNAME and the file TIPBOX_SMTP_PASSWORD_FILE names; "
                          "nothing was sent.") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DigestError(f"Could not send the digest through {host}:{settings.smtp_port} "
                          f"({type(exc).__name__}). Check that the server is reachable and "
                          "the TIPBOX_SMTP_* settings; the next run sends it again.") from None


def _log_in(smtp: smtplib.SMTP, settings: Settings) -> None:
    password = _password(settings)
    try:
        smtp.login(settings.smtp_username or "", password)
    except smtplib.SMTPException:
        # A server may also hang up after a refused log-in, rather than answer 535.
        raise smtplib.SMTPAuthenticationError(535, b"refused") from None


def _password(settings: Settings) -> str:
    if settings.smtp_password_file is None:
        raise DigestError("TIPBOX_SMTP_USERNAME is set but TIPBOX_SMTP_PASSWORD_FILE is not: "
                          "put the password in a file readable only by tipbox and name it "
                          "there.")
    try:
        return settings.smtp_password_file.read_text().strip()
    except OSError as exc:
        raise DigestError(f"Cannot read {settings.smtp_password_file} "
                          f"({type(exc).__name__}): check that it exists and that the tipbox "
                          "user may read it.") from None
