"""The ``tipbox`` command: init, serve, demo, users, keys, prune, doctor."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tipbox.config import REPO_ROOT, Settings
from tipbox.errors import ConfigError, NoSuchAccount, TipboxError, UsernameTaken

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tipbox.accounts import AccountService, NewCredentials

log = logging.getLogger(__name__)

DEMO_OFFLINE_DIR = REPO_ROOT / "demo-offline"
DEMO_KEY_NAME = "tipbox DEMO newsroom key - NOT SECRET, NOT FOR REAL SOURCES"
DEMO_KEY_FILE = "DEMO-newsroom-key.asc"


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """tipbox: anonymous, encrypted tip submission for newsrooms."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%Y-%m-%d %H:%M")
    # Alembic narrates its plug-ins and contexts at INFO on every start.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@click.option("--trust-keys-folder", is_flag=True,
              help="DANGEROUS outside demos and tests: activate the keys folder's keys "
                   "without proof that anyone holds their secret halves.")
def init(trust_keys_folder: bool) -> None:
    """Create the data folder, the instance secrets and the database, and import the keys
    folder's public keys (safe to re-run)."""
    settings = _settings()
    try:
        initialise(settings, trust_keys_folder=trust_keys_folder)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Data folder ready: {settings.data_dir}")


def initialise(settings: Settings, *, trust_keys_folder: bool = False) -> None:
    from tipbox.db import upgrade
    from tipbox.instance import InstanceSecrets
    from tipbox.storage import CiphertextStore

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not settings.secrets_file.exists() and _has_sources(settings.database_url):
        raise ConfigError(
            f"{settings.secrets_file} is missing but the database already has sources. A new "
            "file would lock every source out for good: restore it from your backup, then "
            "run `tipbox init` again.")
    if (settings.secrets_file.exists()
            and "totp_key" in InstanceSecrets.missing(settings.secrets_file)
            and _has_sealed_totp_secrets(settings.database_url)):
        raise ConfigError(
            f"{settings.secrets_file} has no totp_key, but the database holds TOTP secrets "
            "sealed with one: this file does not belong with this database (restored from an "
            "older backup?). A new key would lock every journalist out: restore the "
            "instance-secrets.json that was backed up with the database, then run `tipbox "
            "init` again.")
    instance = InstanceSecrets.load_or_create(settings.secrets_file)
    CiphertextStore(settings.store_dir).sweep_temp()
    upgrade(settings.database_url)
    _seal_totp_secrets(settings, instance.totp_key)
    import_keys_folder(settings, trust=trust_keys_folder)


def _seal_totp_secrets(settings: Settings, totp_key: bytes) -> None:
    """Accounts made by a tipbox that kept TOTP secrets in clear get them sealed."""
    from tipbox.accounts import AccountService, TotpSealer
    from tipbox.audit import AuditLog
    from tipbox.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        sessions = make_session_factory(engine)
        accounts = AccountService(sessions, TotpSealer(totp_key), AuditLog(sessions))
        sealed = accounts.seal_plaintext_secrets()
        locked_out = accounts.unopenable_secrets()
    finally:
        engine.dispose()
    if sealed:
        log.info("sealed the TOTP secrets of %d account(s)", sealed)
    if locked_out:
        log.warning("the TOTP secrets of %s do not open with totp_key in %s: they cannot log "
                    "in. Restore the instance-secrets.json backed up with this database, or "
                    "`tipbox users reset` each of them.", ", ".join(locked_out),
                    settings.secrets_file)


def account_service(settings: Settings, engine: Engine) -> AccountService:
    from tipbox.accounts import AccountService, TotpSealer
    from tipbox.audit import AuditLog
    from tipbox.db import make_session_factory
    from tipbox.instance import InstanceSecrets

    sealer = TotpSealer(InstanceSecrets.load(settings.secrets_file).totp_key)
    sessions = make_session_factory(engine)
    return AccountService(sessions, sealer, AuditLog(sessions))


