"""What every `tipbox` command needs from the instance, and how its failures are told.

:func:`open_services` is the one way a command reaches the database: it checks that the
data folder is initialised and the schema current, builds the services on one engine,
and turns domain and database errors into a one-line message with the next step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import click

from tipbox.config import Settings
from tipbox.errors import ConfigError, NoSuchAccount, TipboxError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from tipbox.accounts import AccountService
    from tipbox.audit import AuditLog
    from tipbox.inbox import InboxService
    from tipbox.key_registry import KeyService


def settings_from_env() -> Settings:
    """The settings, or a ClickException that names the malformed one."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def cli_actor() -> str:
    """Who the audit log names for a change made from the command line: ``cli:LOGIN``."""
    # Under sudo, the person who typed the command, not the service account.
    who = os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not who:  # a service or a bare shell sets neither: ask the system who this is
        import pwd

        try:
            who = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            who = f"uid {os.getuid()}"
    return f"cli:{who}"


@dataclass(frozen=True)
class Services:
    """The instance's services on one engine. Each is built when first used, so a command
    only loads what it needs (the accounts need the instance secrets; the inbox, the
    ciphertext store)."""

    settings: Settings
    sessions: sessionmaker[Session]
    # False only where the caller asked to see an out-of-date schema (`tipbox doctor`).
    schema_current: bool

    @cached_property
    def audit(self) -> AuditLog:
        from tipbox.audit import AuditLog

        return AuditLog(self.sessions)

    @cached_property
    def accounts(self) -> AccountService:
        from tipbox.accounts import AccountService, TotpSealer
        from tipbox.instance import InstanceSecrets

        sealer = TotpSealer(InstanceSecrets.load(self.settings.secrets_file).totp_key)
        return AccountService(self.sessions, sealer, self.audit)

    @cached_property
    def keys(self) -> KeyService:
        from tipbox.key_registry import KeyService

        return KeyService(self.sessions, self.settings.gnupg_dir, self.audit,
                          self.settings.gpg_binary)

    @cached_property
    def inbox(self) -> InboxService:
        from tipbox.inbox import InboxService
        from tipbox.storage import CiphertextStore

        return InboxService(self.sessions, CiphertextStore(self.settings.store_dir))


@contextmanager
def open_services(settings: Settings, *,
                  allow_outdated_schema: bool = False) -> Iterator[Services]:
    """The services on the configured database once it is initialised and (unless
    ``allow_outdated_schema``) its schema current. Anything else, and any error raised
    in the ``with`` block, is told as the next step to take."""
    from tipbox.db import is_current, make_engine, make_session_factory

    # Checked first: opening a SQLite URL in a missing data folder would create a stray file.
    if not settings.secrets_file.exists():
        raise click.ClickException(f"{settings.data_dir} is not initialised: run `tipbox init` "
                                   "first.")
    with errors_as_next_steps():
        engine = make_engine(settings.database_url)
        try:
            current = is_current(engine)
            if not current and not allow_outdated_schema:
                raise click.ClickException("The database is not initialised or its schema is "
                                           "out of date: run `tipbox init` first.")
            yield Services(settings, make_session_factory(engine), current)
        finally:
            engine.dispose()


@contextmanager
def errors_as_next_steps() -> Iterator[None]:
    """Domain and database errors raised in the block as a ClickException: one line that
    says what to do, no traceback."""
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except NoSuchAccount:
        raise click.ClickException("There is no account with that name: "
                                   "`tipbox users list` shows them all.") from None
    except TipboxError as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        # The class of the driver's error, not its message: that may quote the URL, and
        # the URL may hold the database password.
        raise click.ClickException(
            f"Cannot use the database ({type(exc.orig).__name__}). Check that it is running "
            "and that TIPBOX_DATABASE_URL is right, then try again.") from None
