"""The daily digest, delivered to a real SMTP server (aiosmtpd) on loopback that offers
STARTTLS with a certificate the test makes, and requires a log-in after it."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.e2e.server import free_port
from tests.helpers import Newsroom, cli_env
from tests.newsroom_fixtures import submit
from tipbox.cli import main
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.digest import send_digest
from tipbox.errors import DigestError
from tipbox.models import Source
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore

TODAY = dt.date(2026, 12, 2)
YESTERDAY = TODAY - dt.timedelta(days=1)
SMTP_USER, SMTP_PASSWORD = "tipbox-digest", "mail password for the test"


@dataclass
class Mailbox:
    """What the SMTP server received, and whether each message came over TLS."""

    messages: list[Message]
    over_tls: list[bool]
    raw: list[bytes]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.content)
        self.messages.append(email.message_from_bytes(envelope.content))
        self.over_tls.append(session.ssl is not None)
        return "250 OK"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tipbox test mail")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "mail-cert.pem", folder / "mail-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok)


@dataclass
class MailServer:
    port: int
    ca_file: Path  # the test's self-signed certificate, which a client must be told to trust
    mailbox: Mailbox


@contextmanager
def smtp_server(folder: Path, *, starttls: bool = True) -> Iterator[MailServer]:
    cert, key = self_signed(folder)
    mailbox = Mailbox([], [], [])
    port = free_port()
    options: dict[str, Any] = {"authenticator": authenticate}
    if starttls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        options |= {"tls_context": context, "require_starttls": True,
                    "auth_require_tls": True, "auth_required": True}
    else:
        # A server that would take mail in clear: the digest must not give it any.
        options |= {"auth_require_tls": False}
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield MailServer(port, cert, mailbox)
    finally:
        controller.stop()


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[MailServer]:
    with smtp_server(tmp_path) as server:
        yield server


def mail_settings(settings: Settings, server: MailServer, folder: Path,
                  **changes: object) -> Settings:
    password_file = folder / "smtp-password"
    password_file.write_text(SMTP_PASSWORD + "\n")
    base: dict[str, object] = {
        "smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_username": SMTP_USER,
        "smtp_password_file": password_file, "smtp_ca_file": server.ca_file,
        "digest_from": "tipbox@newsroom.example", "digest_to": ("desk@newsroom.example",)}
    return settings.with_overrides(**(base | changes))


@pytest.fixture
def db(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def source_wrote_on(settings: Settings, db: sessionmaker[Session], *days: dt.date) -> str:
    """A new source that sent one message on each of ``days``; returns its designation."""
    service = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT))
    source_id = service.create(generate_codename())
    ring = load_keyring(settings.keys_dir, settings.gnupg_dir)
    for day in days:
        submit(db, ring, CiphertextStore(settings.store_dir), source_id, "a tip", day=day)
    with db() as s:
        return s.scalars(select(Source.designation).where(Source.id == source_id)).one()


def body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def test_the_digest_arrives_over_starttls_with_the_count_and_nothing_else(
        settings: Settings, db: sessionmaker[Session], mail_server: MailServer,
        tmp_path: Path) -> None:
    designations = [source_wrote_on(settings, db, YESTERDAY, YESTERDAY),
                    source_wrote_on(settings, db, YESTERDAY),
                    source_wrote_on(settings, db, TODAY),  # counted tomorrow
                    source_wrote_on(settings, db, TODAY - dt.timedelta(days=5))]

    sent = send_digest(mail_settings(settings, mail_server, tmp_path), db, clock=lambda: TODAY)

    assert sent is not None
    assert (sent.count, sent.plain, sent.encrypted) == (2, 1, 0)
    [message] = mail_server.mailbox.messages
    assert mail_server.mailbox.over_tls == [True]
    assert message["To"] == "desk@newsroom.example"
    assert message["Subject"] == "Newsroom digest"
    assert body(message).startswith("2 sources wrote to the newsroom since the last digest.")
    raw = mail_server.mailbox.raw[0]
    for designation in designations:
        assert designation.encode() not in raw
    # No time of its own: no Date header, no day.
    assert message["Date"] is None
    assert YESTERDAY.isoformat().encode() not in raw


def test_a_second_run_the_same_day_sends_nothing_and_the_next_counts_only_new_days(
        settings: Settings, db: sessionmaker[Session], mail_server: MailServer,
        tmp_path: Path) -> None:
    mail = mail_settings(settings, mail_server, tmp_path)
    source_wrote_on(settings, db, YESTERDAY)
    assert send_digest(mail, db, clock=lambda: TODAY) is not None
    source_wrote_on(settings, db, TODAY)

    assert send_digest(mail, db, clock=lambda: TODAY) is None
    again = send_digest(mail, db, clock=lambda: TODAY + dt.timedelta(days=1))

    assert again is not None and again.count == 1
    assert len(mail_server.mailbox.messages) == 2
    # Nobody wrote on the days after: a digest still goes out, so that whether one is sent
    # tells the mail provider nothing.
    quiet = send_digest(mail, db, clock=lambda: TODAY + dt.timedelta(days=3))
    assert quiet is not None and quiet.count == 0
    assert body(mail_server.mailbox.messages[-1]).startswith("0 sources wrote")


def test_the_digest_is_encrypted_to_each_journalists_own_key(
        settings: Settings, db: sessionmaker[Session], mail_server: MailServer,
        tmp_path: Path, newsroom: Newsroom) -> None:
    source_wrote_on(settings, db, YESTERDAY)
    source_wrote_on(settings, db, YESTERDAY)
    source_wrote_on(settings, db, YESTERDAY)
    mail = mail_settings(settings, mail_server, tmp_path, digest_to=(),
                         digest_keys_dir=newsroom.keys_dir)

    sent = send_digest(mail, db, clock=lambda: TODAY)

    assert sent is not None and (sent.plain, sent.encrypted) == (0, 1)
    [message] = mail_server.mailbox.messages
    assert message["To"] == "newsroom@example.invalid"  # from the key's user id
    assert message.get_content_type() == "multipart/encrypted"
    assert b"wrote to the newsroom" not in mail_server.mailbox.raw[0]
    parts = message.get_payload()
    assert isinstance(parts, list)
    armored = parts[1].get_payload(decode=True)
    done = subprocess.run(["gpg", "--homedir", str(newsroom.secret_home), "--batch",
                           "--decrypt"], input=armored, capture_output=True, check=True)
    inner = email.message_from_bytes(done.stdout)
    assert body(inner).startswith("3 sources wrote")


def test_a_server_without_starttls_gets_nothing_and_the_days_stay_uncounted(
        settings: Settings, db: sessionmaker[Session], tmp_path: Path) -> None:
    source_wrote_on(settings, db, YESTERDAY)
    with smtp_server(tmp_path, starttls=False) as plain_server:
        mail = mail_settings(settings, plain_server, tmp_path)

        with pytest.raises(DigestError, match="does not offer STARTTLS"):
            send_digest(mail, db, clock=lambda: TODAY)

        assert plain_server.mailbox.messages == []
    assert not settings.digest_state_file.exists()


def test_a_certificate_nobody_vouched_for_is_refused(
        settings: Settings, db: sessionmaker[Session], mail_server: MailServer,
        tmp_path: Path) -> None:
    mail = mail_settings(settings, mail_server, tmp_path, smtp_ca_file=None)

    with pytest.raises(DigestError, match="TIPBOX_SMTP_CA_FILE"):
        send_digest(mail, db, clock=lambda: TODAY)

    assert mail_server.mailbox.messages == []
    assert not settings.digest_state_file.exists()


def test_a_refused_log_in_sends_nothing(settings: Settings, db: sessionmaker[Session],
                                        mail_server: MailServer, tmp_path: Path) -> None:
    mail = mail_settings(settings, mail_server, tmp_path, smtp_username="someone-else")

    with pytest.raises(DigestError, match="refused the log-in"):
        send_digest(mail, db, clock=lambda: TODAY)

    assert mail_server.mailbox.messages == []


def test_tipbox_digest_from_a_timer_prints_no_count(
        settings: Settings, db: sessionmaker[Session], mail_server: MailServer,
        tmp_path: Path) -> None:
    source_wrote_on(settings, db, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    env = cli_env(settings, TIPBOX_SMTP_HOST="127.0.0.1", TIPBOX_SMTP_PORT=str(mail_server.port),
                  TIPBOX_SMTP_USERNAME=SMTP_USER,
                  TIPBOX_SMTP_PASSWORD_FILE=str(mail_settings(
                      settings, mail_server, tmp_path).smtp_password_file),
                  TIPBOX_SMTP_CA_FILE=str(mail_server.ca_file),
                  TIPBOX_DIGEST_FROM="tipbox@newsroom.example",
                  TIPBOX_DIGEST_TO="desk@newsroom.example, editor@newsroom.example")

    first = CliRunner().invoke(main, ["digest"], env=env)
    second = CliRunner().invoke(main, ["digest"], env=env)

    assert first.exit_code == 0, first.output
    assert first.output == "Digest sent to 2 recipient(s), 0 of them encrypted.\n"
    assert "already sent" in second.output
    assert [m["To"] for m in mail_server.mailbox.messages] == [
        "desk@newsroom.example", "editor@newsroom.example"]
    assert body(mail_server.mailbox.messages[0]).startswith("1 source wrote")