def import_keys_folder(settings: Settings, *, trust: bool) -> None:
    """Bring public keys placed in the keys folder into the registry, as pending (or, for
    demonstrations and tests that hold the secret key themselves, active at once)."""
    from tipbox.audit import AuditLog
    from tipbox.crypto.keyring import KEY_SUFFIXES
    from tipbox.db import make_engine, make_session_factory
    from tipbox.errors import KeyRefused
    from tipbox.key_registry import KeyService
    from tipbox.models import KeyState

    if not settings.keys_dir.is_dir():
        return
    engine = make_engine(settings.database_url)
    try:
        db = make_session_factory(engine)
        service = KeyService(db, settings.gnupg_dir, AuditLog(db), settings.gpg_binary)
        known = {k.fingerprint: k.state for k in service.records()}
        for path in sorted(settings.keys_dir.iterdir()):
            if path.suffix.lower() not in KEY_SUFFIXES or not path.is_file():
                continue
            try:
                found = service.inspect(path.read_bytes())
            except KeyRefused as exc:
                click.echo(f"Not imported: {path.name}: {exc}", err=True)
                continue
            fpr = found.info.fingerprint
            if fpr not in known:
                service.add(path.read_bytes(), actor="tipbox init")
                known[fpr] = KeyState.PENDING
                click.echo(f"Key {fpr} from {path.name} added as pending.", err=True)
            if known[fpr] is KeyState.PENDING:
                if trust:
                    service.activate_without_proof(fpr, "tipbox init",
                                                   "keys folder trusted (--trust-keys-folder)")
                    click.echo(f"Key {fpr} ACTIVATED WITHOUT PROOF of possession "
                               "(--trust-keys-folder).", err=True)
                else:
                    click.echo(f"Key {fpr} is pending. Prove possession, then activate it:\n"
                               f"  tipbox keys challenge {fpr} --out challenge.gpg\n"
                               "  (on the offline machine) tipbox-open keys prove "
                               "challenge.gpg\n"
                               f"  tipbox keys activate {fpr} --proof CODE", err=True)
    finally:
        engine.dispose()


def _has_sources(url: str) -> bool:
    from tipbox.models import Source

    return _has_row(url, Source)


def _has_sealed_totp_secrets(url: str) -> bool:
    from tipbox.accounts import SEALED
    from tipbox.models import Journalist

    return _has_row(url, Journalist, Journalist.totp_secret.like(SEALED + "%"))


def _has_row(url: str, model: Any, *where: Any) -> bool:
    """Whether the table of ``model`` exists and has a row matching ``where``."""
    from sqlalchemy import inspect, select

    from tipbox.db import make_engine

    engine = make_engine(url)
    try:
        if not inspect(engine).has_table(model.__tablename__):
            return False
        with engine.connect() as conn:
            query = select(model.__table__.c.id).where(*where).limit(1)
            return conn.execute(query).first() is not None
    finally:
        engine.dispose()


@main.command()
@click.argument("interface", type=click.Choice(["source", "newsroom"]))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="Default: 8080 for source, 8081 for newsroom.")
def serve(interface: str, host: str, port: int | None) -> None:
    """Serve one interface with gunicorn. Run the two on separate ports; only the source
    interface may be published (as an onion service)."""
    _serve(_settings(), interface, host, port or DEFAULT_PORTS[interface])


def _serve(settings: Settings, interface: str, host: str, port: int) -> None:
    from tipbox.db import is_current, make_engine
    from tipbox.serve import serve as run_server
    from tipbox.web.newsroom import create_newsroom_app
    from tipbox.web.source import create_source_app

    if not settings.secrets_file.exists():
        raise click.ClickException(f"{settings.data_dir} is not initialised: run `tipbox init`.")
    if not is_current(make_engine(settings.database_url)):
        raise click.ClickException("The database schema is out of date: run `tipbox init`.")
    try:
        app = create_source_app(settings) if interface == "source" else \
            create_newsroom_app(settings)
    except TipboxError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tipbox {interface} interface: http://{host}:{port}/", err=True)
    run_server(app, host, port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int,
              help="Source interface port; the newsroom interface gets the next one.")
