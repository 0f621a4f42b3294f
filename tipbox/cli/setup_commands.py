"""`tipbox init`, `tipbox serve` and `tipbox demo`: setting an instance up and serving it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tipbox.cli.services import (
    cli_actor,
    errors_as_next_steps,
    open_services,
    settings_from_env,
)
from tipbox.config import REPO_ROOT, Settings

if TYPE_CHECKING:
    from tipbox.accounts import NewCredentials
    from tipbox.demo import DemoKey
    from tipbox.provisioning import Initialised, KeyFileOutcome

DEFAULT_PORTS = {"source": 8080, "newsroom": 8081}
# Where `tipbox demo` keeps the demo key's secret half unless told otherwise.
DEMO_OFFLINE_DIR = REPO_ROOT / "demo-offline"


@click.command()
@click.option("--trust-keys-folder", is_flag=True,
              help="DANGEROUS outside demos and tests: activate the keys folder's keys "
                   "without proof that anyone holds their secret halves.")
def init(trust_keys_folder: bool) -> None:
    """Create the data folder, the instance secrets and the database, and import the keys
    folder's public keys (safe to re-run)."""
    settings = settings_from_env()
    _initialise(settings, trust_keys_folder=trust_keys_folder)
    click.echo(f"Data folder ready: {settings.data_dir}")


def _initialise(settings: Settings, *, trust_keys_folder: bool) -> None:
    from tipbox.provisioning import initialise

    with errors_as_next_steps():
        done = initialise(settings, trust_keys_folder=trust_keys_folder)
    _report(done, settings)


def _report(done: Initialised, settings: Settings) -> None:
    if done.sealed:
        click.echo(f"Sealed the TOTP secrets of {done.sealed} account(s).", err=True)
    if done.locked_out:
        click.echo(f"WARNING: the TOTP secrets of {', '.join(done.locked_out)} do not open "
                   f"with totp_key in {settings.secrets_file}: they cannot log in. Restore "
                   "the instance-secrets.json backed up with this database, or `tipbox users "
                   "reset` each of them.", err=True)
    for outcome in done.key_files:
        for line in _key_file_lines(outcome):
            click.echo(line, err=True)


def _key_file_lines(outcome: KeyFileOutcome) -> list[str]:
    from tipbox.provisioning import KeyFileStatus

    fpr = outcome.fingerprint
    if outcome.status is KeyFileStatus.REFUSED:
        return [f"Not imported: {outcome.file_name}: {outcome.reason}"]
    lines = [f"Key {fpr} from {outcome.file_name} added as pending."] if outcome.added else []
    if outcome.status is KeyFileStatus.ACTIVATED:
        lines.append(f"Key {fpr} ACTIVATED WITHOUT PROOF of possession (--trust-keys-folder).")
    elif outcome.status is KeyFileStatus.PENDING:
        lines.append(f"Key {fpr} is pending. Prove possession, then activate it:\n"
                     f"  tipbox keys challenge {fpr} --out challenge.gpg\n"
                     "  (on the offline machine) tipbox-open keys prove challenge.gpg\n"
                     f"  tipbox keys activate {fpr} --proof CODE")
    return lines


@click.command()
@click.argument("interface", type=click.Choice(["source", "newsroom"]))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="Default: 8080 for source, 8081 for newsroom.")
def serve(interface: str, host: str, port: int | None) -> None:
    """Serve one interface with gunicorn. Run the two on separate ports; only the source
    interface may be published (as an onion service)."""
    from tipbox.serve import serve as run_server
    from tipbox.web.newsroom import create_newsroom_app
    from tipbox.web.source import create_source_app

    settings = settings_from_env()
    port = port or DEFAULT_PORTS[interface]
    # The services only check the instance first; the app opens its own engine.
    with open_services(settings):
        app = create_source_app(settings) if interface == "source" else \
            create_newsroom_app(settings)
    click.echo(f"tipbox {interface} interface: http://{host}:{port}/", err=True)
    run_server(app, host, port)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int,
              help="Source interface port; the newsroom interface gets the next one.")
@click.option("--no-serve", is_flag=True, help="Set up only; do not start the servers.")
@click.option("--offline-dir", type=click.Path(path_type=Path), default=DEMO_OFFLINE_DIR,
              show_default=True, help="Stands for the air-gapped machine: gets the secret key.")
def demo(host: str, port: int, no_serve: bool, offline_dir: Path) -> None:
    """Set up a DEMONSTRATION instance (throwaway key pair, a demo journalist), then serve
    both interfaces."""
    from tipbox.demo import demo_journalist_credentials, ensure_demo_key

    settings = settings_from_env()
    made = ensure_demo_key(settings.keys_dir, offline_dir)
    if made is None:
        click.echo(f"Using the key(s) already in {settings.keys_dir}.", err=True)
    else:
        _show_demo_key(made)
    # The demo made its key pair itself, so possession needs no proof here.
    _initialise(settings, trust_keys_folder=True)
    with open_services(settings) as services:
        creds = demo_journalist_credentials(services.accounts, cli_actor())
    _show_demo_journalist(creds)
    if not no_serve:
        _serve_both(host, port, port + 1, offline_dir)


def _show_demo_key(made: DemoKey) -> None:
    banner = "!" * 78
    click.echo("\n".join([
        banner,
        "  DEMO KEY CREATED - FOR DEMONSTRATION ONLY",
        f"  Fingerprint: {made.fingerprint}",
        f"  Public key:  {made.public_key_file}",
        f"  Secret key:  {made.secret_home} (stands for the air-gapped machine)",
        "  Its secret key sits unprotected on this machine. Never let a real source",
        "  use an instance that encrypts to it. See docs/admin-guide.md for real keys.",
        banner,
    ]), err=True)


def _show_demo_journalist(creds: NewCredentials) -> None:
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