@click.option("--no-serve", is_flag=True, help="Set up only; do not start the servers.")
@click.option("--offline-dir", type=click.Path(path_type=Path), default=DEMO_OFFLINE_DIR,
              show_default=True, help="Stands for the air-gapped machine: gets the secret key.")
def demo(host: str, port: int, no_serve: bool, offline_dir: Path) -> None:
    """Set up a DEMONSTRATION instance (throwaway key pair, a demo journalist), then serve
    both interfaces."""
    settings = _settings()
    ensure_demo_key(settings.keys_dir, offline_dir)
    try:
        # The demo made its key pair itself, so possession needs no proof here.
        initialise(settings, trust_keys_folder=True)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _print_demo_journalist(settings)
    if not no_serve:
        _serve_both(host, port, port + 1, offline_dir)


DEMO_JOURNALIST = "demo-journalist"
DEFAULT_PORTS = {"source": 8080, "newsroom": 8081}


def _print_demo_journalist(settings: Settings) -> None:
    """The demo journalist gets fresh credentials at every start: only their hashes are
    stored, so this is the only way to show them again."""
    from tipbox.db import make_engine
    from tipbox.errors import NoSuchAccount

    engine = make_engine(settings.database_url)
    accounts = account_service(settings, engine)
    try:
        try:
            creds = accounts.reset_credentials(DEMO_JOURNALIST, _actor())
        except NoSuchAccount:
            creds = accounts.create(DEMO_JOURNALIST, _actor(), admin=True)
    finally:
        engine.dispose()
    click.echo("\n".join([
        "",
        "DEMO newsroom log-in (for this demonstration only; new credentials at every start):",
        f"  username:    {creds.username}",
        f"  passphrase:  {creds.passphrase}",
        f"  TOTP secret: {creds.totp_secret}",
        f"  enrol URI:   {creds.otpauth_uri}",
        "  Scan this with an authenticator app (or compute codes with `oathtool --totp -b`):",
        creds.qr_for_terminal(),
    ]), err=True)


def _serve_both(host: str, source_port: int, newsroom_port: int, offline_dir: Path) -> None:
    """Two servers, two ports, as in production; Ctrl-C (or SIGTERM, SIGHUP) stops both,
    whenever it comes."""
    from tipbox.supervise import run_together

    base = [sys.executable, "-m", "tipbox.cli", "serve"]

    def started() -> None:
        click.echo("\n".join([
            "",
            f"  Source interface:   http://{host}:{source_port}/   (what the public would see)",
            f"  Newsroom interface: http://{host}:{newsroom_port}/login   (journalists only)",
            f"  Decrypt on the 'air-gapped machine': .venv/bin/tipbox-open BUNDLE.tar "
            f"--out DIR --gnupghome {offline_dir / 'gnupg'}",
            "  Press Ctrl-C to stop both.",
            "",
        ]), err=True)

    ok = run_together([[*base, "source", "--host", host, "--port", str(source_port)],
                       [*base, "newsroom", "--host", host, "--port", str(newsroom_port)]],
                      started=started, say=lambda text: click.echo(text, err=True))
    if not ok:
        raise click.ClickException("A server stopped with an error; see the messages above.")


def ensure_demo_key(keys_dir: Path, offline_dir: Path) -> None:
    """Make a demo key pair unless the keys folder already has a key."""
    from tipbox.crypto.gpg import GnuPG
    from tipbox.crypto.keyring import KEY_SUFFIXES

    keys_dir.mkdir(parents=True, exist_ok=True)
    if any(p.suffix in KEY_SUFFIXES for p in keys_dir.iterdir()):
        click.echo(f"Using the key(s) already in {keys_dir}.", err=True)
        return
    gpg = GnuPG(offline_dir / "gnupg")
    fpr = gpg.generate_key(DEMO_KEY_NAME, "demo-newsroom@tipbox.invalid", passphrase=None,
                           expire="1y")
    (keys_dir / DEMO_KEY_FILE).write_text(str(gpg.export_public(fpr)))
    banner = "!" * 78
    click.echo("\n".join([
        banner,
        "  DEMO KEY CREATED - FOR DEMONSTRATION ONLY",
        f"  Fingerprint: {fpr}",
        f"  Public key:  {keys_dir / DEMO_KEY_FILE}",
        f"  Secret key:  {offline_dir / 'gnupg'} (stands for the air-gapped machine)",
        "  Its secret key sits unprotected on this machine. Never let a real source",
        "  use an instance that encrypts to it. See docs/admin-guide.md for real keys.",
        banner,
    ]), err=True)


@main.group()
def users() -> None:
    """Newsroom accounts: add, reset, deactivate, reactivate, list."""


@users.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage other accounts.")
def users_add(name: str, admin: bool) -> None:
    """Create an account and print its credentials.

    The passphrase, TOTP secret, otpauth:// URI and QR code are printed this once only.
    """
    with _accounts() as accounts:
        try:
            creds = accounts.create(name, _actor(), admin=admin)
        except UsernameTaken as exc:
            raise click.ClickException(
                f"{exc} To give {exc.existing} new credentials instead, run "
                f"`tipbox users reset {exc.existing}`.") from None
        role = "admin" if admin else "journalist"
    _show_credentials(creds, f"Account created: {creds.username} ({role}).")


@users.command("reset")
@click.argument("name")
def users_reset(name: str) -> None:
    """New passphrase and TOTP secret for an account.

    Both are replaced; the old passphrase and authenticator stop working at once, and
    any login lock is lifted. The new ones are printed once, as for `add`.
    """
    with _accounts() as accounts:
        creds = accounts.reset_credentials(name, _actor())
    _show_credentials(creds, f"New credentials for {creds.username}; the old passphrase and "
                             "authenticator no longer work, and any login lock is lifted.")


@users.command("deactivate")
@click.argument("name")
def users_deactivate(name: str) -> None:
    """Refuse every login to an account.

    Nothing is deleted; `tipbox users reactivate NAME` undoes it.
    """
    with _accounts() as accounts:
        accounts.deactivate(name, _actor())
    click.echo(f"{name} is deactivated: every login is refused. "
               f"Undo with `tipbox users reactivate {name}`.")


@users.command("reactivate")
@click.argument("name")
def users_reactivate(name: str) -> None:
    """Allow logins again; also lifts a login lock.

    The account keeps its current passphrase and authenticator.
    """
    with _accounts() as accounts:
        accounts.reactivate(name, _actor())
    click.echo(f"{name} can log in again with the same passphrase and authenticator. If "
               f"those are lost, run `tipbox users reset {name}`.")


@users.command("list")
def users_list() -> None:
    """Show every account with its role and status."""
    with _accounts() as accounts:
        summaries = accounts.list()
    if not summaries:
        click.echo("No accounts yet: create one with `tipbox users add NAME [--admin]`.")
        return
    rows = [("USERNAME", "ROLE", "STATUS", "CREATED")]
    for a in summaries:
        status = "active" if a.is_active else "deactivated"
        if a.locked_until is not None:
            status += f", locked until {a.locked_until:%Y-%m-%d %H:%M} UTC"
        rows.append((a.username, "admin" if a.is_admin else "journalist", status,
                     a.created_on.isoformat()))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        click.echo("  ".join([*padded, row[3]]))


@contextmanager
def _accounts() -> Iterator[AccountService]:
    """The account service on the configured database, with errors told as next steps."""
    settings = _settings()
    with _database(settings) as engine:
        try:
            yield account_service(settings, engine)
        except NoSuchAccount:
            raise click.ClickException("There is no account with that name: "
                                       "`tipbox users list` shows them all.") from None
        except TipboxError as exc:
            raise click.ClickException(str(exc)) from None


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    """An engine on the configured database once it is initialised and its schema current;
    anything else is told as the next step to take."""
    from sqlalchemy.exc import OperationalError

    from tipbox.db import is_current, make_engine

    # Alembic's start-up chatter (INFO) would bury the output an admin needs to read.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Checked first: opening a SQLite URL in a missing data folder would create a stray file.
    if not settings.secrets_file.exists():
        raise click.ClickException(f"{settings.data_dir} is not initialised: run `tipbox init` "
                                   "first.")
    engine = make_engine(settings.database_url)
    try:
        if not is_current(engine):
            raise click.ClickException("The database is not initialised or its schema is out "
                                       "of date: run `tipbox init` first.")
        yield engine
    except OperationalError as exc:
        # The message, not the URL: the URL may hold the database password.
        raise click.ClickException(
            f"Cannot use the database ({type(exc.orig).__name__}). Check that it is running "
            "and that TIPBOX_DATABASE_URL is right, then try again.") from None
    finally:
        engine.dispose()


def _show_credentials(creds: NewCredentials, heading: str) -> None:
    handover = (f"Hand these to {creds.username} in person, never by e-mail or chat. They are "
                "shown only this once and cannot be shown again.")
    click.echo("\n".join([
        heading,
        handover,
        "",
        f"  Username:     {creds.username}",
        f"  Passphrase:   {creds.passphrase}",
        f"  TOTP secret:  {creds.totp_secret}",
        f"  otpauth URI:  {creds.otpauth_uri}",
        "",
        "Scan this QR code with the journalist's authenticator app, or type in the TOTP secret:",
    ]))
    click.echo(creds.qr_for_terminal(), nl=False)
    click.echo(f"If they are lost, run `tipbox users reset {creds.username}` for new ones.")




# --- newsroom keys ---------------------------------------------------------------------


def _key_service(settings: Settings) -> tuple[Any, Any]:
    from tipbox.audit import AuditLog
    from tipbox.db import make_engine, make_session_factory
    from tipbox.key_registry import KeyService

    if not settings.secrets_file.exists():
        raise click.ClickException(f"{settings.data_dir} is not initialised: run `tipbox init`.")
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    return KeyService(db, settings.gnupg_dir, AuditLog(db), settings.gpg_binary), engine


def _actor() -> str:
    # Under sudo, the person who typed the command, not the service account.
    who = os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not who:  # a service or a bare shell sets neither: ask the system who this is
        import pwd

        try:
            who = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            who = f"uid {os.getuid()}"
    return f"cli:{who}"


@main.group()
def keys() -> None:
    """Newsroom keys: list, add, challenge, activate, retire (see docs/admin-guide.md)."""


@keys.command("list")
def keys_list() -> None:
    """Every key with its state, algorithm, dates and how many items are encrypted to it."""
    service, engine = _key_service(_settings())
    try:
        records = service.records()
        if not records:
            click.echo("No keys yet. Add the newsroom's public key: tipbox keys add FILE")
        for rec in records:
            click.echo(f"{rec.fingerprint}  {rec.state.value.upper():8}  {rec.algorithm}")
            click.echo(f"    {'; '.join(rec.uids)}")
            click.echo(f"    created {rec.created_on}, expires "
                       f"{rec.expires_on or 'never'}, added {rec.added_on}"
                       + (f", activated {rec.activated_on}" if rec.activated_on else "")
                       + (f", retired {rec.retired_on}" if rec.retired_on else "")
                       + f"; {rec.items} item(s) encrypted to it"
                       + ("; challenge issued" if rec.pending_challenge else ""))
        for warning in service.expiry_warnings():
            click.echo(f"WARNING: {warning}", err=True)
    finally:
        engine.dispose()


def _key_command(action: Callable[[Any], None]) -> None:
    from tipbox.errors import KeyRefused

    service, engine = _key_service(_settings())
    try:
        action(service)
    except KeyRefused as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()


@keys.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def keys_add(file: Path) -> None:
    """Import a public key (armored or binary) as PENDING."""
    def run(service: Any) -> None:
        found = service.add(file.read_bytes(), _actor())
        info = found.info
        expiry = _fmt_day(info.expires)
        click.echo(f"Added {info.fingerprint} ({found.algorithm}) as PENDING.")
        for uid in info.uids:
            click.echo(f"  user id: {uid}")
        click.echo(f"  expires: {expiry}")
        click.echo(f"Next: tipbox keys challenge {info.fingerprint} --out challenge.gpg")
    _key_command(run)


@keys.command("challenge")
@click.argument("fingerprint")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("challenge.gpg"), show_default=True)
def keys_challenge(fingerprint: str, out: Path) -> None:
    """Write a file, encrypted to the pending key, holding a random code."""
    def run(service: Any) -> None:
        out.write_bytes(service.challenge(fingerprint, _actor()))
        click.echo(f"Wrote {out}. Carry it to the offline machine and run:\n"
                   f"  tipbox-open keys prove {out.name}\n"
                   f"then here: tipbox keys activate {fingerprint} --proof CODE")
    _key_command(run)


@keys.command("activate")
@click.argument("fingerprint")
@click.option("--proof", help="The code `tipbox-open keys prove` printed.")
@click.option("--skip-proof-of-possession", "skip_proof", is_flag=True,
              help="DANGEROUS: activate with no proof that the secret key exists "
                   "(demonstrations and tests only; the audit log records it).")
def keys_activate(fingerprint: str, proof: str | None, skip_proof: bool) -> None:
    """Make a pending key ACTIVE: new items are encrypted to it from now on."""
    if not proof and not skip_proof:
        raise click.ClickException("Give the code from the challenge: --proof CODE")

    def run(service: Any) -> None:
        if skip_proof:
            service.activate_without_proof(fingerprint, _actor(),
                                           "--skip-proof-of-possession on the command line")
        else:
            service.activate(fingerprint, proof or "", _actor())
        click.echo(f"Key {fingerprint} is ACTIVE. Every new item is encrypted to it.")
    _key_command(run)


@keys.command("retire")
@click.argument("fingerprint")
def keys_retire(fingerprint: str) -> None:
    """Stop encrypting to a key (refused if it is the last active one)."""
    def run(service: Any) -> None:
        service.retire(fingerprint, _actor())
        click.echo(f"Key {fingerprint} is RETIRED. Keep its secret key: old items need it.")
    _key_command(run)


def _fmt_day(ts: int | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat() if ts else "never"


@main.command()
@click.option("--older-than", "days", type=click.IntRange(min=1), default=None, metavar="DAYS",
              help="Days without a submission or a reply (default: TIPBOX_RETENTION_DAYS).")
@click.option("--include-unread", is_flag=True,
              help="Delete sources past the cutoff even if nobody has read all their items.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--counts/--no-counts", default=None,
              help="Print how many sources, items and replies (default: only on a terminal).")
def prune(days: int | None, include_unread: bool, dry_run: bool, counts: bool | None) -> None:
    """Delete sources gone quiet, with all their items and replies (a retention policy).

    Run it daily (cron or a systemd timer) so that a seized server holds as little as
    possible. A source with an item no journalist has read is kept unless
    --include-unread. Run from a timer, it prints no counts: a daily count with its date
    would keep in the system log when each deleted source was last active."""
    settings = _settings()
    days = days or settings.retention_days
    if days is None:
        raise click.ClickException("How old? Give --older-than DAYS, or set "
                                   "TIPBOX_RETENTION_DAYS.")
    if counts is None:
        counts = sys.stdout.isatty()
    with _newsroom(settings) as newsroom:
        plan = newsroom.pruning(_retention_cutoff(days), include_unread=include_unread)
        period = f"quiet for more than {days} day(s)"
        if dry_run:
            click.echo(f"Would delete {len(plan.source_ids)} source(s) with {plan.items} "
                       f"item(s) and {plan.replies} reply(ies), {period}.")
        else:
            # Not in the audit log, like every deletion: an entry per run would date the
            # last activity of the sources it deleted.
            deleted = newsroom.delete_sources(plan.source_ids, quiet_since=plan.cutoff,
                                              keep_unread=not include_unread)
            if counts:
                spared = len(plan.source_ids) - deleted
                click.echo(f"Deleted {deleted} source(s), {period}"
                           + (f"; {spared} sent something while this ran and were kept"
                              if spared else "") + ".")
            else:
                click.echo(f"Done: deleted the sources {period}.")
    if plan.kept_unread:
        how_many = f"{plan.kept_unread} source(s)" if counts or dry_run else "sources"
        click.echo(f"Kept {how_many} just as old whose items nobody has read all of: read "
                   "them, or use --include-unread.")


def _retention_cutoff(days: int) -> dt.date:
    from tipbox.clock import today

    return today() - dt.timedelta(days=days)


@contextmanager
def _newsroom(settings: Settings) -> Iterator[Any]:
    from tipbox.db import make_session_factory
    from tipbox.inbox import InboxService
    from tipbox.storage import CiphertextStore

    with _database(settings) as engine:
        yield InboxService(make_session_factory(engine), CiphertextStore(settings.store_dir))


@main.command()
def doctor() -> None:
    """Check the installation and the newsroom keys; say what to fix."""
    from tipbox.crypto.keyring import secret_material_problem
    from tipbox.db import is_current, make_engine

    logging.getLogger("alembic").setLevel(logging.WARNING)  # quiet for cron mail
    settings = _settings()
    problems: list[str] = []
    notes: list[str] = []
    if not settings.secrets_file.exists():
        raise click.ClickException(f"{settings.data_dir} is not initialised: run `tipbox init`.")
    engine = make_engine(settings.database_url)
    try:
        schema_current = is_current(engine)
    finally:
        engine.dispose()
    if not schema_current:
        problems.append("The database schema is out of date: run `tipbox init`.")
    folder = secret_material_problem(settings.keys_dir, settings.gnupg_dir, settings.gpg_binary)
    if folder:
        problems.append(folder)
    service, engine = _key_service(settings)
    try:
        records = service.records()
        active = [r for r in records if r.state.value == "active"]
        notes.append(f"{len(active)} active key(s): "
                     + (", ".join(r.fingerprint for r in active) or "none"))
        problems.extend(service.expiry_warnings())
    finally:
        engine.dispose()
    if settings.retention_days is not None and schema_current:
        # A day's grace: the cutoff is a UTC day, and a daily timer may run at local
        # midnight, hours after the UTC day changed.
        with _newsroom(settings) as newsroom:
            plan = newsroom.pruning(_retention_cutoff(settings.retention_days + 1))
        notes.append(f"Retention: sources quiet for {settings.retention_days} days are "
                     "deleted by `tipbox prune`.")
        if plan.source_ids:
            problems.append(f"{len(plan.source_ids)} source(s) have been quiet for more than "
                            f"{settings.retention_days + 1} days but are still here: schedule "
                            "`tipbox prune` to run daily (docs/admin-guide.md).")
        if plan.kept_unread:
            notes.append(f"{plan.kept_unread} source(s) past the retention period are kept "
                         "because nobody has read all their items.")
    for note in notes:
        click.echo(note)
    for problem in problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("All checks passed.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
